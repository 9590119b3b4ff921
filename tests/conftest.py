"""Shared fixtures. Emulators run over real HTTP on loopback, fresh for each test; PostgreSQL when configured."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.state.database import fresh_schema
from tests.support import API_KEY, ManualClock

POSTGRES_URL_VARIABLE = "INVOICED_KEAP_TEST_POSTGRES_URL"

# Property tests judge values, never speed: no deadline and no "too slow" check, so a loaded machine cannot fail
# them. Under CI the examples are derandomized (the same on every run); elsewhere each run explores new ones.
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} is not set: PostgreSQL tests need a server URL")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A state database: SQLite in a temporary file, or a fresh PostgreSQL schema, dropped afterwards.

    A module can pin one with `@pytest.mark.parametrize("state_url", ["sqlite"], indirect=True)`.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state.db"
        return
    with fresh_schema(request.getfixturevalue("postgres_url"), "test") as url:
        yield url


@pytest.fixture
def invoiced_emulator():
    from invoiced_keap.emulators.invoiced import InvoicedEmulator

    return InvoicedEmulator(api_key=API_KEY, random_seed=1)


@pytest.fixture
def invoiced_server(invoiced_emulator) -> Iterator[BackgroundServer]:
    with BackgroundServer(invoiced_emulator.asgi()) as server:
        yield server


@pytest.fixture
def keap_emulator():
    from invoiced_keap.emulators.keap import KeapEmulator

    return KeapEmulator(api_key=API_KEY, random_seed=1)


@pytest.fixture
def keap_server(keap_emulator) -> Iterator[BackgroundServer]:
    with BackgroundServer(keap_emulator.asgi()) as server:
        yield server


@pytest.fixture
def manual_clock() -> ManualClock:
    """Starts on a minute boundary (2025-06-04T01:06:00Z), so a test knows where each window begins."""
    return ManualClock(1_748_999_160.0)

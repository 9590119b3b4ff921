"""Shared fixtures. Emulators run over real HTTP on loopback, fresh for each test; PostgreSQL when configured."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from invoiced_keap.emulators.serve import BackgroundServer
from tests.support import API_KEY, ManualClock

POSTGRES_URL_VARIABLE = "INVOICED_KEAP_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} is not set: PostgreSQL tests need a server URL")
    return url


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

"""Emulators served over real HTTP on loopback, fresh for each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from invoiced_keap.emulators.serve import BackgroundServer

API_KEY = "test"


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


class ManualClock:
    """Epoch seconds that tests move by hand: token expiry and rate-limit windows without sleeping."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def manual_clock() -> ManualClock:
    """Starts on a minute boundary (2025-06-04T01:06:00Z), so a test knows where each window begins."""
    return ManualClock(1_748_999_160.0)

"""Emulator tests that move time by hand: an Invoiced emulator on the manual clock, and a client for it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from tests.support import API_KEY, ManualClock


@pytest.fixture
def clocked_invoiced(manual_clock: ManualClock) -> InvoicedEmulator:
    return InvoicedEmulator(api_key=API_KEY, random_seed=1, clock=manual_clock)


@pytest.fixture
def invoiced_api(clocked_invoiced: InvoicedEmulator) -> Iterator[httpx.Client]:
    with BackgroundServer(clocked_invoiced.asgi()) as server, httpx.Client(
        base_url=server.url, auth=(API_KEY, "")
    ) as client:
        yield client

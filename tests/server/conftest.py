"""The service's app served over real HTTP on loopback, with a fresh SQLite state store per test."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.flows import CATALOGUE
from invoiced_keap.server.app import ServerSettings, create_app
from invoiced_keap.server.debounce import DirtyQueue
from invoiced_keap.server.metrics import Metrics
from invoiced_keap.state import Store

HOOK_TOKEN = "hook-token-0123456789"
INVOICED_SECRET = "4b37d5776dad4059ab4c80fa072e3fce"


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@dataclass
class Served:
    """The app on a real port, and the pieces a test looks into."""

    url: str
    store: Store
    queue: DirtyQueue
    metrics: Metrics


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(f"sqlite:///{tmp_path}/state.db") as store:
        store.migrate()
        yield store


@pytest.fixture
def invoiced_webhook_secret() -> str:
    """Overridden where a real Invoiced (emulator) webhook hands out the secret."""
    return INVOICED_SECRET


@pytest.fixture
def served(store: Store, invoiced_webhook_secret: str) -> Iterator[Served]:
    queue, metrics = DirtyQueue(delay=0.05), Metrics(store)
    settings = ServerSettings(invoiced_webhook_secret=invoiced_webhook_secret, keap_hook_token=HOOK_TOKEN)
    app = create_app(store, CATALOGUE, queue, metrics, settings, keap_quota=lambda: 29_000)
    with BackgroundServer(app) as server:
        yield Served(server.url, store, queue, metrics)

"""CLI fixtures: a clean working directory and environment, and both emulators with realistic credentials."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from invoiced_keap.cli import app
from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.state import Store

INVOICED_KEY = "inv_live_4Jx9QmZ2rT7wV1bN"
KEAP_KEY = "KeapAK-9f2c7e1a5b3d4c6e8a0b"
CLIENT_ID = "invoiced-keap-app"
CLIENT_SECRET = "cs-Ab12Cd34Ef56Gh78"
SETTING_VARIABLES = (
    "INVOICED_API_KEY", "INVOICED_API_URL", "KEAP_API_KEY", "KEAP_ACCESS_TOKEN", "KEAP_API_URL", "KEAP_CLIENT_ID", "KEAP_CLIENT_SECRET",
    "KEAP_REDIRECT_URI", "KEAP_TOKEN_FILE", "KEAP_TOKEN_URL", "KEAP_AUTHORIZE_URL", "INVOICED_KEAP_DATABASE_URL",
    "INVOICED_KEAP_CONFIG",
)


@dataclass
class Cli:
    """Runs `invoiced-keap ARGS` in-process in a clean directory; `database_url` is the state it uses."""

    runner: CliRunner
    directory: Path
    database_url: str

    def __call__(self, *args: str, input: str | None = None) -> Result:
        return self.runner.invoke(app, list(args), input=input)

    def store(self) -> Store:
        store = Store(self.database_url)
        store.migrate()
        return store


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    for name in SETTING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    database_url = f"sqlite:///{tmp_path / 'state.db'}"
    monkeypatch.setenv("INVOICED_KEAP_DATABASE_URL", database_url)
    return Cli(CliRunner(), tmp_path, database_url)


@pytest.fixture
def invoiced() -> Iterator[tuple[InvoicedEmulator, BackgroundServer]]:
    emulator = InvoicedEmulator(api_key=INVOICED_KEY, random_seed=1)
    with BackgroundServer(emulator.asgi()) as server:
        yield emulator, server


@pytest.fixture
def keap() -> Iterator[tuple[KeapEmulator, BackgroundServer]]:
    emulator = KeapEmulator(api_key=KEAP_KEY, random_seed=1, oauth_clients={CLIENT_ID: CLIENT_SECRET})
    with BackgroundServer(emulator.asgi()) as server:
        yield emulator, server


@pytest.fixture
def connected(cli: Cli, invoiced: tuple[InvoicedEmulator, BackgroundServer],
              keap: tuple[KeapEmulator, BackgroundServer], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The CLI configured, by environment, for both emulators."""
    monkeypatch.setenv("INVOICED_API_KEY", INVOICED_KEY)
    monkeypatch.setenv("INVOICED_API_URL", invoiced[1].url)
    monkeypatch.setenv("KEAP_API_KEY", KEAP_KEY)
    monkeypatch.setenv("KEAP_API_URL", f"{keap[1].url}/crm/rest")
    return cli


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Each command configures the root logger for its process; put pytest's set-up back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)

"""`invoiced-keap run` as a user starts it: a subprocess configured by environment against both emulators;
it serves /healthz and /metrics, syncs, registers the Keap hooks, and stops on SIGTERM with status 0."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from tests.cli.conftest import INVOICED_KEY, KEAP_KEY, SETTING_VARIABLES, Cli
from tests.support import run_service


def test_run_serves_syncs_and_stops_on_sigterm_with_status_zero(
    tmp_path: Path, invoiced: tuple[InvoicedEmulator, BackgroundServer], keap: tuple[KeapEmulator, BackgroundServer]
) -> None:
    invoiced[0].seed({"customers": [{"name": "Acme", "type": "company"}]})
    keap[0].faults.rate_limit = None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {name: value for name, value in os.environ.items() if name not in SETTING_VARIABLES}
    environment.update({
        "INVOICED_API_KEY": INVOICED_KEY, "INVOICED_API_URL": invoiced[1].url,
        "KEAP_API_KEY": KEAP_KEY, "KEAP_API_URL": f"{keap[1].url}/crm/rest",
        "INVOICED_KEAP_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}", "INVOICED_KEAP_PORT": str(port),
        "INVOICED_KEAP_PUBLIC_URL": f"http://127.0.0.1:{port}",  # where Keap's hooks reach it (here: loopback)
    })
    with run_service(environment, tmp_path) as (process, url):
        assert httpx.get(f"{url}/healthz").json()["status"] == "ok"
        deadline = time.monotonic() + 15
        while 'invoiced_keap_passes_total{flow="companies",result="ok"}' not in httpx.get(f"{url}/metrics").text:
            assert time.monotonic() < deadline, "no pass finished"
            time.sleep(0.05)
        assert [record["company_name"] for record in keap[0].store.records("companies")] == ["Acme"]
        assert len(keap[0].hooks.hooks) == 9
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert out.strip().endswith("invoiced-keap: stopped")


def test_run_beyond_loopback_without_a_status_token_stops_with_one_line(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOICED_KEAP_HOST", "0.0.0.0")
    result = cli("run")
    assert result.exit_code == 1
    assert "status token" in result.stderr and "Traceback" not in result.stderr

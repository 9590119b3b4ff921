"""A state database belongs to one Keap account: pointed at another (a sandbox app swapped for production, the wrong
backup restored), `sync` and `run` stop before anything is written and say so, naming both accounts; and where the
accounts cannot be told apart (no `x-keap-tenant-id` header), a new Keap record whose id the state links already does
not make another duplicate on every pass."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.keap.auth import TENANT_ID
from invoiced_keap.emulators.serve import BackgroundServer
from tests.cli.conftest import INVOICED_KEY, KEAP_KEY, SETTING_VARIABLES, Cli
from tests.support import free_port, run_service

OTHER_TENANT = "zz123.infusionsoft.com"
SEED = {
    "customers": [{"name": "Acme", "type": "company", "email": "ar@acme.example"},
                  {"name": "Globex", "type": "company"},
                  {"name": "Initech", "type": "company"},
                  {"name": "Jane Cooper", "type": "person", "email": "jane@example.com"}],
    "items": [{"id": "widget", "name": "Widget", "description": "Blue", "unit_cost": 5, "currency": "usd"}],
}


@contextmanager
def other_account(monkeypatch: pytest.MonkeyPatch, **options: Any) -> Iterator[tuple[KeapEmulator, BackgroundServer]]:
    """A second, empty Keap account, which the CLI is configured for (KEAP_API_URL) within the block."""
    emulator = KeapEmulator(api_key=KEAP_KEY, random_seed=2, **options)
    first = os.environ["KEAP_API_URL"]
    with BackgroundServer(emulator.asgi()) as server:
        monkeypatch.setenv("KEAP_API_URL", f"{server.url}/crm/rest")
        yield emulator, server
    monkeypatch.setenv("KEAP_API_URL", first)


def api_writes(server: BackgroundServer) -> dict[str, int]:
    requests = httpx.get(f"{server.url}/_emulator/stats").json()["requests"]
    return {endpoint: count for endpoint, count in requests.items() if not endpoint.startswith("GET")}


def state_of(cli: Cli) -> dict[str, Any]:
    """What a pass may change in the state: links, watermarks, failures and intents."""
    with cli.store() as store:
        flows = ("companies", "contacts", "products", "company_contacts")
        return {"links": {flow: store.active_link_ids(flow) for flow in flows}, "marks": store.watermarks(),
                "failures": [(f.flow, f.record_id, f.operation, f.attempts) for f in store.failures()],
                "intents": [(i.flow, i.source_id) for i in store.intents()]}


def test_a_state_of_another_keap_account_stops_sync_before_anything_is_written(connected: Cli, invoiced, keap, monkeypatch) -> None:
    invoiced[0].seed(SEED)
    assert connected("sync").exit_code == 0
    invoiced[0].create_customer({"name": "Hooli", "type": "company"})  # a create the next pass would make
    before = state_of(connected)

    with other_account(monkeypatch, tenant_id=OTHER_TENANT) as (other, server):
        result = connected("sync")

        assert result.exit_code == 1, result.stdout + result.stderr
        assert TENANT_ID in result.stderr and OTHER_TENANT in result.stderr, result.stderr
        assert "INVOICED_KEAP_DATABASE_URL" in result.stderr and "Traceback" not in result.stderr
        dry = connected("sync", "--dry-run")  # its output (cron mail, a log) must not read as a quiet pass
        assert dry.exit_code == 1 and "nothing to do" not in dry.stdout and "not run" in dry.stdout, dry.stdout
        verify = connected("verify")  # its listings are of another account: nothing to compare the links with
        assert verify.exit_code == 1 and OTHER_TENANT in verify.stderr, verify.stdout + verify.stderr
        assert api_writes(server) == {}
        assert not [record for collection in ("companies", "contacts", "products") for record in other.store.records(collection)]
    assert state_of(connected) == before
    assert connected("sync").exit_code == 0  # back on its own account, it goes on
    assert [c["company_name"] for c in keap[0].store.records("companies")] == ["Acme", "Globex", "Initech", "Hooli"]


def test_run_against_another_keap_account_fails_its_passes_and_says_why_in_healthz(
    connected: Cli, invoiced, keap, monkeypatch, tmp_path: Path
) -> None:
    invoiced[0].seed(SEED)
    assert connected("sync").exit_code == 0
    before = state_of(connected)
    other = KeapEmulator(api_key=KEAP_KEY, random_seed=2, tenant_id=OTHER_TENANT)
    port = free_port()
    environment = {name: value for name, value in os.environ.items() if name not in SETTING_VARIABLES}
    with BackgroundServer(other.asgi()) as server:
        environment.update({
            "INVOICED_API_KEY": INVOICED_KEY, "INVOICED_API_URL": invoiced[1].url,
            "KEAP_API_KEY": KEAP_KEY, "KEAP_API_URL": f"{server.url}/crm/rest",
            "INVOICED_KEAP_DATABASE_URL": connected.database_url, "INVOICED_KEAP_PORT": str(port),
            "INVOICED_KEAP_PUBLIC_URL": f"http://127.0.0.1:{port}",  # hooks wanted: none may be registered there
        })
        with run_service(environment, tmp_path) as (process, url):
            deadline = time.monotonic() + 30
            while (health := httpx.get(f"{url}/healthz")).status_code == 200:
                assert time.monotonic() < deadline, "no pass failed"
                time.sleep(0.05)
            reasons = health.json()["reasons"]
            assert set(reasons) == {"companies", "contacts", "products", "company_contacts"}, reasons
            assert all(TENANT_ID in reason and OTHER_TENANT in reason for reason in reasons.values()), reasons
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=20)
        assert api_writes(server) == {} and not other.hooks.hooks
    assert state_of(connected) == before


def test_new_keap_ids_the_state_links_already_make_no_growing_duplicates(connected: Cli, invoiced, keap, monkeypatch) -> None:
    """The other account sends no tenant header (as behind a proxy that drops it): nothing tells the accounts apart.
    Its first creates get ids 1 and 2, which the state links to Acme and Globex of the first account."""
    invoiced[0].seed(SEED)
    assert connected("sync", "--flow", "companies").exit_code == 0
    for name in ("Hooli", "Pied Piper"):
        invoiced[0].create_customer({"name": name, "type": "company"})

    with other_account(monkeypatch) as (other, _):
        other.faults.rate_limit = None  # no x-keap-* headers at all
        first = connected("sync", "--flow", "companies")
        assert first.exit_code == 1, first.stdout + first.stderr
        assert "another Keap account" in first.stderr, first.stderr
        for _ in range(2):
            assert connected("sync", "--flow", "companies").exit_code == 2

        names = [record["company_name"] for record in other.store.records("companies")]
    assert sorted(names) == ["Hooli", "Pied Piper"], names
    with connected.store() as store:
        failures = store.failures("companies")
    assert len(failures) == 2 and all("another Keap account" in failure.message for failure in failures)

"""sync, retry, relink and demo against the emulators, checked through output, exit codes and the state."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

import invoiced_keap
from invoiced_keap.emulators.sample import INVOICED_SAMPLE, KEAP_SAMPLE
from tests.cli.conftest import KEAP_KEY
from tests.support import cli_with_peak


def seed_sample(invoiced, keap) -> None:
    invoiced[0].seed(INVOICED_SAMPLE)
    keap[0].seed(KEAP_SAMPLE)


def keap_writes(keap) -> int:
    requests = httpx.get(f"{keap[1].url}/_emulator/stats").json()["requests"]
    return sum(count for endpoint, count in requests.items() if not endpoint.startswith("GET"))


def test_dry_run_prints_the_plan_and_writes_nothing(connected, invoiced, keap) -> None:
    seed_sample(invoiced, keap)
    result = connected("sync", "--dry-run", "--flow", "products")
    assert result.exit_code == 0, result.stderr
    assert 'products  create   keap:(new)' in result.stdout and '"sku": "setup-fee"' in result.stdout
    assert "Dry run" in result.stdout
    assert keap_writes(keap) == 0
    with connected.store() as store:
        assert store.status_counts().active_links == {}


def test_failures_at_80_columns_off_a_terminal_show_each_failure_whole_on_lines_of_its_own(connected, invoiced, keap) -> None:
    """As cron mail or captured output shows them: a table's nine columns wrapped to four characters each."""
    seed_sample(invoiced, keap)
    assert connected("sync").exit_code == 2
    [failure] = json.loads(connected("failures", "--json").stdout)
    env = {"INVOICED_KEAP_DATABASE_URL": connected.database_url, "COLUMNS": "80",
           "PYTHONPATH": str(Path(invoiced_keap.__file__).parents[1])}  # the child runs the code this test imported
    listed, _ = cli_with_peak(["failures"], env, connected.directory)  # stdout a pipe, as under cron
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        "Failures:",
        f"#{failure['id']} contacts: invoiced {failure['record_id']}, create, attempts 1, next retry "
        f"{failure['next_retry_at'].replace('T', ' ').removesuffix('+00:00')}",
        f"    {failure['message']}",
        "",
        "1 open failure (`invoiced-keap failures dismiss ID` sets one aside)",
    ], listed.stdout


def test_sync_exits_2_with_a_rejected_record_then_retry_and_status_agree(connected, invoiced, keap) -> None:
    seed_sample(invoiced, keap)
    first = connected("sync")
    assert first.exit_code == 2, first.stdout + first.stderr
    assert "Open failures: 1" in first.stdout
    failures = json.loads(connected("failures", "--json").stdout)
    assert [(f["flow"], f["operation"], f["attempts"]) for f in failures] == [("contacts", "create", 1)]
    assert "at least one email address" in failures[0]["message"]

    retried = connected("retry", str(failures[0]["id"]))
    assert retried.exit_code == 2
    assert json.loads(connected("failures", "--json").stdout)[0]["attempts"] == 2

    status = connected("status", "--json")
    assert status.exit_code == 2
    flows = json.loads(status.stdout)["flows"]
    assert flows["companies"]["active_links"] == 6 and flows["contacts"]["open_failures"] == 1
    assert connected("retry").exit_code == 1  # neither an id nor --all
    unknown = connected("retry", "9999")
    assert unknown.exit_code == 1 and "no open failure with id 9999" in unknown.stderr


def test_relink_rebuilds_links_from_invoiced_metadata(connected, invoiced, keap, tmp_path, monkeypatch) -> None:
    seed_sample(invoiced, keap)
    assert connected("sync", "--flow", "products").exit_code == 0
    monkeypatch.setenv("INVOICED_KEAP_DATABASE_URL", f"sqlite:///{tmp_path / 'lost.db'}")  # the state is lost
    result = connected("relink", "--flow", "products")
    assert result.exit_code == 0, result.stdout + result.stderr
    links = json.loads(connected("links", "--flow", "products", "--json").stdout)
    assert {link["invoiced_id"] for link in links} >= {"consulting-hour", "setup-fee", "support-plan"}
    assert len(links) == 5


def test_demo_runs_offline_and_exits_0(cli) -> None:
    result = cli("demo")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "Keap company" in result.stdout and "phone: +1 555 0111" in result.stdout
    assert "description: Blue widget, 12 cm" in result.stdout
    assert "Initech Incorporated" in result.stdout and "newest: keap" in result.stdout
    assert "Contact must contain at least one email" in result.stdout
    assert "Acme Corporation's people in Keap" in result.stdout
    assert "Dana Whitfield" in result.stdout and "Omar Haddad" in result.stdout
    assert "INV-0001 is past_due" in result.stdout and "Invoiced: past due" in result.stdout
    assert "Invoiced days past due" in result.stdout
    assert "Summary" in result.stdout


def test_review_create_makes_a_new_keap_record_on_the_next_sync(connected, invoiced, keap) -> None:
    invoiced[0].seed({"customers": [{"name": "Globex", "type": "company"}]})
    keap[0].seed({"companies": [{"company_name": "Globex"}, {"company_name": "GLOBEX"}]})
    assert connected("sync", "--flow", "companies").exit_code == 2
    [item] = json.loads(connected("review", "--json").stdout)
    assert len(item["candidates"]) == 2

    assert connected("review", item["invoiced_id"], "--create").exit_code == 0
    synced = connected("sync", "--flow", "companies")

    assert synced.exit_code == 0, synced.stdout + synced.stderr
    companies = httpx.get(f"{keap[1].url}/crm/rest/v2/companies", headers={"X-Keap-API-Key": KEAP_KEY}).json()["companies"]
    created = [company["id"] for company in companies if company["id"] not in item["candidates"]]
    assert len(companies) == 3 and len(created) == 1
    [link] = json.loads(connected("links", "--json").stdout)
    assert (link["invoiced_id"], link["keap_id"]) == (item["invoiced_id"], created[0])
    with connected.store() as store:
        assert store.review_items() == [] and store.intents() == []
    writes_before = keap_writes(keap)
    assert connected("sync", "--flow", "companies").exit_code == 0 and keap_writes(keap) == writes_before


def api_calls(invoiced, keap) -> int:
    """Calls the servers answered. A 429 is left out: Keap's spike limit (10 a second, a window no header reports)
    can refuse the first reads of a pass started in the same second another process's pass ended; it is retried."""
    stats = [httpx.get(f"{server[1].url}/_emulator/stats").json() for server in (invoiced, keap)]
    return sum(server["total"] - server["status"].get("429", 0) for server in stats)


def test_an_idle_sync_costs_the_floor_of_calls_credentials_included(connected, invoiced, keap) -> None:
    seed_sample(invoiced, keap)
    connected("sync")
    connected("sync")  # reads back what the first wrote
    writes_before, before = keap_writes(keap), api_calls(invoiced, keap)

    idle = connected("sync")

    assert idle.exit_code in (0, 2), idle.stderr  # the sample keeps one record Keap refuses
    assert api_calls(invoiced, keap) - before == 6  # 3 Invoiced reads (customers, events, items), 3 Keap reads: the credential check is the first read
    assert keap_writes(keap) == writes_before  # the refused record is not sent again before its retry is due

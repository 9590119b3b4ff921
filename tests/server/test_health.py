"""`/healthz` tells the truth about `invoiced-keap run` (default settings, over real HTTP): 503 with the reason
while a live process holds a flow's lock, while Keap refuses the credentials and while Keap answers 503, and
200 again after a good pass. A pure check of the "no recent success" rule comes first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.engine.report import FlowReport, RunReport
from invoiced_keap.server.health import FlowHealth
from invoiced_keap.server.keap_hooks import RECEIVER_PATH
from invoiced_keap.server.service import next_job
from tests.support import API_KEY

HOOK_TOKEN = "hook-token-for-the-health-test"
LOCK_HOLDER = """
import sys
from invoiced_keap.state import Store
with Store(sys.argv[1]) as store, store.flow_lock("companies"):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_flow_is_unhealthy_after_a_failed_pass_or_without_a_recent_success() -> None:
    health = FlowHealth(["companies", "contacts"], max_age=180.0, started=1_000.0)
    assert health.verdict(1_100.0).healthy  # within the grace after the start

    report = RunReport(1, False, {"companies": FlowReport("companies"), "contacts": FlowReport("contacts", error="locked")})
    health.record(report, ["companies", "contacts"], at=1_100.0)
    assert health.verdict(1_101.0).reasons == {"contacts": "last pass failed: locked"}

    health.record(RunReport(2, False, {"contacts": FlowReport("contacts")}), ["contacts"], at=1_200.0)
    assert health.verdict(1_201.0).healthy
    assert list(health.verdict(1_281.0).reasons) == ["companies"]  # its last success is 181 s old

    health.record(RunReport(3, False, error="Keap: 401 refused"), ["companies", "contacts"], at=1_300.0)
    assert set(health.verdict(1_301.0).reasons) == {"companies", "contacts"}


def test_a_pass_in_hand_that_makes_progress_keeps_its_flow_healthy_until_it_stalls() -> None:
    health = FlowHealth(["companies"], max_age=180.0, started=1_000.0)  # poll_interval 60 s, as by default
    for minute in range(1, 41):  # a 40-minute first pass committing a batch a minute
        health.progressed("companies", at=1_000.0 + 60 * minute)
        assert health.verdict(1_000.0 + 60 * minute + 30).healthy
    stalled = health.verdict(1_000.0 + 60 * 40 + 181)
    assert "none made progress" in stalled.reasons["companies"]


def test_flows_waiting_behind_another_flows_long_job_stay_healthy_while_it_makes_progress() -> None:
    """Found by a tester: a webhook burst worked for minutes on one flow turned /healthz red for the others."""
    health = FlowHealth(["companies", "contacts", "products"], max_age=180.0, started=1_000.0)
    health.record(RunReport(1, False, {name: FlowReport(name) for name in health.flows}), health.flows, at=1_010.0)
    for minute in range(1, 21):  # a 20-minute job of webhook ids on contacts: no poll of the others meanwhile
        health.progressed("contacts", at=1_010.0 + 60 * minute)
        assert health.verdict(1_010.0 + 60 * minute + 30).healthy
    stalled = health.verdict(1_010.0 + 60 * 20 + 181)
    assert set(stalled.reasons) == {"companies", "contacts", "products"}

    health.record(RunReport(2, False, {"products": FlowReport("products", error="Keap: 401 refused")}), ["products"], at=2_300.0)
    health.progressed("contacts", at=2_310.0)
    assert health.verdict(2_311.0).reasons == {"products": "last pass failed: Keap: 401 refused"}  # a failure shows


@pytest.mark.parametrize(("poll_due", "batch_ready", "job"), [
    (True, True, "poll"),  # a stream of webhook batches does not hold back the poll
    (True, False, "poll"),
    (False, True, "batch"),
    (False, False, None),
])
def test_a_due_poll_goes_before_a_ready_webhook_batch(poll_due: bool, batch_ready: bool, job: str | None) -> None:
    assert next_job(poll_due=poll_due, batch_ready=batch_ready) == job


def test_writes_that_met_an_outage_after_their_retries_make_the_flow_unhealthy() -> None:
    health = FlowHealth(["contacts"], max_age=180.0, started=1_000.0)
    outage = FlowReport("contacts", unavailable="Keap answered 503 after 1 attempt")
    health.record(RunReport(1, False, {"contacts": outage}), ["contacts"], at=1_010.0)
    assert health.verdict(1_011.0).reasons == {"contacts": "last pass failed: Keap answered 503 after 1 attempt"}
    health.record(RunReport(2, False, {"contacts": FlowReport("contacts")}), ["contacts"], at=1_070.0)
    assert health.verdict(1_071.0).healthy


def test_a_breaker_stop_is_held_until_a_reconcile_passes_or_its_deletes_are_applied() -> None:
    health = FlowHealth(["contacts"], max_age=180.0, started=1_000.0)
    message = "contacts: circuit breaker: 50 of 250 links would be deleted or unlinked (limit 25)"
    stopped = FlowReport("contacts", error=message, held=message, held_deletes=True)
    health.record(RunReport(1, False, {"contacts": stopped}), ["contacts"], at=1_010.0, kind="sync_ids")
    assert health.verdict(1_011.0).reasons == {"contacts": f"last pass failed: {message}"}

    health.record(RunReport(2, False, {"contacts": FlowReport("contacts")}), ["contacts"], at=1_070.0)  # a quiet poll
    assert health.verdict(1_071.0).reasons == {"contacts": f"changes held back: {message}"}

    again = FlowReport("contacts", error=message, held=message, held_deletes=True)  # the reconcile finds the same deletes
    health.record(RunReport(3, False, {"contacts": again}), ["contacts"], at=1_100.0, kind="reconcile")
    health.record(RunReport(4, False, {"contacts": FlowReport("contacts")}), ["contacts"], at=1_130.0)
    assert "changes held back" in health.verdict(1_131.0).reasons["contacts"]

    applied = FlowReport("contacts")
    applied.counts["unlinked"] = 50  # `sync --allow-mass-change` let them through
    health.record(RunReport(5, False, {"contacts": applied}), ["contacts"], at=1_160.0)
    assert health.verdict(1_161.0).healthy


def test_updates_a_poll_held_back_are_cleared_by_a_later_poll_that_reads_both_sides_and_passes() -> None:
    """Another process applied them (`sync --allow-mass-change`): the held poll moved no watermark, so the next
    poll read them again and found nothing to hold."""
    health = FlowHealth(["companies"], max_age=180.0, started=1_000.0)
    message = "companies: circuit breaker: 46 of 80 linked pairs would be updated (limit 40)"
    health.record(RunReport(1, False, {"companies": FlowReport("companies", error=message, held=message)}),
                  ["companies"], at=1_010.0)
    health.record(RunReport(2, False, {"companies": FlowReport("companies")}), ["companies"], at=1_070.0, whole=False)
    assert health.verdict(1_071.0).reasons == {"companies": f"changes held back: {message}"}  # Keap was not read
    health.record(RunReport(3, False, {"companies": FlowReport("companies")}), ["companies"], at=1_130.0, kind="sync_ids")
    assert "changes held back" in health.verdict(1_131.0).reasons["companies"]

    health.record(RunReport(4, False, {"companies": FlowReport("companies")}), ["companies"], at=1_190.0)
    assert health.verdict(1_191.0).healthy


def test_updates_a_webhook_batch_held_back_are_cleared_by_a_later_poll_that_reads_both_sides_and_passes() -> None:
    """The usual way while the webhook is verified; the held batch moved no watermark either, so the poll reads
    those changes again (deletes a Keap hook named are another matter: no poll reads them again, see above)."""
    health = FlowHealth(["companies"], max_age=180.0, started=1_000.0)
    message = "companies: circuit breaker: 20 of 20 linked pairs would be updated (limit 10)"
    held = FlowReport("companies", error=message, held=message, held_deletes=False)
    health.record(RunReport(1, False, {"companies": held}), ["companies"], at=1_010.0, kind="sync_ids")
    health.record(RunReport(2, False, {"companies": FlowReport("companies")}), ["companies"], at=1_070.0, whole=False)
    assert "changes held back" in health.verdict(1_071.0).reasons["companies"]

    health.record(RunReport(3, False, {"companies": FlowReport("companies")}), ["companies"], at=1_130.0)
    assert health.verdict(1_131.0).healthy


def eventually(condition: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.1)
    return result


@pytest.fixture
def service(tmp_path: Path) -> Iterator[dict[str, Any]]:
    invoiced = InvoicedEmulator(api_key=API_KEY, random_seed=1)
    keap = KeapEmulator(api_key=API_KEY, random_seed=1)
    invoiced.seed({"customers": [{"name": "Acme", "type": "company"}]})
    database_url = f"sqlite:///{tmp_path}/state.db"
    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(keap.asgi()) as keap_server:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("INVOICED_", "KEAP_"))},
               "INVOICED_API_KEY": API_KEY, "INVOICED_API_URL": invoiced_server.url, "KEAP_API_KEY": API_KEY,
               "KEAP_API_URL": f"{keap_server.url}/crm/rest", "INVOICED_KEAP_DATABASE_URL": database_url,
               "INVOICED_KEAP_PORT": "0", "KEAP_HOOK_TOKEN": HOOK_TOKEN}
        process = subprocess.Popen([sys.executable, "-m", "invoiced_keap", "--log-format", "json", "run"], cwd=tmp_path,
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            url = process.stdout.readline().split("serving on ")[1].split()[0]  # type: ignore[union-attr]
            yield {"url": url, "invoiced": invoiced, "keap": keap, "keap_url": keap_server.url, "database_url": database_url, "env": env}
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def healthz(url: str) -> httpx.Response:
    return httpx.get(f"{url}/healthz", timeout=10)


def hook(service: dict[str, Any]) -> None:
    """What Keap sends when a company is edited: its id, to our receiver."""
    [company] = service["keap"].store.records("companies")
    body = {"event_key": "company.edit", "object_keys": [{"id": company["id"]}]}
    httpx.post(f"{service['url']}{RECEIVER_PATH}/{HOOK_TOKEN}", json=body).raise_for_status()


def faults(service: dict[str, Any], **settings: Any) -> None:
    httpx.post(f"{service['keap_url']}/_emulator/faults", json=settings).raise_for_status()


def unhealthy_because(service: dict[str, Any], words: str) -> bool:
    answer = healthz(service["url"])
    return answer.status_code == 503 and words in json.dumps(answer.json()["reasons"])


def test_healthz_goes_503_with_the_reason_and_back_to_200(service: dict[str, Any]) -> None:
    url = service["url"]
    eventually(lambda: 'invoiced_keap_last_success_timestamp_seconds{flow="companies"}' in httpx.get(f"{url}/metrics").text,
               "a first good pass")
    assert healthz(url).status_code == 200

    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, service["database_url"]], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=service["env"])
    try:
        assert holder.stdout.readline().strip() == "held"  # type: ignore[union-attr]
        hook(service)
        eventually(lambda: unhealthy_because(service, "locked by"), "503 under a lock held by a live process")
        banner = httpx.get(f"{url}/status").text.split('data-testid="health"')[1].split("</div>")[0]
        assert "Unhealthy" in banner and "companies: last pass failed" in banner and "locked by" in banner
    finally:
        holder.kill()
        holder.wait()
    eventually(lambda: healthz(url).status_code == 200, "200 once the holder is gone")

    faults(service, error_rate=1.0, error_status=401)
    hook(service)
    eventually(lambda: unhealthy_because(service, "401"), "503 when Keap refuses the credentials")
    faults(service, error_rate=0.0)
    eventually(lambda: healthz(url).status_code == 200, "200 after the credentials work again")

    faults(service, error_rate=1.0, error_status=503)
    hook(service)
    eventually(lambda: unhealthy_because(service, "503"), "503 while Keap answers 503")
    faults(service, error_rate=0.0)
    eventually(lambda: healthz(url).status_code == 200, "200 after Keap recovers")


def test_healthz_names_keaps_answer_and_the_attempts_while_keap_answers_503(service: dict[str, Any]) -> None:
    """A new Invoiced customer while Keap answers 503 to everything: the flow is unhealthy saying what Keap answered
    after how many attempts; the next good pass makes it healthy."""
    url = service["url"]
    eventually(lambda: 'invoiced_keap_last_success_timestamp_seconds{flow="companies"}' in httpx.get(f"{url}/metrics").text,
               "a first good pass")
    faults(service, error_rate=1.0, error_status=503)
    service["invoiced"].seed({"customers": [{"name": "Globex", "type": "company"}]})
    eventually(lambda: unhealthy_because(service, "Keap answered 503 after"), "503 while Keap answers 503", timeout=180)
    faults(service, error_rate=0.0)
    eventually(lambda: healthz(url).status_code == 200, "200 after a good pass", timeout=180)

"""Status page, /metrics and /healthz over HTTP: the numbers the state holds, and the token gate."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from invoiced_keap.connectors.errors import QuotaExhausted
from invoiced_keap.connectors.http import RequestEvent, RetryPolicy
from invoiced_keap.connectors.keap import COMPANIES, KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.connectors.pacing import KEAP_PAT_LIMITS
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.flows import CATALOGUE
from invoiced_keap.server.app import ServerSettings, create_app
from invoiced_keap.server.debounce import DirtyQueue
from invoiced_keap.server.metrics import Metrics
from invoiced_keap.server.quota import QuotaWatchingPacer
from invoiced_keap.server.status import COOKIE, render_status
from invoiced_keap.state import Store
from invoiced_keap.state.views import status_view
from tests.server.conftest import Served
from tests.server.state_samples import fill
from tests.support import API_KEY

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(url: str) -> Samples:
    return parse(httpx.get(f"{url}/metrics").text)


def samples_of(metrics: Metrics) -> Samples:
    return parse(metrics.exposition().decode())


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_healthz(served: Served) -> None:
    answer = httpx.get(f"{served.url}/healthz")
    assert (answer.status_code, answer.json()["status"]) == (200, "ok")


def test_status_page_shows_what_the_state_holds(served: Served) -> None:
    fill(served.store)
    page = httpx.get(f"{served.url}/status")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert 'data-testid="keap-quota">29000<' in html
    assert "Region &lt;b&gt;is&lt;/b&gt; invalid (field address)" in html  # escaped, never rendered as markup
    assert "two contacts share the email" in html
    assert "ACME Inc" in html
    assert httpx.get(f"{served.url}/").text.count('data-flow="companies"') == 1


def test_status_page_names_open_create_intents_as_creates_to_finish_or_adopt(served: Served) -> None:
    served.store.open_intents("contacts", "keap", [("k7", "jane@example.com")])
    html = httpx.get(f"{served.url}/status").text
    assert ('<th>Creates to finish or adopt (the next pass completes them)</th>'
            '<td class="number" data-testid="open-intents">1<') in html
    assert "in progress" not in html


def test_metrics_read_the_state_and_count_deliveries(served: Served) -> None:
    fill(served.store)
    httpx.post(f"{served.url}/webhooks/invoiced", content=b"{}")  # unsigned: rejected
    values = samples(served.url)
    assert values[("invoiced_keap_links", (("flow", "companies"),))] == 3
    assert values[("invoiced_keap_links", (("flow", "contacts"),))] == 1
    assert values[("invoiced_keap_open_failures", (("flow", "companies"),))] == 1
    assert values[("invoiced_keap_open_review_items", (("flow", "contacts"),))] == 2
    assert values[("invoiced_keap_conflicts", ())] == 1
    assert values[("invoiced_keap_webhook_deliveries_total", (("outcome", "rejected"), ("source", "invoiced")))] == 1


async def test_api_calls_and_429s_are_counted_per_system(keap_server: BackgroundServer, store: Store) -> None:
    metrics = Metrics(store)
    httpx.post(f"{keap_server.url}/_emulator/faults", json={"error_rate": 1.0, "error_status": 429}).raise_for_status()
    retry = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.02, wait_jitter=0.0)
    async with KeapConnector(
        ApiKey(API_KEY), f"{keap_server.url}/crm/rest", retry=retry, listeners=[metrics.api_listener("keap")]
    ) as keap:
        with pytest.raises(QuotaExhausted, match="429 .* \\(3 times in a row\\); resume at"):  # never a record's failure
            await keap.get(COMPANIES, "1")
    assert metrics.api_calls.labels("keap", "other")._value.get() == 3
    assert metrics.api_rate_limited.labels("keap")._value.get() == 3


@pytest.fixture
def guarded(store: Store) -> Iterator[str]:
    app = create_app(store, CATALOGUE, DirtyQueue(), Metrics(store), ServerSettings(status_token="s3cret-token"))
    with BackgroundServer(app) as server:
        yield server.url


def test_status_page_asks_for_the_token_when_one_is_set(guarded: str) -> None:
    with httpx.Client(base_url=guarded) as browser:
        asked = browser.get("/status")
        assert asked.status_code == 401 and 'name="token"' in asked.text and "Flows" not in asked.text
        wrong = browser.post("/status", data={"token": "guess"})
        assert wrong.status_code == 401 and "not right" in wrong.text
        signed_in = browser.post("/status", data={"token": "s3cret-token"}, follow_redirects=True)
        assert signed_in.status_code == 200 and "Flows" in signed_in.text
        assert browser.cookies.get(COOKIE) == "s3cret-token"
    bearer = httpx.get(f"{guarded}/status", headers={"Authorization": "Bearer s3cret-token"})
    assert bearer.status_code == 200
    assert httpx.get(f"{guarded}/healthz").status_code == 200


async def test_keap_quota_comes_from_the_answers_headers(keap_server: BackgroundServer, store: Store) -> None:
    pacer = QuotaWatchingPacer(KEAP_PAT_LIMITS)
    metrics = Metrics(store)
    metrics.watch_keap_quota(lambda: pacer.quota_remaining, pacer.key_used_today)
    # before Keap has said anything the gauges are left out (it was NaN), so an alert on them cannot misfire
    assert ("invoiced_keap_keap_quota_remaining", ()) not in samples_of(metrics)
    assert "invoiced_keap_keap_quota_remaining" not in metrics.exposition().decode()
    assert "invoiced_keap_keap_calls_today " not in metrics.exposition().decode()
    async with KeapConnector(ApiKey(API_KEY), f"{keap_server.url}/crm/rest", pacer=pacer) as keap:
        await keap.create(COMPANIES, {"company_name": "One"})
        await keap.create(COMPANIES, {"company_name": "Two"})
    assert pacer.quota_remaining == 30_000 - 2
    assert samples_of(metrics)[("invoiced_keap_keap_quota_remaining", ())] == 30_000 - 2
    assert samples_of(metrics)[("invoiced_keap_keap_calls_today", ())] == 2


def test_a_flow_without_failures_is_not_marked_for_attention_by_its_runs_result(served: Served) -> None:
    run = served.store.start_run(["companies", "contacts"], dry_run=False)
    served.store.record_failure("contacts", "invoiced", "13", "create", "Contact must contain an email address")
    served.store.finish_run(run.id, "attention", {})

    page = httpx.get(f"{served.url}/status").text

    rows = {flow: page.split(f'<tr data-flow="{flow}">')[1].split("</tr>")[0] for flow in ("companies", "contacts")}
    assert ">ok</td>" in rows["companies"] and ">attention</td>" in rows["contacts"]
    assert '<meta http-equiv="refresh"' in page


def test_keap_calls_are_counted_per_job_and_shown_on_the_status_page(store: Store) -> None:
    metrics = Metrics(store)
    count = metrics.api_listener("keap")
    event = RequestEvent("127.0.0.1", "GET /crm/rest/v2/companies", 1, 200, None, 0.01)
    with metrics.job_in_hand("poll"):
        count(event)
        count(event)
    with metrics.job_in_hand("sync_ids"):
        count(event)
    count(event)

    assert metrics.calls_by_job("keap") == {"poll": 2, "sync_ids": 1, "other": 1}
    page = render_status(status_view(store, ["companies"]), None, None, metrics.calls_by_job("keap"))
    assert "other 1, poll 2, sync_ids 1" in page


def test_state_gauges_read_zero_for_every_configured_flow_with_none(store: Store) -> None:
    store.record_failure("contacts", "invoiced", "13", "create", "Contact must contain an email address")
    samples = samples_of(Metrics(store, ["companies", "contacts", "products"]))
    for gauge in ("invoiced_keap_open_failures", "invoiced_keap_open_review_items", "invoiced_keap_lossy_carries"):
        assert samples[(gauge, (("flow", "companies"),))] == 0 and samples[(gauge, (("flow", "products"),))] == 0
    assert samples[("invoiced_keap_open_failures", (("flow", "contacts"),))] == 1

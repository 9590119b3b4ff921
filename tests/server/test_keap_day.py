"""The status page gives the day's Keap calls on the key as Keap counts them (every process on it: a `sync` before
the `run`, a restarted `run`) and their share of the daily quota, as Keap's headers state the limit, with this
process's own calls since it started split by kind (polling reads, writes, hooks upkeep, ...); the same figures are
in `/metrics`. Over real HTTP: another client's calls on the key, then a service's hook check and poll against both
emulators, its status page served by its own app."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import httpx

from invoiced_keap.config import Settings
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.connectors.pacing import KEAP_PAT_LIMITS
from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.keap.ratelimit import PAT_LIMITS
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.engine.run import Syncer
from invoiced_keap.flows import build_flows
from invoiced_keap.server.app import create_app
from invoiced_keap.server.metrics import WRITE_METHODS
from invoiced_keap.server.quota import QuotaWatchingPacer
from invoiced_keap.server.service import Service
from invoiced_keap.state import Store
from tests.support import API_KEY, ManualClock

DAILY_LIMIT = 50_000  # what this key's headers say: not the 30,000 assumed without them
HOOKS = "/crm/rest/v1/hooks"
OTHERS_CALLS = 7
"""Calls another client made on the key before the service started."""


def keap_spent(keap: KeapEmulator) -> Counter[str]:
    """The emulator's own count of our calls, by kind."""
    kinds: Counter[str] = Counter()
    for request, count in keap.requests.items():
        method, path = request.split(" ", 1)
        kind = "hooks upkeep" if path.startswith(HOOKS) else "writes" if method in WRITE_METHODS else "polling reads"
        kinds[kind] += count
    return kinds


def shown(page: str) -> dict[str, str]:
    row = page.split('data-testid="keap-today"')[1].split("</td>")[0]
    found = {kind: count for kind, count in re.findall(r'data-kind="([a-z ]+)">[a-z ]+ (\d+)<', row)}
    for name in ("total", "own-total"):
        found[name] = re.search(rf'data-testid="keap-(?:today-)?{name}">([\w,]+)<', row).group(1)  # type: ignore[union-attr]
    share = re.search(r'data-testid="keap-today-share">([\d.]+) %<', row)
    found["share"] = share.group(1) if share else ""
    found["row"] = " ".join(re.sub(r"<[^>]+>", "", row).split())  # as read
    return found


async def test_the_status_page_shows_the_keys_calls_today_as_keap_counts_them_and_this_process_by_kind(tmp_path: Path) -> None:
    invoiced = InvoicedEmulator(api_key=API_KEY, random_seed=1)
    invoiced.faults.rate_limit = None
    keap = KeapEmulator(api_key=API_KEY, random_seed=1)
    keap.faults.rate_limit = {**PAT_LIMITS, "per_day": DAILY_LIMIT}
    invoiced.seed({"customers": [{"name": "Acme", "type": "company"}, {"name": "Globex", "type": "company"}]})
    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(keap.asgi()) as keap_server, \
            Store(f"sqlite:///{tmp_path}/state.db") as store:
        store.migrate()
        for _ in range(OTHERS_CALLS):  # another process on the key before this one started (a cron `sync`, an earlier `run`)
            assert httpx.get(f"{keap_server.url}/crm/rest/v2/companies", headers={"X-Keap-API-Key": API_KEY}).status_code == 200
        pacer = QuotaWatchingPacer(KEAP_PAT_LIMITS)
        async with InvoicedConnector(API_KEY, invoiced_server.url) as invoiced_api, KeapConnector(
            ApiKey(API_KEY), f"{keap_server.url}/crm/rest", pacer=pacer
        ) as keap_api:
            settings = Settings(server_port=0, public_url="http://127.0.0.1:9")  # hooks Keap cannot verify
            service = Service(Syncer(store, invoiced_api, keap_api), build_flows(), settings)
            try:
                await service.check_hooks()
                report = await service.poll()
                assert report.exit_code == 0 and len(list(keap.store.records("companies"))) == 2

                app = create_app(store, service.flows, service.queue, service.metrics, service.receivers,
                                 keap_day=service.keap_day)
                with BackgroundServer(app) as served:
                    page = httpx.get(f"{served.url}/status").text
                    metrics = httpx.get(f"{served.url}/metrics").text
                    clock = ManualClock(service.metrics.own_keap_calls.clock())
                    service.metrics.own_keap_calls.clock = pacer.wall_clock = clock
                    clock.advance(86_400)  # the next UTC day: Keap's quota and the counts start afresh
                    next_day = httpx.get(f"{served.url}/status").text
                    next_day_metrics = httpx.get(f"{served.url}/metrics").text
            finally:
                service.socket.close()

    spent = keap_spent(keap)  # every call on the key, the other client's too
    on_key = sum(spent.values())
    ours = spent - Counter({"polling reads": OTHERS_CALLS})
    assert ours["hooks upkeep"] == 2 and ours["writes"] >= 2 and ours["polling reads"] >= 3, spent
    row = shown(page)
    assert row["total"] == f"{on_key:,}" and row["share"] == f"{100 * on_key / DAILY_LIMIT:.2f}", row["row"]
    assert f"on the key by every process on it, as Keap counts them, {row['share']} % of the {DAILY_LIMIT:,} a day (as Keap reports it)" in row["row"]
    assert row["own-total"] == f"{sum(ours.values()):,}" and "this process's since " in row["row"]
    for kind in ("polling reads", "writes", "hooks upkeep"):
        assert int(row[kind]) == ours[kind], row["row"]
    assert int(row["webhook reads"]) == int(row["reconcile reads"]) == int(row["other reads"]) == 0
    assert f"invoiced_keap_keap_calls_today {float(on_key)}" in metrics
    assert f'invoiced_keap_keap_own_calls_today{{kind="writes"}} {float(ours["writes"])}' in metrics
    assert f"invoiced_keap_keap_quota_remaining {float(DAILY_LIMIT - on_key)}" in metrics
    tomorrow = shown(next_day)  # no call yet on the new day: Keap's count is not known, this process's starts at 0
    assert (tomorrow["total"], tomorrow["share"], tomorrow["own-total"]) == ("unknown", "", "0"), tomorrow["row"]
    assert "until Keap answers a call today" in tomorrow["row"]
    assert "invoiced_keap_keap_calls_today " not in next_day_metrics

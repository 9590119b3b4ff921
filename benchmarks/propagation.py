"""Propagation delay with webhooks on: from an edit on one side to its arrival on the other.

    python benchmarks/propagation.py [--edits 200] [--records 20] [--debounce 0.05] [--json PATH|-]

Both emulators run in-process over real HTTP and deliver at once (Invoiced webhooks immediately, Keap
hooks with no batching delay; Keap's rate limit lifted). The service (`invoiced-keap run`) is set up as a
deployment with Keap's hooks: its `public_url` is its own loopback address, which the Keap emulator reaches, so
the hooks it registers verify. It polls never during the measurement, so every edit travels by webhook:
debounce, targeted sync, write; an edit that has not arrived after 30 s fails the run (TimeoutError). Edits
alternate between Invoiced (customer name) and Keap (company name) over `--records` linked companies,
one at a time; the clock runs from sending the edit until the other emulator holds the new name.
Goal: p95 < 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from invoiced_keap.connectors.http import RetryPolicy
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.connectors.pacing import RateLimits
from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.engine.run import Syncer
from invoiced_keap.flows import build_flows
from invoiced_keap.server.app import INVOICED_WEBHOOK_PATH
from invoiced_keap.config import Schedule, Settings
from invoiced_keap.server.service import Service
from invoiced_keap.state import Store

from harness import write_json

KEY = "benchmark"
RETRY = RetryPolicy(attempts=5, wait_initial=0.02, wait_max=0.2, wait_jitter=0.02)
ARRIVAL_TIMEOUT = 30.0
NEVER = 1e9


async def arrival(condition: Callable[[], bool], started: float) -> float:
    """Seconds from `started` until `condition` holds (checked in memory every 2 ms: no API calls)."""
    while not condition():
        if time.monotonic() - started > ARRIVAL_TIMEOUT:
            raise TimeoutError("an edit did not arrive within 30 s; is the service syncing webhook ids?")
        await asyncio.sleep(0.002)
    return time.monotonic() - started


def percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(share * 100) - 1]


def free_port() -> int:
    """A loopback TCP port nothing listens on now, for the service to bind."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def measure(edits: int, records: int, debounce: float) -> dict[str, Any]:
    """`edits` edits over `records` linked companies (see the module docstring); each direction's count, p50, p95
    and max in seconds. TimeoutError when an edit does not arrive within 30 s, RuntimeError when Keap's hooks do not
    verify."""
    invoiced = InvoicedEmulator(api_key=KEY, random_seed=1, webhook_retry_delays=(0.05,))
    keap = KeapEmulator(api_key=KEY, random_seed=1, hook_batch_delay=0.0, hook_retry_delays=(0.05,))
    keap.faults.rate_limit = None
    invoiced.seed({"customers": [{"name": f"Company {n}", "type": "company"} for n in range(records)]})
    with ExitStack() as stack, tempfile.TemporaryDirectory() as directory:
        invoiced_url = stack.enter_context(BackgroundServer(invoiced.asgi())).url
        keap_url = stack.enter_context(BackgroundServer(keap.asgi())).url + "/crm/rest"
        store = stack.enter_context(Store(f"sqlite:///{Path(directory) / 'state.db'}"))
        store.migrate()
        async with AsyncExitStack() as clients:
            invoiced_api = await clients.enter_async_context(InvoicedConnector(KEY, invoiced_url, retry=RETRY))
            keap_api = await clients.enter_async_context(
                KeapConnector(ApiKey(KEY), keap_url, limits=RateLimits(), retry=RETRY)
            )
            invoiced_http = await clients.enter_async_context(httpx.AsyncClient(base_url=invoiced_url, auth=(KEY, "")))
            keap_http = await clients.enter_async_context(
                httpx.AsyncClient(base_url=keap_url, headers={"X-Keap-API-Key": KEY})
            )
            webhook = (await invoiced_http.post("/webhooks", json={"url": "http://127.0.0.1:9/"})).json()
            port = free_port()  # the address Keap's hooks reach the service at, known before it starts
            settings = Settings(
                server_port=port, public_url=f"http://127.0.0.1:{port}", invoiced_webhook_secret=webhook["secret"],
                schedule=Schedule(poll_interval=NEVER, webhook_debounce=debounce),
            )
            service = Service(Syncer(store, invoiced_api, keap_api), build_flows(), settings)
            await invoiced_http.patch(f"/webhooks/{webhook['id']}", json={"url": service.url + INVOICED_WEBHOOK_PATH})
            stop = asyncio.Event()
            running = asyncio.create_task(service.run(stop))
            try:
                await arrival(lambda: len(store.active_link_ids("companies")) == records, time.monotonic())
                if not service.hooks_verified:  # else Keap's edits could only come by a poll, and polling is off
                    raise RuntimeError(f"Keap's hooks are not verified: {service.push()['keap_hooks']}")
                await asyncio.sleep(4 * debounce + 0.5)  # the first pass's echoes come and go
                pairs = sorted(store.active_link_ids("companies").items())
                delays: dict[str, list[float]] = {"invoiced → keap": [], "keap → invoiced": []}
                for number in range(edits):
                    invoiced_id, keap_id = pairs[number % len(pairs)]
                    name = f"Edit {number}"
                    started = time.monotonic()
                    if number % 2 == 0:
                        answer = await invoiced_http.patch(f"/customers/{invoiced_id}", json={"name": name})
                        answer.raise_for_status()
                        arrived = await arrival(lambda k=keap_id, n=name: keap.store.get("companies", k)["company_name"] == n, started)
                        delays["invoiced → keap"].append(arrived)
                    else:
                        answer = await keap_http.patch(
                            f"/v2/companies/{keap_id}", params={"update_mask": "company_name"}, json={"company_name": name}
                        )
                        answer.raise_for_status()
                        arrived = await arrival(lambda i=invoiced_id, n=name: invoiced.customer(i)["name"] == n, started)
                        delays["keap → invoiced"].append(arrived)
            finally:
                stop.set()
                await running
    every = [delay for values in delays.values() for delay in values]
    rows = {"all": every, **delays}
    return {
        "edits": edits,
        "records": records,
        "debounce_seconds": debounce,
        "propagation_seconds": {
            label: {
                "count": len(values),
                "p50": round(percentile(values, 0.50), 4),
                "p95": round(percentile(values, 0.95), 4),
                "max": round(max(values), 4),
            }
            for label, values in rows.items()
        },
        "goal_p95_below_2s": percentile(every, 0.95) < 2.0,
    }


def show(result: dict[str, Any]) -> None:
    table = Table(title=f"Propagation delay over {result['edits']} edits (debounce {result['debounce_seconds']} s)")
    for column in ("direction", "edits", "p50 s", "p95 s", "max s"):
        table.add_column(column, justify="left" if column == "direction" else "right")
    for label, row in result["propagation_seconds"].items():
        table.add_row(label, str(row["count"]), f"{row['p50']:.3f}", f"{row['p95']:.3f}", f"{row['max']:.3f}")
    console = Console()
    console.print(table)
    console.print(f"goal p95 < 2 s: {'met' if result['goal_p95_below_2s'] else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--records", type=int, default=20)
    parser.add_argument("--debounce", type=float, default=0.05, help="seconds the service waits for more webhooks")
    parser.add_argument("--json", help="also write the result as JSON to this path ('-' for stdout)")
    args = parser.parse_args()
    result = asyncio.run(measure(args.edits, args.records, args.debounce))
    show(result)
    write_json(result, args.json)
    return 0 if result["goal_p95_below_2s"] else 2


if __name__ == "__main__":
    sys.exit(main())

"""Keap calls of a sync pass against the emulators over real HTTP: the initial sync of N records, the echo
pass after it, and an idle pass; plus Invoiced calls, records per second and peak memory.

    python benchmarks/sync.py [--sizes 1000,10000] [--json PATH|-]

N Invoiced records (a third organisations, a third persons, a third items) are synced into an empty Keap.
The least an initial sync can cost in Keap calls is one create per record plus a read of a page of 1000:
N + ceil(N/1000). The echo pass reads back what the initial sync wrote (Keap creates, Invoiced metadata
stamps) and must write nothing; an idle pass should cost a few calls whatever N is (goal: <= 8).
The emulators' rate limits are lifted (and the connectors do not pace): this measures calls, not waiting.
The emulators run in this process, so the peak memory (tracemalloc) includes theirs; records/s is the
initial sync's, measured with tracemalloc on (which slows Python down about threefold). State is an SQLite file in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

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
from invoiced_keap.state import Store

KEY = "benchmark"
RETRY = RetryPolicy(attempts=10, wait_initial=0.05, wait_max=1.0)
IDLE_GOAL = 8


def account(size: int) -> dict[str, list[dict[str, Any]]]:
    third = size // 3
    return {
        "customers": [
            *({"name": f"Company {n}", "type": "company", "email": f"ar{n}@company.example"} for n in range(third)),
            *({"name": f"Given{n} Family", "type": "person", "email": f"p{n}@example.com"} for n in range(third)),
        ],
        "items": [{"id": f"item-{n}", "name": f"Item {n}", "unit_cost": n % 500, "currency": "usd"}
                  for n in range(size - 2 * third)],
    }


async def measure(size: int) -> dict[str, Any]:
    invoiced_emulator, keap_emulator = InvoicedEmulator(api_key=KEY), KeapEmulator(api_key=KEY)
    invoiced_emulator.faults.rate_limit = None
    keap_emulator.faults.rate_limit = None
    invoiced_emulator.seed(account(size))
    result: dict[str, Any] = {"records": size, "minimum_keap_calls": size + math.ceil(size / 1000)}
    with tempfile.TemporaryDirectory() as directory, Store(f"sqlite:///{Path(directory) / 'state.db'}") as store, \
            BackgroundServer(invoiced_emulator.asgi()) as invoiced_server, BackgroundServer(keap_emulator.asgi()) as keap_server:
        store.migrate()
        for name in ("initial", "echo", "idle"):
            async with InvoicedConnector(KEY, invoiced_server.url, retry=RETRY) as invoiced, \
                    KeapConnector(ApiKey(KEY), f"{keap_server.url}/crm/rest", limits=RateLimits(), retry=RETRY) as keap:
                if name == "initial":
                    tracemalloc.start()
                started = time.perf_counter()
                report = await Syncer(store, invoiced, keap).sync()
                elapsed = time.perf_counter() - started
                if name == "initial":
                    result["peak_memory_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
                    tracemalloc.stop()
                    result["records_per_second"] = round(size / elapsed, 1)
                writes = sum(n for endpoint, n in Counter({**invoiced.calls.requests, **keap.stats.requests}).items()
                             if endpoint.split()[0] in {"POST", "PATCH", "DELETE"})
                result[name] = {"keap_calls": report.api_calls["keap"], "invoiced_calls": report.api_calls["invoiced"],
                                "writes": writes, "seconds": round(elapsed, 2), "exit_code": report.exit_code}
            await asyncio.sleep(1.1)  # Invoiced timestamps have 1 s resolution: the next pass starts in a new second
    return result


def table(results: list[dict[str, Any]]) -> Table:
    grid = Table(title="invoiced-keap sync: API calls (emulators, rate limits lifted)")
    for column in ("N", "Keap calls, initial", "minimum N+ceil(N/1000)", "Invoiced calls, initial", "records/s (traced)",
                   "peak MB (tracemalloc)", "echo pass Keap/Invoiced/writes", f"idle pass Keap (goal <= {IDLE_GOAL})", "idle Invoiced/writes"):
        grid.add_column(column, justify="right")
    for r in results:
        grid.add_row(str(r["records"]), str(r["initial"]["keap_calls"]), str(r["minimum_keap_calls"]),
                     str(r["initial"]["invoiced_calls"]), str(r["records_per_second"]), str(r["peak_memory_mb"]),
                     f'{r["echo"]["keap_calls"]}/{r["echo"]["invoiced_calls"]}/{r["echo"]["writes"]}',
                     str(r["idle"]["keap_calls"]), f'{r["idle"]["invoiced_calls"]}/{r["idle"]["writes"]}')
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated record counts")
    parser.add_argument("--json", default="-", help="where to write the JSON results (- for stdout)")
    arguments = parser.parse_args()
    results = [asyncio.run(measure(int(size))) for size in arguments.sizes.split(",")]
    Console(stderr=True).print(table(results))
    text = json.dumps(results, indent=2)
    if arguments.json == "-":
        print(text)
    else:
        Path(arguments.json).write_text(text + "\n")
    sys.exit(0 if all(r["idle"]["keap_calls"] <= IDLE_GOAL for r in results) else 1)


if __name__ == "__main__":
    main()

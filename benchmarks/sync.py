"""API calls and speed of sync passes against the emulators over real HTTP, each against the least it
could cost in Keap calls and against a full-scan reader (`fullscan.py`, what Sesam's connector does).

    python benchmarks/sync.py [--sizes 1000,10000] [--changes 50] [--json PATH|-]

N Invoiced records (a third organisations, a third persons, a third items) are synced into an empty Keap
(initial), then come the echo pass (reads back what the initial sync wrote, must write nothing), an idle
pass, an idle pass that does not read Keap (what `run` polls between its Keap polls while Keap's hooks are
verified), an incremental pass after `--changes` edits of linked companies, half in Invoiced, half in Keap,
and a reconcile of every flow (the daily full id scans, `Syncer.reconcile`; nothing is gone).
Keap calls are the scarce resource (10/s, 240/min, 30,000/day for a key). The least a pass can cost is one
read per Keap stream plus one write per record to create, or per Invoiced change to carry over. A full-scan pass costs a listing of everything on both sides plus the same writes.
The emulators run in a child process with rate limits lifted and the connectors do not pace: this
measures calls and our own speed, not waiting. State is an SQLite file in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fullscan import full_scan_calls
from harness import EmulatorUrls, KEY, RETRY, emulators_apart, write_json
from invoiced_keap.connectors.invoiced import CUSTOMER, InvoicedConnector
from invoiced_keap.connectors.keap import COMPANIES, OBJECTS, KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.connectors.pacing import RateLimits
from invoiced_keap.engine.run import Syncer
from invoiced_keap.state import Store

IDLE_GOAL = 8
CHANGES = 50
PASSES = ("initial", "echo", "idle", "idle_without_keap", "incremental", "reconcile")
WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}


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


def label(name: str, changes: int) -> str:
    """How a pass is named in a table."""
    return {"idle_without_keap": "idle, Keap not read (hooks verified)", "incremental": f"incremental, {changes} changes",
            "reconcile": "reconcile (full id scans)"}.get(name, name)


def keap_minimum(name: str, size: int, changes: int) -> int:
    """One read per Keap stream (Keap starts empty, and a pass's reads fit a page) plus the Keap writes the
    pass cannot avoid: a create per record at first, one per change made in Invoiced later. A pass that does
    not read Keap needs none; a reconcile needs every linked id of each object, a page per 1,000."""
    if name == "idle_without_keap":
        return 0
    if name == "reconcile":
        return sum(math.ceil(count / 1000) for count in per_object(size))
    needed = {"initial": size, "incremental": math.ceil(changes / 2)}.get(name, 0)
    return len(OBJECTS) + needed


def per_object(size: int) -> tuple[int, int, int]:
    """Records of each Keap object (companies, contacts, products) in `account(size)`."""
    third = size // 3
    return third, third, size - 2 * third


@asynccontextmanager
async def connectors(urls: EmulatorUrls) -> AsyncIterator[tuple[InvoicedConnector, KeapConnector]]:
    async with InvoicedConnector(KEY, urls.invoiced, retry=RETRY) as invoiced, \
            KeapConnector(ApiKey(KEY), urls.keap_api, limits=RateLimits(), retry=RETRY) as keap:
        yield invoiced, keap


def writes(requests: dict[str, int]) -> int:
    return sum(count for endpoint, count in requests.items() if endpoint.split()[0] in WRITE_METHODS)


async def one_pass(urls: EmulatorUrls, store: Store, name: str = "idle") -> dict[str, Any]:
    """The pass `name` of `PASSES`: a sync (without reading Keap for `idle_without_keap`), or a reconcile."""
    async with connectors(urls) as (invoiced, keap):
        syncer = Syncer(store, invoiced, keap)
        started = time.perf_counter()
        report = await (syncer.reconcile() if name == "reconcile" else syncer.sync(read_keap=name != "idle_without_keap"))
        elapsed = time.perf_counter() - started
        return {"keap_calls": report.api_calls["keap"], "invoiced_calls": report.api_calls["invoiced"],
                "keap_writes": writes(keap.stats.requests), "invoiced_writes": writes(invoiced.calls.requests),
                "seconds": round(elapsed, 2), "exit_code": report.exit_code}


async def edit_companies(urls: EmulatorUrls, store: Store, changes: int) -> None:
    """Rename `changes` linked companies: even ones in Invoiced, odd ones in Keap."""
    pairs = sorted(store.active_link_ids("companies").items())[:changes]
    async with connectors(urls) as (invoiced, keap):
        for number, (invoiced_id, keap_id) in enumerate(pairs):
            if number % 2 == 0:
                await invoiced.update(CUSTOMER, invoiced_id, {"name": f"Edited {number}"})
            else:
                await keap.update(COMPANIES, keap_id, {"company_name": f"Edited {number}"})


async def measure(size: int, changes: int = CHANGES) -> dict[str, Any]:
    result: dict[str, Any] = {"records": size, "changes": changes}
    with emulators_apart(account(size)) as urls, tempfile.TemporaryDirectory() as directory, \
            Store(f"sqlite:///{Path(directory) / 'state.db'}") as store:
        store.migrate()
        for name in PASSES:
            if name == "incremental":
                await edit_companies(urls, store, changes)
            await asyncio.sleep(1.1)  # Invoiced timestamps have 1 s resolution: each pass starts in a new second
            result[name] = await one_pass(urls, store, name)
        async with connectors(urls) as (invoiced, keap):
            scan = await full_scan_calls(invoiced, keap)
    result["records_per_second"] = round(size / result["initial"]["seconds"], 1)
    for name in PASSES:
        row = result[name]
        row["keap_minimum"] = keap_minimum(name, size, changes)
        row["keap_full_scan"] = (0 if name == "idle_without_keap" else scan["keap"]) + row["keap_writes"]
        row["invoiced_full_scan"] = scan["invoiced"] + row["invoiced_writes"]
    return result


def table(result: dict[str, Any]) -> Table:
    grid = Table(title=f"Sync passes, N = {result['records']:,} ({result['records_per_second']} records/s initial)")
    for column in ("pass", "Keap calls", "Keap minimum", "Keap full-scan", "Invoiced calls", "Invoiced full-scan",
                   "writes Keap/Invoiced", "seconds"):
        grid.add_column(column, justify="left" if column == "pass" else "right")
    for name in PASSES:
        row = result[name]
        grid.add_row(label(name, result["changes"]), str(row["keap_calls"]), str(row["keap_minimum"]), str(row["keap_full_scan"]),
                     str(row["invoiced_calls"]), str(row["invoiced_full_scan"]),
                     f"{row['keap_writes']}/{row['invoiced_writes']}", str(row["seconds"]))
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated record counts")
    parser.add_argument("--changes", type=int, default=CHANGES, help="edits before the incremental pass")
    parser.add_argument("--json", default="-", help="where to write the JSON results (- for stdout)")
    arguments = parser.parse_args()
    results = [asyncio.run(measure(int(size), arguments.changes)) for size in arguments.sizes.split(",")]
    console = Console(stderr=True)
    for result in results:
        console.print(table(result))
    write_json(results, arguments.json)
    sys.exit(0 if all(r["idle"]["keap_calls"] <= IDLE_GOAL for r in results) else 1)


if __name__ == "__main__":
    main()

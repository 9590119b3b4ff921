"""API calls and paced throughput of the connectors, against the emulators over real HTTP.

    python benchmarks/connectors.py [--records 10000] [--seconds 15] [--json PATH|-]

Reports, with `--records` records of every record type (Invoiced customers and items; Keap companies,
contacts and products): the calls to list everything, and the calls of an incremental read with 0 and
with 50 changes per record type. Then the calls per second the paced Keap connector achieves against a
rate-limited Keap emulator, as a share of the limit: once in real time with a scaled limit (20/s,
1,200/min), once with Keap's real PAT limits (10/s, 240/min) over several minutes of emulator time. Two shares:
the average rate over the run against the limit per second, which can pass 100 % with no call refused (Keap
counts in fixed windows of the clock, so a run shorter than a window had its whole allowance: 300 calls at
240/min go in 66 s, 240 in the first minute's first 24 s and 60 at the next minute's start), and the calls
against the most the windows the run touched admit, which cannot (`window_allowance`).
Records are seeded in batches of 100 a minute apart (emulator time), as a live account grows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, ExitStack
from typing import Any

from rich.console import Console
from rich.table import Table

from harness import EmulatorTime, KEY, RETRY, post, write_json
from invoiced_keap.connectors.http import RequestStats
from invoiced_keap.connectors.invoiced import CUSTOMER, ITEM, InvoicedConnector
from invoiced_keap.connectors.keap import COMPANIES, CONTACTS, PRODUCTS, KeapConnector, KeapObject
from invoiced_keap.flows import CATALOGUE, sharing_keap_object
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.connectors.pacing import Pacer, RateLimits
from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer

BATCH = 100
CHANGES = 50
UNPACED = RateLimits()
SCALED_LIMIT = {"per_second": 20, "per_minute": 1_200, "per_day": 1_000_000}
PAT_LIMIT = {"per_second": 10, "per_minute": 240, "per_day": 30_000}


def seed_accounts(keap: str, invoiced: str, records: int, clock: EmulatorTime) -> None:
    """Seed both emulators (at these urls) in batches of 100 a minute apart."""
    for start in range(0, records, BATCH):
        numbers = range(start, min(start + BATCH, records))
        post(keap, "seed", {
            "companies": [{"company_name": f"Company {n}"} for n in numbers],
            "contacts": [{"given_name": f"Person {n}", "email_addresses": [{"email": f"p{n}@example.com", "field": "EMAIL1"}]} for n in numbers],
            "products": [{"name": f"Product {n}", "price": 100 + n, "short_description": f"Product {n}"} for n in numbers],
        })
        post(invoiced, "seed", {
            "customers": [{"name": f"Customer {n}", "type": "person" if n % 2 else "company"} for n in numbers],
            "items": [{"id": f"item-{n}", "name": f"Item {n}", "unit_cost": 1 + n} for n in numbers],
        })
        clock.advance(60)


async def calls_of(stats: RequestStats, work: Callable[[], Awaitable[int]]) -> dict[str, int]:
    """Calls made by `work` (which answers how many records it read)."""
    before = stats.total
    records = await work()
    return {"calls": stats.total - before, "records": records}


async def count(records: AsyncIterator[Any]) -> int:
    return sum([1 async for _ in records])


KEAP_READS: dict[str, tuple[KeapObject, list[str]]] = {
    flow.keap.name: (flow.keap, sorted({field for other in sharing_keap_object(flow) for field in other.keap_fields}))
    for flow in CATALOGUE.values()
}
"""What a pass reads of each Keap object, by its name: one incremental read for all the flows on it (the contacts
and company_contacts flows share Keap contacts), with the fields of all, from its own watermark (as the engine's
`changes._read_keap` reads)."""


async def read_calls(records: int) -> dict[str, Any]:
    """Calls and records of three reads of every stream (`"keap companies"`, ..., `"invoiced items"`) over `records`
    records of each type (a multiple of 100): listing everything, an incremental read with no change, and one after
    50 edits of each record type on both sides: `{read: {stream: {"calls": n, "records": n}}}`."""
    clock = EmulatorTime()
    keap_emulator = KeapEmulator(api_key=KEY, clock=clock)
    invoiced_emulator = InvoicedEmulator(api_key=KEY, clock=clock)
    with ExitStack() as servers:
        keap_server = servers.enter_context(BackgroundServer(keap_emulator.asgi()))
        invoiced_server = servers.enter_context(BackgroundServer(invoiced_emulator.asgi()))
        post(keap_server.url, "faults", {"rate_limit": None})  # counting calls here, not pacing
        seed_accounts(keap_server.url, invoiced_server.url, records, clock)
        clock.advance(3600)
        async with AsyncExitStack() as connectors:
            keap = await connectors.enter_async_context(
                KeapConnector(ApiKey(KEY), f"{keap_server.url}/crm/rest", limits=UNPACED, retry=RETRY)
            )
            invoiced = await connectors.enter_async_context(InvoicedConnector(KEY, invoiced_server.url, retry=RETRY))
            report: dict[str, Any] = {}
            keap_marks: dict[str, Any] = {}
            invoiced_marks: dict[str, Any] = {}

            async def read_all() -> dict[str, dict[str, int]]:
                found: dict[str, dict[str, int]] = {}
                for name, (keap_object, fields) in KEAP_READS.items():
                    async def keap_read() -> int:
                        changes = await keap.changes(keap_object, keap_marks.get(name), fields=fields)
                        keap_marks[name] = changes.watermark
                        return len(changes.records)
                    found[f"keap {name}"] = await calls_of(keap.stats, keap_read)
                for name, resource in (("customers", CUSTOMER), ("items", ITEM)):
                    async def invoiced_read() -> int:
                        changed = invoiced.changed(resource, invoiced_marks.get(name))
                        read = await count(aiter(changed))
                        invoiced_marks[name] = changed.watermark
                        return read
                    found[f"invoiced {name}"] = await calls_of(invoiced.calls, invoiced_read)
                return found

            report["list everything"] = await read_all()
            clock.advance(600)
            report["incremental, 0 changes"] = await read_all()
            clock.advance(600)
            for number in range(CHANGES):
                record_id = str(number * (records // CHANGES) + 1)
                await keap.update(COMPANIES, record_id, {"company_name": f"Changed {number}"})
                await keap.update(CONTACTS, record_id, {"given_name": f"Changed {number}"})
                await keap.update(PRODUCTS, record_id, {"description": f"Changed {number}"})
                await invoiced.update(CUSTOMER, record_id, {"name": f"Changed {number}"})
                await invoiced.update(ITEM, f"item-{number * (records // CHANGES)}", {"description": f"Changed {number}"})
                clock.advance(0.25)
            clock.advance(60)
            report[f"incremental, {CHANGES} changes"] = await read_all()
    return report


async def paced_calls(keap: KeapConnector, company_id: str, *, until: Callable[[int], bool], workers: int) -> int:
    """Calls made by `workers` callers, each calling until `until(calls made so far)`; returns once every call is
    answered."""
    made = 0

    async def worker() -> None:
        nonlocal made
        while not until(made):
            made += 1
            await keap.get(COMPANIES, company_id)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return made


def limited_keap(emulator: KeapEmulator, limit: dict[str, int]) -> tuple[BackgroundServer, str]:
    server = BackgroundServer(emulator.asgi()).start()
    post(server.url, "faults", {"rate_limit": limit})
    [company_id] = post(server.url, "seed", {"companies": [{"company_name": "Paced"}]})["companies"]
    return server, company_id


def window_allowance(start: float, end: float, limit: dict[str, int]) -> int:
    """The most calls Keap's windows admit at instants from `start` to `end` (epoch seconds), under `limit`'s
    `per_second` and `per_minute`: the windows are whole seconds and minutes of the clock (as the emulator's
    `ratelimit` counts them), so each minute the span touches allows its per-minute limit or `per_second` times the
    seconds of it the span touches, whichever is smaller (a second touched at all counts whole)."""
    first, last = math.floor(start), math.floor(end)
    return sum(min(limit["per_minute"], limit["per_second"] * (min(last, 60 * minute + 59) - max(first, 60 * minute) + 1))
               for minute in range(first // 60, last // 60 + 1))


def throughput(calls: int, started: float, ended: float, seconds: float, limit: dict[str, int],
               statuses: dict[str, int]) -> dict[str, Any]:
    """A paced run's figures: `calls` made from `started` to `ended` (epoch seconds of the emulator's clock: before the
    first call, after the last answer), over `seconds` of run. `share_of_limit`: the average rate over `seconds` as a
    share of the binding limit per second (it can pass 1 with every call admitted: a run shorter than a window had
    that window's whole allowance); `share_of_allowance`: the calls as a share of `window_allowance` over the span,
    which passes 1 only if a call was admitted over the limit."""
    allowed = min(limit["per_second"], limit["per_minute"] / 60)
    rate = calls / seconds
    allowance = window_allowance(started, ended, limit)
    return {"calls": calls, "seconds": round(seconds, 2), "calls_per_second": round(rate, 3), "limit_per_second": allowed,
            "share_of_limit": round(rate / allowed, 3), "window_allowance": allowance,
            "share_of_allowance": round(calls / allowance, 3), "statuses": statuses}


async def real_time_throughput(seconds: float) -> dict[str, Any]:
    """Scaled limit, wall-clock time: the pacer, the network and the emulator's fixed windows together."""
    server, company_id = limited_keap(KeapEmulator(api_key=KEY), SCALED_LIMIT)
    try:
        limits = RateLimits.of(per_second=SCALED_LIMIT["per_second"], per_minute=SCALED_LIMIT["per_minute"])
        async with KeapConnector(ApiKey(KEY), f"{server.url}/crm/rest", limits=limits, retry=RETRY) as keap:
            started, began = time.monotonic(), time.time()  # the emulator's windows follow the wall clock
            deadline = started + seconds
            made = await paced_calls(keap, company_id, until=lambda _: time.monotonic() >= deadline, workers=4)
            elapsed, ended = time.monotonic() - started, time.time()
        return throughput(made, began, ended, elapsed, SCALED_LIMIT, dict(keap.stats.statuses))
    finally:
        server.stop()


async def emulator_time_throughput(calls: int) -> dict[str, Any]:
    """Keap's real PAT limits over minutes of emulator time: the pacer and the x-keap-* headers decide alone."""
    clock = EmulatorTime()
    server, company_id = limited_keap(KeapEmulator(api_key=KEY, clock=clock), PAT_LIMIT)
    try:
        limits = RateLimits.of(per_second=PAT_LIMIT["per_second"], per_minute=PAT_LIMIT["per_minute"])
        pacer = Pacer(limits, clock=clock, wall_clock=clock, sleep=clock.sleep)
        async with KeapConnector(ApiKey(KEY), f"{server.url}/crm/rest", pacer=pacer, retry=RETRY) as keap:
            started = clock.now
            made = await paced_calls(keap, company_id, until=lambda made: made >= calls, workers=1)
            ended = clock.now  # the last call's instant: a call takes no emulator time
            async with pacer.turn():  # the moment the next call could go: the run's length for its average rate
                elapsed = clock.now - started
        return throughput(made, started, ended, elapsed, PAT_LIMIT, dict(keap.stats.statuses))
    finally:
        server.stop()


def show(results: dict[str, Any], console: Console) -> None:
    reads = Table(title=f"API calls, {results['records']:,} records of each type (records returned in brackets)")
    streams = list(next(iter(results["reads"].values())))
    reads.add_column("read")
    for stream in streams:
        reads.add_column(stream, justify="right")
    reads.add_column("total calls", justify="right")
    for read, per_stream in results["reads"].items():
        cells = [f"{per_stream[s]['calls']} ({per_stream[s]['records']:,} rec)" for s in streams]
        reads.add_row(read, *cells, str(sum(per_stream[s]["calls"] for s in streams)))
    console.print(reads)
    paced = Table(title="Paced Keap throughput")
    for column in ("run", "calls", "seconds", "calls/s", "limit/s", "average share", "windows allowed", "share of that",
                   "statuses"):
        paced.add_column(column)
    for run, row in results["throughput"].items():
        paced.add_row(run, str(row["calls"]), str(row["seconds"]), str(row["calls_per_second"]), f"{row['limit_per_second']:.2f}",
                      f"{row['share_of_limit']:.1%}", str(row["window_allowance"]), f"{row['share_of_allowance']:.1%}",
                      json.dumps(row["statuses"]))
    console.print(paced)


async def run(records: int, seconds: float, virtual_calls: int) -> dict[str, Any]:
    return {
        "records": records,
        "reads": await read_calls(records),
        "throughput": {
            f"real time, scaled limit {SCALED_LIMIT['per_second']}/s {SCALED_LIMIT['per_minute']}/min": await real_time_throughput(seconds),
            f"emulator time, PAT limit {PAT_LIMIT['per_second']}/s {PAT_LIMIT['per_minute']}/min": await emulator_time_throughput(virtual_calls),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000, help="records of each type (multiple of 100)")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the real-time throughput run")
    parser.add_argument("--virtual-calls", type=int, default=1_200, help="calls in the emulator-time throughput run")
    parser.add_argument("--json", help="write the results as JSON to this file ('-' for stdout)")
    options = parser.parse_args()
    results = asyncio.run(run(options.records, options.seconds, options.virtual_calls))
    show(results, Console(stderr=options.json == "-", width=150))
    write_json(results, options.json)


if __name__ == "__main__":
    main()

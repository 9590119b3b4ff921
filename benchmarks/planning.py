"""Planning speed and the memory of 100,000 links: the pure core and the state store, no API.

    python benchmarks/planning.py [--pairs 30000] [--links 100000] [--json PATH|-]

Planning: `plan_pair` over `--pairs` linked pairs (a third of each flow, every mapped field filled) whose
Invoiced side was renamed since the shadows were taken, as a pass plans the pairs it read; records/s.

Memory: `--links` links (a third of each flow) with both shadows, raw records included, are written to an
SQLite store. Then, under tracemalloc, what a pass does with that many links: `active_link_ids` per flow
(every pass loads it for the circuit breaker) and a plan for every pair from its stored records, streamed
from the store in pages of 1000 (`iter_links`), as a pass plans when every record changed (unchanged here, so the plans are empty: the same
work and objects per pair but no write bodies, and no fresh names for nameparser). The figure is
the peak traced Python memory of that path (the links and plans themselves, not the interpreter); the
state file's size is given too.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from harness import machine, write_json
from invoiced_keap.engine.shadows import link_shadows, snapshot, stored_record
from invoiced_keap.engine.plan import LinkShadows, plan_create, plan_pair, shadow_of
from invoiced_keap.flows import Flow, build_flows
from invoiced_keap.mapping import Record
from invoiced_keap.state import NewLink, Store

FLOWS = build_flows()
INSERT_BATCH = 5_000
INVOICED_UPDATED = 1_748_999_000
KEAP_UPDATED = "2025-06-04T01:03:20.000Z"


def invoiced_record(flow: Flow, number: int) -> Record:
    if flow.name == "products":
        return {"id": f"item-{number}", "name": f"Item {number}", "description": f"Item {number}, the long way round",
                "unit_cost": 12.5, "currency": "usd", "updated_at": INVOICED_UPDATED}
    return {"id": str(number), "name": f"Given{number} Family", "type": "person" if flow.name == "contacts" else "company",
            "email": f"p{number}@example.com", "phone": "+1 555 0100", "address1": f"{number} Main St", "address2": None,
            "city": "Springfield", "state": "IL", "postal_code": "62701", "country": "US", "updated_at": INVOICED_UPDATED}


def pair(flow: Flow, number: int) -> tuple[Record, Record]:
    """An Invoiced record and the Keap twin our own create would make of it."""
    invoiced = invoiced_record(flow, number)
    keap = {**plan_create(flow, "invoiced", invoiced).fields, "id": str(number), "update_time": KEAP_UPDATED}
    return invoiced, keap


def renamed(record: Record) -> Record:
    return {**record, "name": f"{record['name']} Renamed", "updated_at": INVOICED_UPDATED + 60}


def flow_of(number: int) -> Flow:
    return list(FLOWS.values())[number % len(FLOWS)]


def planning_rate(pairs: int) -> dict[str, Any]:
    work = []
    for number in range(pairs):
        flow = flow_of(number)
        invoiced, keap = pair(flow, number)
        shadows = LinkShadows(shadow_of(flow, "invoiced", invoiced), shadow_of(flow, "keap", keap))
        work.append((flow, shadows, renamed(invoiced), keap))
    started = time.perf_counter()
    writes = sum(plan_pair(flow, shadows, invoiced, keap).write_count for flow, shadows, invoiced, keap in work)
    elapsed = time.perf_counter() - started
    return {"pairs": pairs, "seconds": round(elapsed, 3), "records_per_second": round(pairs / elapsed),
            "planned_writes": writes}


def new_links(flow: Flow, numbers: range) -> Iterator[NewLink]:
    for number in numbers:
        invoiced, keap = pair(flow, number)
        yield NewLink(invoiced["id"], keap["id"], snapshot(flow, "invoiced", invoiced), snapshot(flow, "keap", keap))


def links_memory(links: int) -> dict[str, Any]:
    per_flow = {flow.name: links // len(FLOWS) + (index < links % len(FLOWS)) for index, flow in enumerate(FLOWS.values())}
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "state.db"
        with Store(f"sqlite:///{path}") as store:
            store.migrate()
            started = time.perf_counter()
            for flow in FLOWS.values():
                count = per_flow[flow.name]
                for start in range(0, count, INSERT_BATCH):
                    store.add_links(flow.name, list(new_links(flow, range(start, min(start + INSERT_BATCH, count)))))
            build_seconds = time.perf_counter() - started
            tracemalloc.start()
            started = time.perf_counter()
            stored = sum(len(store.active_link_ids(name)) for name in FLOWS)
            planned = writes = 0
            for flow in FLOWS.values():
                for link in store.iter_links(flow.name):
                    current_invoiced, current_keap = stored_record(link, "invoiced"), stored_record(link, "keap")
                    assert current_invoiced is not None and current_keap is not None
                    plan = plan_pair(flow, link_shadows(link), current_invoiced, current_keap)
                    planned += 1
                    writes += plan.write_count
            elapsed = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        return {"links": stored, "planned": planned, "planned_writes": writes, "build_seconds": round(build_seconds, 1),
                "pass_seconds_traced": round(elapsed, 1), "peak_traced_mb": round(peak / 2**20, 1),
                "state_file_mb": round(path.stat().st_size / 2**20, 1)}


def measure(pairs: int, links: int) -> dict[str, Any]:
    return {"machine": machine(), "planning": planning_rate(pairs), "memory": links_memory(links)}


def table(result: dict[str, Any]) -> Table:
    planning, memory = result["planning"], result["memory"]
    grid = Table(title="Planning and memory (no API)")
    grid.add_column("figure")
    grid.add_column("value", justify="right")
    grid.add_row(f"plan_pair, {planning['pairs']:,} changed pairs", f"{planning['records_per_second']:,} records/s")
    grid.add_row(f"peak traced memory, {memory['links']:,} links: active_link_ids + plan every pair (streamed)",
                 f"{memory['peak_traced_mb']} MB")
    grid.add_row("state file with those links", f"{memory['state_file_mb']} MB")
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=30_000, help="pairs to plan for the speed figure")
    parser.add_argument("--links", type=int, default=100_000, help="links in the store for the memory figure")
    parser.add_argument("--json", default="-", help="where to write the JSON results (- for stdout)")
    arguments = parser.parse_args()
    result = measure(arguments.pairs, arguments.links)
    Console(stderr=True, width=150).print(table(result))
    write_json(result, arguments.json)
    complete = result["planning"]["planned_writes"] == arguments.pairs and result["memory"]["planned"] == arguments.links
    sys.exit(0 if complete and result["memory"]["planned_writes"] == 0 else 1)


if __name__ == "__main__":
    main()

"""Run the benchmarks and write docs/BENCHMARKS.md: every figure with the command that reproduces it.

    python benchmarks/report.py [--out docs/BENCHMARKS.md] [--quick]

Sections: API calls of sync passes (initial, echo, idle, incremental) against the least they could cost and
against a full-scan reader, for N = 1,000 and 10,000 (`sync.py`); reads of 10,000 records per record type
(`connectors.py`); the achieved share of Keap's rate limit (`connectors.py`); planning records/s and the
memory of 100,000 links (`planning.py`); propagation p50/p95 with webhooks (`propagation.py`); and the
chaos long run's figures from `benchmarks/results/*.json` when a long run wrote them (tests/chaos).
About 10 minutes on a 2-core machine; `--quick` runs small sizes to check the script itself.
A section that cannot be measured says so and why; it never shows a figure it did not measure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import connectors
import memory
import planning
import propagation
import sync
from harness import machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Sizes:
    sync: tuple[int, ...] = (1_000, 10_000)
    changes: int = 50
    reads: int = 10_000
    real_time_seconds: float = 15.0
    virtual_calls: int = 1_200
    pairs: int = 30_000
    links: int = 100_000
    edits: int = 200
    memory: tuple[int, ...] = (2_000, 10_000)

    def command(self, script: str, **options: Any) -> str:
        flags = " ".join(f"--{name.replace('_', '-')} {value}" for name, value in options.items())
        return f"python benchmarks/{script} {flags}".rstrip()


QUICK = Sizes(sync=(300,), changes=10, reads=500, real_time_seconds=2.0, virtual_calls=300, pairs=1_000,
              links=3_000, edits=20, memory=(300,))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def sync_section(sizes: Sizes) -> str:
    parts = []
    for size in sizes.sync:
        result = asyncio.run(sync.measure(size, sizes.changes))
        rows = []
        for name in sync.PASSES:
            row = result[name]
            label = f"incremental, {sizes.changes} changes" if name == "incremental" else name
            rows.append([label, row["keap_calls"], row["keap_minimum"], row["keap_full_scan"], row["invoiced_calls"],
                         row["invoiced_full_scan"], f"{row['keap_writes']} / {row['invoiced_writes']}", row["seconds"]])
        parts.append(f"**N = {size:,}** (a third companies, a third contacts, a third products); initial sync "
                     f"{result['records_per_second']} records/s.\n\n" + table(
                         ["pass", "Keap calls", "Keap minimum", "Keap full-scan", "Invoiced calls", "Invoiced full-scan",
                          "writes Keap / Invoiced", "seconds"], rows))
    command = sizes.command("sync.py", sizes=",".join(map(str, sizes.sync)), changes=sizes.changes)
    return "\n\n".join([
        "## API calls of sync passes\n\n"
        "Keap calls are the scarce resource. *Keap minimum*: one read per Keap stream plus the Keap writes the pass "
        "cannot avoid (a create per record at first, one per change made in Invoiced later). *Full-scan*: what a "
        "reader that lists every record of both sides each pass (Sesam's public connector) costs, plus the same "
        "writes. The initial sync also stamps each new Keap id into the Invoiced record's metadata (one Invoiced "
        "write per record: links can be rebuilt if the state database is lost). Emulators in a child process, "
        "rate limits lifted, no pacing: these are calls and our own speed, not waiting.",
        *parts, f"Reproduce: `{command}`"])


def reads_section(sizes: Sizes) -> str:
    reads = asyncio.run(connectors.read_calls(sizes.reads))
    streams = list(next(iter(reads.values())))
    rows = [[read, *(f"{per[s]['calls']} ({per[s]['records']:,})" for s in streams),
             sum(per[s]["calls"] for s in streams)] for read, per in reads.items()]
    command = sizes.command("connectors.py", records=sizes.reads)
    return (f"## Reads, {sizes.reads:,} records of each record type\n\n"
            "Calls per read (records returned in brackets), connectors alone; 50 changes means 50 edits on "
            "each record type on both sides.\n\n" + table(["read", *streams, "total calls"], rows) +
            f"\n\nReproduce: `{command}`")


def rate_limit_section(sizes: Sizes) -> str:
    runs = {
        f"real time, scaled limit {connectors.SCALED_LIMIT['per_second']}/s {connectors.SCALED_LIMIT['per_minute']}/min":
            asyncio.run(connectors.real_time_throughput(sizes.real_time_seconds)),
        f"emulator time, Keap PAT limit {connectors.PAT_LIMIT['per_second']}/s {connectors.PAT_LIMIT['per_minute']}/min":
            asyncio.run(connectors.emulator_time_throughput(sizes.virtual_calls)),
    }
    rows = [[run, r["calls"], r["seconds"], r["calls_per_second"], f"{r['limit_per_second']:.2f}",
             f"{r['share_of_limit']:.1%}", json.dumps(r["statuses"])] for run, r in runs.items()]
    command = sizes.command("connectors.py", records=100, seconds=sizes.real_time_seconds, virtual_calls=sizes.virtual_calls)
    return ("## Achieved share of the Keap rate limit\n\n"
            "The paced Keap connector against a rate-limited Keap emulator; the binding limit is the smaller of the "
            "per-second and per-minute ones. The emulator-time run uses Keap's real PAT limits over minutes of "
            "emulator time (the pacer sleeps on that clock).\n\n" +
            table(["run", "calls", "seconds", "calls/s", "limit/s", "share", "statuses"], rows) +
            f"\n\nReproduce: `{command}` (its read figures at 100 records are a by-product)")


def planning_section(sizes: Sizes) -> str:
    result = planning.measure(sizes.pairs, sizes.links)
    plan, memory = result["planning"], result["memory"]
    rows = [
        [f"plan_pair over {plan['pairs']:,} changed pairs (a third of each flow)", f"{plan['records_per_second']:,} records/s"],
        [f"peak traced memory: {memory['links']:,} links, active_link_ids + a plan for every pair streamed from the store",
         f"{memory['peak_traced_mb']} MB"],
        [f"state database (SQLite) holding {memory['links']:,} links with both shadows", f"{memory['state_file_mb']} MB"],
    ]
    command = sizes.command("planning.py", pairs=sizes.pairs, links=sizes.links)
    return ("## Planning speed, and the planner's memory over 100,000 stored links\n\n"
            "Planning is the pure core alone (no I/O). The memory figure is the id map every pass loads for the "
            "circuit breaker plus planning every stored pair in pages of 1000 (tracemalloc's peak: Python objects "
            "only). A real pass does not stream like this yet: it holds every changed record and pair plan at once; "
            "see *Peak memory of sync passes* for what whole passes take.\n\n"
            + table(["figure", "value"], rows) + f"\n\nReproduce: `{command}`")


def memory_section(sizes: Sizes) -> str:
    rows = []
    for run in (memory.measure(size) for size in sizes.memory):
        for kind, result in run["passes"].items():
            rows.append([f"{run['records']:,}", kind.replace("_", " "), result["peak_rss_mb"], json.dumps(result["calls"])])
    command = sizes.command("memory.py", sizes=",".join(map(str, sizes.memory)))
    return ("## Peak memory of sync passes\n\n"
            "Whole-process peak resident memory (the kernel's `VmHWM`) of one pass of the companies flow, each pass in a child "
            "process of its own (interpreter and imports included, about 75 MB); the emulators run in another. "
            "*All changed*: every linked Keap company renamed, the pass allowed past the breaker.\n\n"
            + table(["records", "pass", "peak RSS MB", "API calls"], rows) + f"\n\nReproduce: `{command}`")


def propagation_section(sizes: Sizes) -> str:
    command = sizes.command("propagation.py", edits=sizes.edits)
    if not hasattr(propagation.Syncer, "sync_ids"):
        return f"## Propagation delay\n\nNot measured: the engine has no `Syncer.sync_ids` yet. Reproduce: `{command}`"
    result = asyncio.run(propagation.measure(sizes.edits, 20, 0.05))
    rows = [[label, r["count"], f"{r['p50']:.3f}", f"{r['p95']:.3f}", f"{r['max']:.3f}"]
            for label, r in result["propagation_seconds"].items()]
    goal = "met" if result["goal_p95_below_2s"] else "NOT met"
    return ("## Propagation delay with webhooks\n\n"
            f"From an edit on one side until the other emulator holds it, webhooks and hooks delivered at once, "
            f"debounce {result['debounce_seconds']} s, polling off; {result['records']} linked companies. "
            f"Goal p95 < 2 s: {goal}.\n\n" + table(["direction", "edits", "p50 s", "p95 s", "max s"], rows) +
            f"\n\nReproduce: `{command}`")


def chaos_section(_: Sizes) -> str:
    found = sorted(RESULTS.glob("*.json")) if RESULTS.is_dir() else []
    if not found:
        return ("## Chaos long run\n\nNo results: no `benchmarks/results/*.json` yet (the chaos test writes it when "
                "run with `INVOICED_KEAP_CHAOS_RESULTS`; see tests/chaos/test_chaos.py).")
    parts = ["## Chaos long run\n\nCopied from the result files the chaos test wrote (not re-run by this script)."]
    for path in found:
        figures = json.loads(path.read_text())
        command = figures.pop("command", None)
        rows = [[key, json.dumps(value) if isinstance(value, (dict, list)) else value] for key, value in figures.items()]
        parts.append(f"`{path.relative_to(ROOT)}` (written {time.strftime('%Y-%m-%d %H:%M', time.localtime(path.stat().st_mtime))})"
                     f"\n\n" + table(["figure", "value"], rows) + (f"\n\nReproduce: `{command}`" if command else ""))
    return "\n\n".join(parts)


SECTIONS: list[Callable[[Sizes], str]] = [
    sync_section, reads_section, rate_limit_section, planning_section, memory_section, propagation_section, chaos_section,
]


def guarded(section: Callable[[Sizes], str], sizes: Sizes) -> str:
    """A section, or why it could not be measured (the rest of the report still runs)."""
    try:
        return section(sizes)
    except Exception as error:  # a failed benchmark is reported, never hidden or replaced by a figure
        title = section.__name__.removesuffix("_section").replace("_", " ")
        return f"## {title}\n\nNot measured: the benchmark failed with `{error!r}`.\n\n```\n{traceback.format_exc()}```"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script (not for the docs)")
    arguments = parser.parse_args()
    sizes = QUICK if arguments.quick else Sizes()
    started = time.monotonic()
    sections = []
    for section in SECTIONS:
        began = time.monotonic()
        sections.append(guarded(section, sizes))
        print(f"{section.__name__}: {time.monotonic() - began:.0f} s", flush=True)
    where = machine()
    header = (
        "# Benchmarks\n\n"
        f"Written by `python benchmarks/report.py{' --quick' if arguments.quick else ''}` on {where['date']} in "
        f"{time.monotonic() - started:.0f} s: {where['cpus']} CPUs, Python {where['python']}, {where['platform']}. "
        "Every figure was measured by that run against the in-repo emulators over real HTTP (except the chaos "
        "figures, copied from their result files); each section names the command that reproduces it. Timings "
        "depend on the machine and its load; call counts do not."
    )
    Path(arguments.out).write_text("\n\n".join([header, *sections]) + "\n")
    print(f"wrote {arguments.out}")


if __name__ == "__main__":
    main()

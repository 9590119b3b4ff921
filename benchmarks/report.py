"""Run the benchmarks and write docs/BENCHMARKS.md: every figure with the command that reproduces it.

    python benchmarks/report.py [--out docs/BENCHMARKS.md] [--quick] [--postgres-url URL] [--jobs N]

Sections: a summary of the figures at the largest size; API calls of sync passes (initial, echo, idle, idle
without reading Keap, incremental, reconcile) against the least they could cost and against a full-scan
reader, for N = 1,000, 10,000 and 100,000 (`sync.py`); the Keap quota share of an idle day of `run` with and
without Keap's hooks at 10,000 and 100,000 links, from those measured calls and a measured hook check
(`quota.py`); reads of 10,000 records per record type (`connectors.py`); the achieved share of Keap's rate
limit (`connectors.py`); a paced initial sync against the physical limit (`paced.py`); planning records/s
and the planner's memory over 100,000 links (`planning.py`); whole-process peak memory of each kind of pass
at 10,000 and 100,000 records on SQLite and PostgreSQL, of the companies flow alone and of whole `invoiced-keap
sync` passes of all four flows (`memory.py`, `memory.py --all-flows`; PostgreSQL at `--postgres-url`,
default $INVOICED_KEAP_TEST_POSTGRES_URL); propagation p50/p95 with webhooks (`propagation.py`); and the
chaos long run's figures from `benchmarks/results/*.json` when a long run wrote them (tests/chaos).
The memory runs (each a set of child processes) go on in the background, `--jobs` at a time, while the other
sections run, except the propagation delay, measured first on a quiet machine: some two hours on a 2-core
machine; `--quick` runs small sizes to check the script itself.
A section that cannot be measured says so and why; it never shows a figure it did not measure.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import connectors
import memory
import paced
import planning
import propagation
import quota
import sync
from harness import machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


MEMORY_GOAL_MB = 200


@dataclass(frozen=True)
class Sizes:
    sync: tuple[int, ...] = (1_000, 10_000, 100_000)
    quota: tuple[int, ...] = (10_000, 100_000)  # each one of `sync` (the same measured passes)
    changes: int = 50
    reads: int = 10_000
    real_time_seconds: float = 15.0
    virtual_calls: int = 1_200
    paced: int = 1_000
    pairs: int = 30_000
    links: int = 100_000
    edits: int = 200
    memory: tuple[int, ...] = (10_000, 100_000)
    databases: tuple[str, ...] = ("sqlite", "postgresql")
    postgres_url: str | None = None
    jobs: int = 1

    def command(self, script: str, **options: Any) -> str:
        flags = " ".join(f"--{name.replace('_', '-')} {value}" for name, value in options.items())
        return f"python benchmarks/{script} {flags}".rstrip()


QUICK = Sizes(sync=(300, 600), quota=(300, 600), changes=10, reads=500, real_time_seconds=2.0, virtual_calls=300,
              paced=300, pairs=1_000, links=3_000, edits=20, memory=(300, 600))

FIGURES: dict[str, Any] = {}
"""What the sections measured, for the summary (a section that failed leaves its part out)."""


@functools.cache
def sync_run(size: int, changes: int) -> dict[str, Any]:
    """`sync.py`'s passes at `size`, measured once for the sync and quota sections."""
    return asyncio.run(sync.measure(size, changes))


def goal(met: bool) -> str:
    return "met" if met else "**NOT met**"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def sync_section(sizes: Sizes) -> str:
    parts, idle_rows = [], []
    for size in sizes.sync:
        try:
            result = sync_run(size, sizes.changes)
        except Exception as error:  # one size failing leaves the others' figures standing
            parts.append(f"**N = {size:,}**: not measured, the benchmark failed with `{error!r}`.")
            continue
        rows = []
        for name in sync.PASSES:
            row = result[name]
            rows.append([sync.label(name, sizes.changes), row["keap_calls"], row["keap_minimum"], row["keap_full_scan"],
                         row["invoiced_calls"], row["invoiced_full_scan"], f"{row['keap_writes']} / {row['invoiced_writes']}",
                         row["seconds"]])
        failed = [name for name in sync.PASSES if result[name]["exit_code"] != 0]
        parts.append(f"**N = {size:,}** (a third companies, a third contacts, a third products); initial sync "
                     f"{result['records_per_second']} records/s."
                     + (f" **Passes that exited non-zero: {', '.join(failed)}.**" if failed else "") + "\n\n" + table(
                         ["pass", "Keap calls", "Keap minimum", "Keap full-scan", "Invoiced calls", "Invoiced full-scan",
                          "writes Keap / Invoiced", "seconds"], rows))
        idle_rows.append([f"{size:,}", *(f"{result[name]['keap_calls']} / {result[name]['invoiced_calls']}"
                                         for name in ("idle", "idle_without_keap", "echo", "reconcile"))])
        FIGURES.setdefault("sync", {})[size] = result
    command = sizes.command("sync.py", sizes=",".join(map(str, sizes.sync)), changes=sizes.changes)
    return "\n\n".join([
        "## API calls of sync passes\n\n"
        "Keap calls are the scarce resource. *Keap minimum*: one read per Keap stream plus the Keap writes the pass "
        "cannot avoid (a create per record at first, one per change made in Invoiced later); for a reconcile, one "
        "listing page per 1,000 linked records of each Keap object. *Full-scan*: what a reader that lists every "
        "record of both sides each pass (Sesam's public connector) costs, plus the same writes. The initial sync "
        "also stamps each new Keap id into the Invoiced record's metadata (one Invoiced write per record: links can "
        "be rebuilt if the state database is lost). *Idle, Keap not read*: the pass `run` makes between its Keap "
        "polls while Keap's hooks are verified (`read_keap=False`). *Reconcile*: the daily full id scans that find "
        "deletes no event or hook reported (`Syncer.reconcile`). Emulators in a child process, rate limits lifted, "
        "no pacing: these are calls and our own speed, not waiting.\n\n"
        "Idle and echo calls by size (Keap / Invoiced):\n\n"
        + table(["links", "idle pass", "idle, Keap not read", "echo pass", "reconcile"], idle_rows),
        *parts, f"Reproduce: `{command}`"])


def quota_section(sizes: Sizes) -> str:
    check = asyncio.run(quota.hook_check_calls())
    days = [quota.idle_day(sync_run(size, sizes.changes), check["calls_per_check"]) for size in sizes.quota]
    FIGURES["quota"] = {day["records"]: day for day in days}
    schedule = days[0]["schedule"]
    rows = []
    for day in days:
        for mode, title in (("with_hooks", "hooks verified"), ("without_hooks", "hooks off")):
            figures = day[mode]
            parts = " + ".join(f"{times:,.0f} × {calls}" for times, calls in figures["parts"].values())
            rows.append([f"{day['records']:,}", title, " + ".join(figures["parts"]), parts, f"{figures['calls']:,}",
                         f"{figures['share']:.2%}", f"≤ {figures['goal']:.0%}: {goal(figures['met'])}"])
    command = sizes.command("quota.py", sizes=",".join(map(str, sizes.quota)))
    return ("## Keap quota of an idle day\n\n"
            f"Keap calls of a day of `invoiced-keap run` in which nothing changes, as a share of a personal access "
            f"token's {days[0]['quota_per_day']:,} calls a day. Measured: the Keap calls of each pass in *API calls of "
            f"sync passes* above (an idle poll that reads Keap, one that does not, a reconcile of every flow) and of "
            f"one hook check ({check['calls_per_check']} Keap call{'' if check['calls_per_check'] == 1 else 's'}: `ensure_hooks` with all {check['hooks']} hooks "
            f"Verified, against the Keap emulator). Read from the code: a poll every {schedule['poll_interval']:.0f} s "
            f"(`Schedule.poll_interval`), Keap read only every {schedule['keap_poll_interval']:.0f} s while its hooks "
            f"are verified (`Schedule.keap_poll_interval`), a hook check every {schedule['hook_check_interval']:.0f} s "
            f"(`service.HOOK_CHECK_INTERVAL`), a reconcile every {schedule['full_scan_interval']:.0f} s "
            f"(`Schedule.full_scan_interval`). *Hooks off* is `keap_hooks = false`: every poll reads Keap and no "
            f"hooks are checked (hooks that stay unverified are polled the same, plus their checks' re-verify "
            f"attempts).\n\n"
            + table(["links", "Keap hooks", "jobs", "times a day × Keap calls", "Keap calls a day", "share of quota",
                     "goal"], rows)
            + f"\n\nReproduce: `{command}` (it runs `sync.py`'s passes at those sizes)")


def reads_section(sizes: Sizes) -> str:
    reads = asyncio.run(connectors.read_calls(sizes.reads))
    streams = list(next(iter(reads.values())))
    rows = [[read, *(f"{per[s]['calls']} ({per[s]['records']:,})" for s in streams),
             sum(per[s]["calls"] for s in streams)] for read, per in reads.items()]
    command = sizes.command("connectors.py", records=sizes.reads)
    return (f"## Reads, {sizes.reads:,} records of each record type\n\n"
            "Calls per read (records returned in brackets), connectors alone; 50 changes means 50 edits on "
            "each record type on both sides. Each stream is read from its own watermark; Keap contacts are one read "
            "for both contact flows (contacts and company_contacts), with the fields of both, as a pass reads them.\n\n" + table(["read", *streams, "total calls"], rows) +
            f"\n\nReproduce: `{command}`")


def rate_limit_section(sizes: Sizes) -> str:
    runs = {
        f"real time, scaled limit {connectors.SCALED_LIMIT['per_second']}/s {connectors.SCALED_LIMIT['per_minute']}/min":
            asyncio.run(connectors.real_time_throughput(sizes.real_time_seconds)),
        f"emulator time, Keap PAT limit {connectors.PAT_LIMIT['per_second']}/s {connectors.PAT_LIMIT['per_minute']}/min":
            asyncio.run(connectors.emulator_time_throughput(sizes.virtual_calls)),
    }
    rows = [[run, r["calls"], r["seconds"], r["calls_per_second"], f"{r['limit_per_second']:.2f}",
             f"{r['share_of_limit']:.1%}", r["window_allowance"], f"{r['share_of_allowance']:.1%}", json.dumps(r["statuses"])]
            for run, r in runs.items()]
    command = sizes.command("connectors.py", records=100, seconds=sizes.real_time_seconds, virtual_calls=sizes.virtual_calls)
    return ("## Achieved share of the Keap rate limit\n\n"
            "The paced Keap connector against a rate-limited Keap emulator; the binding limit is the smaller of the "
            "per-second and per-minute ones. The emulator-time run uses Keap's real PAT limits over minutes of "
            "emulator time (the pacer sleeps on that clock); its seconds run to the moment the next call could go. "
            "*Average share*: calls per second over the run against the binding limit per second. It can pass 100 % "
            "with no call over the limit: Keap counts calls in fixed windows of the clock (each second, each minute), "
            "not as an average, so a run that ends part-way into a window had that window's whole allowance, and "
            "the shorter the run, the more that counts: at 240/min, 300 calls go in 66 s (240 in the first "
            "minute's first 24 s at 10/s, 60 more at the next minute's start), an average of 4.55/s against 4/s, "
            "113.6 %. *Windows allowed*: the most calls Keap's windows admit between the run's first call and its "
            "last answer (each minute: its limit, or the per-second limit times the seconds of it the run touched, "
            "whichever is smaller); *share of that* is exact: it passes 100 % only if a call was admitted over the "
            "limit, and a run falls short of 100 % by the part-windows at its ends it did not fill. Statuses: every "
            "answer the connector got (a 429 would show the limit reached).\n\n" +
            table(["run", "calls", "seconds", "calls/s", "limit/s", "average share", "windows allowed", "share of that",
                   "statuses"], rows) +
            f"\n\nReproduce: `{command}` (its read figures at 100 records are a by-product)")


def paced_section(sizes: Sizes) -> str:
    result = asyncio.run(paced.paced_initial_sync(sizes.paced))
    FIGURES["paced"] = result
    limits = result["limits"]
    rows = [[f"{result['records']:,}", result["keap_calls"], f"{result['emulator_minutes']:.3f}",
             f"{result['minimum_minutes']:.3f}", f"{result['ratio']:.3f}", f"{result['average_rate_minutes']:.3f}",
             f"{result['ratio_to_average_rate']:.3f}", json.dumps(result["statuses"])]]
    failed = "" if result["exit_code"] == 0 else f" **The pass exited {result['exit_code']}.**"
    command = sizes.command("paced.py", records=sizes.paced)
    return ("## Paced initial sync against the physical limit\n\n"
            f"An initial sync of {result['records']:,} Invoiced records (a third organisations, persons, items) into an "
            f"empty Keap that enforces a personal access token's limits ({limits['per_second']}/s, "
            f"{limits['per_minute']}/min, {limits['per_day']:,}/day), the Keap connector paced at the same limits as "
            "in production, all on emulator time: the clock moves only when the pacer sleeps, once the calls in "
            "flight are answered, so our own processing and the network take none of it. *Physical minimum*: the "
            "soonest the pass's last Keap call may go under both limits, the pass starting at a minute's start "
            "(whole minutes of 240 calls, the rest at 10 a second). *Ratio*: emulator minutes taken over that "
            "minimum; 1 means the pass ran at the limit, and it cannot be under 1. *At 240/min*: the calls at an "
            "average 240 a minute, and the ratio to that, which can be under 1 with no call over the limit: Keap "
            "counts calls in fixed windows of the clock, so the calls of a last, part-filled minute go in a burst at "
            "10 a second at its start, not spread over the minute (a pass of 303 calls can end at 66 s, where 303 / "
            f"240 a minute is 76 s).{failed}\n\n"
            + table(["records", "Keap calls", "emulator minutes", "physical minimum min", "ratio",
                     "at 240/min min", "ratio to 240/min", "Keap statuses"], rows) + f"\n\nReproduce: `{command}`")


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
            "only). A real pass streams in the same way: the records it reads are spooled to a temporary SQLite "
            "database on disk and its plans are built a batch at a time; see *Peak memory of sync passes* for what "
            "whole passes take, interpreter, connections and HTTP included.\n\n"
            + table(["figure", "value"], rows) + f"\n\nReproduce: `{command}`")


MEMORY_RUNS: tuple[tuple[str, Callable[[int, str, str | None], dict[str, Any]]], ...] = (
    ("companies", memory.measure), ("all four", memory.measure_all_flows))
"""The memory section's scenarios: the companies flow alone (`one_pass.py`), and whole `invoiced-keap sync`
passes of all four flows (`memory.py --all-flows`)."""


@functools.cache
def memory_runs(sizes: Sizes) -> dict[tuple[str, str, int], Future[dict[str, Any]]]:
    """Every run of the memory section, started now on `sizes.jobs` threads, the longest first (the largest size, all
    four flows before the companies flow alone): a run is child processes (emulators, passes), its thread only
    waits, so they go on while the other sections run. Keyed (flows, database, records); PostgreSQL runs only with
    a server given."""
    pool = ThreadPoolExecutor(max_workers=sizes.jobs, thread_name_prefix="memory")
    runs = {(flows, database, size): pool.submit(measure, size, database, sizes.postgres_url)
            for size in sorted(sizes.memory, reverse=True) for flows, measure in reversed(MEMORY_RUNS)
            for database in sizes.databases if database != "postgresql" or sizes.postgres_url}
    pool.shutdown(wait=False)
    return runs


def memory_section(sizes: Sizes) -> str:
    rows, notes, peaks = [], [], {}
    runs = memory_runs(sizes)
    for flows, _ in MEMORY_RUNS:
        for database in sizes.databases:
            for size in sizes.memory:
                if (flows, database, size) not in runs:
                    notes.append(f"{flows}, {database} at {size:,}: not measured, no PostgreSQL server given "
                                 "(`--postgres-url` or $INVOICED_KEAP_TEST_POSTGRES_URL).")
                    continue
                try:
                    run = runs[(flows, database, size)].result()
                except Exception as error:  # one database or size failing leaves the others' figures standing
                    notes.append(f"{flows}, {database} at {size:,}: not measured, the benchmark failed with `{error!r}`"
                                 + (f": `{error.stderr.strip().splitlines()[-1]}`" if getattr(error, "stderr", None) else "")
                                 + ".")
                    continue
                for kind, result in run["passes"].items():
                    peak = result["peak_rss_mb"]
                    peaks[(flows, database, size, kind)] = peak
                    rows.append([flows, f"{size:,}", database, kind.replace("_", " "), peak, goal(peak <= MEMORY_GOAL_MB),
                                 json.dumps(result["calls"])])
    FIGURES["memory"] = peaks
    largest = max(sizes.memory)
    verdicts = []
    for flows, _ in MEMORY_RUNS:
        at_largest = {key: peak for key, peak in peaks.items() if key[0] == flows and key[2] == largest}
        verdicts.append(f"Goal: every pass of {flows} at {largest:,} records ≤ {MEMORY_GOAL_MB} MB on "
                        f"{' and '.join(sizes.databases)}: "
                        + (goal(all(peak <= MEMORY_GOAL_MB for peak in at_largest.values()))
                           if len(at_largest) == len(memory.PASS_KINDS) * len(sizes.databases) else "not established (figures missing)")
                        + (f", highest {max(at_largest.values())} MB." if at_largest else "."))
    options = {"sizes": ",".join(map(str, sizes.memory)), "databases": ",".join(sizes.databases)}
    commands = [sizes.command("memory.py", **options), sizes.command("memory.py", **options) + " --all-flows"]
    return ("## Peak memory of sync passes\n\n"
            "Whole-process peak resident memory (the kernel's `VmHWM`, not tracemalloc), each pass in a child process "
            "of its own (interpreter and imports included); the emulators run in another. *Companies*: one pass of "
            "the companies flow (`one_pass.py`: the engine alone, about 75 MB before any record) over N companies. "
            "*All four*: the command `invoiced-keap sync --allow-mass-change` as a user runs it (its settings, its "
            "imports, a reconcile when one is due: the first pass runs one), over N links of all four flows: 40 % "
            "organisation customers, one person under each (company_contacts, 40 %), 10 % person customers, 10 % "
            "items; Keap's pacing lifted in its settings file (pacing changes waiting, not memory). Passes stream: "
            "the records a pass reads are spooled to temporary SQLite databases on disk, and its pairs, new pairs "
            "and creates are planned a batch at a time. *Initial*: the Invoiced records synced into an empty Keap. "
            "*Echo*: the pass after it, reading back the id stamps and the Keap records created. *All changed*: every "
            "linked Keap record renamed, the pass allowed past the breaker (N Invoiced updates). State in SQLite (a "
            "file in a temporary directory) or PostgreSQL (a fresh schema, dropped afterwards). API calls: the pass's, "
            "and for all four the reconcile's after it when one ran.\n\n"
            + "\n".join(verdicts) + "\n\n"
            + table(["flows", "records", "database", "pass", "peak RSS MB", f"≤ {MEMORY_GOAL_MB} MB", "API calls"], rows)
            + "".join(f"\n\n{note}" for note in notes)
            + "\n\nReproduce: " + " and ".join(f"`{command}`" for command in commands)
            + " (PostgreSQL at `--postgres-url`, default $INVOICED_KEAP_TEST_POSTGRES_URL)")


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


def summary(sizes: Sizes) -> str:
    """The figures the report exists for, copied from the sections below (never re-measured)."""
    parts = ["## Summary\n\nThe headline figures, copied from the sections below (measured by this run)."]
    if "sync" in FIGURES:
        parts.append(table(["links", "idle pass: Keap / Invoiced calls", "echo pass: Keap / Invoiced calls"], [
            [f"{size:,}", f"{result['idle']['keap_calls']} / {result['idle']['invoiced_calls']}",
             f"{result['echo']['keap_calls']} / {result['echo']['invoiced_calls']}"]
            for size, result in FIGURES["sync"].items()]))
    if FIGURES.get("memory"):
        kinds = list(dict.fromkeys(kind for *_, kind in FIGURES["memory"]))
        runs = list(dict.fromkeys(tuple(run) for *run, _ in FIGURES["memory"]))
        parts.append(f"Peak RSS (MB, whole process) of each pass; goal ≤ {MEMORY_GOAL_MB} MB:\n\n" + table(
            ["flows", "records", "database", *(kind.replace("_", " ") for kind in kinds)],
            [[flows, f"{size:,}", database, *(cell(FIGURES["memory"].get((flows, database, size, kind))) for kind in kinds)]
             for flows, database, size in runs]))
    if "quota" in FIGURES:
        parts.append("Keap quota of an idle day (share of a personal access token's day):\n\n" + table(
            ["links", "hooks verified (goal ≤ 2 %)", "hooks off (goal ≤ 15 %)"],
            [[f"{size:,}", *(f"{day[mode]['calls']:,} calls, {day[mode]['share']:.2%}: {goal(day[mode]['met'])}"
                             for mode in ("with_hooks", "without_hooks"))] for size, day in FIGURES["quota"].items()]))
    if "paced" in FIGURES:
        result = FIGURES["paced"]
        parts.append(f"Paced initial sync of {result['records']:,} records: {result['keap_calls']:,} Keap calls in "
                     f"{result['emulator_minutes']:.3f} emulator minutes against a physical minimum of "
                     f"{result['minimum_minutes']:.3f} (the soonest its last call could go under Keap's limits): "
                     f"ratio {result['ratio']:.3f} ({result['ratio_to_average_rate']:.3f} of the calls at an average "
                     f"240 a minute, {result['average_rate_minutes']:.3f} min).")
    missing = [name for name in ("sync", "quota", "paced", "memory") if not FIGURES.get(name)]
    if missing:
        parts.append(f"Not in this summary because their section failed: {', '.join(missing)}.")
    return "\n\n".join(parts)


def cell(peak: float | None) -> str:
    if peak is None:
        return "not measured"
    return f"{peak}" if peak <= MEMORY_GOAL_MB else f"**{peak} (over)**"


SECTIONS: list[Callable[[Sizes], str]] = [
    sync_section, quota_section, reads_section, rate_limit_section, paced_section, planning_section, memory_section,
    propagation_section, chaos_section,
]


def guarded(section: Callable[[Sizes], str], sizes: Sizes) -> str:
    """A section, or why it could not be measured (the rest of the report still runs)."""
    try:
        return section(sizes)
    except Exception as error:  # a failed benchmark is reported, never hidden or replaced by a figure
        title = section.__name__.removesuffix("_section").replace("_", " ")
        return f"## {title}\n\nNot measured: the benchmark failed with `{error!r}`.\n\n```\n{traceback.format_exc()}```"


QUIET_FIRST: tuple[Callable[[Sizes], str], ...] = (propagation_section,)
"""Sections measured before the memory runs start: latencies, which a loaded machine would distort."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script (not for the docs)")
    parser.add_argument("--postgres-url", default=os.environ.get("INVOICED_KEAP_TEST_POSTGRES_URL"),
                        help="PostgreSQL server for the memory section (a fresh schema per run)")
    parser.add_argument("--jobs", type=int, default=1, help="memory runs at a time, beside the other sections")
    arguments = parser.parse_args()
    sizes = replace(QUICK if arguments.quick else Sizes(), postgres_url=arguments.postgres_url, jobs=arguments.jobs)
    started = time.monotonic()
    written: dict[Callable[[Sizes], str], str] = {}
    for section in [*QUIET_FIRST, *(section for section in SECTIONS if section not in QUIET_FIRST)]:
        if section not in QUIET_FIRST:
            memory_runs(sizes)  # from here on in the background
        began = time.monotonic()
        written[section] = guarded(section, sizes)
        print(f"{section.__name__}: {time.monotonic() - began:.0f} s", flush=True)
    where = machine()
    header = (
        "# Benchmarks\n\n"
        f"Written by `python benchmarks/report.py{' --quick' if arguments.quick else ''} --jobs {sizes.jobs}` on "
        f"{where['date']} in {time.monotonic() - started:.0f} s: {where['cpus']} CPUs, Python {where['python']}, "
        f"{where['platform']}. Every figure was measured by that run against the in-repo emulators over real HTTP "
        "(except the chaos figures, copied from their result files); each section names the command that "
        "reproduces it. Call counts do not depend on the machine or its load; timings do: the "
        f"memory runs went on in the background ({sizes.jobs} at a time) while every section but the propagation "
        "delay was measured."
    )
    Path(arguments.out).write_text("\n\n".join([header, summary(sizes), *(written[section] for section in SECTIONS)]) + "\n")
    print(f"wrote {arguments.out}")


if __name__ == "__main__":
    main()

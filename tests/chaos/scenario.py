"""The chaos scenario: seed, race random edits against sync passes under faults and SIGKILLs, then converge.

    with chaos_world(tmp_path, seed=7) as world:
        figures = run_chaos(world, edits=60)      # faults on, passes killed at random moments
        figures.passes_to_converge, problems = converge(world)   # faults off: at most two clean passes
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from invoiced_keap.connectors.invoiced import CONTACT
from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.keap.resources import RESOURCES
from invoiced_keap.state import Store
from invoiced_keap.state.models import AuditEntry, AuditOperation, Link, LinkStatus, LossyCarryRow, Run
from tests.chaos.checker import ConflictRow, LinkRow, LossyRow, Snapshot, Verdict, WriteRow, check
from tests.chaos.world import KEAP_OBJECTS, ChaosWorld, Served

PASS_TIMEOUT = 120.0
EDIT_GAP = 0.15  # mean seconds between two user edits
KILL_CHANCE = 0.5  # of a pass being SIGKILLed at a random moment (every pass until one kill has landed)
CLEAN_PASSES = 2
RECONCILE_AND_SYNC = "reconcile,sync"  # deletes of linked Keap records (and archived items) are found by the id scans
RECONCILE_CHANCE = 0.2  # the scheduled scans, compressed: without them deletes pile up and trip the circuit breaker


@dataclass
class ChaosFigures:
    """What a run did; `benchmarks/results/chaos.json` holds the long run's."""

    seed: int
    edits: int
    passes: int = 0
    kills: int = 0
    storms: int = 0
    passes_to_converge: int | None = None
    api_calls: int = 0
    duration_s: float = 0.0
    open_failures: int = 0
    conflicts: int = 0
    links: int = 0
    raced_edits: int = 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def chaos_world(tmp_path: Path, seed: int, *, invoiced_key: str = "chaos-test-key", keap_key: str = "chaos-test-key",
                size: int = 8, env: dict[str, str] | None = None) -> Iterator[ChaosWorld]:
    """Both emulators on the real clock, with no rate limits until a storm; the state in SQLite under `tmp_path`."""
    invoiced = InvoicedEmulator(api_key=invoiced_key, random_seed=seed, webhook_retry_delays=())
    keap = KeapEmulator(api_key=keap_key, random_seed=seed)
    servers = [Served(invoiced), Served(keap)]
    logs = tmp_path / "passes"
    logs.mkdir()
    for served in servers:
        served.start()
    try:
        world = ChaosWorld(servers[0], servers[1], f"sqlite:///{tmp_path}/chaos.db", random.Random(seed), log_dir=logs,
                           env={"INVOICED_API_KEY": invoiced_key, "KEAP_API_KEY": keap_key,
                                "SYNC_DRIVER_FAILURE_RETRY_SECONDS": "0.5", **(env or {})})
        world.invoiced.call(lambda: world.seed(size))
        world.faults_off()
        yield world
    finally:
        for served in servers:
            served.stop()


def run_chaos(world: ChaosWorld, edits: int) -> ChaosFigures:
    """`edits` random user edits racing sync passes, each pass under fresh faults (10 % 5xx, dropped connections,
    latency, sometimes a 429 storm) and, by chance, SIGKILLed at a random moment; the edits go on past `edits`
    until a kill has landed mid-pass (every pass is given one until then), so each run tests crash safety."""
    rng = world.rng
    figures = ChaosFigures(seed=0, edits=edits)
    started = time.monotonic()
    done = 0
    while done < edits or not figures.kills:
        storm = rng.random() < 0.3
        figures.storms += storm
        world.set_faults(storm=storm, latency_ms=rng.randint(0, 30), error_rate=0.1, drop_rate=0.03)
        kill_at = time.monotonic() + rng.uniform(0.6, 3.0) if not figures.kills or rng.random() < KILL_CHANCE else None
        with world.sync_process(RECONCILE_AND_SYNC if rng.random() < RECONCILE_CHANCE else "sync") as process:
            figures.passes += 1
            deadline = time.monotonic() + PASS_TIMEOUT
            while process.poll() is None and time.monotonic() < deadline:
                if done < edits or not figures.kills:
                    world.random_edit()
                    done += 1
                time.sleep(rng.uniform(0, 2 * EDIT_GAP))
                if kill_at is not None and time.monotonic() >= kill_at:
                    break
            killed = process.poll() is None
        if killed:
            figures.kills += 1
    figures.edits = done
    figures.duration_s = round(time.monotonic() - started, 1)
    return figures


def converge(world: ChaosWorld, figures: ChaosFigures) -> list[str]:
    """Faults off, then clean passes until the checker finds nothing (at most `CLEAN_PASSES`); the problems left."""
    world.faults_off()
    verdict = Verdict()
    for clean in range(1, CLEAN_PASSES + 1):
        with world.sync_process(RECONCILE_AND_SYNC) as process:
            process.wait(timeout=PASS_TIMEOUT)
        verdict = check(snapshot(world), world.edits, world.user_keap_ids)
        if not verdict.problems:
            figures.passes_to_converge = clean
            break
    figures.raced_edits = len(verdict.raced)
    figures.api_calls = world.api_calls()
    with Store(world.database_url) as store:
        counts = store.status_counts()
        figures.open_failures = sum(counts.open_failures.values())
        figures.conflicts = counts.conflicts
        figures.links = sum(counts.active_links.values())
    return verdict.problems


def snapshot(world: ChaosWorld) -> Snapshot:
    """Both emulators' records (read on their own loops) and every row of the state the checker needs."""
    invoiced: InvoicedEmulator = world.invoiced_emulator
    keap: KeapEmulator = world.keap_emulator
    customers, items, contacts = world.invoiced.call(lambda: (
        {str(c["id"]): dict(c) for c in invoiced.customers.values()},
        {item_id: dict(i) for item_id, i in invoiced.items.items() if item_id not in invoiced.archived_item_ids},
        {str(contact["id"]): contact for contact in (CONTACT.as_read(dict(c)) for c in invoiced.contacts.values())},
    ))
    keap_records = world.keap.call(lambda: {
        collection: {str(r["id"]): RESOURCES[collection].get(keap.store, str(r["id"])) for r in keap.store.records(collection)}
        for collection in KEAP_OBJECTS
    })
    with Store(world.database_url) as store:
        with store.transaction() as tx:
            links = list(tx.session.scalars(select(Link)))
            runs = {run.id: run.started_at for run in tx.session.scalars(select(Run))}
            updates = list(tx.session.scalars(select(AuditEntry).where(AuditEntry.operation == AuditOperation.UPDATE)))
            unlinks = list(tx.session.scalars(select(AuditEntry).where(AuditEntry.operation == AuditOperation.UNLINK)
                                              .order_by(AuditEntry.id)))
            lossy = list(tx.session.scalars(select(LossyCarryRow)))
        by_id = {link.id: link for link in links}
        closing_pass_started = {(entry.flow, entry.record_id, (entry.before or {}).get("keap_id")): runs[entry.run_id]
                                for entry in unlinks if entry.run_id in runs}
        return Snapshot(
            customers=customers,
            items=items,
            contacts=contacts,
            keap=keap_records,
            links=[LinkRow(link.flow, link.invoiced_id, link.keap_id, link.status == LinkStatus.ACTIVE, link.closed_reason,
                           None if link.status == LinkStatus.ACTIVE
                           else closing_pass_started.get((link.flow, link.invoiced_id, link.keap_id), link.updated_at),
                           link.created_at) for link in links],
            failures={(f.flow, f.side, f.record_id): f.message for f in store.failures()},
            review={(item.flow, item.invoiced_id) for item in store.review_items()},
            conflicts=[ConflictRow(c.flow, by_id[c.link_id].invoiced_id, by_id[c.link_id].keap_id, c.field_group, c.winner)  # type: ignore[arg-type]
                       for c in store.conflicts(limit=1_000_000)],
            writes=[WriteRow(entry.flow, entry.side, entry.record_id, frozenset(entry.after or {}),  # type: ignore[arg-type]
                             runs[entry.run_id], entry.created_at) for entry in updates if entry.run_id in runs],
            intents=len(intents := store.intents()),
            intent_sources={(intent.flow, intent.source_side, intent.source_id) for intent in intents},  # type: ignore[misc]
            lossy={LossyRow(note.flow, by_id[note.link_id].invoiced_id, by_id[note.link_id].keap_id, note.side, note.field_group)  # type: ignore[arg-type]
                   for note in lossy if note.link_id in by_id},
        )

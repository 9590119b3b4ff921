"""Applying a flow's plans: writes to both systems, with intents, shadows, audit, conflicts and failures.

State changes of a batch of records are queued (`Applier.pending`) and committed in one transaction
(`commit`), so a link, its shadows, the closing of its intent, its audit entries and the resolution of
its failures land together or not at all. The rows a batch of creates adds (links of new twins, closed
intents, audit entries) are queued as data and written in bulk, a few statements per batch: one ORM
round trip per row was a quarter of an initial sync's time.

Shadows keep, besides each side's neutral values and update time, the side's raw mapped fields
(`Snapshot.record`: the rule fields, id and update time). A pair whose one side changed is planned
against the other side's stored record, with no re-read: Keap contact arrays (EMAIL1 among EMAIL2,
BILLING among SHIPPING) are merged into the stored array. This costs a JSON column instead of one
`ids==` bulk read per 1000 changed pairs; it cannot go stale unnoticed, because any Keap edit (also
to a slot we do not own) moves `update_time`, so the record comes back in the next incremental read
and its stored record is refreshed. The window left is an edit made between our read and our write,
which a read-before-write would narrow but not close.

Errors: `RecordRejected` (4xx) and `TransientError` (retries spent) become failures keyed by the
*source* record (the side and id whose change we were carrying; the message names the system that
refused) and the pass goes on; `NotFound` on a write means the target is gone and goes to the
deletes policy; `FatalError` propagates after the caller commits what is done.

A create first persists its intent (with the lookup key: `match.match_key_of`), then calls the API
(Invoiced creates send the intent's idempotency key), then commits link + shadows + intent removal,
then stamps the Keap id into the Invoiced record's metadata (`flow.metadata_key`, merged). A stamp the
API refused (its metadata already full) keeps the record's failures open: each later sync of the pair
stamps again, and only a stamp that is made resolves them (`unstamped`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from invoiced_keap.connectors.errors import ApiError, FatalError, NotFound, RecordRejected, TransientError
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.engine.changes import INVOICED_RESOURCES, KEAP_STREAMS
from invoiced_keap.engine.options import FlowOptions
from invoiced_keap.engine.plan import UPDATED_FIELD, LinkShadows, PairPlan, SideShadow, plan_create, shadow_of
from invoiced_keap.engine.report import Action, FlowReport
from invoiced_keap.flows import SIDES, Flow, Side, other_side
from invoiced_keap.mapping import Record, epoch_seconds
from invoiced_keap.state import AuditNote, AuditOperation, NewLink, Snapshot, Store, Transaction
from invoiced_keap.state.models import Intent, Link

T = TypeVar("T")
StateChange = Callable[[Transaction], object]


def raw_fields(flow: Flow, side: Side, record: Record) -> Record:
    """The part of a record a later write needs: id, update time and every field a rule maps."""
    names = {"id", UPDATED_FIELD[side]}
    for rule in flow.rules:
        names.update(rule.invoiced_fields if side == "invoiced" else rule.keap_fields)
    return {name: record[name] for name in sorted(names) if name in record}


def snapshot(flow: Flow, side: Side, record: Record) -> Snapshot:
    return Snapshot(shadow_of(flow, side, record).values, record.get(UPDATED_FIELD[side]), raw_fields(flow, side, record))


def link_shadows(link: Link) -> LinkShadows | None:
    """The pair's shadows as the planner takes them; None until both sides have one."""
    shadows = [link.shadow(side) for side in SIDES]  # type: ignore[arg-type]
    if any(shadow is None for shadow in shadows):
        return None
    return LinkShadows(*(SideShadow(s.field_values, epoch_seconds(s.source_updated)) for s in shadows))  # type: ignore[union-attr]


def stored_record(link: Link, side: Side) -> Record | None:
    shadow = link.shadow(side)  # type: ignore[arg-type]
    return dict(shadow.record) if shadow is not None and shadow.record else None


def after_write(side: Side, read: Record, answer: Record, writes: Mapping[str, Any]) -> Record:
    """What to remember of a record we wrote: the API's answer for the fields written and the update time, the
    record as read for the rest. An edit someone made between our read and our write is in the answer but was
    never synced; remembering it would mark it seen and lose it (as its update time moved, the next read brings it)."""
    return {**read, **{key: answer.get(key) for key in writes}, UPDATED_FIELD[side]: answer.get(UPDATED_FIELD[side])}


def side_id(side: Side, invoiced_id: str, keap_id: str) -> str:
    return invoiced_id if side == "invoiced" else keap_id


class PassStopped(Exception):
    """The pass was asked to stop (`Applier.should_stop`): what was in flight is committed, no record more."""


@dataclass(frozen=True)
class Failed:
    """A call that ended in a recorded failure."""

    error: ApiError


@dataclass
class PairWork:
    """A linked pair with both sides' current records and its plan."""

    link: Link
    invoiced: Record
    keap: Record
    plan: PairPlan


@dataclass
class Applier:
    """Writes and state changes for one flow's pass (see the module docstring)."""

    flow: Flow
    options: FlowOptions
    store: Store
    invoiced: InvoicedConnector
    keap: KeapConnector
    report: FlowReport
    run_id: int | None
    dry_run: bool
    concurrency: int = 8
    should_stop: Callable[[], bool] = lambda: False
    open_failures: set[tuple[str, str]] = field(default_factory=set)
    unstamped: set[str] = field(default_factory=set)  # Invoiced ids whose id stamp is an open failure
    pending: list[StateChange] = field(default_factory=list)
    new_links: list[NewLink] = field(default_factory=list)
    closed_intents: list[tuple[Side, str]] = field(default_factory=list)
    audits: list[AuditNote] = field(default_factory=list)
    to_stamp: list[tuple[Record, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.limit = asyncio.Semaphore(self.concurrency)

    # --- plumbing --------------------------------------------------------------------------------
    def commit(self) -> None:
        """Commit the queued state changes in one transaction (nothing in a dry run)."""
        changes, self.pending = self.pending, []
        new_links, self.new_links = self.new_links, []
        closed_intents, self.closed_intents = self.closed_intents, []
        audits, self.audits = self.audits, []
        if self.dry_run or not (changes or new_links or closed_intents or audits):
            return
        with self.store.transaction() as tx:
            for change in changes:
                change(tx)
            tx.add_links(self.flow.name, new_links)
            tx.close_intents(self.flow.name, closed_intents)
            tx.append_audits(audits)

    async def each(self, work: Iterable[T], step: Callable[[T], Awaitable[object]]) -> None:
        """Run `step` over `work` with at most `concurrency` in flight.

        Once `should_stop()` says so, or a step meets a fatal error (bad credentials, the day's quota
        used up), no further item starts; those in flight finish and are committed, then `PassStopped`
        or the fatal error ends the pass. Siblings are not cancelled: a create cut off mid-call would
        leave its intent to the crash path for nothing."""
        fatal: list[FatalError] = []

        async def bounded(item: T) -> None:
            async with self.limit:
                if fatal or self.should_stop():
                    return
                try:
                    await step(item)
                except FatalError as error:
                    fatal.append(error)

        async with asyncio.TaskGroup() as group:
            for item in work:
                group.create_task(bounded(item))
        if fatal:
            self.commit()
            raise fatal[0]
        if self.should_stop():
            self.commit()
            raise PassStopped

    async def guarded(
        self, system: Side, source: Side, source_id: str, operation: str, payload: Any, call: Awaitable[T]
    ) -> T | Failed:
        """The call to `system`'s API, or `Failed` after queueing a failure for the source record it
        carries (NotFound is re-raised: the caller knows what a missing record means there)."""
        try:
            return await call
        except NotFound:
            raise
        except (RecordRejected, TransientError) as error:
            message = f"{system}: {error.message}"
            self.report.add(Action(self.flow.name, "fail", source, source_id, {"operation": operation, "error": message}), "failed")
            problem_field = error.field
            self.pending.append(lambda tx: tx.record_failure(
                self.flow.name, source, source_id, operation, message, field=problem_field, payload=payload))  # type: ignore[arg-type]
            return Failed(error)

    def _synced(self, invoiced_id: str, keap_id: str) -> None:
        """Resolve the open failures of a pair that synced (the Invoiced record's wait for its stamp, see `stamp`)."""
        for side in SIDES:
            record_id = side_id(side, invoiced_id, keap_id)
            if side == "invoiced" and invoiced_id in self.unstamped:
                continue
            if (side, record_id) in self.open_failures:
                self.open_failures.discard((side, record_id))
                self.pending.append(lambda tx, side=side, record_id=record_id: tx.resolve_failures(self.flow.name, side, record_id))

    def _audit(self, side: Side, record_id: str, operation: AuditOperation, before: Any = None, after: Any = None) -> None:
        self.audits.append(AuditNote(self.flow.name, side, record_id, operation, before, after, self.run_id))  # type: ignore[arg-type]

    async def _write(self, side: Side, record_id: str, changes: Record, current: Record) -> Record:
        if side == "keap":
            return await self.keap.update(KEAP_STREAMS[self.flow.name], record_id, changes, current=current)
        return await self.invoiced.update(INVOICED_RESOURCES[self.flow.name], record_id, changes)

    # --- linked pairs ----------------------------------------------------------------------------
    def record_conflicts(self, batch: Iterable[PairWork]) -> None:
        """Commit the conflicts a batch of plans settles before any of its writes: a pass killed after a write
        must not leave the value it overwrote without a record (DESIGN §2: every conflict is recorded). A write
        that then fails is planned again next pass, and its conflict recorded again."""
        for work in batch:
            if work.plan.conflicts:
                record = self._settled(work.link.invoiced_id, work.plan)
                self.pending.append(lambda tx, record=record, link=work.link: record(tx, link))
        self.commit()

    async def sync_pair(self, work: PairWork) -> None:
        """Write the plan's changes (its conflicts are recorded first: `record_conflicts`); store both shadows
        only when every write went through."""
        link, plan = work.link, work.plan
        current: dict[Side, Record] = {"invoiced": work.invoiced, "keap": work.keap}
        for side in SIDES:
            writes = plan.writes(side)
            if not writes:
                continue
            record_id = side_id(side, link.invoiced_id, link.keap_id)
            self.report.add(Action(self.flow.name, "update", side, record_id, writes))
            if self.dry_run:
                self.report.done("updated", side)
                continue
            try:
                answer = await self.guarded(side, other_side(side), side_id(other_side(side), link.invoiced_id, link.keap_id),
                                            "update", writes, self._write(side, record_id, writes, current[side]))
            except NotFound:
                await self.remove(link, gone=side, reason=f"{side} record {record_id} not found on update")
                return
            if isinstance(answer, Failed):
                return
            self._audit(side, record_id, AuditOperation.UPDATE, {key: current[side].get(key) for key in writes}, writes)
            self.report.done("updated", side)
            current[side] = after_write(side, current[side], answer, writes)
        self._store_shadows(link, current)
        self._synced(link.invoiced_id, link.keap_id)
        if link.invoiced_id in self.unstamped:
            self.to_stamp.append((current["invoiced"], link.keap_id))

    def _settled(self, invoiced_id: str, plan: PairPlan) -> Callable[[Transaction, Link], None]:
        """Report the conflicts the plan settled (also a merge on first link that overwrote a value);
        answers the state change that records them against the pair's link."""
        for conflict in plan.conflicts:
            self.report.add(Action(self.flow.name, "conflict", conflict.winner, invoiced_id, {
                "group": conflict.group, "invoiced": conflict.invoiced_value, "keap": conflict.keap_value,
                "reason": conflict.reason}), "conflicts")

        def record(tx: Transaction, link: Link) -> None:
            for c in plan.conflicts:
                tx.record_conflict(link, c.group, invoiced_value=c.invoiced_value, keap_value=c.keap_value,
                                   winner=c.winner, reason=c.reason, run_id=self.run_id)

        return record

    def _store_shadows(self, link: Link, current: dict[Side, Record]) -> None:
        """Queue new shadows for the sides whose stored values, time or raw record differ."""
        fresh = {side: snapshot(self.flow, side, current[side]) for side in SIDES}
        changed = {}
        for side in SIDES:
            shadow = link.shadow(side)  # type: ignore[arg-type]
            if shadow is None or (shadow.field_values, shadow.source_updated, shadow.record) != (
                fresh[side].values, fresh[side].updated, fresh[side].record
            ):
                changed[side] = fresh[side]
        if changed:
            self.pending.append(lambda tx: tx.upsert_link(self.flow.name, link.invoiced_id, link.keap_id, **changed))

    # --- first links and creates -----------------------------------------------------------------
    async def link_pair(self, invoiced_record: Record, keap_record: Record, plan: PairPlan) -> None:
        """Link a matched pair: merge fields (the plan has no shadows), store the link, stamp the id."""
        invoiced_id, keap_id = str(invoiced_record["id"]), str(keap_record["id"])
        self.report.add(Action(self.flow.name, "link", "keap", keap_id, {"invoiced_id": invoiced_id}), "linked")
        current: dict[Side, Record] = {"invoiced": invoiced_record, "keap": keap_record}
        for side in SIDES:
            writes = plan.writes(side)
            if not writes:
                continue
            record_id = side_id(side, invoiced_id, keap_id)
            self.report.add(Action(self.flow.name, "update", side, record_id, writes))
            if self.dry_run:
                self.report.done("updated", side)
                continue
            try:
                answer = await self.guarded(side, other_side(side), side_id(other_side(side), invoiced_id, keap_id),
                                            "link", writes, self._write(side, record_id, writes, current[side]))
            except NotFound as gone:
                answer = Failed(gone)
            if isinstance(answer, Failed):
                return
            self._audit(side, record_id, AuditOperation.UPDATE, {key: current[side].get(key) for key in writes}, writes)
            self.report.done("updated", side)
            current[side] = after_write(side, current[side], answer, writes)
        if self.dry_run:
            return
        shadows = {side: snapshot(self.flow, side, current[side]) for side in SIDES}
        record_conflicts = self._settled(invoiced_id, plan)
        self.pending.append(lambda tx: record_conflicts(tx, tx.upsert_link(self.flow.name, invoiced_id, keap_id, **shadows)))
        self.closed_intents.append(("invoiced", invoiced_id))  # a twin adopted after a crash: its create is done
        self._audit("invoiced", invoiced_id, AuditOperation.LINK, after={"keap_id": keap_id})
        self._synced(invoiced_id, keap_id)
        self.to_stamp.append((current["invoiced"], keap_id))

    def open_intents(self, source: Side, keyed: Iterable[tuple[str, str | None]]) -> dict[str, Intent]:
        """Persist create intents for a batch, in one transaction, before any create is sent."""
        if self.dry_run:
            return {}
        return self.store.open_intents(self.flow.name, source, keyed)  # type: ignore[arg-type]

    async def create_twin(self, source: Side, record: Record, intent: Intent | None) -> None:
        """Create the record's twin on the other side, then link it; the intent closes with the link."""
        source_id = str(record["id"])
        plan = plan_create(self.flow, source, record)
        target = plan.target
        body = dict(plan.fields)
        if target == "invoiced":
            body["metadata"] = {self.flow.metadata_key: source_id}
        self.report.add(Action(self.flow.name, "create", target, None, body))
        if self.dry_run or intent is None:
            self.report.done("created", target)
            return
        if target == "keap":
            call = self.keap.create(KEAP_STREAMS[self.flow.name], body)
        else:
            call = self.invoiced.create(INVOICED_RESOURCES[self.flow.name], body, idempotency_key=intent.idempotency_key)
        created = await self.guarded(target, source, source_id, "create", body, call)
        if isinstance(created, Failed):
            if not isinstance(created.error, TransientError):  # refused, so certainly not made
                self.closed_intents.append((source, source_id))
            return
        created_id = str(created["id"])
        self.report.done("created", target)
        invoiced_record, keap_record = (record, created) if source == "invoiced" else (created, record)
        invoiced_id, keap_id = str(invoiced_record["id"]), str(keap_record["id"])
        self.new_links.append(NewLink(invoiced_id, keap_id, snapshot(self.flow, "invoiced", invoiced_record),
                                      snapshot(self.flow, "keap", keap_record)))
        self.closed_intents.append((source, source_id))
        self._audit(target, created_id, AuditOperation.CREATE, after=body)
        self._audit("invoiced", invoiced_id, AuditOperation.LINK, after={"keap_id": keap_id})
        self._synced(invoiced_id, keap_id)
        if source == "invoiced":
            self.to_stamp.append((record, created_id))

    async def commit_and_stamp(self) -> None:
        """Commit the batch, then stamp the Keap ids of its new links into Invoiced metadata: a stamp
        never names a link that was not stored, and a lost stamp is only a missing hint for `relink`."""
        self.commit()
        stamps, self.to_stamp = self.to_stamp, []
        await self.each(stamps, lambda stamp: self.stamp(*stamp))
        self.commit()

    async def stamp(self, invoiced_record: Record, keap_id: str) -> None:
        """Record the Keap id in the Invoiced record's metadata, merged with its other keys; once it is there,
        the record's failures held open for it resolve."""
        invoiced_id = str(invoiced_record["id"])
        if (invoiced_record.get("metadata") or {}).get(self.flow.metadata_key) != keap_id:
            self.report.add(Action(self.flow.name, "stamp", "invoiced", invoiced_id, {self.flow.metadata_key: keap_id}), "stamped")
            if self.dry_run:
                return
            target = invoiced_record if "metadata" in invoiced_record else invoiced_id  # a stored record has no metadata: read it
            try:
                stamped = await self.guarded("invoiced", "invoiced", invoiced_id, "stamp", {self.flow.metadata_key: keap_id},
                                             self.invoiced.merge_metadata(INVOICED_RESOURCES[self.flow.name], target,
                                                                          {self.flow.metadata_key: keap_id}))
            except NotFound:
                return  # deleted since it was read: its removal event arrives on a later pass
            if isinstance(stamped, Failed):
                return
        if invoiced_id in self.unstamped:
            self.unstamped.discard(invoiced_id)
            self._synced(invoiced_id, keap_id)

    def moved_twin(self, invoiced_record: Record, keap_record: Record | None, reason: str) -> None:
        """Close the create intent of a customer that moved flows; the twin it made, if found, is stored as a
        link closed for `reason`."""
        invoiced_id = str(invoiced_record["id"])
        self.closed_intents.append(("invoiced", invoiced_id))
        if keap_record is None:
            return
        keap_id = str(keap_record["id"])
        new = NewLink(invoiced_id, keap_id, snapshot(self.flow, "invoiced", invoiced_record), snapshot(self.flow, "keap", keap_record))
        self.report.add(Action(self.flow.name, "unlink", "invoiced", invoiced_id, {"keap_id": keap_id, "reason": reason}), "unlinked")
        self.pending.append(lambda tx: tx.close_link(tx.add_links(self.flow.name, [new])[0], reason))
        self._audit("invoiced", invoiced_id, AuditOperation.LINK, after={"keap_id": keap_id})
        self._audit("invoiced", invoiced_id, AuditOperation.UNLINK, {"keap_id": keap_id}, {"reason": reason})

    # --- unlinks and deletes -----------------------------------------------------------------------
    def close(self, link: Link, reason: str) -> None:
        """Drop a link, keeping both records (unlink, type change)."""
        self.report.add(Action(link.flow, "unlink", "invoiced", link.invoiced_id, {"keap_id": link.keap_id, "reason": reason}), "unlinked")
        self.pending.append(lambda tx: tx.close_link(link.id, reason))
        self.audits.append(AuditNote(link.flow, "invoiced", link.invoiced_id, AuditOperation.UNLINK,  # type: ignore[arg-type]
                                     {"keap_id": link.keap_id}, {"reason": reason}, self.run_id))

    async def remove(self, link: Link, *, gone: Side, reason: str) -> None:
        """A believed delete on `gone`'s side: apply the flow's deletes policy to the twin."""
        policy = self.options.deletes
        if policy == "ignore":
            self.report.counts["deletes_ignored"] += 1
            return
        if policy == "propagate":
            twin = other_side(gone)
            twin_id = side_id(twin, link.invoiced_id, link.keap_id)
            self.report.add(Action(self.flow.name, "delete", twin, twin_id, {"reason": reason}), f"deleted.{twin}")
            if not self.dry_run:
                call = (self.keap.delete(KEAP_STREAMS[self.flow.name], twin_id) if twin == "keap"
                        else self.invoiced.delete(INVOICED_RESOURCES[self.flow.name], twin_id))
                if isinstance(await self.guarded(twin, gone, side_id(gone, link.invoiced_id, link.keap_id), "delete", None, call), Failed):
                    return
                self._audit(twin, twin_id, AuditOperation.DELETE, before=stored_record(link, twin), after={"reason": reason})
        self.close(link, reason)

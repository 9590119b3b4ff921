"""Applying a flow's plan (`planner.FlowPlan`): writes to both systems, with intents, shadows, audit, conflicts and failures.

State changes of a batch of records are queued and committed in one transaction (`commit`), so a link, its
shadows, the closing of its intent, its audit entries and the resolution of its failures land together or not
at all; the rows a batch of creates adds are written in bulk.

Errors: `RecordRejected` (4xx) and `TransientError` (retries spent) become failures keyed by the *source*
record (the side and id whose change we were carrying; the message names the system that refused, and the
value sent of the field it blames) and the pass goes on; a create Keap's documented rules refuse
(`CreatePlan.refusal`) is not sent but recorded as such a failure; `NotFound` on a write means the target is gone and goes to the deletes policy; `FatalError`
propagates after what is done is committed.

A create first persists its intent (with its match key), then calls the API (Invoiced creates send the
intent's idempotency key), then commits link + shadows + intent removal, then stamps the Keap id into the
Invoiced record's metadata (`flow.metadata_key`, merged; flows without one stamp nothing). A stamp the API refused keeps the record's failures
open: each later sync of the pair stamps again, and only a stamp that is made resolves them (`unstamped`).
The lossy carries of a write are reported and stored with the link (`record_lossy_carries`) once it went through.

Writes over existing records go out in chunks of `reread.REREAD_EVERY`: before each, the records the chunk writes over
are read again in bulk, and a pair whose record moved since it was planned is planned again from the fresh record
(`refreshed`; an edit made while the pass ran is carried, or settled as a conflict, never overwritten unseen). Stamps
are checked the same way before each batch of them (`commit_and_stamp`).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy.exc import IntegrityError

from invoiced_keap.connectors.errors import ApiError, CallAbandoned, FatalError, NotFound, RecordRejected, TransientError
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.engine.options import DeletesPolicy
from invoiced_keap.engine.plan import UPDATED_FIELD, PairPlan
from invoiced_keap.engine.planner import (
    Batches,
    Create,
    FlowPlan,
    MovedTwin,
    NewPair,
    PairWork,
    Removal,
    conflict_actions,
    create_body,
    lossy_actions,
    moved_reason,
    refusal_action,
    removal_actions,
)
from invoiced_keap.engine.report import Action, FlowReport, Progress
from invoiced_keap.engine.reread import REREAD_EVERY, Rereads
from invoiced_keap.engine.shadows import after_write, snapshot, stored_record
from invoiced_keap.flows import SIDES, Flow, Side, other_side
from invoiced_keap.mapping import LossyCarry, Record
from invoiced_keap.state import AuditNote, AuditOperation, NewLink, Store, Transaction
from invoiced_keap.state.models import Intent, Link

T = TypeVar("T")
StateChange = Callable[[Transaction], object]


class Planned(Protocol):
    """A pair to write (`PairWork`, `NewPair`): its records, its plan, and the same pair planned again."""

    @property
    def plan(self) -> PairPlan: ...

    def record(self, side: Side) -> Record: ...

    def record_id(self, side: Side) -> str: ...

    def replanned(self, flow: Flow, fresh: Mapping[Side, Record]) -> Any: ...


P = TypeVar("P", bound=Planned)


def side_id(side: Side, invoiced_id: str, keap_id: str) -> str:
    return invoiced_id if side == "invoiced" else keap_id


def refusal_message(system: Side, error: ApiError, payload: Any) -> str:
    """`system: its message`, with the value sent of the field it blames (named by the API, or in its message)."""
    message = f"{system}: {error.message}"
    if not isinstance(payload, dict):
        return message
    blamed = error.field if error.field in payload else next(
        (key for key in payload if re.search(rf"(?<![\w.]){re.escape(key)}\b", error.message)), None)
    if blamed is None:
        return message
    return f"{message} (sent {blamed} = {json.dumps(payload[blamed], ensure_ascii=False, default=str)})"


class PassStopped(Exception):
    """The pass was asked to stop (`Applier.should_stop`): what was in flight is committed, no record more."""


ANOTHER_ACCOUNT = ("; Keap gave this new record an id the state links already to another record: the state database "
                   "probably belongs to another Keap account (a sandbox, a restored backup); use this account's own "
                   "state database (setting database_url) or a new one")


class KeapIdLinked(Exception):
    """Keap made a record whose id the state links already (`ANOTHER_ACCOUNT`): the pass stops once its batch is
    committed and stamped, so each further batch does not make another duplicate in Keap. The message names the
    flow and both records."""


@dataclass(frozen=True)
class Failed:
    """A call that ended in a recorded failure."""

    error: ApiError


@dataclass(frozen=True)
class Gone:
    """A write that answered 404: `side`'s record is gone."""

    side: Side


@dataclass
class Applier:
    """Writes and state changes for one flow's plan (see the module docstring). `on_batch` is called after each
    committed batch (progress, keeping locks)."""

    flow: Flow
    store: Store
    invoiced: InvoicedConnector
    keap: KeapConnector
    report: FlowReport
    run_id: int | None
    deletes: DeletesPolicy = "unlink"
    concurrency: int = 8
    batch_size: int = 200
    should_stop: Callable[[], bool] = lambda: False
    on_batch: Callable[[Progress], None] = lambda _: None
    open_failures: set[tuple[str, str]] = field(default_factory=set)
    unstamped: set[str] = field(default_factory=set)  # Invoiced ids whose id stamp is an open failure
    pending: list[StateChange] = field(default_factory=list)
    new_links: list[NewLink] = field(default_factory=list)
    closed_intents: list[tuple[Side, str]] = field(default_factory=list)
    audits: list[AuditNote] = field(default_factory=list)
    to_stamp: list[tuple[Record, str]] = field(default_factory=list)
    intents: dict[str, Intent] = field(default_factory=dict)  # opened for the batch of creates in hand, by source id
    sent: dict[tuple[Side, str], tuple[Record, Record]] = field(default_factory=dict)  # creates made: body, source record
    keap_id_linked: str | None = None  # the first `KeapIdLinked` met by a commit, raised once its batch is stamped
    rereads: Rereads | None = None  # the records written over, read again before each chunk (`refreshed`)

    def __post_init__(self) -> None:
        self.limit = asyncio.Semaphore(self.concurrency)

    # --- the plan ----------------------------------------------------------------------------------
    async def apply(self, plan: FlowPlan) -> None:
        """Carry out `plan` in its order: the carried pairs of moved links, moves, removals, linked pairs,
        reviews, new links, creates; each batch committed before the next starts."""
        self.rereads = Rereads(self.flow, self.store, self.invoiced, self.keap, plan.watermarks)
        try:
            await self._apply(plan)
        finally:
            self.rereads.close()

    async def _apply(self, plan: FlowPlan) -> None:
        self.open_failures, self.unstamped = set(plan.open_failures), set(plan.unstamped)
        self.report.counts.update({f"read.{side}": n for side, n in plan.read.items() if n})
        for side, record_id in plan.resolved_failures:
            self.pending.append(lambda tx, side=side, record_id=record_id: tx.resolve_failures(self.flow.name, side, record_id))
        self.closed_intents += plan.closed_intents
        if plan.carried_flow is not None and plan.carried:
            carry = self.sibling(plan.carried_flow)
            carry.rereads = Rereads(carry.flow, self.store, self.invoiced, self.keap)  # the old flow's own marks
            try:
                await carry._chunks(plan.carried, carry.sync_pair, before=carry.record_conflicts, refresh=carry.refreshed)
            finally:
                carry.rereads.close()
            carry.commit()
        for link in plan.moves:
            self.close(link, moved_reason(link, self.flow.name))
        for removal in plan.removals:
            await self.remove(removal.link, gone=removal.gone, reason=removal.reason)
        for moved in plan.moved_twins:
            self.moved_twin(moved)
        self.commit()
        await self._batches("pairs", plan.pairs, self.sync_pair, before=self.record_conflicts, refresh=self.refreshed)
        for review in plan.reviews:
            self.report.add(Action(self.flow.name, "review", "invoiced", review.invoiced_id, {"candidates": list(review.candidates)}))
            self.pending.append(lambda tx, r=review: tx.add_review_item(self.flow.name, r.invoiced_id, r.candidates, r.reason))
        for invoiced_id, resolution in plan.settled_reviews:
            self.pending.append(lambda tx, i=invoiced_id, r=resolution: tx.resolve_review_item(self.flow.name, i, r))
        await self._batches("links", plan.new_pairs, self.link_pair, refresh=self.refreshed)
        for source in SIDES:
            if source in plan.creates:
                await self._batches("creates", plan.creates[source], self.create_twin, before=self._open_intents)
        if plan.keap_unlinked:
            self.report.counts["unlinked.keap"] += plan.keap_unlinked
        self.commit()

    def sibling(self, flow: Flow) -> Applier:
        """An applier for another flow of the same pass (the carried pairs of moved links)."""
        return Applier(flow, self.store, self.invoiced, self.keap, self.report, self.run_id, self.deletes,
                       self.concurrency, self.batch_size, self.should_stop, self.on_batch)

    async def _batches(self, step: str, work: Batches[Any, T], each: Callable[[T], Awaitable[object]],
                       before: Callable[[Sequence[T]], object] | None = None,
                       refresh: Callable[[Sequence[T]], Awaitable[Sequence[T]]] | None = None) -> None:
        """Build, run and commit `work` a batch at a time (a pass holds one batch of records and plans); the step is
        announced (0 done) before its first batch, which may take a while at Keap's pace."""
        done = 0
        if len(work):
            self.on_batch(Progress(self.flow.name, step, done, len(work)))
        async for taken, batch in work.batches(self.batch_size):
            await self._chunks(batch, each, before=before, refresh=refresh)
            await self.commit_and_stamp()
            done += taken
            self.on_batch(Progress(self.flow.name, step, done, len(work)))

    async def _chunks(self, batch: Sequence[T], each: Callable[[T], Awaitable[object]],
                      before: Callable[[Sequence[T]], object] | None = None,
                      refresh: Callable[[Sequence[T]], Awaitable[Sequence[T]]] | None = None) -> None:
        """Run `each` over a batch; with `refresh`, a chunk of `REREAD_EVERY` at a time, each refreshed just before
        its writes (`refreshed`)."""
        size = REREAD_EVERY if refresh is not None else max(len(batch), 1)
        for start in range(0, len(batch), size):
            chunk = batch[start : start + size]
            if refresh is not None:
                chunk = await refresh(chunk)
            if before is not None:
                before(chunk)
            await self.each(chunk, each)

    async def refreshed(self, chunk: Sequence[P]) -> list[P]:
        """The chunk, each pair whose record moved since it was planned planned again from the fresh record
        (`reread`). Each side is read at most once a chunk, and only when the chunk writes to it: Invoiced first
        when anything is written there (its read covers every pair that writes, to either side: a listing, or the
        events), then Keap for the pairs that write to Keap, then Invoiced when a pair planned again from a fresh
        Keap record now writes there. So every write goes over a record read just before the chunk."""
        assert self.rereads is not None, "refreshed outside apply"
        pairs = list(chunk)
        done: set[Side] = set()
        while (side := next((s for s in SIDES if s not in done and any(p.plan.writes(s) for p in pairs)), None)) is not None:
            done.add(side)
            targets = [p for p in pairs if (p.plan.write_count if side == "invoiced" else p.plan.writes(side))]
            fresh = await self.rereads.moved(side, {p.record_id(side): p.record(side) for p in targets})
            pairs = [p.replanned(self.flow, {side: fresh[p.record_id(side)]}) if p.record_id(side) in fresh else p
                     for p in pairs]
        return pairs

    # --- plumbing --------------------------------------------------------------------------------
    def commit(self) -> None:
        """Commit the queued state changes in one transaction."""
        changes, self.pending = self.pending, []
        new_links, self.new_links = self.new_links, []
        closed_intents, self.closed_intents = self.closed_intents, []
        audits, self.audits = self.audits, []
        sent, self.sent = self.sent, {}
        if not (changes or new_links or closed_intents or audits):
            return
        try:
            self._commit(changes, new_links, closed_intents, audits)
        except IntegrityError:
            self._commit_links_apart(changes, new_links, closed_intents, audits, sent)

    def _commit(self, changes: Sequence[StateChange], new_links: Sequence[NewLink], closed_intents: Sequence[tuple[Side, str]],
                audits: Sequence[AuditNote]) -> None:
        with self.store.transaction() as tx:
            for change in changes:
                change(tx)
            tx.add_links(self.flow.name, new_links)
            tx.close_intents(self.flow.name, closed_intents)
            tx.append_audits(audits)

    def _commit_links_apart(self, changes: Sequence[StateChange], new_links: Sequence[NewLink],
                            closed_intents: Sequence[tuple[Side, str]], audits: Sequence[AuditNote],
                            sent: Mapping[tuple[Side, str], tuple[Record, Record]]) -> None:
        """A batch whose commit the state refused: each new link in a transaction of its own, then the rest. A link
        the state refuses (a record linked already: the twin a create cut short made, linked since to another record)
        becomes a failure of the create's source naming both records, with the body sent, so that it waits for its
        retry as any refused create does (`FlowPlan.refused`); its intent stays open (the next pass finds the same
        twin again, never a new one), its id is not stamped, and the other records of the batch are committed. A new
        Keap record whose id the state links to another record (`ANOTHER_ACCOUNT`) also stops the pass
        (`keap_id_linked`)."""
        closing = set(closed_intents)
        refused: set[tuple[Side, str]] = set()
        for new in new_links:
            try:
                self._commit([], [new], [], [])
            except IntegrityError as error:
                source: Side = "keap" if ("keap", new.keap_id) in closing else "invoiced"
                source_id = side_id(source, new.invoiced_id, new.keap_id)
                message = (f"state: the link of Invoiced {new.invoiced_id} and Keap {new.keap_id} made by this create "
                           f"was refused: {str(error.orig).splitlines()[0]}")
                linked = self.store.find_link(self.flow.name, "keap", new.keap_id) if source == "invoiced" else None
                if linked is not None and linked.invoiced_id != new.invoiced_id:
                    message += ANOTHER_ACCOUNT
                    self.keap_id_linked = self.keap_id_linked or f"{self.flow.name}: {message}"
                self.report.add(Action(self.flow.name, "fail", source, source_id, {"operation": "create", "error": message}))
                refused.add((source, source_id))
                body, record = sent.get((source, source_id), (None, None))
                changes = [*changes, self._failure(source, source_id, "create", message, body, record)]
        self.to_stamp = [(record, keap_id) for record, keap_id in self.to_stamp if ("invoiced", str(record["id"])) not in refused]
        self._commit(changes, [], [closed for closed in closed_intents if closed not in refused], audits)

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
                except CallAbandoned:
                    return  # stopping: nothing of it was sent, `should_stop` ends the pass below

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
        self, system: Side, source: Side, source_id: str, operation: str, payload: Any, call: Awaitable[T],
        source_record: Record | None = None,
    ) -> T | Failed:
        """The call to `system`'s API, or `Failed` after queueing a failure for the source record it
        carries (NotFound is re-raised: the caller knows what a missing record means there)."""
        try:
            return await call
        except NotFound:
            raise
        except (RecordRejected, TransientError) as error:
            return self.failed(system, source, source_id, operation, payload, error, source_record)

    def failed(self, system: Side, source: Side, source_id: str, operation: str, payload: Any, error: ApiError,
               source_record: Record | None = None, *, suffix: str = "") -> Failed:
        """Queue a failure of the source record for `system`'s refusal (or unavailability) `error`, and report it;
        the message is `refusal_message` and `suffix`."""
        if isinstance(error, TransientError):
            self.report.unavailable = error.outage()
        message = refusal_message(system, error, payload) + suffix
        self.report.add(Action(self.flow.name, "fail", source, source_id, {"operation": operation, "error": message}))
        self._fail(source, source_id, operation, message, payload, source_record, error.field)
        return Failed(error)

    def _fail(self, source: Side, source_id: str, operation: str, message: str, payload: Any,
              source_record: Record | None, problem_field: str | None = None) -> None:
        self.pending.append(self._failure(source, source_id, operation, message, payload, source_record, problem_field))

    def _failure(self, source: Side, source_id: str, operation: str, message: str, payload: Any,
                 source_record: Record | None, problem_field: str | None = None) -> StateChange:
        updated = (source_record or {}).get(UPDATED_FIELD[source])
        return lambda tx: tx.record_failure(self.flow.name, source, source_id, operation, message,
                                            field=problem_field, payload=payload, source_updated=updated)

    def _lossy(self, invoiced_id: str, keap_id: str, lossy: Iterable[LossyCarry]) -> None:
        for action in lossy_actions(self.flow.name, invoiced_id, keap_id, lossy):
            self.report.add(action)

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
        self.audits.append(AuditNote(self.flow.name, side, record_id, operation, before, after, self.run_id))

    async def _write(self, side: Side, record_id: str, changes: Record, current: Record) -> Record:
        if side == "keap":
            return await self.keap.update(self.flow.keap, record_id, changes, current=current)
        return await self.invoiced.update(self.flow.invoiced, record_id, changes)

    # --- pairs -------------------------------------------------------------------------------------
    def record_conflicts(self, batch: Iterable[PairWork]) -> None:
        """Commit the conflicts a batch of plans settles before any of its writes: a pass killed after a write
        must not leave the value it overwrote without a record. A write that then fails is planned again next
        pass, and its conflict recorded again."""
        for work in batch:
            if work.plan.conflicts:
                self._report_conflicts(work.link.invoiced_id, work.link.keap_id, work.plan)
                self.pending.append(lambda tx, work=work: self._conflict_rows(tx, work.link, work.plan))
        self.commit()

    def _report_conflicts(self, invoiced_id: str, keap_id: str, plan: PairPlan) -> None:
        for action in conflict_actions(self.flow.name, invoiced_id, keap_id, plan):
            self.report.add(action)

    def _conflict_rows(self, tx: Transaction, link: Link, plan: PairPlan) -> None:
        for c in plan.conflicts:
            tx.record_conflict(link, c.group, invoiced_value=c.invoiced_value, keap_value=c.keap_value,
                               winner=c.winner, reason=c.reason, run_id=self.run_id)

    async def _write_pair(self, invoiced_id: str, keap_id: str, current: dict[Side, Record], plan: PairPlan,
                          operation: str) -> dict[Side, Record] | Failed | Gone:
        """Write the plan's changes to each side; answers the records as written, or how it stopped."""
        current = dict(current)
        for side in SIDES:
            writes = plan.writes(side)
            if not writes:
                continue
            record_id, source = side_id(side, invoiced_id, keap_id), other_side(side)
            try:
                answer = await self.guarded(side, source, side_id(source, invoiced_id, keap_id), operation, writes,
                                            self._write(side, record_id, writes, current[side]), current[source])
            except NotFound:
                return Gone(side)
            if isinstance(answer, Failed):
                return answer
            self._audit(side, record_id, AuditOperation.UPDATE, {key: current[side].get(key) for key in writes}, writes)
            self.report.add(Action(self.flow.name, "update", side, record_id, writes))
            current[side] = after_write(side, current[side], answer, writes)
        return current

    async def sync_pair(self, work: PairWork) -> None:
        """Write a linked pair's plan (its conflicts are recorded first: `record_conflicts`); store both shadows
        only when every write went through."""
        link = work.link
        written = await self._write_pair(link.invoiced_id, link.keap_id, {"invoiced": work.invoiced, "keap": work.keap}, work.plan, "update")
        if isinstance(written, Gone):
            gone = written.side
            await self.remove(link, gone=gone, reason=f"{gone} record {side_id(gone, link.invoiced_id, link.keap_id)} not found on update")
            return
        if isinstance(written, Failed):
            return
        self._store_shadows(link, written)
        if work.plan.carried:
            self._lossy(link.invoiced_id, link.keap_id, work.plan.lossy)
            self.pending.append(lambda tx: tx.record_lossy_carries(link, work.plan.carried, work.plan.lossy, run_id=self.run_id))
        self._synced(link.invoiced_id, link.keap_id)
        if link.invoiced_id in self.unstamped:
            self.to_stamp.append((written["invoiced"], link.keap_id))

    def _store_shadows(self, link: Link, current: dict[Side, Record]) -> None:
        """Queue new shadows for the sides whose stored values, time or raw record differ."""
        fresh = {side: snapshot(self.flow, side, current[side]) for side in SIDES}
        changed = {}
        for side in SIDES:
            shadow = link.shadow(side)
            if shadow is None or (shadow.field_values, shadow.source_updated, shadow.record) != (
                fresh[side].values, fresh[side].updated, fresh[side].record
            ):
                changed[side] = fresh[side]
        if changed:
            self.pending.append(lambda tx: tx.upsert_link(self.flow.name, link.invoiced_id, link.keap_id, **changed))

    async def link_pair(self, pair: NewPair) -> None:
        """Link a matched pair: merge fields (the plan has no shadows), store the link, stamp the id."""
        invoiced_id, keap_id = str(pair.invoiced["id"]), str(pair.keap["id"])
        self.report.add(Action(self.flow.name, "link", "keap", keap_id, {"invoiced_id": invoiced_id}))
        self._report_conflicts(invoiced_id, keap_id, pair.plan)
        written = await self._write_pair(invoiced_id, keap_id, {"invoiced": pair.invoiced, "keap": pair.keap}, pair.plan, "link")
        if isinstance(written, (Failed, Gone)):
            return
        shadows = {side: snapshot(self.flow, side, written[side]) for side in SIDES}
        self._lossy(invoiced_id, keap_id, pair.plan.lossy)

        def store(tx: Transaction) -> None:
            link = tx.upsert_link(self.flow.name, invoiced_id, keap_id, **shadows)
            self._conflict_rows(tx, link, pair.plan)
            tx.record_lossy_carries(link, pair.plan.carried, pair.plan.lossy, run_id=self.run_id)

        self.pending.append(store)
        self.closed_intents += [("invoiced", invoiced_id), ("keap", keap_id)]  # a twin adopted after a crash: its create is done
        self._audit("invoiced", invoiced_id, AuditOperation.LINK, after={"keap_id": keap_id})
        self._synced(invoiced_id, keap_id)
        self.to_stamp.append((written["invoiced"], keap_id))

    # --- creates -----------------------------------------------------------------------------------
    def _open_intents(self, batch: Sequence[Create]) -> None:
        """Persist the create intents of a batch, in one transaction, before any create is sent."""
        if batch:
            self.intents.update(self.store.open_intents(self.flow.name, batch[0].source,
                                                        ((str(c.record["id"]), c.intent_key) for c in batch)))

    async def create_twin(self, create: Create) -> None:
        """Create the record's twin on the other side, then link it; the intent closes with the link."""
        source, record = create.source, create.record
        source_id = str(record["id"])
        intent = self.intents.pop(source_id, None)
        target = create.plan.target
        body = create_body(self.flow, create)
        if create.plan.refusal:  # Keap's documented rules refuse it: not sent, a failure naming what is missing
            refused = refusal_action(self.flow.name, create)
            self.report.add(refused)
            self._fail(source, source_id, "create", f"{target} (not sent): {refused.fields['reason']}", body, record)
            self.closed_intents.append((source, source_id))
            return
        if target == "keap":
            call = self.keap.create(self.flow.keap, body)
        else:
            call = self.invoiced.create(self.flow.invoiced, body, idempotency_key=intent.idempotency_key if intent else None)
        created = await self.guarded(target, source, source_id, "create", body, call, record)
        if isinstance(created, Failed):
            if not isinstance(created.error, TransientError):  # refused, so certainly not made
                self.closed_intents.append((source, source_id))
            return
        created_id = str(created["id"])
        self.report.add(Action(self.flow.name, "create", target, None, body), created_id=created_id, source_id=source_id,
                        name=record.get("name") if source == "invoiced" else None)
        invoiced_record, keap_record = (record, created) if source == "invoiced" else (created, record)
        invoiced_id, keap_id = str(invoiced_record["id"]), str(keap_record["id"])
        self.new_links.append(NewLink(invoiced_id, keap_id, snapshot(self.flow, "invoiced", invoiced_record),
                                      snapshot(self.flow, "keap", keap_record), create.plan.lossy, self.run_id))
        self.sent[(source, source_id)] = (body, record)
        self._lossy(invoiced_id, keap_id, create.plan.lossy)
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
        stamps, self.to_stamp = (self.to_stamp if self.flow.metadata_key else []), []
        stamps = await self._fresh_stamps(stamps)
        await self.each(stamps, lambda stamp: self.stamp(*stamp))
        self.commit()
        if self.keap_id_linked is not None:
            raise KeapIdLinked(self.keap_id_linked)

    async def _fresh_stamps(self, stamps: list[tuple[Record, str]]) -> list[tuple[Record, str]]:
        """The stamps with the Invoiced records that moved since they were read taken as they are now: a stamp
        sends the whole metadata map, so it must merge into the map as it is (one bulk read, none when nothing
        will be sent; a stored record without metadata is read by the stamp itself)."""
        key = self.flow.metadata_key
        planned = {str(record["id"]): record for record, keap_id in stamps
                   if "metadata" in record and (record.get("metadata") or {}).get(key) != keap_id}
        if not planned or self.rereads is None:
            return stamps
        fresh = await self.rereads.moved("invoiced", planned)
        return [(fresh.get(str(record["id"]), record), keap_id) for record, keap_id in stamps]

    async def stamp(self, invoiced_record: Record, keap_id: str) -> None:
        """Record the Keap id in the Invoiced record's metadata, merged with its other keys; once it is there,
        the record's failures held open for it resolve."""
        invoiced_id = str(invoiced_record["id"])
        key = self.flow.metadata_key
        assert key is not None, "a flow without a metadata key stamps nothing"
        if (invoiced_record.get("metadata") or {}).get(key) != keap_id:
            target = invoiced_record if "metadata" in invoiced_record else invoiced_id  # a stored record has no metadata: read it
            try:
                stamped = await self.guarded("invoiced", "invoiced", invoiced_id, "stamp", {key: keap_id},
                                             self.invoiced.merge_metadata(self.flow.invoiced, target, {key: keap_id}),
                                             invoiced_record)
            except NotFound:
                return  # deleted since it was read: its removal event arrives on a later pass
            if isinstance(stamped, Failed):
                return
            self.report.add(Action(self.flow.name, "stamp", "invoiced", invoiced_id, {key: keap_id}))
        if invoiced_id in self.unstamped:
            self.unstamped.discard(invoiced_id)
            self._synced(invoiced_id, keap_id)

    def moved_twin(self, moved: MovedTwin) -> None:
        """Close the create intent of a record that moved flows; the twin it made, if found, is stored as a link
        closed for the move."""
        invoiced_id = str(moved.record["id"])
        self.closed_intents.append(("invoiced", invoiced_id))
        if moved.twin is None:
            return
        keap_id = str(moved.twin["id"])
        new = NewLink(invoiced_id, keap_id, snapshot(self.flow, "invoiced", moved.record), snapshot(self.flow, "keap", moved.twin))
        self.report.add(Action(self.flow.name, "unlink", "invoiced", invoiced_id, {"keap_id": keap_id, "reason": moved.reason}))
        self.pending.append(lambda tx: tx.close_link(tx.add_links(self.flow.name, [new])[0], moved.reason))
        self._audit("invoiced", invoiced_id, AuditOperation.LINK, after={"keap_id": keap_id})
        self._audit("invoiced", invoiced_id, AuditOperation.UNLINK, {"keap_id": keap_id}, {"reason": moved.reason})

    # --- unlinks and deletes -----------------------------------------------------------------------
    def close(self, link: Link, reason: str) -> None:
        """Drop a link, keeping both records (unlink, type change)."""
        self.report.add(Action(link.flow, "unlink", "invoiced", link.invoiced_id, {"keap_id": link.keap_id, "reason": reason}))
        self.pending.append(lambda tx: tx.close_link(link.id, reason))
        self.audits.append(AuditNote(link.flow, "invoiced", link.invoiced_id, AuditOperation.UNLINK,
                                     {"keap_id": link.keap_id}, {"reason": reason}, self.run_id))

    async def remove(self, link: Link, *, gone: Side, reason: str) -> None:
        """A believed delete on `gone`'s side: apply the deletes policy to the twin.

        With `propagate`, a twin its system refuses to delete (`RecordRejected`: an Invoiced customer with
        transactions) is kept and the pair unlinked, as `unlink` does: the refusal is a failure of the twin
        (operation `delete`, the system's words, naming the record that is gone), whose retry, or a change of the
        twin, reads it again as an unlinked record (matched or given a new twin; what makes one resolves the
        failure). A delete that could not be sent (`TransientError`) keeps the link, its failure on the record
        that is gone, whose retry believes the delete again (`planner.Planner._add_due_failures`). A link closed
        here resolves the failures of the record that is gone."""
        if self.deletes == "ignore":
            self.report.counts["deletes_ignored"] += 1
            return
        gone_id = side_id(gone, link.invoiced_id, link.keap_id)
        if self.deletes == "propagate":
            delete = removal_actions(self.flow.name, "propagate", Removal(link, gone, reason))[0]
            twin = delete.side
            assert delete.record_id is not None
            call = (self.keap.delete(self.flow.keap, delete.record_id) if twin == "keap"
                    else self.invoiced.delete(self.flow.invoiced, delete.record_id))
            try:
                await call
            except RecordRejected as error:  # refused (a delete takes a 404 as done): the twin stays, unlinked
                kept = (f" (deletes propagate: its twin {gone}:{self.flow.record_type(gone)}:{gone_id} is gone; the "
                        f"pair is unlinked and {twin}:{self.flow.record_type(twin)}:{delete.record_id} kept: a retry, "
                        f"or a change of it, reads it again as unlinked)")
                self.failed(twin, twin, delete.record_id, "delete", None, error, suffix=kept)
                reason = f"{reason}; {twin} refused the delete: {error.message}"
            except TransientError as error:
                self.failed(twin, gone, gone_id, "delete", None, error)
                return
            else:
                self.report.add(delete)
                self._audit(twin, delete.record_id, AuditOperation.DELETE, before=stored_record(link, twin), after={"reason": reason})
        self.close(link, reason)
        self.pending.append(lambda tx: tx.resolve_failures(self.flow.name, gone, gone_id))

"""The query API over the state tables: short transactions, returned rows detached and ready.

`Store(url)` runs each method in its own transaction. `with store.transaction() as tx:` gives the
same methods on one transaction, so a link, its shadows, a watermark and the intent's removal
commit together or not at all. Rows come back as detached model objects (shadows loaded).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import ColumnElement, Engine, Select, Text, cast, delete, func, insert, literal, select, text, update
from sqlalchemy.orm import QueryableAttribute, Session, selectinload

from invoiced_keap.flows import Shadow, Side
from invoiced_keap.mapping import LossyCarry
from invoiced_keap.state.database import create_state_engine, upgrade_to_head
from invoiced_keap.state.locks import FlowLease, FlowLocks
from invoiced_keap.state.receivables import ReceivableQueries
from invoiced_keap.state.models import (
    AuditEntry,
    AuditOperation,
    ConflictRow,
    Failure,
    Intent,
    Link,
    LinkStatus,
    LossyCarryRow,
    Reconcile,
    ReviewItem,
    Run,
    ShadowRow,
    Side,
    Watermark,
    utcnow,
)

SelectT = TypeVar("SelectT", bound=Select[Any])
IN_CLAUSE_CHUNK = 500  # ids per `IN (...)`: well under SQLite's and PostgreSQL's parameter limits
SHADOW_SAMPLE = 100
"""The newest links whose stored records `longest_recent_record` weighs."""
STALE_ROWS, STALE_SHARE = 1_000, 0.2
"""PostgreSQL's planner statistics of the links are taken again once their count is off by more than both (rows, and
a share of the count they were taken at): autovacuum's own rule, kept by the store itself (`refresh_statistics`)."""
CREATE_RESOLUTION = "create"  # a review item decided as "none of these candidates: create a new record"
PICK_RESOLUTION = "linked "  # + the Keap id: a review item decided as "this candidate" (`pick_resolution`)


def pick_resolution(keap_id: str) -> str:
    return f"{PICK_RESOLUTION}{keap_id}"


class Dismissal(NamedTuple):
    """A failure whose dismissal was set or undone, and its dismissal before: whether it was dismissed, and why."""

    failure: Failure
    was_dismissed: bool
    reason_before: str | None


class LinkConflict(ValueError):
    """The pair would break "one active link per record and flow": close the old link first."""


@dataclass(frozen=True)
class NewLink:
    """A pair to link in bulk (first matching of existing records), with optional shadows."""

    invoiced_id: str
    keap_id: str
    invoiced: Shadow | None = None
    keap: Shadow | None = None
    lossy: tuple[LossyCarry, ...] = ()
    run_id: int | None = None


@dataclass(frozen=True)
class AuditNote:
    """An audit entry to append (`append_audits`): one write, link or unlink with its values."""

    flow: str
    side: Side
    record_id: str
    operation: AuditOperation
    before: Any = None
    after: Any = None
    run_id: int | None = None


@dataclass(frozen=True)
class FailureBackoff:
    """Exponential backoff for rejected records: base, doubled per attempt, capped."""

    base: timedelta = timedelta(minutes=5)
    cap: timedelta = timedelta(hours=24)

    def delay(self, attempts: int) -> timedelta:
        if attempts < 1:
            raise ValueError("attempts start at 1")
        return min(self.cap, self.base * (1 << min(attempts - 1, 32)))


@dataclass(frozen=True)
class StatusCounts:
    """What a status page shows at a glance; dicts are keyed by flow."""

    active_links: dict[str, int]
    open_failures: dict[str, int]  # not dismissed
    dismissed_failures: dict[str, int]
    open_review_items: dict[str, int]
    lossy_carries: dict[str, int]  # notes on active links
    open_intents: int
    conflicts: int
    last_run: Run | None


class Queries(ReceivableQueries):
    """Every query; subclasses decide which transaction `_session()` gives."""

    clock: Callable[[], datetime]
    failure_backoff: FailureBackoff

    def _session(self) -> AbstractContextManager[Session]:
        raise NotImplementedError

    # --- links and shadows -----------------------------------------------------------------
    def find_link(self, flow: str, side: Side, record_id: str) -> Link | None:
        """The active link of a record of `side` in `flow`, if any."""
        return self.find_links(flow, side, [record_id]).get(record_id)

    def find_links(self, flow: str, side: Side, record_ids: Iterable[str]) -> dict[str, Link]:
        """Active links for many records of one side at once, keyed by that side's id."""
        column = Link.invoiced_id if side == "invoiced" else Link.keap_id
        found: dict[str, Link] = {}
        with self._session() as session:
            for chunk in _chunks(list(dict.fromkeys(record_ids)), IN_CLAUSE_CHUNK):
                query = _active_links(flow).where(column.in_(chunk))
                for link in session.scalars(query.options(selectinload(Link.shadows))):
                    found[link.invoiced_id if column is Link.invoiced_id else link.keap_id] = link
        return found

    def link_ids_of(self, flow: str | Sequence[str], side: Side, record_ids: Iterable[str]) -> dict[str, int]:
        """The active link id of each record of `side` in `flow` (or any of several flows) that has one, keyed by
        that record's id: what a plan keeps of many pairs (their links and shadows are loaded a batch at a time,
        `links_by_id`)."""
        column = Link.invoiced_id if side == "invoiced" else Link.keap_id
        flows = [flow] if isinstance(flow, str) else list(flow)
        found: dict[str, int] = {}
        with self._session() as session:
            for chunk in _chunks(list(dict.fromkeys(record_ids)), IN_CLAUSE_CHUNK):
                query = select(column, Link.id).where(Link.flow.in_(flows), Link.status == LinkStatus.ACTIVE, column.in_(chunk))
                found.update((record_id, link_id) for record_id, link_id in session.execute(query))
        return found

    def links_since(self, flow: str, after_link_id: int) -> list[tuple[int, str]]:
        """(link id, Invoiced id) of the active links of `flow` made after `after_link_id`, oldest first: the
        parents a nested flow has not read the children of yet (link ids only grow)."""
        query = select(Link.id, Link.invoiced_id).where(
            Link.flow == flow, Link.status == LinkStatus.ACTIVE, Link.id > after_link_id).order_by(Link.id)
        with self._session() as session:
            return [(link_id, invoiced_id) for link_id, invoiced_id in session.execute(query)]

    def closed_twins(self, flow: str) -> dict[str, str]:
        """Invoiced id -> the Keap id of its latest closed link in `flow` (the twin a record had before)."""
        query = select(Link.invoiced_id, Link.keap_id).where(Link.flow == flow, Link.status != LinkStatus.ACTIVE).order_by(Link.id)
        with self._session() as session:
            return {invoiced_id: keap_id for invoiced_id, keap_id in session.execute(query)}

    def count_links(self, flow: str) -> int:
        """How many active links `flow` has."""
        with self._session() as session:
            return session.scalar(select(func.count()).select_from(Link).where(
                Link.flow == flow, Link.status == LinkStatus.ACTIVE)) or 0

    def links_of_record(self, record_id: str) -> list[Link]:
        """Every link, active or closed, of any flow, whose Invoiced or Keap id is `record_id`, oldest
        first: what `explain` shows (a closed link says why it ended)."""
        query = (
            select(Link)
            .where((Link.invoiced_id == record_id) | (Link.keap_id == record_id))
            .order_by(Link.id)
            .options(selectinload(Link.shadows))
        )
        with self._session() as session:
            return list(session.scalars(query))

    def links_by_id(self, link_ids: Iterable[int]) -> dict[int, Link]:
        """Links (active or closed) with their shadows, by id: the pairs that conflicts and lossy notes name."""
        found: dict[int, Link] = {}
        with self._session() as session:
            for chunk in _chunks(list(dict.fromkeys(link_ids)), IN_CLAUSE_CHUNK):
                for link in session.scalars(select(Link).where(Link.id.in_(chunk)).options(selectinload(Link.shadows))):
                    found[link.id] = link
        return found

    def shadow_sizes(self, link_ids: Sequence[int]) -> list[int]:
        """The characters each link's stored shadows take as JSON text (field values and records of both sides), in
        the order of `link_ids` (0 for an unknown id): what loading the links costs, told without loading them."""
        sizes: dict[int, int] = {}
        text = func.length(func.coalesce(cast(ShadowRow.field_values, Text), "")) + \
            func.length(func.coalesce(cast(ShadowRow.record, Text), ""))
        with self._session() as session:
            for chunk in _chunks(list(dict.fromkeys(link_ids)), IN_CLAUSE_CHUNK):
                query = select(ShadowRow.link_id, func.sum(text)).where(ShadowRow.link_id.in_(chunk)).group_by(ShadowRow.link_id)
                sizes.update((link_id, int(size or 0)) for link_id, size in session.execute(query))
        return [sizes.get(link_id, 0) for link_id in link_ids]

    def longest_recent_record(self, flows: Sequence[str], side: Side, sample: int = SHADOW_SAMPLE) -> int:
        """The characters (JSON text) of the longest stored `side` record among the `sample` newest links of `flows`
        (0 without any): what a record of theirs read again is likely to weigh (a Keap read's page size)."""
        newest = select(Link.id).where(Link.flow.in_(list(flows))).order_by(Link.id.desc()).limit(sample)
        query = select(func.max(func.length(cast(ShadowRow.record, Text)))).where(
            ShadowRow.link_id.in_(newest.scalar_subquery()), ShadowRow.side == side)
        with self._session() as session:
            return int(session.execute(query).scalar() or 0)

    def record_places(self, record_id: str) -> set[tuple[str, Side]]:
        """(flow, side) of every link, write, failure and review item that names `record_id`: the records a
        bare id may mean (`explain`)."""
        queries = [
            select(Link.flow, literal("invoiced")).where(Link.invoiced_id == record_id),
            select(Link.flow, literal("keap")).where(Link.keap_id == record_id),
            select(AuditEntry.flow, AuditEntry.side).where(AuditEntry.record_id == record_id),
            select(Failure.flow, Failure.side).where(Failure.record_id == record_id),
            select(ReviewItem.flow, literal("invoiced")).where(ReviewItem.invoiced_id == record_id),
        ]
        with self._session() as session:
            return {(flow, side) for query in queries for flow, side in session.execute(query.distinct())}

    def active_link_ids(self, flow: str) -> dict[str, str]:
        """invoiced id -> keap id for every active link of `flow`: two columns, streamed."""
        query = select(Link.invoiced_id, Link.keap_id).where(
            Link.flow == flow, Link.status == LinkStatus.ACTIVE
        )
        with self._session() as session:
            rows = session.execute(query.execution_options(yield_per=5000))
            return {invoiced_id: keap_id for invoiced_id, keap_id in rows}

    def iter_links(self, flow: str, *, batch_size: int = 1000) -> Iterator[Link]:
        """Every active link of `flow` with shadows; one short transaction per keyset page."""
        after = 0
        while True:
            query = (
                _active_links(flow)
                .where(Link.id > after)
                .order_by(Link.id)
                .limit(batch_size)
                .options(selectinload(Link.shadows))
            )
            with self._session() as session:
                batch = list(session.scalars(query))
            yield from batch
            if len(batch) < batch_size:
                return
            after = batch[-1].id

    def upsert_link(
        self,
        flow: str,
        invoiced_id: str,
        keap_id: str,
        *,
        invoiced: Shadow | None = None,
        keap: Shadow | None = None,
    ) -> Link:
        """Create the active link or refresh its shadows; a side given as None keeps its shadow."""
        now = self.clock()
        with self._session() as session:
            link = session.scalar(
                _active_links(flow)
                .where(Link.invoiced_id == invoiced_id)
                .options(selectinload(Link.shadows))
            )
            if link is not None and link.keap_id != keap_id:
                raise LinkConflict(
                    f"{flow}: Invoiced {invoiced_id} is linked to Keap {link.keap_id}, "
                    f"not {keap_id}"
                )
            if link is None:
                holder = session.scalar(
                    select(Link.invoiced_id).where(
                        Link.flow == flow, Link.status == LinkStatus.ACTIVE, Link.keap_id == keap_id
                    )
                )
                if holder is not None:
                    raise LinkConflict(f"{flow}: Keap {keap_id} is linked to Invoiced {holder}")
                link = Link(
                    flow=flow,
                    invoiced_id=invoiced_id,
                    keap_id=keap_id,
                    status=LinkStatus.ACTIVE,
                    created_at=now,
                    updated_at=now,
                    shadows=[],
                )
                session.add(link)
            link.updated_at = now
            for side, snapshot in (("invoiced", invoiced), ("keap", keap)):
                if snapshot is not None:
                    _put_shadow(link, side, snapshot, now)
            session.flush()
            return link

    def add_links(self, flow: str, new_links: Sequence[NewLink]) -> list[int]:
        """Insert many new active links and their shadows in a few statements; returns their ids.

        For the first match of large existing data sets, where one `upsert_link` per pair would
        cost a round trip each. A pair already linked violates the unique indexes (IntegrityError).
        """
        if not new_links:
            return []
        now = self.clock()
        link_rows = [
            {
                "flow": flow,
                "invoiced_id": new.invoiced_id,
                "keap_id": new.keap_id,
                "status": LinkStatus.ACTIVE,
                "created_at": now,
                "updated_at": now,
            }
            for new in new_links
        ]
        with self._session() as session:
            inserted = session.scalars(
                insert(Link).returning(Link.id, sort_by_parameter_order=True), link_rows
            )
            link_ids = list(inserted)
            shadow_rows = [
                {
                    "link_id": link_id,
                    "side": side,
                    "field_values": snapshot.values,
                    "source_updated": snapshot.updated,
                    "record": snapshot.record,
                    "written_at": now,
                }
                for link_id, new in zip(link_ids, new_links, strict=True)
                for side, snapshot in (("invoiced", new.invoiced), ("keap", new.keap))
                if snapshot is not None
            ]
            if shadow_rows:
                session.execute(insert(ShadowRow), shadow_rows)
            lossy_rows = [_lossy_row(flow, link_id, note, new.run_id, now)
                          for link_id, new in zip(link_ids, new_links, strict=True) for note in new.lossy]
            if lossy_rows:
                session.execute(insert(LossyCarryRow), lossy_rows)
        return link_ids

    # --- lossy carries ---------------------------------------------------------------------
    def record_lossy_carries(self, link: Link, carried: Iterable[tuple[Side, str]], lossy: Iterable[LossyCarry],
                             *, run_id: int | None = None) -> None:
        """Replace the link's notes of each (side, field group) in `carried` (just carried there again) with `lossy`."""
        carried = set(carried)
        now = self.clock()
        with self._session() as session:
            for side, group in carried:
                session.execute(delete(LossyCarryRow).where(
                    LossyCarryRow.link_id == link.id, LossyCarryRow.side == side, LossyCarryRow.field_group == group))
            rows = [_lossy_row(link.flow, link.id, note, run_id, now) for note in lossy]
            if rows:
                session.execute(insert(LossyCarryRow), rows)

    def lossy_carries(self, flow: str | None = None, *, link_ids: Iterable[int] | None = None,
                      limit: int | None = None) -> list[LossyCarryRow]:
        """Lossy-carry notes, newest first: of a flow's active links, or of the given links (active or closed)."""
        query = select(LossyCarryRow).order_by(LossyCarryRow.id.desc()).limit(limit)
        if link_ids is not None:
            query = query.where(LossyCarryRow.link_id.in_(list(link_ids)))
        else:
            query = query.join(Link, Link.id == LossyCarryRow.link_id).where(Link.status == LinkStatus.ACTIVE)
        with self._session() as session:
            return list(session.scalars(_for_flow(query, LossyCarryRow.flow, flow)))

    def close_link(self, link_id: int, reason: str) -> None:
        """End a link (unlink, delete, type change); the row and its shadows stay for history."""
        with self._session() as session:
            closed = session.execute(
                update(Link)
                .where(Link.id == link_id, Link.status == LinkStatus.ACTIVE)
                .values(status=LinkStatus.CLOSED, closed_reason=reason, updated_at=self.clock())
            )
            if closed.rowcount == 0:  # type: ignore[attr-defined]
                raise LookupError(f"no active link with id {link_id}")

    # --- watermarks and event cursors ------------------------------------------------------
    def get_watermark(self, stream: str) -> str | None:
        with self._session() as session:
            return session.scalar(select(Watermark.value).where(Watermark.stream == stream))

    def set_watermark(self, stream: str, value: str) -> None:
        """Move a stream's watermark (or an event stream's cursor); call only after the changes
        it covers are committed, ideally in the same transaction."""
        with self._session() as session:
            session.merge(Watermark(stream=stream, value=value, updated_at=self.clock()))

    def forget_watermark(self, stream: str) -> None:
        """The stream has no watermark any more (a one-off marker done with)."""
        with self._session() as session:
            session.execute(delete(Watermark).where(Watermark.stream == stream))

    def watermarks(self) -> dict[str, str]:
        with self._session() as session:
            rows = session.execute(select(Watermark.stream, Watermark.value))
            return {stream: value for stream, value in rows}

    # --- the reconcile schedule ------------------------------------------------------------
    def mark_reconciled(self, flow: str) -> None:
        """The flow's reconcile finished now."""
        with self._session() as session:
            session.merge(Reconcile(flow=flow, finished_at=self.clock()))

    def reconcile_due(self, flows: Iterable[str], every: timedelta) -> list[str]:
        """Of `flows`, those never reconciled or not within `every`, in the order given."""
        flows = list(flows)
        with self._session() as session:
            last = dict(session.execute(select(Reconcile.flow, Reconcile.finished_at).where(Reconcile.flow.in_(flows))).all())
        now = self.clock()
        return [flow for flow in flows if flow not in last or now - last[flow] >= every]

    # --- create intents --------------------------------------------------------------------
    def open_intent(
        self, flow: str, source_side: Side, source_id: str, match_key: str | None
    ) -> Intent:
        """Persist a create before making it; an intent already open is returned unchanged, so
        a retried create reuses its idempotency key."""
        return self.open_intents(flow, source_side, [(source_id, match_key)])[source_id]

    def open_intents(
        self, flow: str, source_side: Side, keyed: Iterable[tuple[str, str | None]]
    ) -> dict[str, Intent]:
        """`open_intent` for a batch of (source id, match key) in a few statements, keyed by source id
        (a batch of creates costs one query and one insert, not two round trips per record)."""
        wanted = dict(keyed)
        found: dict[str, Intent] = {}
        with self._session() as session:
            for chunk in _chunks(list(wanted), IN_CLAUSE_CHUNK):
                query = select(Intent).where(
                    Intent.flow == flow,
                    Intent.source_side == source_side,
                    Intent.source_id.in_(chunk),
                )
                found.update((intent.source_id, intent) for intent in session.scalars(query))
            now = self.clock()
            new = [
                Intent(
                    flow=flow,
                    source_side=source_side,
                    source_id=source_id,
                    match_key=match_key,
                    idempotency_key=uuid.uuid4().hex,
                    created_at=now,
                )
                for source_id, match_key in wanted.items()
                if source_id not in found
            ]
            session.add_all(new)
            session.flush()
            found.update((intent.source_id, intent) for intent in new)
        return found

    def close_intent(self, flow: str, source_side: Side, source_id: str) -> bool:
        return self.close_intents(flow, [(source_side, source_id)]) == 1

    def close_intents(self, flow: str, sources: Iterable[tuple[Side, str]]) -> int:
        """Drop the intents of many (source side, source id) at once; returns how many were open."""
        by_side: dict[Side, list[str]] = {}
        for side, source_id in sources:
            by_side.setdefault(side, []).append(source_id)
        closed = 0
        with self._session() as session:
            for side, source_ids in by_side.items():
                for chunk in _chunks(list(dict.fromkeys(source_ids)), IN_CLAUSE_CHUNK):
                    result = session.execute(
                        delete(Intent).where(
                            Intent.flow == flow, Intent.source_side == side, Intent.source_id.in_(chunk)
                        )
                    )
                    closed += result.rowcount  # type: ignore[attr-defined]
        return closed

    def intents(self, flow: str | None = None) -> list[Intent]:
        """Open intents: a run adopts or completes these before creating anything new."""
        query = select(Intent).order_by(Intent.id)
        with self._session() as session:
            return list(session.scalars(_for_flow(query, Intent.flow, flow)))

    # --- failures --------------------------------------------------------------------------
    def record_failure(
        self,
        flow: str,
        side: Side,
        record_id: str,
        operation: str,
        message: str,
        *,
        field: str | None = None,
        payload: Any = None,
        source_updated: Any = None,
    ) -> Failure:
        """Add a rejected record, or count another attempt on its open failure, and schedule
        the next retry with exponential backoff. A dismissed failure stays dismissed while its source is
        unchanged (the same `source_updated`, the source's update time as the API gives it)."""
        now = self.clock()
        with self._session() as session:
            failure = session.scalar(
                select(Failure).where(
                    Failure.flow == flow,
                    Failure.side == side,
                    Failure.record_id == record_id,
                    Failure.operation == operation,
                    Failure.resolved_at.is_(None),
                )
            )
            if failure is None:
                failure = Failure(
                    flow=flow,
                    side=side,
                    record_id=record_id,
                    operation=operation,
                    attempts=0,
                    first_seen=now,
                )
                session.add(failure)
            failure.attempts += 1
            if failure.dismissed_at is not None and (source_updated is None or source_updated != failure.source_updated):
                failure.dismissed_at = failure.dismissed_reason = None
            failure.source_updated = source_updated
            failure.message = message
            failure.field = field
            failure.payload = payload
            failure.last_seen = now
            failure.next_retry_at = now + self.failure_backoff.delay(failure.attempts)
            session.flush()
            return failure

    def resolve_failures(self, flow: str, side: Side, record_id: str) -> int:
        """Mark a record's open failures resolved (it synced); returns how many."""
        with self._session() as session:
            resolved = session.execute(
                update(Failure)
                .where(
                    Failure.flow == flow,
                    Failure.side == side,
                    Failure.record_id == record_id,
                    Failure.resolved_at.is_(None),
                )
                .values(resolved_at=self.clock())
            )
            return resolved.rowcount  # type: ignore[attr-defined,no-any-return]

    def failures(
        self,
        flow: str | None = None,
        *,
        include_resolved: bool = False,
        record_ids: Iterable[str] | None = None,
    ) -> list[Failure]:
        """Open failures (or all), optionally only those of some records (of either side)."""
        query = select(Failure).order_by(Failure.id)
        if not include_resolved:
            query = query.where(Failure.resolved_at.is_(None))
        if record_ids is not None:
            query = query.where(Failure.record_id.in_(list(record_ids)))
        with self._session() as session:
            return list(session.scalars(_for_flow(query, Failure.flow, flow)))

    def iter_failures(self, flow: str | None = None, *, batch_size: int = 1000) -> Iterator[Failure]:
        """Open failures (of `flow`, else every flow) in id order, a keyset page of `batch_size` at a time in one
        short transaction each, so a listing of any length is never held whole (`failures`)."""
        after = 0
        while True:
            query = (select(Failure).where(Failure.resolved_at.is_(None), Failure.id > after)
                     .order_by(Failure.id).limit(batch_size))
            with self._session() as session:
                batch = list(session.scalars(_for_flow(query, Failure.flow, flow)))
            yield from batch
            if len(batch) < batch_size:
                return
            after = batch[-1].id

    def failures_due(self, flow: str | None = None) -> list[Failure]:
        """Open failures whose backoff has run out and that no one dismissed: the records to retry this run."""
        query = (
            select(Failure)
            .where(Failure.resolved_at.is_(None), Failure.dismissed_at.is_(None), Failure.next_retry_at <= self.clock())
            .order_by(Failure.next_retry_at)
        )
        with self._session() as session:
            return list(session.scalars(_for_flow(query, Failure.flow, flow)))

    def retry_failure_now(self, failure_id: int) -> Failure:
        """Make one open failure due (`retry ID`); raises LookupError when there is no such open failure."""
        with self._session() as session:
            failure = session.scalar(
                select(Failure).where(Failure.id == failure_id, Failure.resolved_at.is_(None))
            )
            if failure is None:
                raise LookupError(f"no open failure with id {failure_id}")
            failure.next_retry_at = self.clock()
            session.flush()
            return failure

    def dismiss_failure(self, failure_id: int, reason: str | None = None) -> Dismissal:
        """Take an open failure out of retries and the exit code until its source changes (`failures dismiss`),
        with `reason` (or none) replacing an earlier dismissal's; LookupError when there is no such open failure."""
        return self._set_dismissal(failure_id, self.clock(), reason)

    def undismiss_failure(self, failure_id: int) -> Dismissal:
        """Undo `dismiss_failure`: the failure counts and is retried again."""
        return self._set_dismissal(failure_id, None, None)

    def _set_dismissal(self, failure_id: int, at: datetime | None, reason: str | None) -> Dismissal:
        with self._session() as session:
            failure = session.scalar(select(Failure).where(Failure.id == failure_id, Failure.resolved_at.is_(None)))
            if failure is None:
                raise LookupError(f"no open failure with id {failure_id}")
            before = Dismissal(failure, failure.dismissed_at is not None, failure.dismissed_reason)
            failure.dismissed_at, failure.dismissed_reason = at, reason
            session.flush()
            return before

    def retry_failures_now(self, flow: str | None = None) -> int:
        """Make every open failure no one dismissed due (the `retry` command); returns how many."""
        query = update(Failure).where(Failure.resolved_at.is_(None), Failure.dismissed_at.is_(None))
        with self._session() as session:
            if flow is not None:
                query = query.where(Failure.flow == flow)
            result = session.execute(query.values(next_retry_at=self.clock()))
            return result.rowcount  # type: ignore[attr-defined,no-any-return]

    # --- review list (ambiguous matches) ---------------------------------------------------
    def add_review_item(
        self, flow: str, invoiced_id: str, candidate_ids: Sequence[str], reason: str
    ) -> ReviewItem:
        """Put a record on the review list, or refresh its open item's candidates."""
        with self._session() as session:
            item = session.scalar(_open_review_item(flow, invoiced_id))
            if item is None:
                item = ReviewItem(flow=flow, invoiced_id=invoiced_id, created_at=self.clock())
                session.add(item)
            item.candidate_ids = list(candidate_ids)
            item.reason = reason
            session.flush()
            return item

    def review_items(
        self, flow: str | None = None, *, include_resolved: bool = False, invoiced_id: str | None = None
    ) -> list[ReviewItem]:
        """Open review items (or all), optionally only those of one Invoiced record."""
        query = select(ReviewItem).order_by(ReviewItem.id)
        if not include_resolved:
            query = query.where(ReviewItem.resolution.is_(None))
        if invoiced_id is not None:
            query = query.where(ReviewItem.invoiced_id == invoiced_id)
        with self._session() as session:
            return list(session.scalars(_for_flow(query, ReviewItem.flow, flow)))

    def resolve_review_item(self, flow: str, invoiced_id: str, resolution: str) -> ReviewItem:
        """Close a record's open review item with what was decided (e.g. `linked 123`, `create`)."""
        with self._session() as session:
            item = session.scalar(_open_review_item(flow, invoiced_id))
            if item is None:
                raise LookupError(f"{flow}: no open review item for Invoiced {invoiced_id}")
            item.resolution = resolution
            item.resolved_at = self.clock()
            return item

    def create_decisions(self, flow: str) -> dict[str, list[str]]:
        """Invoiced ids a person chose to create (`review ID --create`: the item resolved `create` with a
        create intent opened) whose create is not done yet, each with the Keap candidates ruled out."""
        return {item.invoiced_id: list(item.candidate_ids) for item in self._pending_decisions(flow)
                if item.resolution == CREATE_RESOLUTION}

    def pick_decisions(self, flow: str) -> dict[str, str]:
        """Invoiced ids a person linked to one candidate (`review ID --pick KEAP_ID`: the item resolved
        `linked KEAP_ID` with an intent opened) whose link is not made yet, each with the Keap id picked."""
        return {item.invoiced_id: (item.resolution or "").removeprefix(PICK_RESOLUTION) for item in self._pending_decisions(flow)
                if (item.resolution or "").startswith(PICK_RESOLUTION)}

    def _pending_decisions(self, flow: str) -> list[ReviewItem]:
        """Decided review items of `flow` whose record still has its intent open: the next pass carries them out."""
        query = select(ReviewItem).join(
            Intent,
            (Intent.flow == ReviewItem.flow)
            & (Intent.source_side == "invoiced")
            & (Intent.source_id == ReviewItem.invoiced_id),
        ).where(ReviewItem.flow == flow, ReviewItem.resolution.is_not(None))
        with self._session() as session:
            return list(session.scalars(query))

    # --- conflicts -------------------------------------------------------------------------
    def record_conflict(
        self,
        link: Link,
        field_group: str,
        *,
        invoiced_value: Any,
        keap_value: Any,
        winner: Side,
        reason: str,
        run_id: int | None = None,
    ) -> ConflictRow:
        conflict = ConflictRow(
            flow=link.flow,
            link_id=link.id,
            field_group=field_group,
            invoiced_value=invoiced_value,
            keap_value=keap_value,
            winner=winner,
            reason=reason,
            run_id=run_id,
            created_at=self.clock(),
        )
        with self._session() as session:
            session.add(conflict)
            session.flush()
            return conflict

    def conflicts(
        self, flow: str | None = None, *, link_id: int | None = None, limit: int = 100
    ) -> list[ConflictRow]:
        """Newest first."""
        query = select(ConflictRow).order_by(ConflictRow.id.desc()).limit(limit)
        if link_id is not None:
            query = query.where(ConflictRow.link_id == link_id)
        with self._session() as session:
            return list(session.scalars(_for_flow(query, ConflictRow.flow, flow)))

    # --- audit log -------------------------------------------------------------------------
    def append_audit(
        self,
        flow: str,
        side: Side,
        record_id: str,
        operation: AuditOperation,
        *,
        before: Any = None,
        after: Any = None,
        run_id: int | None = None,
    ) -> AuditEntry:
        """Record one write to a system (or a link/unlink) with the values before and after."""
        [entry] = self.append_audits([AuditNote(flow, side, record_id, operation, before, after, run_id)])
        return entry

    def append_audits(self, notes: Iterable[AuditNote]) -> list[AuditEntry]:
        """Many audit entries in one flush (a batch of creates appends them together, not one by one)."""
        now = self.clock()
        entries = [
            AuditEntry(
                run_id=note.run_id,
                flow=note.flow,
                side=note.side,
                record_id=note.record_id,
                operation=AuditOperation(note.operation),
                before=note.before,
                after=note.after,
                created_at=now,
            )
            for note in notes
        ]
        with self._session() as session:
            session.add_all(entries)
            session.flush()
        return entries

    def audit_entries(
        self,
        *,
        record_id: str | None = None,
        side: Side | None = None,
        flow: str | None = None,
        run_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Newest first, filtered by record (what `explain ID` shows), flow or run."""
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if record_id is not None:
            query = query.where(AuditEntry.record_id == record_id)
        if side is not None:
            query = query.where(AuditEntry.side == side)
        if run_id is not None:
            query = query.where(AuditEntry.run_id == run_id)
        with self._session() as session:
            return list(session.scalars(_for_flow(query, AuditEntry.flow, flow)))

    # --- runs and status -------------------------------------------------------------------
    def start_run(self, flows: Sequence[str], *, dry_run: bool) -> Run:
        run = Run(started_at=self.clock(), flows=list(flows), dry_run=dry_run, counts={})
        with self._session() as session:
            session.add(run)
            session.flush()
            return run

    def finish_run(self, run_id: int, result: str, counts: dict[str, Any]) -> Run:
        with self._session() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise LookupError(f"no run with id {run_id}")
            run.finished_at = self.clock()
            run.result = result
            run.counts = counts
            return run

    def runs(self, limit: int = 20) -> list[Run]:
        """Newest first."""
        with self._session() as session:
            return list(session.scalars(select(Run).order_by(Run.id.desc()).limit(limit)))

    def status_counts(self) -> StatusCounts:
        with self._session() as session:
            active_links = _count_by_flow(session, Link.flow, Link.status == LinkStatus.ACTIVE)
            open_failures = _count_by_flow(session, Failure.flow, Failure.resolved_at.is_(None) & Failure.dismissed_at.is_(None))
            dismissed = _count_by_flow(session, Failure.flow, Failure.resolved_at.is_(None) & Failure.dismissed_at.is_not(None))
            open_review = _count_by_flow(session, ReviewItem.flow, ReviewItem.resolution.is_(None))
            lossy = {flow: count for flow, count in session.execute(
                select(LossyCarryRow.flow, func.count()).join(Link, Link.id == LossyCarryRow.link_id)
                .where(Link.status == LinkStatus.ACTIVE).group_by(LossyCarryRow.flow))}
            open_intents = session.scalar(select(func.count()).select_from(Intent)) or 0
            conflicts = session.scalar(select(func.count()).select_from(ConflictRow)) or 0
            last_run = session.scalar(select(Run).order_by(Run.id.desc()).limit(1))
        return StatusCounts(
            active_links=active_links,
            open_failures=open_failures,
            dismissed_failures=dismissed,
            open_review_items=open_review,
            lossy_carries=lossy,
            open_intents=open_intents,
            conflicts=conflicts,
            last_run=last_run,
        )


class Transaction(Queries):
    """The query methods on one open transaction (see `Store.transaction`)."""

    def __init__(self, session: Session, clock: Callable[[], datetime], failure_backoff: FailureBackoff):
        self.session = session
        self.clock = clock
        self.failure_backoff = failure_backoff

    def _session(self) -> AbstractContextManager[Session]:
        return nullcontext(self.session)


class Store(Queries):
    """The state database: SQLite file by default, PostgreSQL by URL."""

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], datetime] = utcnow,
        failure_backoff: FailureBackoff = FailureBackoff(),
    ) -> None:
        self.engine: Engine = create_state_engine(url)
        self.clock = clock
        self.failure_backoff = failure_backoff
        self._flow_locks = FlowLocks(self.engine, clock)

    def migrate(self) -> None:
        """Bring the schema to the newest migration (safe to call on every start)."""
        upgrade_to_head(self.engine)

    def refresh_statistics(self) -> bool:
        """PostgreSQL: take the planner's statistics of the links again (`ANALYZE links`) when their count is off from
        the one the statistics were taken at by more than `STALE_ROWS` and `STALE_SHARE`, as autovacuum would; it may
        be off, and a first sync grows the links from none to every record within one pass, faster than its nap.
        Without them the planner could not tell its partial unique indexes apart: a link looked up by its Invoiced id
        read every link of its flow, and the pass after a first sync of 100,000 companies ran for over half an hour.
        Costs one count a pass. True when it analyzed; SQLite needs none (False)."""
        if self.engine.dialect.name != "postgresql":
            return False
        with self.engine.begin() as connection:
            taken_at = max(0.0, connection.scalar(text("SELECT reltuples FROM pg_class WHERE oid = 'links'::regclass")) or 0.0)
            count = connection.scalar(select(func.count()).select_from(Link)) or 0
            if abs(count - taken_at) <= max(STALE_ROWS, STALE_SHARE * taken_at):
                return False
            connection.execute(text("ANALYZE links"))
        return True

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """All writes inside commit together; any exception rolls every one of them back."""
        with self._session() as session:
            yield Transaction(session, self.clock, self.failure_backoff)

    def flow_lock(self, flow: str) -> AbstractContextManager[FlowLease]:
        """Hold `flow` for this worker until its process ends at the latest; raises `FlowLockHeld`
        at once if a live worker has it."""
        return self._flow_locks.hold(flow)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _active_links(flow: str) -> Select[Link]:
    return select(Link).where(Link.flow == flow, Link.status == LinkStatus.ACTIVE)


def _put_shadow(link: Link, side: Side, snapshot: Shadow, now: datetime) -> None:
    shadow = link.shadow(side)
    if shadow is None:
        shadow = ShadowRow(side=side)
        link.shadows.append(shadow)
    shadow.field_values = snapshot.values
    shadow.source_updated = snapshot.updated
    shadow.record = snapshot.record
    shadow.written_at = now


def _lossy_row(flow: str, link_id: int, note: LossyCarry, run_id: int | None, now: datetime) -> dict[str, Any]:
    return {"flow": flow, "link_id": link_id, "side": note.side, "field_group": note.rule, "field": note.field,
            "source_value": note.source, "sent_value": note.sent, "reason": note.reason, "run_id": run_id, "created_at": now}


def _open_review_item(flow: str, invoiced_id: str) -> Select[ReviewItem]:
    return select(ReviewItem).where(
        ReviewItem.flow == flow,
        ReviewItem.invoiced_id == invoiced_id,
        ReviewItem.resolution.is_(None),
    )


def _for_flow(query: SelectT, column: QueryableAttribute[str], flow: str | None) -> SelectT:
    return query if flow is None else query.where(column == flow)


def _count_by_flow(
    session: Session, column: QueryableAttribute[str], condition: ColumnElement[bool]
) -> dict[str, int]:
    rows = session.execute(select(column, func.count()).where(condition).group_by(column))
    return {flow: count for flow, count in rows}

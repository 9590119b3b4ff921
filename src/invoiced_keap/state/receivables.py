"""The state of what customers owe in Keap: the custom fields and tag the sync made or found (`keap_definitions`),
and per customer the figures as last read and what was last written to its Keap record (`receivables`).

A mixin of `store.Queries`: each method runs in the store's own transaction or in the one a `Transaction` holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from invoiced_keap.state.models import Failure, KeapDefinition, Link, LinkStatus, Receivable


GONE = "gone"
"""Set in the figures of a customer gone from Invoiced whose Keap record has yet to be cleared: its row goes then."""


@dataclass(frozen=True)
class Definition:
    keap_id: str
    field_type: str | None


@dataclass(frozen=True)
class Target:
    """A customer whose Keap record is to be told what it owes: its row, and its active link now."""

    receivable: Receivable
    flow: str
    keap_id: str


class ReceivableQueries:
    _session: Callable[[], AbstractContextManager[Session]]
    clock: Callable[[], datetime]

    # --- what the sync made in Keap ----------------------------------------------------------------
    def definitions(self, keap_object: str) -> dict[str, Definition]:
        """Names (labels, or the tag's name) -> Keap id and field type, for one object (`tags` for tags)."""
        with self._session() as session:
            rows = session.scalars(select(KeapDefinition).where(KeapDefinition.keap_object == keap_object))
            return {row.name: Definition(row.keap_id, row.field_type) for row in rows}

    def put_definition(self, keap_object: str, name: str, keap_id: str, field_type: str | None = None) -> None:
        with self._session() as session:
            session.merge(KeapDefinition(keap_object=keap_object, name=name, keap_id=keap_id, field_type=field_type,
                                         found_at=self.clock()))

    def forget_definitions(self, keap_object: str, names: Iterable[str] | None = None) -> None:
        """Keap refused a write naming them (all of the object's, or `names`): find them again (or make them)."""
        query = delete(KeapDefinition).where(KeapDefinition.keap_object == keap_object)
        if names is not None:
            query = query.where(KeapDefinition.name.in_(list(names)))
        with self._session() as session:
            session.execute(query)

    # --- what customers owe ----------------------------------------------------------------------------
    def receivables(self, customer_ids: Iterable[str]) -> dict[str, Receivable]:
        wanted = list(customer_ids)
        found: dict[str, Receivable] = {}
        with self._session() as session:
            for start in range(0, len(wanted), 500):
                query = select(Receivable).where(Receivable.customer_id.in_(wanted[start : start + 500]))
                found.update((row.customer_id, row) for row in session.scalars(query))
        return found

    def put_figures(self, customer_id: str, figures: Mapping[str, Any], open_invoices: int, *, pending: bool,
                    opens_at: datetime | None = None) -> None:
        """The customer's figures as read now; `pending`: its Keap record has yet to be told; `opens_at`: when its
        earliest open invoice dated ahead starts to count (read again then: `receivables_due`)."""
        with self._session() as session:
            row = session.get(Receivable, customer_id)
            if row is None:
                row = Receivable(customer_id=customer_id)
                session.add(row)
            row.figures, row.open_invoices, row.computed_at, row.pending = dict(figures), open_invoices, self.clock(), pending
            row.opens_at = opens_at

    def mark_all_pending(self) -> None:
        """Every customer's Keap record is to be told again (the settings of what is written changed)."""
        with self._session() as session:
            session.execute(update(Receivable).values(pending=True))

    def receivables_due(self, every: timedelta) -> list[str]:
        """Customers with open invoices whose figures were read `every` ago or longer (aging moves with time), and
        those with an invoice dated ahead whose date has come (Invoiced sends no event then)."""
        now = self.clock()
        aged = and_(Receivable.open_invoices > 0, Receivable.computed_at <= now - every)
        with self._session() as session:
            query = select(Receivable.customer_id).where(or_(aged, Receivable.opens_at <= now))
            return list(session.scalars(query.order_by(Receivable.computed_at)))

    def receivables_to_write(self, flows: Sequence[str]) -> list[Target]:
        """Customers linked in one of `flows` whose Keap record has yet to be told: figures not written yet, or
        written to another record (the link appeared or moved since)."""
        on_link = and_(Link.invoiced_id == Receivable.customer_id, Link.status == LinkStatus.ACTIVE, Link.flow.in_(flows))
        stale = or_(Receivable.pending.is_(True), Receivable.written_flow.is_(None), Receivable.written_flow != Link.flow,
                    Receivable.written_keap_id != Link.keap_id)
        with self._session() as session:
            rows = session.execute(select(Receivable, Link.flow, Link.keap_id).join(Link, on_link).where(stale)
                                   .order_by(Receivable.customer_id))
            return [Target(row, flow, keap_id) for row, flow, keap_id in rows]

    def mark_written(self, customer_id: str, flow: str, keap_id: str, values: Mapping[str, Any],
                     tagged: bool | None, *, done: bool, tag: str | None = None) -> None:
        """What the customer's Keap record holds now (`tag`: the name of the tag the sync put on, when `tagged`);
        `done`: everything wanted went through (no longer pending)."""
        with self._session() as session:
            row = session.get(Receivable, customer_id)
            if row is None:
                return
            row.written_flow, row.written_keap_id, row.written, row.tagged = flow, keap_id, dict(values), tagged
            row.tag = tag if tagged else None
            row.written_at, row.pending = self.clock(), not done

    def receivables_written(self, flow: str) -> list[Receivable]:
        """The customers whose values or tag the sync wrote to a Keap record of `flow`, in Keap id order."""
        with self._session() as session:
            query = select(Receivable).where(Receivable.written_flow == flow, Receivable.written_keap_id.is_not(None))
            return list(session.scalars(query.order_by(Receivable.written_keap_id)))

    def hold_found(self, customer_id: str, values: Mapping[str, Any], tagged: bool | None, tag: str | None) -> None:
        """What the customer's Keap record was found to hold (it drifted from what the sync wrote: a Keap user's
        edit, a field or the tag deleted in Keap): kept as what it holds, and pending, so that the next write puts
        right what differs."""
        with self._session() as session:
            row = session.get(Receivable, customer_id)
            if row is None or row.written_keap_id is None:
                return
            row.written, row.tagged, row.tag, row.pending = dict(values), tagged, tag if tagged else None, True

    def receivables_unlinked(self, flows: Sequence[str]) -> list[Receivable]:
        """Customers whose values were written to a Keap record of one of `flows` and who have no active link in
        any of `flows` now (the link closed with no new one: a customer deleted in Invoiced and unlinked, a
        record unlinked), unless that record is linked to another customer now (it is that one's to write)."""
        linked = select(Link.id).where(Link.invoiced_id == Receivable.customer_id, Link.status == LinkStatus.ACTIVE,
                                       Link.flow.in_(flows))
        taken = select(Link.id).where(Link.flow == Receivable.written_flow, Link.keap_id == Receivable.written_keap_id,
                                      Link.status == LinkStatus.ACTIVE)
        with self._session() as session:
            query = select(Receivable).where(Receivable.written_flow.in_(flows), Receivable.written_keap_id.is_not(None),
                                             ~linked.exists(), ~taken.exists())
            return list(session.scalars(query.order_by(Receivable.customer_id)))

    def forget_written(self, customer_id: str) -> None:
        """Nothing of the sync's is on a Keap record for the customer any more (its values cleared, or the record
        gone): the next record it is linked to is written whole; the row of a customer gone from Invoiced goes."""
        with self._session() as session:
            row = session.get(Receivable, customer_id)
            if row is None:
                return
            if (row.figures or {}).get(GONE):
                session.delete(row)
                return
            row.written_flow = row.written_keap_id = row.written = row.tagged = row.tag = None
            row.written_at = self.clock()

    def forget_customers(self, customer_ids: Iterable[str]) -> None:
        """Customers gone from Invoiced (deleted, merged away): their rows go, except where something was written to a
        Keap record, which stays (nothing open, so never read again) until that record is cleared once its link
        closes (`receivables_unlinked`); a record whose link stays (deletes `ignore`) is left as it is."""
        gone = list(customer_ids)
        with self._session() as session:
            for start in range(0, len(gone), 500):
                chunk = gone[start : start + 500]
                session.execute(delete(Receivable).where(Receivable.customer_id.in_(chunk),
                                                         Receivable.written_keap_id.is_(None)))
                for row in session.scalars(select(Receivable).where(Receivable.customer_id.in_(chunk))):
                    row.figures, row.open_invoices, row.pending = {**(row.figures or {}), GONE: True}, 0, False
                    row.opens_at = None

    def resolve_operation_failures(self, flow: str, record_id: str, operation: str) -> None:
        """Resolve the Keap record's open failures of one operation (the others stay open)."""
        with self._session() as session:
            session.execute(update(Failure).where(Failure.flow == flow, Failure.side == "keap", Failure.record_id == record_id,
                                                  Failure.operation == operation, Failure.resolved_at.is_(None))
                            .values(resolved_at=self.clock()))

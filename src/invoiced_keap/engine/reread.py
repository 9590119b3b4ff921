"""Reading again, just before they are written over, the records a chunk of writes targets (issue #13: an edit made
while a pass runs must never be overwritten unseen).

A pass plans from what it read at its start, and a paced pass writes minutes later (1,666 Keap writes take about
7 minutes at 240 calls a minute). So `apply.Applier` asks, before each chunk of `REREAD_EVERY` writes, which of the
chunk's records moved since they were planned (`Rereads.moved`), and plans those pairs again from the fresh records
with the same pure planner (`planner.PairWork.replanned`): an edit of another field is carried, one of the same field
is a conflict the flow's policy settles, and it is recorded. Stamps into Invoiced metadata (a PATCH replaces the whole
map) are checked the same way before each batch of stamps. Creates overwrite nothing.

One bulk read of a side per call, never one per record, and none for a chunk that writes nothing:

- Keap contacts and products: the targets by id (`KeapConnector.by_ids`: one listing per 100 ids);
- Keap companies (no id filter): what changed since the pass's read (`KeapConnector.changes` from the flow's Keap
  mark, then from where the previous re-read stopped): one listing per 1,000 changed companies;
- Invoiced customers and items: what changed since the pass's read, the same way (`InvoicedConnector.changed`): one
  page per 100 changed records, our own writes of the previous chunk among them;
- Invoiced contacts (the API lists them per customer only): the account's events since the pass's event cursor
  (one page per 100 events), and one GET per target a `contact.*` event names.

A read that continues from the previous one also sees records of later chunks: what it saw is kept in a spool on disk
for them (`RecordSpool`), so nothing seen is lost to the chain. A record moved when the fresh one is newer, or as new
(Invoiced times are whole seconds) with other values (`moved`). The watermarks are untouched: an edit that lands after
a re-read (at most one chunk's writes later) is still read by the next pass, as every edit after the pass's read is.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from invoiced_keap.connectors.invoiced import InvoicedConnector, UpdatedWatermark, contact_parent
from invoiced_keap.connectors.keap import IDS_PER_CALL, KeapConnector
from invoiced_keap.engine.changes import ParentTwins, get_each, get_record
from invoiced_keap.engine.plan import record_updated
from invoiced_keap.engine.shadows import raw_fields
from invoiced_keap.engine.spool import RecordSpool
from invoiced_keap.flows import Flow, Side
from invoiced_keap.mapping import Record
from invoiced_keap.state import Store

REREAD_EVERY = IDS_PER_CALL
"""Writes per re-read: a Keap write goes out at most 100 paced writes (about 25 s) after its record was read again,
and a chunk's Keap targets fit in one `by_ids` listing."""


def moved(flow: Flow, side: Side, planned: Record, fresh: Record) -> bool:
    """The fresh record is newer than the one planned, or as new with other values (its mapped fields, and its
    metadata where the planned record has it: what a stamp merges into)."""
    before, after = record_updated(side, planned), record_updated(side, fresh)
    if before is not None and after is not None and after != before:
        return after > before
    names = {*raw_fields(flow, side, planned), *raw_fields(flow, side, fresh), *(("metadata",) if "metadata" in planned else ())}
    return any(planned.get(name) != fresh.get(name) for name in names)


class Rereads:
    """The re-reads of one flow's applier (see the module docstring); `marks` are the pass's new watermarks (the
    flow's own stored ones where the pass has none: a read by id, a moved link's old flow). `close()` removes the
    spools."""

    def __init__(self, flow: Flow, store: Store, invoiced: InvoicedConnector, keap: KeapConnector,
                 marks: Mapping[str, str] | None = None) -> None:
        self.flow, self.store, self.invoiced, self.keap = flow, store, invoiced, keap
        self._marks = dict(marks or {})
        self._started: set[str] = set()  # the chains begun (their marks below are where the last read stopped)
        self._invoiced_mark: UpdatedWatermark | None = None
        self._keap_mark: datetime | None = None
        self._cursor: int | None = None
        self._named: set[str] = set()  # Invoiced contacts a `contact.*` event named since the pass's cursor
        self._seen: dict[Side, RecordSpool] = {}
        self._parents: ParentTwins | None = None

    async def moved(self, side: Side, planned: Mapping[str, Record]) -> dict[str, Record]:
        """The fresh records, by id, of those of `planned` (id -> the record as planned) that moved since: one bulk
        read of `side`, none when `planned` is empty. A record gone is left out (its write finds it gone)."""
        if not planned:
            return {}
        fresh = await (self._invoiced(planned) if side == "invoiced" else self._keap(planned))
        return {record_id: record for record_id, record in fresh.items()
                if record_id in planned and moved(self.flow, side, planned[record_id], record)}

    def close(self) -> None:
        for spool in self._seen.values():
            spool.close()
        self._seen.clear()

    # --- the sides -----------------------------------------------------------------------------------
    async def _keap(self, planned: Mapping[str, Record]) -> dict[str, Record]:
        keap_object, fields = self.flow.keap, self.flow.keap_fields
        if keap_object.ids_filter is not None:
            found = await self.keap.by_ids(keap_object, sorted(planned), fields=fields)
        else:
            if "keap" not in self._started:
                self._started.add("keap")
                text = self._mark("keap")
                self._keap_mark = datetime.fromisoformat(text) if text else None
            seen = self._spool("keap")
            read = await self.keap.changes(keap_object, self._keap_mark, fields=fields, into=seen)
            self._keap_mark = read.watermark
            found = {record_id: seen[record_id] for record_id in planned if record_id in seen}
        return {record_id: self._with_parent("keap", record) for record_id, record in found.items()}

    async def _invoiced(self, planned: Mapping[str, Record]) -> dict[str, Record]:
        resource = self.flow.invoiced
        if resource.parent is not None:
            return await self._invoiced_children(planned)
        if "invoiced" not in self._started:
            self._started.add("invoiced")
            text = self._mark("invoiced")
            self._invoiced_mark = UpdatedWatermark.from_text(text) if text else None
        if self._invoiced_mark is None:  # nothing was ever read of it: no chain to follow
            return await self._get_each(list(planned))
        seen = self._spool("invoiced")
        read = self.invoiced.changed(resource, self._invoiced_mark)
        async for record in read:
            record_id = str(record["id"])
            known = seen.get(record_id)
            if known is None or record["updated_at"] >= known["updated_at"]:
                seen[record_id] = record
        self._invoiced_mark = read.watermark
        return {record_id: seen[record_id] for record_id in planned if record_id in seen}

    async def _invoiced_children(self, planned: Mapping[str, Record]) -> dict[str, Record]:
        """A nested resource's records (a customer's contacts), named by the events since the pass's cursor."""
        if "events" not in self._started:
            self._started.add("events")
            text = self._mark("events")
            self._cursor = int(text) if text else None
        if self._cursor is None:
            return await self._get_each(list(planned))
        batch = await self.invoiced.events(self._cursor)
        self._cursor = batch.cursor if batch.cursor is not None else self._cursor
        for event in batch.events:
            parent = contact_parent(event)
            if parent is not None and event.object_id is not None:
                self._named.add(f"{parent}/{event.object_id}")
        return await self._get_each([record_id for record_id in planned if record_id in self._named])

    # --- plumbing --------------------------------------------------------------------------------------
    def _mark(self, stream: str) -> str | None:
        name = self.flow.mark(stream)
        return self._marks.get(name) or self.store.get_watermark(name)

    def _spool(self, side: Side) -> RecordSpool:
        if side not in self._seen:
            self._seen[side] = RecordSpool()
        return self._seen[side]

    def _twins(self) -> ParentTwins | None:
        if self.flow.parent is not None and self._parents is None:
            self._parents = ParentTwins.load(self.store, self.flow.parent)
        return self._parents

    def _with_parent(self, side: Side, record: Record) -> Record:
        twins = self._twins()
        return twins.of(side, record) if twins is not None else record

    async def _get_each(self, ids: list[str]) -> dict[str, Record]:
        """Invoiced records by one GET each (`changes.get_each`); a record gone is left out."""
        got = await get_each(ids, lambda record_id: get_record(self.flow, self.invoiced, self.keap, "invoiced", record_id,
                                                               self._twins()))
        return {record_id: record for record_id, record in zip(ids, got, strict=True) if record}

"""Reading what changed since each flow's watermarks, and routing it to the flows. Reads only: no state is written.

Each flow keeps three watermarks (`Flow.mark`): `<flow>.invoiced` (records updated since), `<flow>.events`
(the last Invoiced event handled: one listing of the account's events per pass serves every flow) and `<flow>.keap` (the newest Keap `update_time` read). Flows that share an
Invoiced resource (companies and contacts share customers) share its reads: each listing is read once per
pass from the oldest of their marks, each record goes to the flow that owns it now (`flows.flow_of`), and
each flow drops what its own mark already covers. The new marks are only handed back (`FlowChanges.watermarks`);
the pass commits them after the records they cover. A Keap read without a mark is a full listing (`keap_full`):
the pass reuses it as the match index instead of listing again. A mark is never invented when nothing was read.

Progress is noted every `READ_NOTE_EVERY` Invoiced records (one page) and once per Keap read; a shared read
is labelled with every flow it serves (`companies+contacts`).

`read_linked` reads linked records by id, or by a listing where that takes fewer calls (the pairs a rule added
since they were settled knows nothing of: `planner.Planner`).

`read_ids` reads named records only (webhooks, `verify --repair`): Invoiced by one GET per id, Keap in bulk where
the object has an id-list filter. Of the ids the bulk read left out (all, without such a filter) only linked ones
are checked (a delete is believed on a GET's 404), at most `GETS_PER_READ`, none once `should_stop()` says so:
a hook naming 1,000 ids costs at most ten listings and `GETS_PER_READ` GETs. The passes of one webhook batch share
their bulk reads (`batch_reads.BatchReads`): the flows on one Keap object (contacts: people, and the people of
companies) are served one listing per 100 ids between them. What is left is found by the next poll (changes) or
reconcile (deletes). No watermark moves: polling stays the safety net.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import aclosing, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Literal, cast

from invoiced_keap.connectors.errors import NotFound
from invoiced_keap.connectors.invoiced import PER_PAGE, Event, InvoicedConnector, Resource, UpdatedWatermark, contact_parent
from invoiced_keap.connectors.keap import IDS_PER_CALL, KeapConnector, page_size_for, updated_at
from invoiced_keap.engine.batch_reads import BatchReads
from invoiced_keap.engine.report import Progress, ProgressHook, no_progress
from invoiced_keap.engine.spool import RecordSpool
from invoiced_keap.flows import Flow, ParentLink, Side, flow_of
from invoiced_keap.mapping import Record
from invoiced_keap.state import Store

READ_NOTE_EVERY = 100
GETS_PER_READ = 50
"""At most this many linked Keap ids a bulk read did not return are checked by GET per `read_ids`."""
GETS_IN_FLIGHT = 4


@dataclass(frozen=True)
class ParentTwins:
    """A nested flow's parent links both ways (`flows.ParentLink`: a contact's customer and its Keap company),
    loaded once per pass, and what it adds to the flow's records: the Keap twin of an Invoiced record's parent,
    the Invoiced twin of a Keap record's parent (None where the parent is not linked)."""

    link: ParentLink
    keap_of: Mapping[str, str]  # Invoiced parent id -> Keap parent id
    invoiced_of: Mapping[str, str]

    @classmethod
    def load(cls, store: Store, link: ParentLink) -> ParentTwins:
        keap_of = store.active_link_ids(link.flow)
        return cls(link, keap_of, {keap_id: invoiced_id for invoiced_id, keap_id in keap_of.items()})

    def of(self, side: Side, record: Record) -> Record:
        """`record` with its parent's twin added (`keap_twin` on an Invoiced record, `invoiced_twin` on a Keap one)."""
        if side == "invoiced":
            return {**record, self.link.keap_twin: self.keap_of.get(str(record.get(self.link.invoiced_parent)))}
        parent = str((record.get(self.link.keap_parent) or {}).get("id") or "")
        return {**record, self.link.invoiced_twin: self.invoiced_of.get(parent)}

    def orphaned(self, record_ids: Iterable[str]) -> dict[str, str]:
        """Of a nested flow's Invoiced ids (`parent/id`: its links'), those whose parent has no link (deleted, merged
        away, a person now, its Keap company gone), each with why: the reason its link closes with."""
        return {record_id: f"its customer {parent} has no Keap company any more" for record_id in record_ids
                if (parent := record_id.partition("/")[0]) not in self.keap_of}


@dataclass
class FlowChanges:
    """One flow's share of a pass's reads: changed records by id per side, believed removals, new marks.

    A poll's records are spooled to disk (`spool.RecordSpool`; `close()` removes them), a read by id's are
    few and kept in dicts; the planner may add a spooled full Keap listing to match against (`listing`). `removed_keap` is filled only by a read by id (a GET that answered 404); a pass
    finds Keap deletes through a reconcile."""

    flow: str
    invoiced: MutableMapping[str, Record] = field(default_factory=dict)
    keap: MutableMapping[str, Record] = field(default_factory=dict)
    removed_invoiced: set[str] = field(default_factory=set)
    removed_keap: set[str] = field(default_factory=set)
    keap_full: bool = False
    watermarks: dict[str, str] = field(default_factory=dict)
    listing: RecordSpool | None = None  # a full Keap listing the planner read to match against (`spool_listing`)
    parents: ParentTwins | None = None  # a nested flow's parent links (`read_children`, `read_ids`)
    removal_reasons: dict[str, str] = field(default_factory=dict)  # why, where a removal is not a delete event
    elsewhere: set[str] = field(default_factory=set)  # Invoiced ids read this pass that another flow owns now, linked here

    @classmethod
    def spooled(cls, flow: str) -> FlowChanges:
        return cls(flow, RecordSpool(), RecordSpool())

    def spool_listing(self) -> RecordSpool:
        """A new spool for a full Keap listing, closed with the rest (`close`)."""
        if self.listing is not None:
            self.listing.close()
        self.listing = RecordSpool()
        return self.listing

    def close(self) -> None:
        """Remove the spooled records (the pass is done with them)."""
        for records in (self.invoiced, self.keap, self.listing):
            if isinstance(records, RecordSpool):
                records.close()


def _updated_mark(text: str | None) -> UpdatedWatermark | None:
    return UpdatedWatermark.from_text(text) if text else None


def _later(left: UpdatedWatermark | None, right: UpdatedWatermark | None) -> UpdatedWatermark | None:
    """The mark that covers more; at the same second, the union of the ids read."""
    if left is None or right is None:
        return left or right
    if left.updated_at != right.updated_at:
        return left if left.updated_at > right.updated_at else right
    return UpdatedWatermark(left.updated_at, left.ids | right.ids)


def _earliest(marks: Sequence[UpdatedWatermark | None]) -> UpdatedWatermark | None:
    known = [mark for mark in marks if mark is not None]
    if len(known) < len(marks):
        return None
    return min(known, key=lambda mark: (mark.updated_at, len(mark.ids)))


async def read_changes(
    store: Store, invoiced: InvoicedConnector, keap: KeapConnector, flows: Sequence[Flow],
    progress: ProgressHook = no_progress, *, read_keap: bool = True, read_invoiced: bool = True,
    events: PassEvents | None = None,
) -> dict[str, FlowChanges]:
    """Everything changed since each flow's marks (see the module docstring). Without `read_keap` the Keap side
    is not read, without `read_invoiced` the Invoiced resources its webhook delivers (`Resource.pushed`:
    customers) are not listed; their marks stay: what the push paths deliver is synced by id, and polling is the
    safety net. Events and items (which make no events) are read by every pass.
    `events`: the pass's event listing if the caller read it already (`read_events`), else read here. The caller
    closes the answers (`FlowChanges.close`)."""
    changes = {flow.name: FlowChanges.spooled(flow.name) for flow in flows}
    by_resource: dict[str, list[Flow]] = {}
    for flow in flows:
        if flow.parent is None:  # a nested flow's records are read once its parent flow is done (`read_children`)
            by_resource.setdefault(flow.invoiced.name, []).append(flow)
    try:
        if events is None:
            events = await read_events(store, invoiced, event_marks(flows))
        _take_events(store, flows, events, changes)
        for sharing in by_resource.values():
            if read_invoiced or not sharing[0].invoiced.pushed:
                await _read_invoiced(store, invoiced, sharing[0].invoiced, sharing, changes, progress)
        by_object: dict[str, list[Flow]] = {}
        for flow in flows if read_keap else ():
            by_object.setdefault(flow.keap.name, []).append(flow)
        for sharing in by_object.values():
            await _read_keap(store, keap, sharing, changes)
            for flow in sharing:
                progress(Progress(flow.name, f"read keap {flow.keap.name}", len(changes[flow.name].keap)))
    except BaseException:
        for flow_changes in changes.values():
            flow_changes.close()
        raise
    return changes


async def _read_invoiced(
    store: Store, invoiced: InvoicedConnector, resource: Resource, sharing: list[Flow],
    changes: dict[str, FlowChanges], progress: ProgressHook,
) -> None:
    marks = {flow.name: _updated_mark(store.get_watermark(flow.mark("invoiced"))) for flow in sharing}
    owners = {flow.name: flow for flow in sharing}
    label, step = "+".join(owners), f"read invoiced {resource.name}s"
    read = invoiced.changed(resource, _earliest(list(marks.values())))
    count = 0
    owned_elsewhere: dict[str, list[str]] = {name: [] for name in owners}  # checked for a link a page at a time
    async for record in read:
        count += 1
        if count % READ_NOTE_EVERY == 0:
            progress(Progress(label, step, count))
            _keep_linked_elsewhere(store, changes, owned_elsewhere)
        owner = flow_of(resource, record, owners)
        own_mark = marks.get(owner) if owner else None
        if owner is not None and not (own_mark and own_mark.covers(record)):
            changes[owner].invoiced[str(record["id"])] = record
            for other in owners.keys() - {owner}:
                owned_elsewhere[other].append(str(record["id"]))
    _keep_linked_elsewhere(store, changes, owned_elsewhere)
    progress(Progress(label, step, count))
    for flow in sharing:
        reached = _later(marks[flow.name], read.watermark)
        if reached is not None:
            changes[flow.name].watermarks[flow.mark("invoiced")] = reached.to_text()


def _keep_linked_elsewhere(store: Store, changes: dict[str, FlowChanges], owned_elsewhere: dict[str, list[str]]) -> None:
    """Of the records read that another flow owns now (by flow), keep in `FlowChanges.elsewhere` those the flow
    has a link of (a type change: the pass leaves that pair to its new flow), and empty the lists. Only the flow's
    own pass links its records, so a record without a link now has none when the flow is planned."""
    for name, record_ids in owned_elsewhere.items():
        if record_ids:
            changes[name].elsewhere.update(store.link_ids_of(name, "invoiced", record_ids))
            record_ids.clear()


@dataclass(frozen=True)
class PassEvents:
    """The account's events a pass read once for everyone who takes them (flows' removals, a company's people,
    what a customer owes): every event above the oldest of their cursors, oldest first, and the newest event id."""

    events: Sequence[Event]
    newest: int | None

    def since(self, cursor: str | None) -> Iterator[Event]:
        """The events above `cursor`, one at a time; none without one (a first read lists every record instead)."""
        return iter(()) if cursor is None else (event for event in self.events if event.id > int(cursor))

    def mark(self, cursor: str | None) -> str | None:
        """The cursor to commit once the events above `cursor` are handled."""
        newest = max(filter(None, (int(cursor) if cursor else None, self.newest)), default=None)
        return None if newest is None else str(newest)


async def read_events(store: Store, invoiced: InvoicedConnector, marks: Iterable[str]) -> PassEvents:
    """One listing of the account's events from the oldest of the cursors `marks` (a cursor not yet set reads only
    where the events stand); no call when nobody takes events."""
    cursors = [store.get_watermark(mark) for mark in marks]
    if not cursors:
        return PassEvents([], None)
    known = [int(cursor) for cursor in cursors if cursor]
    batch = await invoiced.events(min(known) if known else None)
    return PassEvents(batch.events, batch.cursor)


def event_marks(flows: Iterable[Flow]) -> list[str]:
    """The event cursors of the flows that take events."""
    return [flow.mark("events") for flow in flows if flow.invoiced.removed_by]


def _take_events(store: Store, flows: Sequence[Flow], events: PassEvents, changes: dict[str, FlowChanges]) -> None:
    """Each flow's removals from the events above its own cursor, and its new cursor."""
    for flow in flows:
        if flow.invoiced.removed_by is None:
            continue
        cursor = store.get_watermark(flow.mark("events"))
        for event in events.since(cursor):
            removed = flow.invoiced.removed_by(event)
            if removed is not None:
                changes[flow.name].removed_invoiced.add(removed)
        mark = events.mark(cursor)
        if mark is not None:
            changes[flow.name].watermarks[flow.mark("events")] = mark


async def _read_keap(store: Store, keap: KeapConnector, sharing: list[Flow], changes: dict[str, FlowChanges]) -> None:
    """One incremental read of a Keap object for every flow on it (contacts: people and the people of companies),
    from the oldest of their marks with the fields of all; each flow takes what its own mark does not cover. Its
    pages are sized by the longest record the flows stored lately (`page_size_for`), so records with long values are
    read fewer to a page."""
    marks = {flow.name: store.get_watermark(flow.mark("keap")) for flow in sharing}
    since = {name: datetime.fromisoformat(text) if text else None for name, text in marks.items()}
    earliest = None if None in since.values() else min(moment for moment in since.values() if moment is not None)
    fields = sorted({name for flow in sharing for name in flow.keap_fields})
    only = changes[sharing[0].name] if len(sharing) == 1 else None
    with nullcontext(only.keap) if only else RecordSpool() as records:
        longest = store.longest_recent_record([flow.name for flow in sharing], "keap")
        read = await keap.changes(sharing[0].keap, earliest, fields=fields, into=records,
                                  page_size=page_size_for(longest, keap.page_size))
        for flow in sharing if only is None else ():
            own = since[flow.name]
            for record_id, record in records.items():
                if own is None or (updated_at(record) or own) >= own:
                    changes[flow.name].keap[record_id] = record
    for flow in sharing:
        changes[flow.name].keap_full = marks[flow.name] is None
        reached = max(filter(None, (read.watermark, since[flow.name])), default=None)
        if reached is not None:
            changes[flow.name].watermarks[flow.mark("keap")] = reached.isoformat()


async def read_children(store: Store, invoiced: InvoicedConnector, flow: Flow, changes: FlowChanges, events: PassEvents) -> None:
    """A nested flow's Invoiced records (a company customer's contacts), read once the parent flow's pass is done:
    the children of every parent an event of the flow's names (`contact.*`), and of every parent linked since the
    flow's `parents` mark (all of them at first: a customer linked as a company brings its people along). The
    linked children of every parent that has no link (deleted, merged, a person now: `ParentTwins.orphaned`) are
    believed removed, whichever pass closed the parent's link (this one, an earlier one the breaker held this flow's
    removals in, one over the parent flow alone). Each record gets its parent's Keap twin (`ParentTwins`), the Keap
    records their parent's Invoiced twin."""
    link = flow.parent
    assert link is not None, f"{flow.name} is not nested"
    twins = changes.parents = ParentTwins.load(store, link)
    for record_id in list(changes.keap):  # the ids, not the records: a spool holds them on disk
        changes.keap[record_id] = twins.of("keap", changes.keap[record_id])
    named = parents_named(events.since(store.get_watermark(flow.mark("events"))))
    mark = store.get_watermark(flow.mark("parents"))
    linked_since = store.links_since(link.flow, int(mark) if mark else 0)
    wanted = sorted({parent for parent in named if parent in twins.keap_of} | {invoiced_id for _, invoiced_id in linked_since},
                    key=lambda parent: (len(parent), parent))
    async for record in children_of(invoiced, flow.invoiced, wanted):
        changes.invoiced[str(record["id"])] = twins.of("invoiced", record)
    orphans = twins.orphaned(store.active_link_ids(flow.name))
    changes.removed_invoiced.update(orphans)
    changes.removal_reasons.update(orphans)
    newest = max((link_id for link_id, _ in linked_since), default=None)
    if newest is not None:
        changes.watermarks[flow.mark("parents")] = str(newest)


async def every_record(invoiced: InvoicedConnector, flow: Flow, parents: ParentTwins | None = None) -> AsyncIterator[Record]:
    """Every live Invoiced record of a flow's resource (`verify`, `relink`): its full listing, or for a nested flow
    the children of every linked parent (one listing each, read side by side: `children_of`), with their parent's
    Keap twin."""
    if flow.parent is None:
        async for record in invoiced.all(flow.invoiced):
            yield record
        return
    assert parents is not None, f"{flow.name}: a nested flow's records need its parent links"
    async for record in children_of(invoiced, flow.invoiced, sorted(parents.keap_of, key=lambda parent: (len(parent), parent))):
        yield parents.of("invoiced", record)


async def children_of(invoiced: InvoicedConnector, resource: Resource, parents: Iterable[str],
                      in_flight: int | None = None) -> AsyncIterator[Record]:
    """The records of a nested resource under each parent (a customer's contacts), in the parents' order and each
    listing's own: what one listing after another would yield, but `in_flight` listings (by default the connector's
    in-flight limit, `InvoicedConnector.max_in_flight`) are read side by side, so N parents take about N / in_flight
    round trips, not N. The API lists them per parent only (no account-wide listing), so the calls stay one per
    parent and page. A listing ahead of the one being yielded holds at most two pages (one waiting its turn, one
    read), then pauses holding no call: what is held grows with `in_flight`, not with the parents. A listing's
    error is raised when its turn comes; the listings still running are then cancelled (as when the caller stops)."""
    window = max(1, in_flight or invoiced.max_in_flight)
    done = object()  # the end of a listing, in its queue

    async def read(parent: str, queue: asyncio.Queue[object]) -> None:
        try:
            async with aclosing(invoiced.children(resource, parent)) as records:  # closed at once when cancelled
                async for record in records:
                    await queue.put(record)
        except Exception:
            await queue.put(done)  # the reader then takes the error from the task
            raise
        await queue.put(done)

    def start(parent: str) -> tuple[asyncio.Queue[object], asyncio.Task[None]]:
        queue: asyncio.Queue[object] = asyncio.Queue(maxsize=PER_PAGE)
        return queue, asyncio.ensure_future(read(parent, queue))

    waiting = iter(parents)
    running = deque(start(parent) for parent in islice(waiting, window))
    try:
        while running:
            queue, task = running[0]
            while (item := await queue.get()) is not done:
                yield cast(Record, item)
            await task  # raises what the listing raised
            running.popleft()
            running.extend(start(parent) for parent in islice(waiting, 1))
    finally:
        for _, task in running:
            task.cancel()
        await asyncio.gather(*(task for _, task in running), return_exceptions=True)


def parents_named(events: Iterable[Event]) -> set[str]:
    """The customers whose people to read again: a contact event's customer; a merge's survivor, which takes the
    merged customer's people without contact events."""
    named: set[str] = set()
    for event in events:
        if (parent := contact_parent(event)) is not None:
            named.add(parent)
        elif event.type == "customer.merged" and event.object_id and event.original_customer:
            named.add(event.object_id)
    return named


async def get_record(flow: Flow, invoiced: InvoicedConnector, keap: KeapConnector, side: Side, record_id: str,
                     parents: ParentTwins | None = None) -> Record:
    """One record of the flow by id, with the Keap fields the flow reads, and its parent's twin for a nested flow
    (`parents`); NotFound when it is gone."""
    if side == "invoiced":
        record = await invoiced.get(flow.invoiced, record_id)
    else:
        record = await keap.get(flow.keap, record_id, fields=flow.keap_fields)
    return parents.of(side, record) if parents is not None else record


async def read_linked(flow: Flow, invoiced: InvoicedConnector, keap: KeapConnector, wanted: Mapping[Side, Sequence[str]],
                      linked: int, changes: FlowChanges) -> None:
    """Add to `changes` the records of the `wanted` ids of each side that exist (one gone is left out, and an Invoiced
    one another flow owns now: that flow's pass syncs it), each side read the cheaper of two ways: by id, or one
    listing of the flow's records (which holds at least its `linked` records). Invoiced: a GET each, or the listing
    (`PER_PAGE` a page); a nested flow's, the listing of each parent of one (the API lists them per parent only).
    Keap: `by_ids` (`IDS_PER_CALL` ids a listing; companies by id windows, the ids they leave out by GET), or the
    listing (`page_size` a page). A nested flow's records get their parent's twin (`changes.parents`)."""
    parents = changes.parents
    assert flow.parent is None or parents is not None, f"{flow.name}: a nested flow's records need its parent links"

    def take(side: Side, record: Record) -> None:
        if side == "keap" or flow.belongs(record):
            records = changes.invoiced if side == "invoiced" else changes.keap
            records[str(record["id"])] = parents.of(side, record) if parents is not None else record

    ids = set(wanted.get("invoiced", ()))
    if flow.parent is not None and ids:
        under = sorted({record_id.partition("/")[0] for record_id in ids}, key=lambda parent: (len(parent), parent))
        async for record in children_of(invoiced, flow.invoiced, under):
            if str(record["id"]) in ids:
                take("invoiced", record)
    elif len(ids) > _calls(linked, PER_PAGE):
        async for record in invoiced.all(flow.invoiced):
            if str(record["id"]) in ids:
                take("invoiced", record)
    elif ids:
        for record in await get_each(sorted(ids), lambda one: invoiced.get(flow.invoiced, one)):
            if record:
                take("invoiced", record)
    ids = set(wanted.get("keap", ()))
    if _calls(len(ids), IDS_PER_CALL) > _calls(linked, keap.page_size):
        async for record in keap.list_all(flow.keap, fields=flow.keap_fields):
            if str(record["id"]) in ids:
                take("keap", record)
        return
    found = await keap.by_ids(flow.keap, sorted(ids), fields=flow.keap_fields) if ids else {}
    got = await get_each(sorted(ids - set(found)), lambda one: keap.get(flow.keap, one, fields=flow.keap_fields))
    for record in [*found.values(), *got]:
        if record:
            take("keap", record)


def _calls(count: int, per_call: int) -> int:
    return -(-count // per_call)


async def read_ids(
    store: Store,
    flow: Flow,
    invoiced: InvoicedConnector,
    keap: KeapConnector,
    *,
    invoiced_ids: Iterable[str] = (),
    keap_ids: Iterable[str] = (),
    removed_invoiced: Iterable[str] = (),
    should_stop: Callable[[], bool] = lambda: False,
    shared: BatchReads | None = None,
) -> FlowChanges:
    """The named records of one flow as they are now; ids whose GET answers 404 come back as removed.

    `removed_invoiced` are deletes the caller already trusts (a signed Invoiced event). A record another flow
    owns now is left out: the webhook that named it named that flow too. Keap ids: see the module docstring;
    with `shared` (a webhook batch's), the bulk read is the batch's, made once for the flows on the object."""
    changes = FlowChanges(flow.name, removed_invoiced={str(record_id) for record_id in removed_invoiced})
    parents = changes.parents = ParentTwins.load(store, flow.parent) if flow.parent else None
    wanted = sorted({str(record_id) for record_id in invoiced_ids} - changes.removed_invoiced)
    got = await get_each(wanted, lambda one: get_record(flow, invoiced, keap, "invoiced", one, parents), should_stop)
    for record_id, record in zip(wanted, got, strict=True):
        if record is None:
            changes.removed_invoiced.add(record_id)
        elif record is not False and flow.belongs(record):
            changes.invoiced[record_id] = record
    wanted = sorted({str(record_id) for record_id in keap_ids})
    found = (await shared.records(store, keap, flow, wanted) if shared is not None
             else await keap.by_ids(flow.keap, wanted, fields=flow.keap_fields))
    changes.keap.update((record_id, parents.of("keap", record) if parents else record) for record_id, record in found.items())
    linked = store.find_links(flow.name, "keap", [record_id for record_id in wanted if record_id not in changes.keap])
    checked = sorted(linked)[:GETS_PER_READ]
    got = await get_each(checked, lambda one: get_record(flow, invoiced, keap, "keap", one, parents), should_stop)
    changes.keap.update((record_id, record) for record_id, record in zip(checked, got, strict=True)
                        if record is not None and record is not False)
    changes.removed_keap.update(record_id for record_id, record in zip(checked, got, strict=True) if record is None)
    return changes


async def get_each(ids: list[str], get: Callable[[str], Awaitable[Record]],
                   should_stop: Callable[[], bool] = lambda: False) -> list[Record | None | Literal[False]]:
    """One GET per id, `GETS_IN_FLIGHT` at a time (the connectors pace them); None where the record is gone,
    False where `should_stop()` said so before its turn."""

    async def one(record_id: str) -> Record | None | Literal[False]:
        async with turns:
            if should_stop():
                return False
            try:
                return await get(record_id)
            except NotFound:
                return None

    turns = asyncio.Semaphore(GETS_IN_FLIGHT)

    return list(await asyncio.gather(*(one(record_id) for record_id in ids)))

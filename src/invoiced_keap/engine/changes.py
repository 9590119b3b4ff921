"""Reading what changed since the last committed pass, per stream, and routing it to flows.

Streams and their watermarks (state `watermarks`, opaque text):

    invoiced.customers.<flow>   customers updated since (companies and contacts each keep their own)
    invoiced.events.<flow>      the last `customer.deleted` / `customer.merged` event id handled
    invoiced.items              items updated since (newest first, paging stops at the mark)
    keap.<companies|contacts|products>   the newest Keap `update_time` read

The customers stream and the events feed serve both customer flows: a pass over both reads each once,
from the older of the two flows' marks, and each flow drops what its own mark already covers. A
customer goes to the flow of its current type (`flows.flow_for_customer`). The new marks are only
handed back here (`FlowChanges.watermarks`); the pass commits them with the flow's last state
transaction, after the records they cover. A Keap read without a mark is a full listing
(`keap_full`): the pass reuses it as the match index instead of listing again. A mark is never
invented when nothing was read (an empty Keap costs one call per pass until it has records).

Progress (`report.Progress`) is noted while streams are read, every `READ_NOTE_EVERY` Invoiced records
(one page) and once per Keap stream (its connector reads all pages in one call), so that a first sync
of many records shows movement from its first minute; the customers stream is labelled with both
customer flows it serves (`companies+contacts`).

Failures whose backoff ran out are retried by fetching their source record by id (one GET each)
and adding it to the pass; a source that is gone, or a customer that moved to the other customer
flow (whose pass syncs it, and records its own failure if it fails there), resolves its failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from invoiced_keap.connectors.errors import NotFound
from invoiced_keap.connectors.invoiced import CUSTOMER, ITEM, InvoicedConnector, Resource, UpdatedWatermark, removed_customer_id
from invoiced_keap.connectors.keap import COMPANIES, CONTACTS, PRODUCTS, KeapConnector, Stream
from invoiced_keap.engine.report import Progress, ProgressHook, no_progress
from invoiced_keap.flows import flow_for_customer
from invoiced_keap.mapping import Record
from invoiced_keap.state import Store

CUSTOMER_FLOWS = ("companies", "contacts")
KEAP_STREAMS: dict[str, Stream] = {"companies": COMPANIES, "contacts": CONTACTS, "products": PRODUCTS}
INVOICED_RESOURCES: dict[str, Resource] = {"companies": CUSTOMER, "contacts": CUSTOMER, "products": ITEM}


@dataclass
class FlowChanges:
    """One flow's share of a pass's reads: changed records by id per side, believed removals, new marks.

    `removed_keap` is filled only by a sync by id (`targeted.read_ids`: a GET that answered 404); a pass
    finds Keap deletes through `reconcile`."""

    flow: str
    invoiced: dict[str, Record] = field(default_factory=dict)
    keap: dict[str, Record] = field(default_factory=dict)
    removed_invoiced: set[str] = field(default_factory=set)
    removed_keap: set[str] = field(default_factory=set)
    keap_full: bool = False
    watermarks: dict[str, str] = field(default_factory=dict)


def customers_mark(flow: str) -> str:
    return f"invoiced.customers.{flow}"


def events_mark(flow: str) -> str:
    return f"invoiced.events.{flow}"


def keap_mark(flow: str) -> str:
    return f"keap.{KEAP_STREAMS[flow].name}"


ITEMS_MARK = "invoiced.items"
READ_NOTE_EVERY = 100


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
    if any(mark is None for mark in marks):
        return None
    return min(marks, key=lambda mark: (mark.updated_at, len(mark.ids)))  # type: ignore[union-attr]


async def read_changes(
    store: Store, invoiced: InvoicedConnector, keap: KeapConnector, flows: Sequence[str],
    progress: ProgressHook = no_progress,
) -> dict[str, FlowChanges]:
    """Everything changed since each flow's marks (see the module docstring)."""
    changes = {flow: FlowChanges(flow) for flow in flows}
    customer_flows = [flow for flow in flows if flow in CUSTOMER_FLOWS]
    if customer_flows:
        await _read_customers(store, invoiced, [changes[flow] for flow in customer_flows], progress)
        await _read_removals(store, invoiced, [changes[flow] for flow in customer_flows])
    if "products" in changes:
        await _read_items(store, invoiced, changes["products"], progress)
    for flow_changes in changes.values():
        await _read_keap(store, keap, flow_changes)
        progress(Progress(flow_changes.flow, f"read keap {KEAP_STREAMS[flow_changes.flow].name}", len(flow_changes.keap)))
    return changes


def _note_reading(progress: ProgressHook, label: str, step: str, count: int) -> None:
    if count % READ_NOTE_EVERY == 0:
        progress(Progress(label, step, count))


async def _read_customers(
    store: Store, invoiced: InvoicedConnector, targets: list[FlowChanges], progress: ProgressHook = no_progress
) -> None:
    marks = {target.flow: _updated_mark(store.get_watermark(customers_mark(target.flow))) for target in targets}
    by_flow = {target.flow: target for target in targets}
    label = "+".join(by_flow)
    read = invoiced.changed_customers(_earliest(list(marks.values())))
    count = 0
    async for customer in read:
        count += 1
        _note_reading(progress, label, "read invoiced customers", count)
        target = by_flow.get(flow_for_customer(customer))
        own_mark = marks.get(target.flow) if target else None
        if target is not None and not (own_mark and own_mark.covers(customer)):
            target.invoiced[str(customer["id"])] = customer
    progress(Progress(label, "read invoiced customers", count))
    for target in targets:
        reached = _later(marks[target.flow], read.watermark)
        if reached is not None:
            target.watermarks[customers_mark(target.flow)] = reached.to_text()


async def _read_removals(store: Store, invoiced: InvoicedConnector, targets: list[FlowChanges]) -> None:
    cursors = {target.flow: store.get_watermark(events_mark(target.flow)) for target in targets}
    known = [int(cursor) if cursor else None for cursor in cursors.values()]
    batch = await invoiced.customer_removals(None if None in known else min(known))  # type: ignore[type-var]
    for target in targets:
        own = int(cursors[target.flow]) if cursors[target.flow] else None
        for event in batch.events:
            if own is None or event["id"] > own:
                target.removed_invoiced.add(str(removed_customer_id(event)))
        newest = max(filter(None, (own, batch.cursor)), default=None)
        if newest is not None:
            target.watermarks[events_mark(target.flow)] = str(newest)


async def _read_items(
    store: Store, invoiced: InvoicedConnector, target: FlowChanges, progress: ProgressHook = no_progress
) -> None:
    mark = _updated_mark(store.get_watermark(ITEMS_MARK))
    read = invoiced.changed_items(mark)
    async for item in read:
        target.invoiced[str(item["id"])] = item
        _note_reading(progress, target.flow, "read invoiced items", len(target.invoiced))
    progress(Progress(target.flow, "read invoiced items", len(target.invoiced)))
    if read.watermark is not None:
        target.watermarks[ITEMS_MARK] = read.watermark.to_text()


async def _read_keap(store: Store, keap: KeapConnector, target: FlowChanges) -> None:
    text = store.get_watermark(keap_mark(target.flow))
    read = await keap.changes(KEAP_STREAMS[target.flow], datetime.fromisoformat(text) if text else None)
    target.keap.update((str(record["id"]), record) for record in read.records)
    target.keap_full = text is None
    if read.watermark is not None:
        target.watermarks[keap_mark(target.flow)] = read.watermark.isoformat()


async def add_due_failures(
    store: Store, invoiced: InvoicedConnector, keap: KeapConnector, target: FlowChanges, *, dry_run: bool
) -> None:
    """Fetch the source records of the flow's failures that are due for a retry into the pass."""
    for failure in store.failures_due(target.flow):
        records = target.invoiced if failure.side == "invoiced" else target.keap
        if failure.record_id in records:
            continue
        try:
            if failure.side == "invoiced":
                record: Record | None = await invoiced.get(INVOICED_RESOURCES[target.flow], failure.record_id)
            else:
                stream = KEAP_STREAMS[target.flow]
                record = await keap.get(stream, failure.record_id, fields=stream.fields)
        except NotFound:
            record = None
        moved = (record is not None and failure.side == "invoiced" and target.flow in CUSTOMER_FLOWS
                 and flow_for_customer(record) != target.flow)
        if record is None or moved:
            if not dry_run:
                store.resolve_failures(target.flow, failure.side, failure.record_id)  # type: ignore[arg-type]
            continue
        records[failure.record_id] = record

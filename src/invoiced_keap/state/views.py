"""Read models over the store: the status of the flows (one view for the `status` command and the
status page, with the names the state knows), the history of one record named by a reference such as
`invoiced:customer:2` or a bare id (one view for `explain` and the explain page), and the link search.

Queries only; the command line and the pages decide how the rows look.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from invoiced_keap.flows import CATALOGUE, NAME_RULE, SIDES, Flow, other_side
from invoiced_keap.state.models import (
    AuditEntry, ConflictRow, Failure, Link, LossyCarryRow, ReviewItem, Run, Side, utcnow,
)
from invoiced_keap.state.store import StatusCounts, Store

RECENT = 10
"""How many of a flow's newest failures, review items, conflicts and writes the status shows."""
RUNS_SCANNED = 50
"""How far back the status looks for each flow's last pass."""


@dataclass(frozen=True)
class RecordRef:
    """One record, unambiguously: its side, its type there (`Flow.record_type`) and its id; `invoiced:customer:2`."""

    side: Side
    record_type: str
    record_id: str

    def __str__(self) -> str:
        return f"{self.side}:{self.record_type}:{self.record_id}"


@dataclass(frozen=True)
class NamedRecord:
    """A record as a page lists it: its reference and, when the state knows it, its name."""

    ref: RecordRef
    name: str | None


@dataclass(frozen=True)
class FlowStatus:
    """A flow's counts, its last pass and newest entries; `names` ((side, id) -> name) and `pairs` (link id ->
    Invoiced and Keap id) name the records they concern (`record`, `pair`)."""

    flow: Flow
    links: int
    open_failures: int
    open_review_items: int
    last_run: Run | None
    failures: list[Failure]
    review_items: list[ReviewItem]
    conflicts: list[ConflictRow]
    writes: list[AuditEntry]
    lossy_carries: int
    lossy: list[LossyCarryRow]
    names: Mapping[tuple[str, str], str]
    pairs: Mapping[int, tuple[str, str]]

    @property
    def name(self) -> str:
        return self.flow.name

    def record(self, side: Side, record_id: str) -> NamedRecord:
        return NamedRecord(RecordRef(side, self.flow.record_type(side), record_id), self.names.get((side, record_id)))

    def pair(self, link_id: int) -> tuple[NamedRecord, NamedRecord] | None:
        """The Invoiced and the Keap record of a link, None when the link is gone."""
        ids = self.pairs.get(link_id)
        return None if ids is None else (self.record("invoiced", ids[0]), self.record("keap", ids[1]))


OPEN_INTENTS = "Creates to finish or adopt"
"""What `StatusView.open_intents` counts, as `status` and the status page name it: creates begun and not confirmed (a
pass stopped or crashed between writing the intent and committing the link; the create may have reached the other
system). No process need be running: the next pass of the flow adopts the record the create made, or makes it."""
OPEN_INTENTS_NOTE = "the next pass completes them"


@dataclass(frozen=True)
class StatusView:
    """Per flow: counts, its last pass and its newest entries; overall: conflicts, open create intents (creates to
    finish or adopt, `OPEN_INTENTS`), the last run."""

    generated_at: datetime
    flows: list[FlowStatus]
    conflicts: int
    open_intents: int
    last_run: Run | None

    @property
    def needs_attention(self) -> bool:
        """Records wait in a failures or review list."""
        return any(flow.open_failures or flow.open_review_items for flow in self.flows)


def status_view(store: Store, flow_names: Iterable[str]) -> StatusView:
    counts = store.status_counts()
    runs = store.runs(limit=RUNS_SCANNED)
    return StatusView(utcnow(), [_flow_status(store, CATALOGUE[name], counts, runs) for name in flow_names],
                      counts.conflicts, counts.open_intents, counts.last_run)


def _flow_status(store: Store, flow: Flow, counts: StatusCounts, runs: Sequence[Run]) -> FlowStatus:
    name = flow.name
    failures = store.failures(name)[:RECENT]
    review_items = store.review_items(name)[:RECENT]
    conflicts = store.conflicts(name, limit=RECENT)
    lossy = store.lossy_carries(name, limit=RECENT)
    pairs = store.links_by_id([row.link_id for row in (*conflicts, *lossy)])
    failed = {side: [failure.record_id for failure in failures if failure.side == side] for side in SIDES}
    linked = [*pairs.values(), *store.find_links(name, "invoiced", [*failed["invoiced"], *(item.invoiced_id for item in review_items)]).values(),
              *store.find_links(name, "keap", failed["keap"]).values()]
    return FlowStatus(
        flow=flow,
        links=counts.active_links.get(name, 0),
        open_failures=counts.open_failures.get(name, 0),
        open_review_items=counts.open_review_items.get(name, 0),
        last_run=next((run for run in runs if name in run.flows), None),  # runs come newest first
        failures=failures,
        review_items=review_items,
        conflicts=conflicts,
        writes=store.audit_entries(flow=name, limit=RECENT),
        lossy_carries=counts.lossy_carries.get(name, 0),
        lossy=lossy,
        names=record_names(flow, linked, failures),
        pairs={link_id: (link.invoiced_id, link.keap_id) for link_id, link in pairs.items()},
    )


def record_names(flow: Flow, links: Iterable[Link], failures: Iterable[Failure]) -> dict[tuple[str, str], str]:
    """(side, id) -> name: as the links' shadows hold it, else as the failure's payload (sent to the other side) says."""
    names: dict[tuple[str, str], str] = {}
    for link in links:
        for side in SIDES:
            shadow = link.shadow(side)
            name = shadow.field_values.get(NAME_RULE) if shadow is not None else None
            if isinstance(name, str) and name:
                names[(side, link.record_id(side))] = name
    for failure in failures:
        if isinstance(failure.payload, Mapping):
            name = flow.name_of(other_side(failure.side), failure.payload)
            if name:
                names.setdefault((failure.side, failure.record_id), name)
    return names


@dataclass(frozen=True)
class RecordHistory:
    """Everything known about one record: its links (active or closed, oldest first), the writes to it or its
    twins, the conflicts and lossy carries of its links, its failures and review items (resolved ones too)."""

    record: RecordRef
    name: str | None
    links: list[Link]
    writes: list[AuditEntry]
    conflicts: list[ConflictRow]
    lossy: list[LossyCarryRow]
    failures: list[Failure]
    review_items: list[ReviewItem]

    @property
    def empty(self) -> bool:
        return not (self.links or self.writes or self.conflicts or self.lossy or self.failures or self.review_items)

    def pair(self, link: Link) -> tuple[NamedRecord, NamedRecord]:
        """A link's Invoiced and Keap record, named as its shadows hold them."""
        flow = CATALOGUE[link.flow]
        names = record_names(flow, [link], [])
        ids = {side: link.record_id(side) for side in SIDES}
        invoiced, keap = (NamedRecord(RecordRef(side, flow.record_type(side), ids[side]), names.get((side, ids[side])))
                          for side in SIDES)
        return invoiced, keap


@dataclass(frozen=True)
class Explanation:
    """What `explain` answers for a reference: the records it may mean (`matches`, by reference) and, when it
    means exactly one, that record's history."""

    asked: str
    matches: list[RecordRef]
    history: RecordHistory | None

    @property
    def ambiguous(self) -> bool:
        return len(self.matches) > 1

    @property
    def known(self) -> bool:
        return self.history is not None and not self.history.empty


def explain_view(store: Store, reference: str, *, flow: str | None = None, side: str | None = None,
                 flows: Mapping[str, Flow] = CATALOGUE) -> Explanation:
    """A reference (`invoiced:customer:2`, `keap:contact:7`), or a bare id narrowed by `flow` and `side`, and
    what is known about it. ValueError names what is wrong with the reference, the flow or the side."""
    named = parse_reference(reference, flows)
    if named is not None:
        if flow is not None or side is not None:
            raise ValueError(f"{reference} names one record already; a flow or side narrows a bare id")
        matches = [named]
    else:
        if flow is not None and flow not in flows:
            raise ValueError(f"unknown flow {flow!r}; expected one of {', '.join(flows)}")
        if side is not None and side not in SIDES:
            raise ValueError(f"unknown side {side!r}; expected one of {', '.join(SIDES)}")
        matches = sorted({RecordRef(place_side, flows[place_flow].record_type(place_side), reference)
                          for place_flow, place_side in store.record_places(reference)
                          if place_flow in flows and flow in (None, place_flow) and side in (None, place_side)}, key=str)
    history = record_history(store, matches[0], flows) if len(matches) == 1 else None
    return Explanation(reference, matches, history)


def parse_reference(text: str, flows: Mapping[str, Flow] = CATALOGUE) -> RecordRef | None:
    """`side:type:id` as a `RecordRef`; None for a bare id (no known side before a colon); ValueError for an
    unknown type."""
    side, colon, rest = text.partition(":")
    if not colon or side not in SIDES:
        return None
    types = sorted({flow.record_type(side) for flow in flows.values()})  # type: ignore[arg-type]
    record_type, colon, record_id = rest.partition(":")
    if not colon or record_type not in types or not record_id:
        raise ValueError(f"{text!r}: a reference is {side}:TYPE:ID, TYPE one of {', '.join(types)}")
    return RecordRef(side, record_type, record_id)  # type: ignore[arg-type]


def record_history(store: Store, record: RecordRef, flows: Mapping[str, Flow] = CATALOGUE) -> RecordHistory:
    """The history of one record, across the flows whose records of its side have its type (a customer moves
    between companies and contacts): only its own entries and its twins', never another record's of the same id."""
    mine = {name for name, flow in flows.items() if flow.record_type(record.side) == record.record_type}
    twin_side = other_side(record.side)
    links = [link for link in store.links_of_record(record.record_id)
             if link.flow in mine and link.record_id(record.side) == record.record_id]
    places = {(name, record.side, record.record_id) for name in mine} | {(link.flow, twin_side, link.record_id(twin_side)) for link in links}
    ids = {record_id for _, _, record_id in places}
    writes = sorted((entry for one_id in ids for entry in store.audit_entries(record_id=one_id)
                     if (entry.flow, entry.side, entry.record_id) in places), key=lambda entry: entry.id)
    conflicts = [conflict for link in links for conflict in store.conflicts(link_id=link.id)]
    lossy = store.lossy_carries(link_ids=[link.id for link in links]) if links else []
    failures = [failure for failure in store.failures(include_resolved=True, record_ids=ids)
                if (failure.flow, failure.side, failure.record_id) in places]
    review_items = [item for flow, side, one_id in sorted(places) if side == "invoiced"
                    for item in store.review_items(flow, include_resolved=True, invoiced_id=one_id)]
    own = (record.side, record.record_id)
    named = (record_names(flows[name], [link for link in links if link.flow == name],
                          [failure for failure in failures if failure.flow == name]).get(own) for name in sorted(mine))
    return RecordHistory(record, next((name for name in named if name), None), links, writes, conflicts, lossy,
                         failures, review_items)


def search_links(store: Store, flow_names: Sequence[str], text: str | None = None) -> Iterator[Link]:
    """The active links of the flows, a keyset page at a time (`Store.iter_links`); with `text`, only those whose
    ids or last synced values contain it (case-insensitively)."""
    needle = text.casefold() if text else None
    for flow in flow_names:
        for link in store.iter_links(flow):
            shadow = link.shadow("invoiced")
            values = shadow.field_values if shadow is not None else {}
            haystack = " ".join([link.invoiced_id, link.keap_id, *_texts(values)]).casefold()
            if needle is None or needle in haystack:
                yield link


def _texts(value: Any) -> Iterator[str]:
    """Every text inside a neutral value (str, None, or a mapping of those)."""
    if isinstance(value, Mapping):
        for inner in value.values():
            yield from _texts(inner)
    elif value is not None:
        yield str(value)

"""`verify`: the specification as an executable checklist. Do the linked pairs agree, field rule by field rule?

Both sides are read in bulk (Invoiced 100 a page, Keap 1000 a page; never one call per record: a nested flow's
records, a company's people, by one listing per linked parent, as the API lists them, read side by side up to the
connector's in-flight limit, `changes.children_of`), spooled to disk by id (`engine.spool.RecordSpool`), and paired
by the store's active links, read with their shadows a page at a time (`Store.iter_links`): what verify holds grows
with the ids and the differences it finds, not with the records, links or shadows. Per flow the report gives, per
field rule, how many linked pairs agree and how many are carried with loss, and each pair rule whose values differ,
with both values, in one of three categories: *lossy* (one side holds the other's value as far as it can: cut to Keap's limits, a region or
phone left out; `engine.plan.disagreements` agrees, the values do not; with the sync's notes of the pair, also
those of fields no rule compares, such as a product's price; information, not a difference), *pending*
(a side differs from its own shadow: the next pass carries it by the conflict policy) and *drift* (both
sides equal their shadows, yet they disagree: an edit behind the engine's back, a lost write). Then
Invoiced records with no twin (those whose failure is dismissed listed as such, not counted; those waiting in the
review list listed with its reason: they count, as a sync's exit code counts them, but only a person's
`review ID --pick/--create` settles them), links whose record is gone, and Keap records linked to nothing. The
last are information only, unless the flow creates in Invoiced (`create_in_invoiced`): the specification asks
for a twin of every Invoiced record, not of every CRM entry.

`repair` (`verify --repair`) syncs exactly the records a check names (`Syncer.sync_ids`) with `repair`:
pending pairs as a normal pass would, drifted ones settled by the configured conflict policy (newest by
default), which a normal pass never sees, as neither side is dirty; never a record waiting in review.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any, TypeVar

from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.engine.changes import ParentTwins, every_record
from invoiced_keap.engine.plan import LinkShadows, disagreements
from invoiced_keap.engine.report import RunReport
from invoiced_keap.engine.run import Syncer
from invoiced_keap.engine.shadows import link_shadows
from invoiced_keap.engine.spool import RecordSpool
from invoiced_keap.flows import Flow, Value
from invoiced_keap.mapping import LossyCarry, Record
from invoiced_keap.state import Store

Progress = Callable[[str, int], None]
"""Called as records arrive: (listing name, records read in it so far)."""


@dataclass(frozen=True)
class Drift:
    """One rule of a linked pair whose values differ (see the module docstring for its category), with the sync's
    notes of it (`LossyCarry.describe`)."""

    invoiced_id: str
    keap_id: str
    rule: str
    invoiced_value: Value
    keap_value: Value
    notes: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        shown = {**self.__dict__, "notes": list(self.notes)}
        return shown if self.notes else {key: value for key, value in shown.items() if key != "notes"}


@dataclass(frozen=True)
class StoredPair:
    """One active link as verify compares it: its ids, its shadows as the planner takes them (None until both sides
    have one) and its lossy notes, newest first."""

    invoiced_id: str
    keap_id: str
    shadows: LinkShadows | None = None
    notes: tuple[LossyCarry, ...] = ()


@dataclass(frozen=True)
class Stored:
    """What the state database knows of a flow's pairs: its links (`StoredPair`s, in any order: `stored` reads them
    from the database a page at a time each time they are iterated, never all at once), the Invoiced records whose
    failure is dismissed, with the reason given, and those waiting in the review list, with its reason."""

    pairs: Iterable[StoredPair]
    dismissed: dict[str, str | None] = field(default_factory=dict)
    in_review: dict[str, str] = field(default_factory=dict)


LINK_PAGE = 1000
"""Links (with their shadows and lossy notes) `stored` reads from the database at a time."""


@dataclass(frozen=True)
class _LinkPages:
    """A flow's active links as `StoredPair`s, read a keyset page at a time (`Store.iter_links`), with the lossy notes
    of each page's links; iterable again (each iteration reads anew)."""

    store: Store
    flow: str
    page: int = LINK_PAGE

    def __iter__(self) -> Iterator[StoredPair]:
        links = self.store.iter_links(self.flow, batch_size=self.page)
        while batch := list(islice(links, self.page)):
            notes: dict[int, list[LossyCarry]] = {}
            for row in self.store.lossy_carries(self.flow, link_ids=[link.id for link in batch]):
                note = LossyCarry(row.side, row.field, row.source_value, row.sent_value, row.reason, row.field_group)  # type: ignore[arg-type]
                notes.setdefault(row.link_id, []).append(note)
            for link in batch:
                yield StoredPair(link.invoiced_id, link.keap_id, link_shadows(link), tuple(notes.get(link.id, ())))


def stored(store: Store, flow: str) -> Stored:
    """A flow's `Stored` state: its dismissals and open review items read now, its links (and their shadows and
    notes) as they are iterated, while `store` is open."""
    dismissed = {failure.record_id: failure.dismissed_reason for failure in store.failures(flow)
                 if failure.dismissed_at is not None and failure.side == "invoiced"}
    return Stored(_LinkPages(store, flow), dismissed, {item.invoiced_id: item.reason for item in store.review_items(flow)})


@dataclass(frozen=True)
class GoneLink:
    invoiced_id: str
    keap_id: str
    missing: str  # "invoiced", "keap" or "both"


@dataclass(frozen=True)
class FlowCheck:
    flow: str
    pairs: int
    agreeing: dict[str, int]
    lossy_by_rule: dict[str, int] = field(default_factory=dict)
    drifted: list[Drift] = field(default_factory=list)
    pending: list[Drift] = field(default_factory=list)
    lossy: list[Drift] = field(default_factory=list)
    without_twin: list[str] = field(default_factory=list)
    dismissed: dict[str, str | None] = field(default_factory=dict)
    in_review: dict[str, str] = field(default_factory=dict)
    gone: list[GoneLink] = field(default_factory=list)
    keap_unlinked: list[str] = field(default_factory=list)
    keap_unlinked_matter: bool = False

    @property
    def agrees(self) -> bool:
        """Nothing to repair and no record waiting in review."""
        return not (self.needs_repair or self.in_review)

    @property
    def needs_repair(self) -> bool:
        """Whether `to_repair` names anything."""
        return bool(self.drifted or self.pending or self.without_twin or self.gone
                    or (self.keap_unlinked_matter and self.keap_unlinked))

    def to_repair(self) -> tuple[list[str], list[str]]:
        """The (Invoiced ids, Keap ids) a repair syncs: drifted and pending pairs, records without a twin (not those
        waiting in review), gone links (whose 404 the sync believes as a delete) and, when they matter, Keap records
        linked to nothing."""
        differing = [*self.drifted, *self.pending]
        invoiced_ids = {d.invoiced_id for d in differing} | set(self.without_twin) | {g.invoiced_id for g in self.gone}
        keap_ids = {d.keap_id for d in differing} | {g.keap_id for g in self.gone}
        if self.keap_unlinked_matter:
            keap_ids |= set(self.keap_unlinked)
        return sorted(invoiced_ids, key=_id_order), sorted(keap_ids, key=_id_order)

    def as_json(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "agrees": self.agrees,
            "linked_pairs": self.pairs,
            "agreeing_pairs_by_rule": self.agreeing,
            "lossy_pairs_by_rule": self.lossy_by_rule,
            "drifted": [drift.as_json() for drift in self.drifted],
            "pending": [drift.as_json() for drift in self.pending],
            "lossy": [drift.as_json() for drift in self.lossy],
            "invoiced_without_twin": self.without_twin,
            "dismissed_without_twin": self.dismissed,
            "waiting_for_review": self.in_review,
            "links_to_missing_records": [gone.__dict__ for gone in self.gone],
            "keap_unlinked": self.keap_unlinked,
        }


def check_flow(
    flow: Flow,
    invoiced_records: Mapping[str, Record] | Iterable[Record],
    keap_records: Mapping[str, Record] | Iterable[Record],
    state: Stored,
    *,
    invoiced_ids_anywhere: Container[str] | None = None,
    keap_unlinked_matter: bool = False,
) -> FlowCheck:
    """Compare one flow's records with its stored state (links with their shadows and notes, dismissals, review
    items). Pure.

    The records are best given as mappings by id (text), which are only looked up by id and walked once (a
    `RecordSpool` keeps them on disk); records given as an iterable are put in a dict. `state.pairs` is walked once:
    what the check keeps grows with the ids and the differences found, not with the records or the shadows.
    `invoiced_ids_anywhere` holds the ids of every record of the Invoiced object (a customer that moved to the
    other flow still exists); by default the flow's own records. A differing rule whose side differs from its
    shadow is pending, not drift; either carries the sync's notes of its rule. Each list is in id order
    (`_id_order`) of the Invoiced id.
    """
    invoiced, keap = _by_id(invoiced_records), _by_id(keap_records)
    existing = invoiced_ids_anywhere if invoiced_ids_anywhere is not None else invoiced
    agreeing = {rule.name: 0 for rule in flow.rules}
    lossy_by_rule = {rule.name: 0 for rule in flow.rules}
    drifted: list[Drift] = []
    pending: list[Drift] = []
    lossy: list[Drift] = []
    gone: list[GoneLink] = []
    linked_invoiced: set[str] = set()
    linked_keap: set[str] = set()
    pairs = 0
    for pair in state.pairs:
        invoiced_id, keap_id = pair.invoiced_id, pair.keap_id
        linked_invoiced.add(invoiced_id)
        linked_keap.add(keap_id)
        keap_record = keap.get(keap_id)
        missing = [side for side, present in (("invoiced", invoiced_id in existing), ("keap", keap_record is not None)) if not present]
        if missing:
            gone.append(GoneLink(invoiced_id, keap_id, missing[0] if len(missing) == 1 else "both"))
            continue
        inv_record = invoiced.get(invoiced_id)
        if inv_record is None or keap_record is None:
            continue  # moved to the other customer flow; that flow's run relinks it
        pairs += 1
        differing = set(disagreements(flow, inv_record, keap_record))
        link_shadows = pair.shadows
        shown: set[str] = set()
        for rule in flow.rules:
            values = {"invoiced": rule.value("invoiced", inv_record), "keap": rule.value("keap", keap_record)}
            difference = Drift(invoiced_id, keap_id, rule.name, values["invoiced"], values["keap"],
                               tuple(note.describe() for note in pair.notes if note.rule == rule.name))
            if rule.name in differing:
                shown.add(rule.name)  # its notes go with it (a required name cleared on a side: noted, not carried)
                if link_shadows is not None and any(values[side] != link_shadows.side(side).values.get(rule.name, values[side])
                                                    for side in ("invoiced", "keap")):
                    pending.append(difference)
                else:
                    drifted.append(difference)
            elif values["invoiced"] != values["keap"] and not all(rule.blank(value) for value in values.values()):
                lossy_by_rule[rule.name] += 1
                shown.add(rule.name)
                lossy.append(difference)
            else:
                agreeing[rule.name] += 1
        lossy += [Drift(invoiced_id, keap_id, note.rule or note.field, *_sides(note), notes=(note.describe(),))
                  for note in pair.notes if note.rule not in shown]
    unlinked = sorted((record_id for record_id in invoiced if record_id not in linked_invoiced), key=_id_order)
    return FlowCheck(
        flow=flow.name,
        pairs=pairs,
        agreeing=agreeing,
        lossy_by_rule=lossy_by_rule,
        drifted=_in_id_order(drifted),
        pending=_in_id_order(pending),
        lossy=_in_id_order(lossy),
        without_twin=[record_id for record_id in unlinked if record_id not in state.dismissed and record_id not in state.in_review],
        dismissed={record_id: state.dismissed[record_id] for record_id in unlinked if record_id in state.dismissed},
        in_review={record_id: state.in_review[record_id] for record_id in unlinked if record_id in state.in_review},
        gone=_in_id_order(gone),
        keap_unlinked=sorted((keap_id for keap_id, record in keap.items() if keap_id not in linked_keap and flow.keap_belongs(record)),
                             key=_id_order),
        keap_unlinked_matter=keap_unlinked_matter,
    )


def linked_elsewhere_left_out(check: FlowCheck, store: Store, others: Iterable[str]) -> FlowCheck:
    """`check` without the Keap records it found unlinked that are linked in one of `others` (the flows on the same
    Keap object: a company's person detached from its company in Keap stays linked in `company_contacts`; it is
    that flow's, not one to make an Invoiced record of)."""
    if not check.keap_unlinked:
        return check
    taken = {keap_id for other in others for keap_id in store.find_links(other, "keap", check.keap_unlinked)}
    return replace(check, keap_unlinked=[keap_id for keap_id in check.keap_unlinked if keap_id not in taken])


def _by_id(records: Mapping[str, Record] | Iterable[Record]) -> Mapping[str, Record]:
    return records if isinstance(records, Mapping) else {str(record["id"]): record for record in records}


DriftOrGone = TypeVar("DriftOrGone", Drift, GoneLink)


def _in_id_order(found: list[DriftOrGone]) -> list[DriftOrGone]:
    """By Invoiced id (`_id_order`); a pair's entries keep their order (a stable sort)."""
    return sorted(found, key=lambda item: _id_order(item.invoiced_id))


def _sides(note: LossyCarry) -> tuple[Value, Value]:
    """A note's (Invoiced value, Keap value): the source on one side, what was sent on the other."""
    return (note.sent, note.source) if note.side == "invoiced" else (note.source, note.sent)


def _id_order(record_id: str) -> tuple[int, str]:
    return (int(record_id), "") if record_id.isdigit() else (1 << 62, record_id)


# --- reading both sides in bulk ------------------------------------------------------------------

class FlowRecords(Mapping[str, Record]):
    """The records of one resource's listing that belong to a flow (`Flow.belongs`), by id: a view of the spool."""

    def __init__(self, records: Mapping[str, Record], flow: Flow) -> None:
        self._records = records
        self._flow = flow

    def __getitem__(self, record_id: str) -> Record:
        record = self._records[record_id]
        if not self._flow.belongs(record):
            raise KeyError(record_id)
        return record

    def __iter__(self) -> Iterator[str]:
        return (record_id for record_id, record in self._records.items() if self._flow.belongs(record))

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass(frozen=True)
class Listings:
    """Everything verify reads, spooled to disk by id (`RecordSpool`; `close()` or the context manager removes
    them): every Invoiced record of each resource the flows use (by resource name; a nested flow's under every
    linked parent, `changes.every_record`) and the Keap records of each flow (with the fields its rules and keys
    read; a nested flow's with their parent's Invoiced twin)."""

    invoiced: dict[str, RecordSpool]
    keap: dict[str, RecordSpool]

    def invoiced_records(self, flow: Flow) -> Mapping[str, Record]:
        return FlowRecords(self.invoiced[flow.invoiced.name], flow)

    def invoiced_ids(self, flow: Flow) -> Container[str]:
        """The ids of every record of the flow's resource, the flow's or another's."""
        return self.invoiced[flow.invoiced.name]

    def close(self) -> None:
        for spool in (*self.invoiced.values(), *self.keap.values()):
            spool.close()

    def __enter__(self) -> Listings:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


async def read_listings(
    invoiced: InvoicedConnector, keap: KeapConnector, flows: Iterable[Flow], progress: Progress = lambda *_: None,
    parents: Mapping[str, ParentTwins] | None = None,
) -> Listings:
    """One full listing per Invoiced resource and per flow's Keap object, read concurrently into spools; `parents`:
    each nested flow's parent links (`changes.ParentTwins`). The caller closes the `Listings`."""
    flows = list(flows)
    parents = parents or {}

    async def keap_records(flow: Flow) -> AsyncIterator[Record]:
        twins = parents.get(flow.name)
        async for record in keap.list_all(flow.keap, fields=flow.keap_fields):
            yield twins.of("keap", record) if twins else record

    async def collect(name: str, records: AsyncIterator[Record], spool: RecordSpool) -> None:
        read = 0
        async for record in records:
            spool[str(record["id"])] = record
            read += 1
            progress(name, read)

    resources = {flow.invoiced.name: flow for flow in flows}
    listings = Listings(invoiced={name: RecordSpool() for name in resources}, keap={flow.name: RecordSpool() for flow in flows})
    tasks = [asyncio.ensure_future(read) for read in (
        *(collect(f"Invoiced {name}s", every_record(invoiced, flow, parents.get(flow.name)), listings.invoiced[name])
          for name, flow in resources.items()),
        *(collect(f"Keap {flow.name}", keap_records(flow), listings.keap[flow.name]) for flow in flows),
    )]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        listings.close()
        raise
    return listings


async def repair(syncer: Syncer, checks: Iterable[FlowCheck]) -> RunReport:
    """Sync what each check names to repair, rebaselined (see the module docstring); one report."""
    merged = RunReport(None, False)
    for check in checks:
        if not check.needs_repair:
            continue
        invoiced_ids, keap_ids = check.to_repair()
        report = await syncer.sync_ids(check.flow, invoiced_ids=invoiced_ids, keap_ids=keap_ids, repair=True)
        merged.flows.update(report.flows)
        merged.error = merged.error or report.error
        merged.open_failures += report.open_failures
        merged.open_review += report.open_review
        for system, calls in report.api_calls.items():
            merged.api_calls[system] = merged.api_calls.get(system, 0) + calls
    return merged

"""`verify`: the specification as an executable checklist. Do the linked pairs agree, field rule by field rule?

Both sides are read in bulk (Invoiced 100 a page, Keap 1000 a page; never one call per record) and
paired by the store's active links. Per flow the report gives, per field rule, how many linked
pairs agree and how many are carried with loss, and each pair rule whose values differ, with both values, in one
of three categories: *lossy* (one side holds the other's value as far as it can: cut to Keap's limits, a region or
phone left out; `engine.plan.disagreements` agrees, the values do not; with the sync's notes of the pair, also
those of fields no rule compares, such as a product's price; information, not a difference), *pending*
(a side differs from its own shadow: the next pass carries it by the conflict policy) and *drift* (both
sides equal their shadows, yet they disagree: an edit behind the engine's back, a lost write). Then
Invoiced records with no twin (those whose failure is dismissed listed as such, not counted), links whose record
is gone, and Keap records linked to nothing. The last are information only, unless the flow
creates in Invoiced (`create_in_invoiced`): the specification asks for a twin of every Invoiced
record, not of every CRM entry.

`repair` (`verify --repair`) syncs exactly the records a check names (`Syncer.sync_ids`) with `repair`:
pending pairs as a normal pass would, drifted ones settled by the configured conflict policy (newest by
default), which a normal pass never sees, as neither side is dirty.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.engine.changes import ParentTwins, every_record
from invoiced_keap.engine.plan import LinkShadows, disagreements
from invoiced_keap.engine.report import RunReport
from invoiced_keap.engine.run import Syncer
from invoiced_keap.engine.shadows import link_shadows
from invoiced_keap.flows import Flow, Value
from invoiced_keap.mapping import LossyCarry, Record
from invoiced_keap.state import Store

Progress = Callable[[str, int], None]
"""Called as records arrive: (listing name, records read in it so far)."""


@dataclass(frozen=True)
class Drift:
    """One rule of a linked pair whose values differ (see the module docstring for its category); for a lossy
    one, the sync's notes of it (`LossyCarry.describe`)."""

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
class Stored:
    """What the state database knows of a flow's pairs: its links (Invoiced id -> Keap id) with their shadows and
    lossy notes by Invoiced id, and the Invoiced records whose failure is dismissed, with the reason given."""

    links: dict[str, str]
    shadows: dict[str, LinkShadows | None] = field(default_factory=dict)
    notes: dict[str, list[LossyCarry]] = field(default_factory=dict)
    dismissed: dict[str, str | None] = field(default_factory=dict)


def stored(store: Store, flow: str) -> Stored:
    """Read a flow's `Stored` state."""
    links = list(store.iter_links(flow))
    by_link = {link.id: link.invoiced_id for link in links}
    notes: dict[str, list[LossyCarry]] = {}
    for row in store.lossy_carries(flow):
        notes.setdefault(by_link[row.link_id], []).append(
            LossyCarry(row.side, row.field, row.source_value, row.sent_value, row.reason, row.field_group))  # type: ignore[arg-type]
    dismissed = {failure.record_id: failure.dismissed_reason for failure in store.failures(flow)
                 if failure.dismissed_at is not None and failure.side == "invoiced"}
    return Stored({link.invoiced_id: link.keap_id for link in links}, {link.invoiced_id: link_shadows(link) for link in links},
                  notes, dismissed)


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
    gone: list[GoneLink] = field(default_factory=list)
    keap_unlinked: list[str] = field(default_factory=list)
    keap_unlinked_matter: bool = False

    @property
    def agrees(self) -> bool:
        return not (self.drifted or self.pending or self.without_twin or self.gone
                    or (self.keap_unlinked_matter and self.keap_unlinked))

    def to_repair(self) -> tuple[list[str], list[str]]:
        """The (Invoiced ids, Keap ids) a repair syncs: drifted and pending pairs, records without a twin, gone links
        (whose 404 the sync believes as a delete) and, when they matter, Keap records linked to nothing."""
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
            "links_to_missing_records": [gone.__dict__ for gone in self.gone],
            "keap_unlinked": self.keap_unlinked,
        }


def check_flow(
    flow: Flow,
    invoiced_records: Iterable[Record],
    keap_records: Iterable[Record],
    state: Stored,
    *,
    invoiced_ids_anywhere: set[str] | None = None,
    keap_unlinked_matter: bool = False,
) -> FlowCheck:
    """Compare one flow's records, given as read, with its stored state (links, shadows, notes, dismissals). Pure.

    `invoiced_ids_anywhere` are the ids of every record of the Invoiced object (a customer that
    moved to the other flow still exists); by default the flow's own records. A differing rule whose side
    differs from its shadow is pending, not drift.
    """
    invoiced = {str(record["id"]): record for record in invoiced_records}
    keap = {str(record["id"]): record for record in keap_records}
    existing = invoiced_ids_anywhere if invoiced_ids_anywhere is not None else set(invoiced)
    agreeing = {rule.name: 0 for rule in flow.rules}
    lossy_by_rule = {rule.name: 0 for rule in flow.rules}
    drifted: list[Drift] = []
    pending: list[Drift] = []
    lossy: list[Drift] = []
    gone: list[GoneLink] = []
    pairs = 0
    for invoiced_id, keap_id in sorted(state.links.items(), key=lambda item: _id_order(item[0])):
        missing = [side for side, present in (("invoiced", invoiced_id in existing), ("keap", keap_id in keap)) if not present]
        if missing:
            gone.append(GoneLink(invoiced_id, keap_id, missing[0] if len(missing) == 1 else "both"))
            continue
        if invoiced_id not in invoiced:
            continue  # moved to the other customer flow; that flow's run relinks it
        pairs += 1
        inv_record, keap_record = invoiced[invoiced_id], keap[keap_id]
        differing = set(disagreements(flow, inv_record, keap_record))
        link_shadows = state.shadows.get(invoiced_id)
        notes = state.notes.get(invoiced_id, [])
        for rule in flow.rules:
            values = {"invoiced": rule.value("invoiced", inv_record), "keap": rule.value("keap", keap_record)}
            difference = Drift(invoiced_id, keap_id, rule.name, values["invoiced"], values["keap"])
            if rule.name in differing:
                if link_shadows is not None and any(values[side] != link_shadows.side(side).values.get(rule.name, values[side])
                                                    for side in ("invoiced", "keap")):
                    pending.append(difference)
                else:
                    drifted.append(difference)
            elif values["invoiced"] != values["keap"] and not all(rule.blank(value) for value in values.values()):
                lossy_by_rule[rule.name] += 1
                lossy.append(replace(difference, notes=tuple(note.describe() for note in notes if note.rule == rule.name)))
            else:
                agreeing[rule.name] += 1
        shown = {d.rule for d in lossy if d.invoiced_id == invoiced_id}
        lossy += [Drift(invoiced_id, keap_id, note.rule or note.field, *_sides(note), notes=(note.describe(),))
                  for note in notes if note.rule not in shown]
    linked_keap = set(state.links.values())
    unlinked = sorted(set(invoiced) - set(state.links), key=_id_order)
    return FlowCheck(
        flow=flow.name,
        pairs=pairs,
        agreeing=agreeing,
        lossy_by_rule=lossy_by_rule,
        drifted=drifted,
        pending=pending,
        lossy=lossy,
        without_twin=[record_id for record_id in unlinked if record_id not in state.dismissed],
        dismissed={record_id: state.dismissed[record_id] for record_id in unlinked if record_id in state.dismissed},
        gone=gone,
        keap_unlinked=sorted((keap_id for keap_id, record in keap.items() if keap_id not in linked_keap and flow.keap_belongs(record)),
                             key=_id_order),
        keap_unlinked_matter=keap_unlinked_matter,
    )


def _sides(note: LossyCarry) -> tuple[Value, Value]:
    """A note's (Invoiced value, Keap value): the source on one side, what was sent on the other."""
    return (note.sent, note.source) if note.side == "invoiced" else (note.source, note.sent)


def _id_order(record_id: str) -> tuple[int, str]:
    return (int(record_id), "") if record_id.isdigit() else (1 << 62, record_id)


# --- reading both sides in bulk ------------------------------------------------------------------

@dataclass(frozen=True)
class Listings:
    """Everything verify reads: every Invoiced record of each resource the flows use (by resource name; a nested
    flow's under every linked parent, `changes.every_record`) and the Keap records of each flow (with the fields
    its rules and keys read; a nested flow's with their parent's Invoiced twin)."""

    invoiced: dict[str, list[Record]]
    keap: dict[str, list[Record]]

    def invoiced_records(self, flow: Flow) -> list[Record]:
        return [record for record in self.invoiced[flow.invoiced.name] if flow.belongs(record)]

    def invoiced_ids(self, flow: Flow) -> set[str]:
        return {str(record["id"]) for record in self.invoiced[flow.invoiced.name]}


async def read_listings(
    invoiced: InvoicedConnector, keap: KeapConnector, flows: Iterable[Flow], progress: Progress = lambda *_: None,
    parents: Mapping[str, ParentTwins] | None = None,
) -> Listings:
    """One full listing per Invoiced resource and per flow's Keap object, read concurrently; `parents`: each nested
    flow's parent links (`changes.ParentTwins`)."""
    flows = list(flows)
    parents = parents or {}

    async def keap_records(flow: Flow) -> AsyncIterator[Record]:
        twins = parents.get(flow.name)
        async for record in keap.list_all(flow.keap, fields=flow.keap_fields):
            yield twins.of("keap", record) if twins else record

    async def collect(name: str, records: AsyncIterator[Record]) -> list[Record]:
        collected = []
        async for record in records:
            collected.append(record)
            progress(name, len(collected))
        return collected

    resources = {flow.invoiced.name: flow for flow in flows}
    tasks = {
        **{f"invoiced {name}": collect(f"Invoiced {name}s", every_record(invoiced, flow, parents.get(flow.name)))
           for name, flow in resources.items()},
        **{f"keap {flow.name}": collect(f"Keap {flow.name}", keap_records(flow)) for flow in flows},
    }
    results = dict(zip(tasks, await asyncio.gather(*tasks.values()), strict=True))
    return Listings(
        invoiced={name: results[f"invoiced {name}"] for name in resources},
        keap={flow.name: results[f"keap {flow.name}"] for flow in flows},
    )


async def repair(syncer: Syncer, checks: Iterable[FlowCheck]) -> RunReport:
    """Sync what each check that does not agree names, rebaselined (see the module docstring); one report."""
    merged = RunReport(None, False)
    for check in checks:
        if check.agrees:
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

"""The chaos run's judge: both sides and the state store, compared against the users' edits. Pure over a `Snapshot`.

A converged world has, per flow:
- every in-scope Invoiced record linked exactly once, or in the failures or review list with the system's
  message, or unlinked because its Keap twin was deleted (the default deletes policy `unlink`);
- no active link to a record that is gone, no record in two active links, no customer linked in both flows;
- no duplicate: every Keap record that no user made is in some link (active, or closed by a type change/delete);
- linked pairs that agree on every field rule (`plan.disagreements`), unless a failure of either record explains it;
- every pair's last edit per field group still on the side it was made on (and so, by agreement, on both),
  unless a recorded conflict on that group went to the other side, or it was a clear made before the pair was
  linked (an empty value never wins while matching), or the edit raced a write: made to a record
  after a pass had read it and before that pass wrote the group's fields (planned from the earlier read, the
  write overwrites it; the design accepts this window, `engine/apply.py`, and `raced` counts such edits).
  Edits of an earlier Keap twin count as the pair's: one a type change unlinked, until the pass that closed the link
  started; one the user deleted may stand as the value when it is the latest, but is never asked for (an edit no
  pass read before the delete goes with the record). A user's edit that left a group as it was is no edit (`world`).

Each problem is one line naming the flow, the records, the group and both values, so a failure is debuggable.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from invoiced_keap.engine.plan import disagreements
from invoiced_keap.connectors.invoiced import CUSTOMER
from invoiced_keap.flows import CATALOGUE, Side, flow_of
from tests.chaos.world import KEAP_COLLECTIONS, Edit, record_key

Record = dict[str, Any]
TYPE_CHANGE_REASON = "type changed"  # how `Syncer` closes a link whose customer moved flows


@dataclass(frozen=True)
class LinkRow:
    """A link; `closed_at` is when the pass that closed it started (what it read is what it could carry)."""

    flow: str
    invoiced_id: str
    keap_id: str
    active: bool
    reason: str | None
    closed_at: datetime | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class ConflictRow:
    flow: str
    invoiced_id: str
    keap_id: str
    group: str
    winner: Side


@dataclass(frozen=True)
class WriteRow:
    """A write the sync made (audit), with when its pass started reading and when it was committed."""

    flow: str
    side: Side
    record_id: str
    fields: frozenset[str]
    run_started: datetime
    written_at: datetime


@dataclass(frozen=True)
class Snapshot:
    """Both sides as they are (`invoiced` holds live customers and items, `keap` records by flow) and the state."""

    customers: dict[str, Record]
    items: dict[str, Record]
    keap: dict[str, dict[str, Record]]
    links: list[LinkRow]
    failures: dict[tuple[str, str, str], str]  # (flow, side, record id) -> message
    review: set[tuple[str, str]]  # (flow, invoiced id)
    conflicts: list[ConflictRow]
    writes: list[WriteRow]
    intents: int

    def invoiced_in(self, flow: str) -> dict[str, Record]:
        if flow == "products":
            return self.items
        return {record_id: c for record_id, c in self.customers.items() if flow_of(CUSTOMER, c) == flow}

    def invoiced_exists(self, flow: str, record_id: str) -> bool:
        return record_id in (self.items if flow == "products" else self.customers)


@dataclass
class Verdict:
    """Every difference from a converged world, one line each (none when converged), and the edits that raced."""

    problems: list[str] = field(default_factory=list)
    raced: list[Edit] = field(default_factory=list)


def check(snapshot: Snapshot, edits: Iterable[Edit], user_keap_ids: dict[str, set[str]]) -> Verdict:
    verdict = Verdict()
    problems = verdict.problems
    problems += [f"{snapshot.intents} create intents still open"] if snapshot.intents else []
    active = [link for link in snapshot.links if link.active]
    problems += _twice_linked(active)
    edits_by_record: dict[tuple[Side, str, str], list[Edit]] = defaultdict(list)
    for edit in edits:
        edits_by_record[edit.record_key].append(edit)
    for flow in CATALOGUE:
        flow_links = [link for link in active if link.flow == flow]
        problems += _unlinked(snapshot, flow, flow_links)
        problems += _orphans(snapshot, flow, user_keap_ids[KEAP_COLLECTIONS[flow]])
        for link in flow_links:
            _pair(snapshot, flow, link, edits_by_record, verdict)
    return verdict


def _twice_linked(active: list[LinkRow]) -> list[str]:
    problems = []
    for (flow, side), counts in {
        (flow, side): Counter(getattr(link, f"{side}_id") for link in active if link.flow == flow)
        for flow in CATALOGUE for side in ("invoiced", "keap")
    }.items():
        problems += [f"{flow}: {side} {record_id} is in {n} active links" for record_id, n in counts.items() if n > 1]
    customer_flows = defaultdict(set)
    for link in active:
        if link.flow != "products":
            customer_flows[link.invoiced_id].add(link.flow)
    problems += [f"customer {record_id} is linked in both customer flows" for record_id, flows in customer_flows.items() if len(flows) > 1]
    return problems


def _explained(snapshot: Snapshot, flow: str, side: Side, record_id: str) -> str | None:
    return snapshot.failures.get((flow, side, record_id))


def _unlinked(snapshot: Snapshot, flow: str, flow_links: list[LinkRow]) -> list[str]:
    linked = {link.invoiced_id for link in flow_links}
    twin_deleted = {link.invoiced_id for link in snapshot.links
                    if link.flow == flow and not link.active and link.keap_id not in snapshot.keap[flow]}
    problems = []
    for record_id, record in snapshot.invoiced_in(flow).items():
        if record_id in linked or record_id in twin_deleted or (flow, record_id) in snapshot.review:
            continue
        if _explained(snapshot, flow, "invoiced", record_id) is None:
            problems.append(f"{flow}: invoiced {record_id} ({record.get('name')!r}) has no link and no failure, review item "
                            "or deleted twin explains it")
    return problems


def _orphans(snapshot: Snapshot, flow: str, user_made: set[str]) -> list[str]:
    """Keap records the sync made that no link (active or closed) names: duplicates left by a crash or retry."""
    in_links = {link.keap_id for link in snapshot.links if link.flow == flow}
    return [f"{flow}: keap {keap_id} ({_label(record)!r}) was made by the sync but is in no link (a duplicate)"
            for keap_id, record in snapshot.keap[flow].items() if keap_id not in user_made and keap_id not in in_links]


def _label(record: Record) -> Any:
    return record.get("company_name") or record.get("name") or (record.get("given_name"), record.get("family_name"))


def _pair(snapshot: Snapshot, flow: str, link: LinkRow, edits_by_record: dict[tuple[Side, str, str], list[Edit]],
          verdict: Verdict) -> None:
    name = f"{flow}: pair invoiced {link.invoiced_id} / keap {link.keap_id}"
    invoiced = snapshot.invoiced_in(flow).get(link.invoiced_id)
    keap = snapshot.keap[flow].get(link.keap_id)
    if invoiced is None or keap is None:
        where = "keap" if keap is None else "invoiced" if not snapshot.invoiced_exists(flow, link.invoiced_id) else None
        verdict.problems.append(f"{name}: active link to a record gone from {where}" if where
                                else f"{name}: active link, but the customer now belongs to the other customer flow")
        return
    failure = _explained(snapshot, flow, "invoiced", link.invoiced_id) or _explained(snapshot, flow, "keap", link.keap_id)
    if failure is not None:
        return
    rules = CATALOGUE[flow].rules
    own_edits = list({edit.seq: edit for edit in (*edits_by_record.get(record_key("invoiced", flow, link.invoiced_id), []),
                                                  *_twin_edits(snapshot, flow, link.invoiced_id, edits_by_record))}.values())
    gone_edits = _deleted_twin_edits(snapshot, flow, link.invoiced_id, edits_by_record)
    verdict.problems += [f"{name}: {rule.name} differs: invoiced {rule.value('invoiced', invoiced)!r}, keap {rule.value('keap', keap)!r}; "
                f"edits: {_history(own_edits, rule.name)}"
                for rule in rules if rule.name in disagreements(CATALOGUE[flow], invoiced, keap)]
    records: dict[Side, Record] = {"invoiced": invoiced, "keap": keap}
    for rule in rules:
        group_edits = [edit for edit in own_edits if edit.group == rule.name]
        if not group_edits:
            continue
        last = max(group_edits, key=lambda edit: edit.seq)
        now = rule.value(last.side, records[last.side])
        if now == last.value or any(rule.value("invoiced", invoiced) == edit.value for edit in gone_edits
                                    if edit.group == rule.name and edit.seq > last.seq):
            continue  # kept, or superseded by a later edit of a twin since deleted that was synced before the delete
        lost_to = [c for c in snapshot.conflicts if (c.flow, c.invoiced_id, c.keap_id, c.group) == (flow, link.invoiced_id, link.keap_id, rule.name)
                   and c.winner != last.side]
        if lost_to or (rule.blank(last.value) and link.created_at is not None and last.at <= link.created_at):
            continue  # a conflict settled it, or a clear met a record linked later: an empty value never wins a first link
        fields = rule.invoiced_fields if last.side == "invoiced" else rule.keap_fields
        if any(write.run_started <= last.at <= write.written_at and write.fields.intersection(fields)
               and record_key(write.side, write.flow, write.record_id) == last.record_key for write in snapshot.writes):
            verdict.raced.append(last)
        else:
            verdict.problems.append(f"{name}: last edit #{last.seq} of {rule.name} on {last.side} ({last.value!r}) was lost: "
                            f"{last.side} now has {now!r}, and no conflict went to the other side; edits: {_history(own_edits, rule.name)}"
                            + (f"; of deleted twins: {_history(gone_edits, rule.name)}" if any(e.group == rule.name for e in gone_edits) else ""))


def _twin_edits(snapshot: Snapshot, flow: str, invoiced_id: str, edits_by_record: dict[tuple[Side, str, str], list[Edit]]) -> list[Edit]:
    """Edits of the record's Keap twins while they were linked to it: the current one, and earlier ones that a type
    change unlinked, up to the start of the pass that closed the link (what was edited there before synced to the
    Invoiced record; later edits belong to a record the pass was leaving alone). Twins the user deleted are
    `_deleted_twin_edits`."""
    same_object = ("products",) if flow == "products" else ("companies", "contacts")
    return [edit for link in snapshot.links if link.flow in same_object and link.invoiced_id == invoiced_id
            and (link.active or (link.reason or "").startswith(TYPE_CHANGE_REASON))
            for edit in edits_by_record.get(record_key("keap", link.flow, link.keap_id), [])
            if link.closed_at is None or edit.at <= link.closed_at]


def _deleted_twin_edits(snapshot: Snapshot, flow: str, invoiced_id: str,
                        edits_by_record: dict[tuple[Side, str, str], list[Edit]]) -> list[Edit]:
    """Edits of the record's Keap twins that the user deleted: one a pass read before the delete reached Invoiced
    and may stand as the group's value; one made after the last read went with the record, so none is asked for."""
    same_object = ("products",) if flow == "products" else ("companies", "contacts")
    return [edit for link in snapshot.links if link.flow in same_object and link.invoiced_id == invoiced_id
            and not link.active and link.keap_id not in snapshot.keap[link.flow]
            and not (link.reason or "").startswith(TYPE_CHANGE_REASON)
            for edit in edits_by_record.get(record_key("keap", link.flow, link.keap_id), [])]


def _history(edits: list[Edit], group: str) -> str:
    return ", ".join(f"#{e.seq} {e.side} {e.value!r}" for e in sorted(edits, key=lambda e: e.seq) if e.group == group) or "none"

"""The chaos run's judge: both sides and the state store, compared against the users' edits. Pure over a `Snapshot`.

A converged world has, per flow:
- no open create intent, but one whose record waits in the review list (a person's decision completes it);
- every in-scope Invoiced record linked exactly once, or in the failures or review list with the system's
  message, or unlinked because its Keap twin was deleted (the default deletes policy `unlink`); no linked one still
  in the review list. The people of company customers (`company_contacts`, ids `customer/contact`) are in scope
  while their customer is a company linked to a Keap company;
- no active link to a record that is gone, or out of the flow's scope (a customer now of the other customer flow; a
  person whose customer was deleted or turned into a person). A person whose customer lost its Keap company to a
  Keap delete (no Invoiced event says so) may stay linked: only the customer's next event closes its people's links;
- no record in two active links, no customer linked in both customer flows, no Keap contact linked in both contact
  flows;
- no duplicate: every Keap record that no user made is in some link (active, or closed by a type change/delete) of a
  flow on its collection, and no two linked Keap contacts share an email unless their Invoiced twins do too (a person
  moved between customers keeps their Keap contact);
- linked pairs that agree on every field rule (`plan.disagreements`), unless a failure of either record explains it;
  a one-way group (a person's Keap company, from their customer) that differs only where a Keap user's edit left it
  so and a lossy carry on the pair notes it (one way: never written back, never silently);
- every pair's last edit per field group still on the side it was made on (and so, by agreement, on both),
  unless a recorded conflict on that group went to the other side (on the pair, or on an earlier link of the record
  whose twin's edits count, below), or it was a clear made before the pair was linked (an empty value never wins
  while matching), or the parts that differ are parts the last edit left as they were, which an edit on the other
  side, concurrent with it, set (a group merged part by part: an address's country, a name's family name), or it was
  a Keap edit of a one-way group whose source changed since (a person's customer linked to another Keap company
  after it), or the edit raced a write: made to a record after a pass had read it and before that pass wrote the
  group's fields (planned from the earlier read, the write overwrites it; the design accepts this window,
  `engine/apply.py`, and `raced` counts such edits).
  Edits of an earlier Keap twin count as the pair's: one a type change unlinked, until the pass that closed the link
  started; one the user deleted may stand as the value when it is the latest, but is never asked for (an edit no
  pass read before the delete goes with the record). A user's edit that left a group as it was is no edit (`world`).
  Keap contacts are one object whichever contact flow their edits were logged under (`world.record_key`).

Each problem is one line naming the flow, the records, the group and both values, so a failure is debuggable.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from invoiced_keap.engine.plan import disagreements
from invoiced_keap.connectors.invoiced import CUSTOMER
from invoiced_keap.flows import CATALOGUE, FieldRule, Side, flow_of, other_side
from tests.chaos.world import KEAP_COLLECTIONS, KEAP_OBJECTS, Edit, record_key

Record = dict[str, Any]
TYPE_CHANGE_REASON = "type changed"  # how `Syncer` closes a link whose customer moved flows
EARLIEST = datetime.min.replace(tzinfo=UTC)
CUSTOMER_FLOWS = tuple(name for name, flow in CATALOGUE.items() if flow.invoiced == CUSTOMER)


def same_object(flow: str) -> tuple[str, ...]:
    """The flows whose Invoiced records are of the flow's resource (customers: companies and contacts)."""
    return tuple(name for name, other in CATALOGUE.items() if other.invoiced == CATALOGUE[flow].invoiced)


def on_collection(collection: str) -> tuple[str, ...]:
    """The flows on a Keap collection (contacts: the person customers' and the company customers' people)."""
    return tuple(name for name in CATALOGUE if KEAP_COLLECTIONS[name] == collection)


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
class LossyRow:
    """A lossy carry stored with a pair: the side that holds less than the other's value, and the field group."""

    flow: str
    invoiced_id: str
    keap_id: str
    side: Side
    group: str


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
    """Both sides as they are (`invoiced` holds live customers, items and contacts by engine id `customer/contact`,
    `keap` records by collection) and the state."""

    customers: dict[str, Record]
    items: dict[str, Record]
    keap: dict[str, dict[str, Record]]
    links: list[LinkRow]
    failures: dict[tuple[str, str, str], str]  # (flow, side, record id) -> message
    review: set[tuple[str, str]]  # (flow, invoiced id)
    conflicts: list[ConflictRow]
    writes: list[WriteRow]
    intents: int
    contacts: dict[str, Record] = field(default_factory=dict)
    lossy: set[LossyRow] = field(default_factory=set)
    intent_sources: set[tuple[str, str, str]] = field(default_factory=set)  # (flow, source side, source id) of open intents

    def keap_of(self, flow: str) -> dict[str, Record]:
        return self.keap[KEAP_COLLECTIONS[flow]]

    def invoiced_in(self, flow: str) -> dict[str, Record]:
        """The flow's in-scope Invoiced records; a nested flow's with their parent's Keap twin (as the engine adds it)."""
        if flow == "products":
            return self.items
        if CATALOGUE[flow].parent is not None:
            records = {record_id: self.with_parent_twin(flow, record) for record_id, record in self.contacts.items()}
            return {record_id: record for record_id, record in records.items() if CATALOGUE[flow].belongs(record)}
        return {record_id: c for record_id, c in self.customers.items() if flow_of(CUSTOMER, c) == flow}

    def invoiced_exists(self, flow: str, record_id: str) -> bool:
        return record_id in self.invoiced_records(flow)

    def invoiced_records(self, flow: str) -> dict[str, Record]:
        """Every live Invoiced record of the flow's resource, in scope or not."""
        if flow == "products":
            return self.items
        return self.contacts if CATALOGUE[flow].parent is not None else self.customers

    def parent_link(self, flow: str, record: Record) -> LinkRow | None:
        """The active link of a nested flow's record's parent (a person's customer in `companies`)."""
        parent = CATALOGUE[flow].parent
        assert parent is not None
        parent_id = str(record.get(parent.invoiced_parent))
        return next((link for link in self.links if link.active and link.flow == parent.flow and link.invoiced_id == parent_id), None)

    def with_parent_twin(self, flow: str, record: Record) -> Record:
        parent = CATALOGUE[flow].parent
        assert parent is not None
        link = self.parent_link(flow, record)
        return {**record, parent.keap_twin: link.keap_id if link else None}

    def parent_twin_deleted(self, flow: str, record: Record) -> bool:
        """A nested record whose parent is a live record of the parent flow, unlinked because its Keap twin was
        deleted (no Invoiced event names the parent, so its children's links wait for the next one)."""
        parent = CATALOGUE[flow].parent
        assert parent is not None
        parent_id = str(record.get(parent.invoiced_parent))
        customer = self.customers.get(parent_id)
        if customer is None or flow_of(CUSTOMER, customer) != parent.flow or self.parent_link(flow, record) is not None:
            return False
        closed = [link for link in self.links if link.flow == parent.flow and link.invoiced_id == parent_id]
        latest = max(closed, key=lambda link: link.created_at or EARLIEST, default=None)
        return latest is not None and latest.keap_id not in self.keap_of(parent.flow)


@dataclass
class Verdict:
    """Every difference from a converged world, one line each (none when converged), and the edits that raced."""

    problems: list[str] = field(default_factory=list)
    raced: list[Edit] = field(default_factory=list)


def check(snapshot: Snapshot, edits: Iterable[Edit], user_keap_ids: dict[str, set[str]]) -> Verdict:
    verdict = Verdict()
    problems = verdict.problems
    open_intents = snapshot.intents - len(_intents_in_review(snapshot))
    problems += [f"{open_intents} create intents still open"] if open_intents else []
    active = [link for link in snapshot.links if link.active]
    problems += _twice_linked(active)
    edits_by_record: dict[tuple[Side, str, str], list[Edit]] = defaultdict(list)
    for edit in edits:
        edits_by_record[edit.record_key].append(edit)
    for flow in CATALOGUE:
        flow_links = [link for link in active if link.flow == flow]
        problems += _unlinked(snapshot, flow, flow_links)
        collection = KEAP_COLLECTIONS[flow]
        if on_collection(collection)[0] == flow:
            problems += _orphans(snapshot, collection, user_keap_ids[collection])
        for link in flow_links:
            _pair(snapshot, flow, link, edits_by_record, verdict)
    problems += _shared_emails(snapshot, active)
    return verdict


def _intents_in_review(snapshot: Snapshot) -> set[tuple[str, str, str]]:
    """Open create intents whose Invoiced record waits in the review list: the create may have made a twin (a
    transient error hid the answer), and a person's decision (`review --create` adopts it, `--pick`) uses the intent."""
    return {source for source in snapshot.intent_sources if source[1] == "invoiced" and (source[0], source[2]) in snapshot.review}


def _twice_linked(active: list[LinkRow]) -> list[str]:
    problems = []
    for (flow, side), counts in {
        (flow, side): Counter(getattr(link, f"{side}_id") for link in active if link.flow == flow)
        for flow in CATALOGUE for side in ("invoiced", "keap")
    }.items():
        problems += [f"{flow}: {side} {record_id} is in {n} active links" for record_id, n in counts.items() if n > 1]
    customer_flows = defaultdict(set)
    for link in active:
        if link.flow in CUSTOMER_FLOWS:
            customer_flows[link.invoiced_id].add(link.flow)
    problems += [f"customer {record_id} is linked in both customer flows" for record_id, flows in customer_flows.items() if len(flows) > 1]
    for collection in KEAP_OBJECTS:
        sharing = on_collection(collection)
        keap_flows = defaultdict(set)
        for link in active:
            if link.flow in sharing:
                keap_flows[link.keap_id].add(link.flow)
        problems += [f"keap {collection} {keap_id} is linked in {' and '.join(sorted(flows))}"
                     for keap_id, flows in keap_flows.items() if len(flows) > 1]
    return problems


def _explained(snapshot: Snapshot, flow: str, side: Side, record_id: str) -> str | None:
    return snapshot.failures.get((flow, side, record_id))


def _unlinked(snapshot: Snapshot, flow: str, flow_links: list[LinkRow]) -> list[str]:
    """In-scope records with no link and nothing that explains it; and linked records still in the review list (a
    decision a person is asked for that no longer exists)."""
    linked = {link.invoiced_id for link in flow_links}
    twin_deleted = {link.invoiced_id for link in snapshot.links
                    if link.flow == flow and not link.active and link.keap_id not in snapshot.keap_of(flow)}
    problems = []
    for record_id, record in snapshot.invoiced_in(flow).items():
        if record_id in linked or record_id in twin_deleted or (flow, record_id) in snapshot.review:
            continue
        if _explained(snapshot, flow, "invoiced", record_id) is None:
            problems.append(f"{flow}: invoiced {record_id} ({record.get('name')!r}) has no link and no failure, review item "
                            "or deleted twin explains it")
    problems += [f"{flow}: invoiced {link.invoiced_id} is linked (keap {link.keap_id}) but still waits in the review list"
                 for link in flow_links if (flow, link.invoiced_id) in snapshot.review]
    return problems


def _orphans(snapshot: Snapshot, collection: str, user_made: set[str]) -> list[str]:
    """Keap records the sync made that no link (active or closed) of a flow on their collection names: duplicates
    left by a crash or retry."""
    sharing = on_collection(collection)
    in_links = {link.keap_id for link in snapshot.links if link.flow in sharing}
    return [f"{'/'.join(sharing)}: keap {keap_id} ({_label(record)!r}) was made by the sync but is in no link (a duplicate)"
            for keap_id, record in snapshot.keap[collection].items() if keap_id not in user_made and keap_id not in in_links]


def _shared_emails(snapshot: Snapshot, active: list[LinkRow]) -> list[str]:
    """Linked Keap records of a collection matched by email (contacts, across both contact flows) that share an
    email, more of them than live Invoiced twins holding it: the sync made or kept a duplicate of someone."""
    problems = []
    for collection in KEAP_OBJECTS:
        keys = {flow: next((key for key in CATALOGUE[flow].match_keys if key.kind == "email"), None) for flow in on_collection(collection)}
        if not keys or None in keys.values():
            continue
        keap_ids: dict[str, set[str]] = defaultdict(set)
        holders: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for link in active:
            key, keap = keys.get(link.flow), snapshot.keap[collection].get(link.keap_id)
            if key is None or keap is None:
                continue
            invoiced = snapshot.invoiced_records(link.flow).get(link.invoiced_id) or {}
            for email in key.keap_keys(keap):
                keap_ids[email].add(link.keap_id)
                if email in key.invoiced_keys(invoiced):
                    holders[email].add((link.flow, link.invoiced_id))
        problems += [f"{'/'.join(keys)}: keap {collection} {', '.join(sorted(ids, key=lambda i: (len(i), i)))} are linked and share "
                     f"the email {email!r}, held by {len(holders[email])} of their Invoiced twins (a duplicate)"
                     for email, ids in keap_ids.items() if len(ids) > max(1, len(holders[email]))]
    return problems


def _label(record: Record) -> Any:
    return record.get("company_name") or record.get("name") or (record.get("given_name"), record.get("family_name"))


def _pair(snapshot: Snapshot, flow: str, link: LinkRow, edits_by_record: dict[tuple[Side, str, str], list[Edit]],
          verdict: Verdict) -> None:
    name = f"{flow}: pair invoiced {link.invoiced_id} / keap {link.keap_id}"
    invoiced = snapshot.invoiced_in(flow).get(link.invoiced_id)
    keap = snapshot.keap_of(flow).get(link.keap_id)
    nested = CATALOGUE[flow].parent is not None
    record = snapshot.invoiced_records(flow).get(link.invoiced_id)
    parentless = invoiced is None and nested and record is not None and snapshot.parent_twin_deleted(flow, record)
    if parentless:
        invoiced = snapshot.with_parent_twin(flow, record)  # type: ignore[arg-type]
    if invoiced is None or keap is None:
        if keap is None or record is None:
            verdict.problems.append(f"{name}: active link to a record gone from {'keap' if keap is None else 'invoiced'}")
        elif nested:
            verdict.problems.append(f"{name}: active link, but its customer {record.get(CATALOGUE[flow].parent.invoiced_parent)} "  # type: ignore[union-attr]
                                    "is no linked company (a person now, or unlinked)")
        else:
            verdict.problems.append(f"{name}: active link, but the customer now belongs to the other customer flow")
        return
    failure = _explained(snapshot, flow, "invoiced", link.invoiced_id) or _explained(snapshot, flow, "keap", link.keap_id)
    if failure is not None:
        return
    rules = CATALOGUE[flow].rules
    pairs = {(other.flow, other.invoiced_id, other.keap_id) for other in _counted_links(snapshot, flow, link.invoiced_id)}
    own_edits = list({edit.seq: edit for edit in (*edits_by_record.get(record_key("invoiced", flow, link.invoiced_id), []),
                                                  *_twin_edits(snapshot, flow, link.invoiced_id, edits_by_record),
                                                  *_carried_edits(snapshot, flow, link, edits_by_record))}.values())
    gone_edits = _deleted_twin_edits(snapshot, flow, link.invoiced_id, edits_by_record)
    verdict.problems += [f"{name}: {rule.name} differs: invoiced {rule.value('invoiced', invoiced)!r}, keap {rule.value('keap', keap)!r}; "
                f"edits: {_history(own_edits, rule.name)}"
                for rule in rules if rule.name in disagreements(CATALOGUE[flow], invoiced, keap)]
    records: dict[Side, Record] = {"invoiced": invoiced, "keap": keap}
    for rule in rules:
        group_edits = [edit for edit in own_edits if edit.group == rule.name]
        if rule.one_way is not None and not parentless:
            verdict.problems += _one_way(snapshot, flow, link, rule, records, group_edits, name)
        if not group_edits:
            continue
        last = max(group_edits, key=lambda edit: edit.seq)
        now = rule.value(last.side, records[last.side])
        if now == last.value or any(rule.value("invoiced", invoiced) == edit.value for edit in gone_edits
                                    if edit.group == rule.name and edit.seq > last.seq):
            continue  # kept, or superseded by a later edit of a twin since deleted that was synced before the delete
        lost_to = [c for c in snapshot.conflicts if (c.flow, c.invoiced_id, c.keap_id) in pairs and c.group == rule.name
                   and c.winner != last.side]
        if lost_to or (rule.blank(last.value) and link.created_at is not None and last.at <= link.created_at):
            continue  # a conflict settled it, or a clear met a record linked later: an empty value never wins a first link
        if _source_changed_since(snapshot, flow, rule, records, last):
            continue  # a one-way group's source took a new value after the other side's edit, and carried it
        if _merged_by_parts(rule, last, now, own_edits):
            continue  # parts the last edit left alone took the other side's concurrent edit of them
        fields = rule.invoiced_fields if last.side == "invoiced" else rule.keap_fields
        if any(write.run_started <= last.at <= write.written_at and write.fields.intersection(fields)
               and record_key(write.side, write.flow, write.record_id) == last.record_key for write in snapshot.writes):
            verdict.raced.append(last)
        else:
            verdict.problems.append(f"{name}: last edit #{last.seq} of {rule.name} on {last.side} ({last.value!r}) was lost: "
                            f"{last.side} now has {now!r}, and no conflict went to the other side; edits: {_history(own_edits, rule.name)}"
                            + (f"; of deleted twins: {_history(gone_edits, rule.name)}" if any(e.group == rule.name for e in gone_edits) else ""))


def _one_way(snapshot: Snapshot, flow: str, link: LinkRow, rule: FieldRule, records: dict[Side, Record],
             group_edits: list[Edit], name: str) -> list[str]:
    """A one-way group (`FieldRule.one_way`) comes from its source side: the other side holds the source's value, or
    what its own user's latest edit of the group left there, noted as a lossy carry on the pair (never written back).
    `disagreements` cannot tell these apart: the source side is never written, so any value agrees one way."""
    source = rule.one_way
    assert source is not None
    target = other_side(source)
    values = {side: rule.value(side, records[side]) for side in (source, target)}
    if values[source] == values[target]:
        return []
    edits = [edit for edit in group_edits if edit.side == target]
    last = max(edits, key=lambda edit: edit.seq) if edits else None
    if last is None or last.value != values[target]:
        return [f"{name}: {rule.name} differs: {source} {values[source]!r}, {target} {values[target]!r}, and no edit of a {target} "
                f"user left it so; edits: {_history(group_edits, rule.name)}"]
    if LossyRow(flow, link.invoiced_id, link.keap_id, source, rule.name) not in snapshot.lossy:
        return [f"{name}: {rule.name} differs: {source} {values[source]!r}, {target} {values[target]!r} (edit #{last.seq} of a {target} "
                f"user), and no lossy carry on the pair notes that {source} keeps its own"]
    return []


def _merged_by_parts(rule: FieldRule, last: Edit, now: Any, edits: list[Edit]) -> bool:
    """A group merged part by part (`FieldRule.parts`, `plan._merged`): the parts where the side of the last edit
    differs from it are parts that edit left as they were, each holding what an edit on the other side set it to,
    made after this side last changed that part (concurrent with the last edit: a part changed on one side takes
    that side's value). A part the last edit changed must still be there (or a conflict say why not)."""
    if last.changed is None:
        return False
    ours, held = rule.parts(last.value), rule.parts(now)
    differing = [part for part, value in ours.items() if held.get(part) != value]
    if not differing or set(differing) & set(last.changed):
        return False
    group = [edit for edit in edits if edit.group == rule.name and edit.seq < last.seq]
    for part in differing:
        since = max((edit.seq for edit in group if edit.side == last.side and (edit.changed is None or part in edit.changed)), default=-1)
        if not any(edit.side != last.side and edit.seq > since and rule.parts(edit.value).get(part) == held[part] for edit in group):
            return False
    return True


def _source_changed_since(snapshot: Snapshot, flow: str, rule: FieldRule, records: dict[Side, Record], last: Edit) -> bool:
    """An edit of a one-way group on its target side that the source side's own change replaced: for a nested flow's
    parent twin, the parent was linked to the Keap record the target holds now after the edit was made."""
    if rule.one_way is None or last.side == rule.one_way or CATALOGUE[flow].parent is None:
        return False
    parent = snapshot.parent_link(flow, records["invoiced"])
    return (parent is not None and parent.created_at is not None and parent.created_at >= last.at
            and rule.value(last.side, records[last.side]) == rule.value(rule.one_way, records[rule.one_way]))


def _counted_links(snapshot: Snapshot, flow: str, invoiced_id: str) -> list[LinkRow]:
    """The record's links whose Keap twin's edits count as the pair's (`_twin_edits`), and whose conflicts settle them:
    the active one, and those a type change closed."""
    return [link for link in snapshot.links if link.flow in same_object(flow) and link.invoiced_id == invoiced_id
            and (link.active or (link.reason or "").startswith(TYPE_CHANGE_REASON))]


def _twin_edits(snapshot: Snapshot, flow: str, invoiced_id: str, edits_by_record: dict[tuple[Side, str, str], list[Edit]]) -> list[Edit]:
    """Edits of the record's Keap twins while they were linked to it: the current one, and earlier ones that a type
    change unlinked, up to the start of the pass that closed the link (what was edited there before synced to the
    Invoiced record; later edits belong to a record the pass was leaving alone). A conflict recorded on such an earlier
    link settles its edits as one on the pair does. Twins the user deleted are `_deleted_twin_edits`."""
    return [edit for link in _counted_links(snapshot, flow, invoiced_id)
            for edit in edits_by_record.get(record_key("keap", link.flow, link.keap_id), [])
            if link.closed_at is None or edit.at <= link.closed_at]


def _carried_edits(snapshot: Snapshot, flow: str, link: LinkRow, edits_by_record: dict[tuple[Side, str, str], list[Edit]]) -> list[Edit]:
    """Edits of the Invoiced records the pair's Keap record was linked to before, in any flow on its Keap object (a
    person customer deleted, its Keap contact freed for the company's person with its email, who goes from review to
    it), that a pass carried onto that Keap record: made while linked, and a pass that started after them wrote the
    group's fields to the Keap record. The Keap record holds them when the pair is linked."""
    sharing, carried = on_collection(KEAP_COLLECTIONS[flow]), []
    for other in snapshot.links:
        if other.flow not in sharing or other.keap_id != link.keap_id or other.invoiced_id == link.invoiced_id \
                or other.active or other.closed_at is None:
            continue
        for edit in edits_by_record.get(record_key("invoiced", other.flow, other.invoiced_id), []):
            fields = next((rule.keap_fields for rule in CATALOGUE[other.flow].rules if rule.name == edit.group), ())
            if edit.at <= other.closed_at and any(
                    write.side == "keap" and write.flow in sharing and write.record_id == link.keap_id
                    and write.run_started >= edit.at and write.fields.intersection(fields) for write in snapshot.writes):
                carried.append(edit)
    return carried


def _deleted_twin_edits(snapshot: Snapshot, flow: str, invoiced_id: str,
                        edits_by_record: dict[tuple[Side, str, str], list[Edit]]) -> list[Edit]:
    """Edits of the record's Keap twins that the user deleted: one a pass read before the delete reached Invoiced
    and may stand as the group's value; one made after the last read went with the record, so none is asked for."""
    return [edit for link in snapshot.links if link.flow in same_object(flow) and link.invoiced_id == invoiced_id
            and not link.active and link.keap_id not in snapshot.keap_of(link.flow)
            and not (link.reason or "").startswith(TYPE_CHANGE_REASON)
            for edit in edits_by_record.get(record_key("keap", link.flow, link.keap_id), [])]


def _history(edits: list[Edit], group: str) -> str:
    return ", ".join(f"#{e.seq} {e.side} {e.value!r}" for e in sorted(edits, key=lambda e: e.seq) if e.group == group) or "none"

"""Pure planning for one linked pair (and for a create): which fields to write to which side. No I/O.

Data shapes (the state store keeps these; all values are JSON-ready):

- `Shadow(values, updated)`: `values` is `{rule_name: neutral value}` of one side's record as we
  last read or wrote it (see `flows.FieldRule`), `updated` that record's update timestamp (epoch s).
  Build one from a record with `shadow_of(flow, side, record)`; after a write, prefer the record the
  API answered with, so that the stored timestamp is the post-write one.
- `LinkShadows(invoiced, keap)`: both sides' shadows of a link; `None` for a pair being linked now.
- `Policy(winner, priority, groups)`: who wins when a group changed on both sides. `winner` is
  `"newest"` (later update timestamp in whole seconds, Invoiced's resolution; the same second or a missing
  timestamp goes to `priority`), `"invoiced"`
  or `"keap"`; `groups` overrides it per rule name. One `Policy` per flow.
- `PairPlan`: `invoiced_writes` (changed Invoiced fields, for a PATCH), `keap_writes` (changed
  top-level Keap fields) and `keap_update_mask`, `conflicts` (each with both values, the winner and
  why), `lossy` (`mapping.LossyCarry`: values carried with loss, clears that cannot be written), `carried`
  (each (side, rule) a value was carried to: its earlier lossy notes are replaced) and `shadows` to store
  once the writes have succeeded.
- `CreatePlan`: the body to create a record's twin, its lossy notes, the refusal Keap's documented rules
  give it (`Flow.keap_refusal`) and the link's shadows.

Rules, per field group:
- A group is dirty on a side when its neutral value differs from that side's own shadow; values are
  never compared across sides to detect a change, so normalisation by either system causes no write.
- Dirty on one side: its value is written to the other side, only if that would change the other
  side's value (a value already cut to Keap's limit, or stored in another spelling, is left alone).
  The side a value came from is never written. It is merged part by part (`rule.parts`): a part the
  dirty side did not change keeps the other side's own value, so a part the dirty side holds only as a
  lossy copy (a given name cut to 40 characters) never flows back over its source.
- Dirty on both sides with different values: a conflict, settled by the policy and recorded, merged part by
  part too: a part changed on one side takes that side's value, changed on both the winner's, changed on
  neither stays each side's own (never the other side's lossy copy of it).
- No shadow for the group (a new link, or a rule added by configuration): the two records are merged;
  an empty value never wins (`rule.blank`: an address with only a country is empty), two empty values
  agree (nothing is written, as `disagreements` agrees), and otherwise
  the policy's side wins (`newest` means `priority` here, Invoiced by default, as there is no common
  past to compare against).
- After a link exists, a deliberate clear propagates, except for required fields (names), where it
  is noted as a lossy carry instead of being sent to an API that would reject it.
- A one-way group (`FieldRule.one_way`: a contact's company, from its Invoiced customer) takes its source side's
  value in every merge and conflict; the source side is never written: the other side's edit is noted as a
  lossy carry to it.
- `repair` (`verify --repair`): a group that differs on both sides while both equal their shadows (drift:
  an edit behind the engine's back, a lost write) is settled by the policy, with update times for `newest`,
  as a conflict; a lossy copy is no drift (`disagreements`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from itertools import product
from typing import Any, Literal, Mapping, NamedTuple

from invoiced_keap.flows import SIDES, FieldRule, Flow, Shadow, Side, Value, is_blank, other_side
from invoiced_keap.mapping import LossyCarry, Record, epoch_seconds, trimmed

UPDATED_FIELD: dict[Side, str] = {"invoiced": "updated_at", "keap": "update_time"}

PolicyName = Literal["newest", "invoiced", "keap"]


@dataclass(frozen=True)
class LinkShadows:
    invoiced: Shadow
    keap: Shadow

    def side(self, side: Side) -> Shadow:
        return self.invoiced if side == "invoiced" else self.keap


@dataclass(frozen=True)
class Policy:
    winner: PolicyName = "newest"
    priority: Side = "invoiced"
    groups: Mapping[str, PolicyName] = field(default_factory=dict)

    def for_group(self, group: str) -> PolicyName:
        return self.groups.get(group, self.winner)


@dataclass(frozen=True)
class Conflict:
    group: str
    invoiced_value: Value
    keap_value: Value
    winner: Side
    reason: str


@dataclass(frozen=True)
class PairPlan:
    invoiced_writes: dict[str, Any]
    keap_writes: dict[str, Any]
    conflicts: tuple[Conflict, ...]
    lossy: tuple[LossyCarry, ...]
    shadows: LinkShadows
    carried: tuple[tuple[Side, str], ...] = ()

    @property
    def keap_update_mask(self) -> list[str]:
        return sorted(self.keap_writes)

    @property
    def write_count(self) -> int:
        """API calls the plan costs: one PATCH per side with something to write."""
        return bool(self.invoiced_writes) + bool(self.keap_writes)

    def writes(self, side: Side) -> dict[str, Any]:
        return self.invoiced_writes if side == "invoiced" else self.keap_writes


@dataclass(frozen=True)
class CreatePlan:
    target: Side
    fields: dict[str, Any]
    lossy: tuple[LossyCarry, ...]
    shadows: LinkShadows
    refusal: str | None = None


class _Decision(NamedTuple):
    values: dict[Side, Value]  # the value each side should hold
    conflict: Conflict | None = None
    changed: tuple[Side, ...] = ()  # the sides that changed the group since the last sync (their notes are re-derived)


def record_updated(side: Side, record: Record) -> float | None:
    return epoch_seconds(record.get(UPDATED_FIELD[side]))


def shadow_of(flow: Flow, side: Side, record: Record) -> Shadow:
    """The shadow of one side's record: its neutral values per rule and its update time as given."""
    return Shadow({rule.name: rule.value(side, record) for rule in flow.rules}, record.get(UPDATED_FIELD[side]))


def _winner(policy: PolicyName, priority: Side, updated: Mapping[Side, float | None]) -> tuple[Side, str]:
    if policy != "newest":
        return policy, f"policy: {policy} wins"
    if updated["invoiced"] is None or updated["keap"] is None:
        return priority, f"newest: unknown time, priority {priority} wins"
    # Invoiced times are whole seconds, Keap's milliseconds: compared in whole seconds, or a Keap edit early in a
    # second would beat an Invoiced edit later in the same second.
    invoiced, keap = math.floor(updated["invoiced"]), math.floor(updated["keap"])
    if invoiced == keap:
        return priority, f"newest: both updated in the same second, priority {priority} wins"
    later: Side = "invoiced" if invoiced > keap else "keap"
    return later, f"newest: {later} was updated later"


def _decide(rule: FieldRule, records: Mapping[Side, Record], values: Mapping[Side, Value], shadows: LinkShadows | None,
            policy: Policy, updated: Mapping[Side, float | None], drifted: set[str]) -> _Decision | None:
    """The value a group should have on each side, or None when there is nothing to do; `drifted` are the
    groups a repair settles although neither side changed them (see the module docstring)."""
    if values["invoiced"] == values["keap"]:
        return None
    known = shadows is not None and all(rule.name in shadows.side(side).values for side in SIDES)
    if not known:
        blank = [side for side in SIDES if rule.blank(values[side])]
        if len(blank) == len(SIDES):
            return None  # two empty values agree: nothing to send (a country alone is not sent either)
        if len(blank) == 1:
            return _Decision(_both(values[other_side(blank[0])]))
        if rule.one_way is not None:
            side, reason = rule.one_way, f"{rule.one_way} is the only source of {rule.name}"
        elif rule.name in drifted:
            side, reason = _winner(policy.for_group(rule.name), policy.priority, updated)
            reason = f"repair: {reason}"
        else:
            winner = policy.for_group(rule.name)
            side = policy.priority if winner == "newest" else winner
            reason = f"merge on link: {side} wins, both sides had a value"
        return _Decision(_both(values[side]), Conflict(rule.name, values["invoiced"], values["keap"], side, reason))
    assert shadows is not None
    before = {side: shadows.side(side).values[rule.name] for side in SIDES}
    dirty = tuple(side for side in SIDES if values[side] != before[side])
    if not dirty and rule.name not in drifted:
        return None
    if len(dirty) == 1:
        return _Decision(_merged(rule, dirty[0], records, values, before), changed=dirty)
    side, reason = ((rule.one_way, f"{rule.one_way} is the only source of {rule.name}") if rule.one_way is not None
                    else _winner(policy.for_group(rule.name), policy.priority, updated))
    if not dirty:
        reason = f"repair of drift: {reason}"
    conflict = Conflict(rule.name, values["invoiced"], values["keap"], side, reason)
    return _Decision(_merged(rule, side, records, values, before), conflict, dirty)


def _both(value: Value) -> dict[Side, Value]:
    return {side: value for side in SIDES}


def _merged(rule: FieldRule, winner: Side, records: Mapping[Side, Record], values: Mapping[Side, Value],
            before: Mapping[Side, Value]) -> dict[Side, Value]:
    """Each side's value of a group that changed (on one side or both, or drifted), merged part by part
    (`rule.parts`): a part changed on one side takes that side's value, changed on both the `winner`'s; a part
    changed on neither keeps the source's value where one side holds only its copy of it (lossy or not: a given name
    cut to 40 characters never flows back over its source, and the copy is made anew from the merged parts), else
    takes the winner's (drift) unless only the other side holds one (a region Keap never held, its address left out,
    stays when a Keap user types a street)."""
    parts = {side: rule.parts(values[side]) for side in SIDES}
    old = {side: rule.parts(before[side]) for side in SIDES}
    copies = {side: rule.parts(rule.value(side, {**records[side], **rule.write(side, values[other_side(side)],
                                                                             records[side]).fields})) for side in SIDES}
    if len({frozenset(found) for found in (*parts.values(), *old.values(), *copies.values())}) != 1:
        return _both(values[winner])
    changed = {side: {name for name, part in parts[side].items() if part != old[side][name]} for side in SIDES}
    settled: dict[Side, Value] = {}
    for side in SIDES:
        other = other_side(side)
        merged = {}
        for name, own in parts[side].items():
            if name in changed[other]:
                merged[name] = parts[winner if name in changed[side] else other][name]
            elif name in changed[side] or parts[other][name] == copies[other][name]:
                merged[name] = own
            elif own == copies[side][name]:  # read anew with the merged parts (a region in the merged country)
                merged[name] = parts[other][name]
            else:  # drift: a value over none (an empty value never wins), else the winner's
                merged[name] = parts[winner][name] if parts[winner][name] is not None else parts[other_side(winner)][name]
        settled[side] = values[side] if merged == parts[side] else rule.join(merged)
    return settled


def _renote(rule: FieldRule, source: Side, working: Mapping[Side, Record],
            lossy: list[LossyCarry], carried: list[tuple[Side, str]]) -> None:
    """The notes of a side that changed the group and was not written: what it holds of the other side's value
    now, if that is still a lossy copy (a family name edited next to a cut given name), else none (its own edit
    is no copy)."""
    target = other_side(source)
    mapped = rule.write(source, rule.value(target, working[target]), working[source])
    carried.append((source, rule.name))
    if rule.value(source, {**working[source], **mapped.fields}) == rule.value(source, working[source]):
        lossy.extend(replace(note, rule=rule.name) for note in mapped.lossy)


def plan_pair(flow: Flow, link_shadows: LinkShadows | None, invoiced_record: Record, keap_record: Record,
              policy: Policy = Policy(), *, repair: bool = False) -> PairPlan:
    """Plan the writes that bring a linked (or being-linked) pair in sync; see the module docstring."""
    original: dict[Side, Record] = {"invoiced": invoiced_record, "keap": keap_record}
    working: dict[Side, dict[str, Any]] = {side: dict(original[side]) for side in SIDES}
    writes: dict[Side, dict[str, Any]] = {"invoiced": {}, "keap": {}}
    updated = {side: record_updated(side, working[side]) for side in SIDES}
    drifted = set(disagreements(flow, invoiced_record, keap_record)) if repair else set()
    conflicts: list[Conflict] = []
    lossy: list[LossyCarry] = []
    carried: list[tuple[Side, str]] = []
    for rule in flow.rules:
        values = {side: rule.value(side, working[side]) for side in SIDES}
        decision = _decide(rule, working, values, link_shadows, policy, updated, drifted)
        if decision is None:
            continue
        if decision.conflict:
            conflicts.append(decision.conflict)
        if rule.required and any(rule.blank(value) for value in decision.values.values()):
            cleared = next((side for side in SIDES if rule.blank(values[side])), "keap")
            kept = other_side(cleared)
            carried.append((kept, rule.name))
            lossy.append(LossyCarry(kept, rule.name, None, values[kept], f"cleared in {cleared}; {kept} requires a "
                                    "value, so it keeps its own", rule.name))
            continue
        if rule.required:  # a name cleared on a side and put back (`verify --repair`): the side that kept it notes it no more
            carried += [(other_side(side), rule.name) for side in SIDES if rule.blank(values[side])]
        noted: set[Side] = set()
        for side in SIDES:
            if values[side] == decision.values[side]:
                continue
            if side == rule.one_way:  # the source side of a one-way group is never written: noted instead
                carried.append((side, rule.name))
                noted.add(side)
                lossy.append(LossyCarry(side, rule.name, decision.values[side], None, rule.one_way_reason, rule.name))
                continue
            mapped = rule.write(side, decision.values[side], working[side])
            carried.append((side, rule.name))
            noted.add(side)
            lossy.extend(replace(note, rule=rule.name) for note in mapped.lossy)
            after = {**working[side], **mapped.fields}
            if rule.value(side, after) == values[side]:
                continue
            writes[side].update({key: value for key, value in mapped.fields.items()
                                 if working[side].get(key) != value})
            working[side] = after
        for source in decision.changed:
            if source not in noted:
                _renote(rule, source, working, lossy, carried)
    shadows = LinkShadows(*(
        Shadow(shadow_of(flow, side, working[side]).values, original[side].get(UPDATED_FIELD[side])) for side in SIDES
    ))
    return PairPlan(writes["invoiced"], writes["keap"], tuple(conflicts), tuple(lossy), shadows, tuple(carried))


def plan_create(flow: Flow, source: Side, record: Record) -> CreatePlan:
    """The body that creates `record`'s twin on the other side: mapped fields, plus for a Keap twin the flow's
    create-only rules (what Keap needs, where the profile syncs no such field), plus the side's create-only extras.

    `shadows` assumes the system stores what we send; once the create answers, store
    `shadow_of(flow, target, response)` for the target side instead.
    """
    target = other_side(source)
    body: dict[str, Any] = {}
    lossy: list[LossyCarry] = []
    for rule in (*flow.rules, *(flow.create_only_rules if target == "keap" else ())):
        if rule.one_way == target:  # carried only from that side (the parent of a Keap-born contact: an extra)
            continue
        value = rule.value(source, record)
        lossy.extend(replace(note, rule=rule.name) for note in trimmed(record, _fields(rule, source), target))
        if rule.blank(value):
            if _says_something(value):  # a region with no street: not sent, as no address is
                lossy.append(LossyCarry(target, rule.name, value, None, "left out: no street, city or postal code", rule.name))
            continue
        mapped = rule.write(target, value, body)
        body.update(mapped.fields)
        lossy.extend(replace(note, rule=rule.name) for note in mapped.lossy)
    extras = flow.keap_create(record) if target == "keap" else flow.invoiced_create(record)
    body.update(extras.fields)
    lossy.extend(extras.lossy)
    body = _without_nones(body)
    refusal = flow.keap_refusal(body) if target == "keap" else None
    shadows = {source: shadow_of(flow, source, record), target: shadow_of(flow, target, body)}
    return CreatePlan(target, body, tuple(lossy), LinkShadows(shadows["invoiced"], shadows["keap"]), refusal)


def _says_something(value: Value) -> bool:
    """A blank value (`rule.blank`) that holds more than a country: Invoiced fills in the account's country on every
    customer, so a country alone is no one's data, and noting it would bury the notes that matter."""
    return isinstance(value, Mapping) and not is_blank({key: part for key, part in value.items() if key != "country"})


def _fields(rule: FieldRule, side: Side) -> tuple[str, ...]:
    return rule.invoiced_fields if side == "invoiced" else rule.keap_fields


def _without_nones(value: Any) -> Any:
    """A create body without null fields, also inside Keap's sub-objects: there is nothing to clear yet."""
    if isinstance(value, Mapping):
        return {key: _without_nones(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nones(item) for item in value]
    return value


def disagreements(flow: Flow, invoiced_record: Record, keap_record: Record) -> list[str]:
    """The rules on which a pair does not agree: no value carried to both sides gives each what it holds.

    A value cut to Keap's limits or spelled Keap's way agrees, and so does a pair whose sides each hold a lossy
    copy of a part of the other's (`_carried_with_loss`), and two empty values (`rule.blank`: an Invoiced address
    with only the account's country agrees with no Keap address, as neither a create nor a first link sends it).
    This is `verify`'s check, the convergence check of the model tests, and what a repair settles as drift.
    """
    records: dict[Side, Record] = {"invoiced": invoiced_record, "keap": keap_record}
    differing = []
    for rule in flow.rules:
        values = {side: rule.value(side, records[side]) for side in SIDES}
        if values["invoiced"] == values["keap"] or all(rule.blank(values[side]) for side in SIDES):
            continue
        if not any(_image(rule, side, values[other_side(side)], records[side]) == values[side] for side in SIDES) \
                and not _carried_with_loss(rule, values, records):
            differing.append(rule.name)
    return differing


def _image(rule: FieldRule, side: Side, value: Value, record: Record) -> Value:
    """What `side` holds of `value` once carried to it."""
    return rule.value(side, {**record, **rule.write(side, value, record).fields})


def _carried_with_loss(rule: FieldRule, values: Mapping[Side, Value], records: Mapping[Side, Record]) -> bool:
    """True when some value made of the two sides' parts, carried to each side, gives each side what it holds:
    each holds a lossy copy of the other's parts where they differ (Keap a given name cut to 40 characters,
    Invoiced a family name cut at its 255-character name limit)."""
    parts = {side: rule.parts(values[side]) for side in SIDES}
    if set(parts["invoiced"]) != set(parts["keap"]):
        return False
    differing = [name for name, part in parts["invoiced"].items() if part != parts["keap"][name]]
    for choice in product(SIDES, repeat=len(differing)):
        source = rule.join({**parts["invoiced"], **{name: parts[side][name] for name, side in zip(differing, choice, strict=True)}})
        if all(_image(rule, side, source, records[side]) == values[side] for side in SIDES):
            return True
    return False

"""What a link remembers of each side (its *shadow*), as stored and as the planner takes it.

A shadow (`flows.Shadow`) keeps a side's neutral values per field rule, its own update time as the
API gave it, and its raw mapped fields (`record`: the rule fields, id and update time), so a pair whose one
side changed is planned and written against the other side's stored record, without a re-read, where that record
`covers` the flow's rules (one stored before a rule was added holds no value of it: the side is read instead). Any Keap edit
(also to a slot we do not own) moves `update_time`, so the record comes back in the next incremental read
and its stored record is refreshed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from invoiced_keap.engine.plan import UPDATED_FIELD, LinkShadows, shadow_of
from invoiced_keap.flows import SIDES, Flow, Shadow, Side
from invoiced_keap.mapping import Record
from invoiced_keap.state.models import Link


def raw_fields(flow: Flow, side: Side, record: Record) -> dict[str, Any]:
    """The part of a record a later write needs: id, update time and every field a rule maps."""
    names = {"id", UPDATED_FIELD[side]}
    for rule in flow.rules:
        names.update(rule.invoiced_fields if side == "invoiced" else rule.keap_fields)
    return {name: record[name] for name in sorted(names) if name in record}


def snapshot(flow: Flow, side: Side, record: Record) -> Shadow:
    """The shadow to store of one side's record, with its raw mapped fields."""
    shadow = shadow_of(flow, side, record)
    return Shadow(shadow.values, shadow.updated, raw_fields(flow, side, record))


def link_shadows(link: Link) -> LinkShadows | None:
    """The pair's shadows as the planner takes them; None until both sides have one."""
    stored = {side: link.shadow(side) for side in SIDES}
    invoiced, keap = stored["invoiced"], stored["keap"]
    if invoiced is None or keap is None:
        return None
    return LinkShadows(Shadow(invoiced.field_values, invoiced.source_updated), Shadow(keap.field_values, keap.source_updated))


def covers(flow: Flow, link: Link, side: Side) -> bool:
    """The side's shadow holds a value of every rule of the flow, so its stored record holds every field they map:
    not where a rule was added (or dropped and added back) since the side was last read or written."""
    shadow = link.shadow(side)
    return shadow is not None and all(rule.name in shadow.field_values for rule in flow.rules)


def stored_record(link: Link, side: Side) -> Record | None:
    shadow = link.shadow(side)
    return dict(shadow.record) if shadow is not None and shadow.record else None


def after_write(side: Side, read: Record, answer: Record, writes: Mapping[str, Any]) -> Record:
    """What to remember of a record we wrote: the API's answer for the fields written and the update time, the
    record as read for the rest. An edit someone made between our read and our write is in the answer but was
    never synced; remembering it would mark it seen and lose it (as its update time moved, the next read brings it)."""
    return {**read, **{key: answer.get(key) for key in writes}, UPDATED_FIELD[side]: answer.get(UPDATED_FIELD[side])}

"""The event log's rules: `{id, object, type, timestamp, data: {object, previous?}}`, listed newest first,
selected by subject (`related_to`), object type and date."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from starlette.datastructures import QueryParams

from invoiced_keap.emulators.invoiced.errors import ApiError
from invoiced_keap.emulators.invoiced.listing import int_param
from invoiced_keap.mapping import Record

if TYPE_CHECKING:  # the account imports this module to write events
    from invoiced_keap.emulators.invoiced.store import Account

Subject = tuple[str, str]  # (object type, id as text), the real EventAssociations row

FILTERABLE = frozenset({"type", "id", "timestamp"})


def new_event(
    event_id: int, event_type: str, obj: Record, *, now: int, previous: Record | None = None,
    extra: Record | None = None,
) -> Record:
    """A snapshot of `obj` (plus `extra` object data, e.g. `original_customer`); `previous` only when non-empty."""
    data: Record = {"object": {**copy.deepcopy(obj), **copy.deepcopy(extra or {})}}
    if previous:
        data["previous"] = copy.deepcopy(previous)
    return {"id": event_id, "object": "event", "type": event_type, "timestamp": now, "data": data}


def subject_of(event: Record) -> Subject:
    obj = event["data"]["object"]
    return (str(obj["object"]), str(obj["id"]))


def related_subject(query: QueryParams) -> Subject | None:
    """`related_to=customer,1234`."""
    raw = query.get("related_to")
    if not raw:
        return None
    object_type, _, object_id = raw.partition(",")
    if not object_id:
        raise ApiError(400, f"Invalid value for related_to: {raw}", "related_to")
    return (object_type, object_id)


def scope(account: Account, records: list[Record], query: QueryParams) -> list[Record]:
    """`related_to` and `type` (the object type) by the account's event subjects; dates inclusive.

    (`filter[type]`, the event type, is an ordinary filter.)
    """
    subjects = account.event_subjects
    if (related := related_subject(query)) is not None:
        records = [event for event in records if subjects[event["id"]] == related]
    if object_type := query.get("type"):
        records = [event for event in records if subjects[event["id"]][0] == object_type]
    if (start := int_param(query, "start_date")) is not None:
        records = [event for event in records if event["timestamp"] >= start]
    if (end := int_param(query, "end_date")) is not None:
        records = [event for event in records if event["timestamp"] <= end]
    return records

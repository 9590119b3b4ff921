"""The event log: `{id, object, type, timestamp, data: {object, previous?}}`, listed newest first."""

from __future__ import annotations

import copy
from typing import Any

from starlette.datastructures import QueryParams

from invoiced_keap.emulators.invoiced.errors import ApiError
from invoiced_keap.emulators.invoiced.listing import filter_records, int_param

Record = dict[str, Any]
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


def select_events(events: list[Record], subjects: dict[int, Subject], query: QueryParams) -> list[Record]:
    """Newest first; `filter[type]` is the event type, `type` the object type, dates inclusive."""
    selected = sorted(events, key=lambda event: event["id"], reverse=True)
    if (related := related_subject(query)) is not None:
        selected = [event for event in selected if subjects[event["id"]] == related]
    if object_type := query.get("type"):
        selected = [event for event in selected if subjects[event["id"]][0] == object_type]
    if (start := int_param(query, "start_date")) is not None:
        selected = [event for event in selected if event["timestamp"] >= start]
    if (end := int_param(query, "end_date")) is not None:
        selected = [event for event in selected if event["timestamp"] <= end]
    return filter_records(selected, query, FILTERABLE)

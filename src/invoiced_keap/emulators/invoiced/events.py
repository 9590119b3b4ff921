"""The event log's rules: `{id, object, type, timestamp, data: {object, previous?}}`, listed newest first,
selected by subject (`related_to`), object type and date.

An event relates to its own object and to the objects that object belongs to (a contact's or an invoice's
customer, the invoices a payment was applied to): the real EventAssociations rows, so `related_to=customer,7`
finds the events of customer 7's contacts, invoices and payments too."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import TYPE_CHECKING

from starlette.datastructures import QueryParams

from invoiced_keap.emulators.invoiced.errors import ApiError
from invoiced_keap.emulators.invoiced.listing import int_param
from invoiced_keap.mapping import Record

if TYPE_CHECKING:  # the account imports this module to write events
    from invoiced_keap.emulators.invoiced.store import Account

Subject = tuple[str, str]  # (object type, id as text), the real EventAssociations row
Subjects = tuple[Subject, ...]  # an event's own object first, then the objects it relates to

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


def subjects_of(event: Record, related: Iterable[Subject] = ()) -> Subjects:
    """The event's own subject, then the related ones, each once."""
    return tuple(dict.fromkeys((subject_of(event), *related)))


def moved(subjects: Subjects, old: Subject, new: Subject) -> Subjects:
    """`subjects` with `old` replaced by `new` (a merge hands the merged customer's events to the survivor)."""
    return tuple(dict.fromkeys(new if subject == old else subject for subject in subjects))


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
    """`related_to` (any subject of the event) and `type` (its own object's type); dates inclusive.

    (`filter[type]`, the event type, is an ordinary filter.)
    """
    subjects = account.event_subjects
    if (related := related_subject(query)) is not None:
        records = [event for event in records if related in subjects[event["id"]]]
    if object_type := query.get("type"):
        records = [event for event in records if subjects[event["id"]][0][0] == object_type]
    if (start := int_param(query, "start_date")) is not None:
        records = [event for event in records if event["timestamp"] >= start]
    if (end := int_param(query, "end_date")) is not None:
        records = [event for event in records if event["timestamp"] <= end]
    return records

"""In-memory Keap records with Keap's string ids and millisecond UTC timestamps, and change notification.

Records are kept as the plain JSON dicts the API returns (before field selection) in a `Table` per
collection; callers get copies, so nothing outside the store can change a stored record behind its back.
Listings read a table's cached views (`view`) instead, and must render what they show into new objects.
Besides the records: tags and tag categories (tables that send no hook events), which tags are applied to
which companies and contacts, and the custom fields defined on them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Iterator
from datetime import UTC, datetime

from invoiced_keap.emulators.keap.custom_fields import CustomFieldModels
from invoiced_keap.emulators.table import Build, Table
from invoiced_keap.mapping import Record

ChangeListener = Callable[[str, str], None]

# collection name -> the object name in Keap's hook event keys (`contact.add`, ...)
EVENT_OBJECTS = {"companies": "company", "contacts": "contact", "products": "product"}
# collections without hook events (Keap's `contactGroup.*` events for tags are not emulated)
QUIET_COLLECTIONS = ("tags", "tag_categories")
TAGGABLE = ("companies", "contacts")


def format_time(epoch_seconds: float) -> str:
    """`2025-04-16T20:33:02.321Z`: ISO-8601 UTC with milliseconds, as Keap v2 writes times."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class RecordStore:
    """Companies, contacts, products, tags; every record write tells subscribers `(event_key, record_id)`."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.listeners: list[ChangeListener] = []
        self.reset()

    def reset(self) -> None:
        """Drop all records and restart ids; subscribers stay (they belong to the emulator, not the data)."""
        self.collections = {name: Table() for name in EVENT_OBJECTS}
        self.quiet_collections = {name: Table() for name in QUIET_COLLECTIONS}
        self.last_ids: dict[str, int] = {name: 0 for name in (*EVENT_OBJECTS, *QUIET_COLLECTIONS)}
        self.custom_fields = CustomFieldModels()
        # collection -> record id -> tag id -> when the tag was applied
        self.applied_tags: dict[str, dict[str, dict[str, str]]] = {name: {} for name in TAGGABLE}

    def table(self, collection: str) -> Table:
        return self.collections[collection] if collection in self.collections else self.quiet_collections[collection]

    def subscribe(self, listener: ChangeListener) -> None:
        self.listeners.append(listener)

    def now(self) -> str:
        return format_time(self.clock())

    def insert(self, collection: str, record: Record) -> Record:
        self.last_ids[collection] += 1
        record_id = str(self.last_ids[collection])
        stamp = self.now()
        stored = {**copy.deepcopy(record), "id": record_id, "create_time": stamp, "update_time": stamp}
        self.table(collection).put(record_id, stored)
        self._notify(collection, "add", record_id)
        return copy.deepcopy(stored)

    def get(self, collection: str, record_id: str) -> Record | None:
        record = self.table(collection).get(record_id)
        return copy.deepcopy(record) if record is not None else None

    def replace(self, collection: str, record: Record) -> Record:
        """Store a changed version of an existing record; every successful write counts as an edit."""
        stored = {**copy.deepcopy(record), "update_time": self.now()}
        self.table(collection).put(stored["id"], stored)
        self._notify(collection, "edit", stored["id"])
        return copy.deepcopy(stored)

    def delete(self, collection: str, record_id: str) -> bool:
        if self.table(collection).pop(record_id) is None:
            return False
        self.applied_tags.get(collection, {}).pop(record_id, None)
        self._notify(collection, "delete", record_id)
        return True

    # --- tags on records ---------------------------------------------------------------------
    def tags_of(self, collection: str, record_id: str) -> dict[str, str]:
        """Tag id -> applied time, for the tags applied to a record."""
        return dict(self.applied_tags[collection].get(record_id, {}))

    def apply_tag(self, collection: str, record_id: str, tag_id: str) -> bool:
        """Apply a tag to an existing record; False when it already has it (its applied time stays).

        A new application is an edit of the record: its update time moves and `<object>.edit` fires.
        [inference: Keap documents `contactGroup.applied` events, not whether the record's update time moves;
        treating it as an edit lets a reader of changes since a time see it.]
        """
        applied = self.applied_tags[collection].setdefault(record_id, {})
        if tag_id in applied:
            return False
        applied[tag_id] = self.now()
        self.replace(collection, self.collections[collection][record_id])
        return True

    def remove_tag(self, collection: str, record_id: str, tag_id: str) -> bool:
        """Take a tag off a record; False when it did not have it. A removal is an edit, as an application is."""
        if self.applied_tags[collection].get(record_id, {}).pop(tag_id, None) is None:
            return False
        self.replace(collection, self.collections[collection][record_id])
        return True

    def drop_custom_field(self, collection: str, field_id: str) -> None:
        """A deleted custom field's values leave the records that had one (no edit of them: no update time)."""
        table = self.table(collection)
        for key in list(table):
            record = table[key]
            if any(str(value.get("id")) == str(field_id) for value in record.get("custom_fields") or []):
                kept = [value for value in record["custom_fields"] if str(value.get("id")) != str(field_id)]
                table.put(key, {**record, "custom_fields": kept})

    def drop_tag(self, tag_id: str) -> None:
        """A deleted tag comes off every record (no edit of them: no update time)."""
        self.table("tags").pop(str(tag_id))
        for applied in self.applied_tags.values():
            for tag_ids in applied.values():
                tag_ids.pop(str(tag_id), None)

    def records(self, collection: str) -> Iterator[Record]:
        """Copies of the collection's records in id order (creation order)."""
        for record in list(self.table(collection).values()):
            yield copy.deepcopy(record)

    def view(self, collection: str, query: Hashable, build: Build) -> list[Record]:
        """The stored records (not copies) `build` selects and orders, cached until the collection changes."""
        return self.table(collection).view(query, build)

    def _notify(self, collection: str, action: str, record_id: str) -> None:
        if collection not in EVENT_OBJECTS:
            return
        event_key = f"{EVENT_OBJECTS[collection]}.{action}"
        for listener in self.listeners:
            listener(event_key, record_id)

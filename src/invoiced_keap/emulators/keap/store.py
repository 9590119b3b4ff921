"""In-memory Keap records with Keap's string ids and millisecond UTC timestamps, and change notification.

Records are kept as the plain JSON dicts the API returns (before field selection) in a `Table` per
collection; callers get copies, so nothing outside the store can change a stored record behind its back.
Listings read a table's cached views (`view`) instead, and must render what they show into new objects.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Iterator
from datetime import UTC, datetime

from invoiced_keap.emulators.table import Build, Table
from invoiced_keap.mapping import Record

ChangeListener = Callable[[str, str], None]

# collection name -> the object name in Keap's hook event keys (`contact.add`, ...)
EVENT_OBJECTS = {"companies": "company", "contacts": "contact", "products": "product"}


def format_time(epoch_seconds: float) -> str:
    """`2025-04-16T20:33:02.321Z`: ISO-8601 UTC with milliseconds, as Keap v2 writes times."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class RecordStore:
    """Companies, contacts and products; every write tells subscribers `(event_key, record_id)`."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.listeners: list[ChangeListener] = []
        self.reset()

    def reset(self) -> None:
        """Drop all records and restart ids; subscribers stay (they belong to the emulator, not the data)."""
        self.collections = {name: Table() for name in EVENT_OBJECTS}
        self.last_ids: dict[str, int] = {name: 0 for name in EVENT_OBJECTS}

    def subscribe(self, listener: ChangeListener) -> None:
        self.listeners.append(listener)

    def now(self) -> str:
        return format_time(self.clock())

    def insert(self, collection: str, record: Record) -> Record:
        self.last_ids[collection] += 1
        record_id = str(self.last_ids[collection])
        stamp = self.now()
        stored = {**copy.deepcopy(record), "id": record_id, "create_time": stamp, "update_time": stamp}
        self.collections[collection].put(record_id, stored)
        self._notify(collection, "add", record_id)
        return copy.deepcopy(stored)

    def get(self, collection: str, record_id: str) -> Record | None:
        record = self.collections[collection].get(record_id)
        return copy.deepcopy(record) if record is not None else None

    def replace(self, collection: str, record: Record) -> Record:
        """Store a changed version of an existing record; every successful write counts as an edit."""
        stored = {**copy.deepcopy(record), "update_time": self.now()}
        self.collections[collection].put(stored["id"], stored)
        self._notify(collection, "edit", stored["id"])
        return copy.deepcopy(stored)

    def delete(self, collection: str, record_id: str) -> bool:
        if self.collections[collection].pop(record_id) is None:
            return False
        self._notify(collection, "delete", record_id)
        return True

    def records(self, collection: str) -> Iterator[Record]:
        """Copies of the collection's records in id order (creation order)."""
        for record in list(self.collections[collection].values()):
            yield copy.deepcopy(record)

    def view(self, collection: str, query: Hashable, build: Build) -> list[Record]:
        """The stored records (not copies) `build` selects and orders, cached until the collection changes."""
        return self.collections[collection].view(query, build)

    def _notify(self, collection: str, action: str, record_id: str) -> None:
        event_key = f"{EVENT_OBJECTS[collection]}.{action}"
        for listener in self.listeners:
            listener(event_key, record_id)

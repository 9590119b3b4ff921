"""A record table that also keeps each group of records (a customer's contacts, a customer's invoices) in a table of
its own, so a listing, a sum or a count over one group passes over that group only, however many records the
account holds."""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from invoiced_keap.emulators.table import Table
from invoiced_keap.mapping import Record


class GroupedTable(Table):
    """A `Table` of every record (lookups by id, unique fields, listings of all), grouped by the value of `field`."""

    def __init__(self, field: str, unique: Iterable[str] = ()) -> None:
        self.field = field
        self._groups: dict[Hashable, Table] = {}
        super().__init__(unique)

    def group(self, value: Hashable) -> Table:
        """The records whose `field` is `value`, in insertion order (an empty table when there are none)."""
        found = self._groups.get(value)
        return found if found is not None else Table()

    def put(self, key: Hashable, record: Record) -> None:
        """Insert or replace; a record whose `field` changed moves to its new group."""
        old = self.get(key)
        if old is not None and old[self.field] != record[self.field]:
            self._leave(key, old)
        super().put(key, record)
        self._groups.setdefault(record[self.field], Table()).put(key, record)

    def pop(self, key: Hashable) -> Record | None:
        record = super().pop(key)
        if record is not None:
            self._leave(key, record)
        return record

    def clear(self) -> None:
        super().clear()
        self._groups.clear()

    def _leave(self, key: Hashable, record: Record) -> None:
        group = self._groups[record[self.field]]
        group.pop(key)
        if not group:
            del self._groups[record[self.field]]

"""Both emulators' record tables: records by id in insertion order, unique-field indexes, cached list views.

A table counts its writes (`version`) and its full passes over the records (`passes`). A list view (the
records one query selects, in that query's order) is built once per version and reused for every page of
the query, so listing N records page by page costs one pass and one sort, not one per page; a write in
between makes the next page rebuild it, so pages stay live as on the real servers.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any
from invoiced_keap.mapping import Record

Build = Callable[[list[Record]], list[Record]]

MAX_VIEWS = 8  # distinct queries kept per table; a sync pages through a handful at a time


class Table(Mapping[Hashable, Record]):
    """Read like a dict (id -> record); written through `put`, `pop` and `clear`, which keep the indexes."""

    def __init__(self, unique: Iterable[str] = ()) -> None:
        self.version = 0
        self.passes = 0
        self._records: dict[Hashable, Record] = {}
        self._unique: dict[str, dict[Any, Hashable]] = {name: {} for name in unique}
        self._views: dict[Hashable, tuple[int, list[Record]]] = {}

    # --- reading ----------------------------------------------------------------------------
    def __getitem__(self, key: Hashable) -> Record:
        return self._records[key]

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[Hashable]:
        """Every full pass (`values()`, `items()`, `list(table)`) comes through here and is counted."""
        self.passes += 1
        return iter(list(self._records))

    def holder(self, field: str, value: Any) -> Hashable | None:
        """The key of the record whose unique `field` is `value`, if any."""
        return self._unique[field].get(value)

    def view(self, query: Hashable, build: Build) -> list[Record]:
        """The records `build` selects and orders from a new list of all records (in insertion order), cached
        for `query` until the next write. Callers must not change the answer."""
        cached = self._views.get(query)
        if cached is not None and cached[0] == self.version:
            return cached[1]
        version = self.version
        self.passes += 1
        selected = build(list(self._records.values()))
        self._views = {key: view for key, view in self._views.items() if view[0] == version}
        if len(self._views) >= MAX_VIEWS:
            del self._views[next(iter(self._views))]
        self._views[query] = (version, selected)
        return selected

    # --- writing ----------------------------------------------------------------------------
    def put(self, key: Hashable, record: Record) -> None:
        """Insert, or replace in place (a replaced record keeps its position)."""
        self._unindex(key)
        self._records[key] = record
        for field, index in self._unique.items():
            index[record.get(field)] = key
        self.touch()

    def pop(self, key: Hashable) -> Record | None:
        self._unindex(key)
        record = self._records.pop(key, None)
        if record is not None:
            self.touch()
        return record

    def clear(self) -> None:
        self._records.clear()
        self._views.clear()
        for index in self._unique.values():
            index.clear()
        self.touch()

    def touch(self) -> None:
        """Something a view depends on changed: the next listing rebuilds."""
        self.version += 1

    def _unindex(self, key: Hashable) -> None:
        old = self._records.get(key)
        if old is not None:
            for field, index in self._unique.items():
                if index.get(old.get(field)) == key:
                    del index[old.get(field)]


def _touching(name: str) -> Callable[..., Any]:
    method = getattr(set, name)

    def touching(self: TableMarks, *args: Any) -> Any:
        result = method(self, *args)
        self.table.touch()
        return result

    touching.__name__ = name
    return touching


class TableMarks(set[Hashable]):
    """A set of a table's keys that views depend on (archived items): any change in place touches the table."""

    def __init__(self, table: Table) -> None:
        super().__init__()
        self.table = table


for _name in ("add", "discard", "remove", "pop", "clear", "update", "difference_update", "intersection_update",
              "symmetric_difference_update", "__ior__", "__iand__", "__isub__", "__ixor__"):
    setattr(TableMarks, _name, _touching(_name))

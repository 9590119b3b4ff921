"""`RecordSpool`: the records a pass read, by id, kept on disk instead of in memory.

A pass may read every record of an account (a first sync, an echo after one, a mass edit). Held as Python
dicts, 100,000 Invoiced customers take about half a gigabyte; spooled, a pass holds only their ids. The spool
is a mapping over a private temporary SQLite database (`sqlite3.connect("")`: SQLite's own temporary file,
removed when the connection closes; pages beyond `CACHE_KIB` are written out), values as JSON text. Iteration
is in insertion order; assigning an id again replaces its record in place.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, MutableMapping, Sequence

from invoiced_keap.mapping import Record

CACHE_KIB = 1024
"""SQLite's page cache of one spool, in KiB: what of it stays in memory. A pass over every flow holds about ten
spools at once (each flow's reads of both sides, a Keap listing to match against), each filling its cache once it
holds more than that; pages beyond it come back from the file (the operating system's cache) as fast, measured
over 100,000 records."""


class RecordSpool(MutableMapping[str, Record]):
    """Records by id (text), on disk; `close()` (or the context manager) removes the file."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("", check_same_thread=False)
        self._db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self._db.execute("CREATE TABLE records (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
        self._size = 0

    def __getitem__(self, record_id: str) -> Record:
        row = self._db.execute("SELECT body FROM records WHERE id = ?", (record_id,)).fetchone()
        if row is None:
            raise KeyError(record_id)
        record: Record = json.loads(row[0])
        return record

    def __setitem__(self, record_id: str, record: Record) -> None:
        body = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        if self._db.execute("UPDATE records SET body = ? WHERE id = ?", (body, record_id)).rowcount == 0:
            self._db.execute("INSERT INTO records (id, body) VALUES (?, ?)", (record_id, body))
            self._size += 1

    def __delitem__(self, record_id: str) -> None:
        if self._db.execute("DELETE FROM records WHERE id = ?", (record_id,)).rowcount == 0:
            raise KeyError(record_id)
        self._size -= 1

    def __contains__(self, record_id: object) -> bool:
        return self._db.execute("SELECT 1 FROM records WHERE id = ?", (record_id,)).fetchone() is not None

    def __iter__(self) -> Iterator[str]:
        return (record_id for (record_id,) in self._db.execute("SELECT id FROM records ORDER BY rowid"))

    def __len__(self) -> int:
        return self._size

    def sizes(self, record_ids: Sequence[str]) -> list[int]:
        """The characters each record takes as JSON text, in the order of `record_ids` (0 for an id not here)."""
        sizes = dict(self._db.execute(f"SELECT id, length(body) FROM records WHERE id IN ({','.join('?' * len(record_ids))})",
                                      list(record_ids))) if record_ids else {}
        return [sizes.get(record_id, 0) for record_id in record_ids]

    def values(self) -> Iterator[Record]:  # type: ignore[override]  # one pass over the file, not a get per id
        return (json.loads(body) for (body,) in self._db.execute("SELECT body FROM records ORDER BY rowid"))

    def items(self) -> Iterator[tuple[str, Record]]:  # type: ignore[override]
        return ((record_id, json.loads(body)) for record_id, body in self._db.execute("SELECT id, body FROM records ORDER BY rowid"))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RecordSpool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RecordSpool({self._size} records)"

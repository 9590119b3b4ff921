"""The dirty-ids queue between the webhook receivers and the engine.

Webhooks say *which* records changed, often many times for one record in a burst (a user editing a
form, Keap batching edits). Ids are collected per flow and side and handed out together once the
marks have been quiet for `delay` seconds (or at the latest `max_delay` after the first), so a burst
of edits to one record becomes one targeted sync: one read and one write.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from invoiced_keap.flows import Side


@dataclass(frozen=True)
class DirtyKey:
    """One record of one side in one flow."""

    flow: str
    side: Side
    record_id: str


@dataclass(frozen=True)
class Mark:
    """Why a record is in the batch: `first_seen` (monotonic seconds) times the propagation delay;
    `removed` says the source confirmed a delete (Invoiced `customer.deleted`, Keap `*.delete`)."""

    first_seen: float
    removed: bool = False


@dataclass(frozen=True)
class DirtyBatch:
    """Records to sync now, each once."""

    marks: dict[DirtyKey, Mark] = field(default_factory=dict)

    def flows(self) -> list[str]:
        return sorted({key.flow for key in self.marks})

    def ids(self, flow: str, side: Side, *, removed: bool = False) -> list[str]:
        """The ids of `flow` on `side` that changed (or, with `removed`, that were deleted), sorted."""
        return sorted(
            key.record_id
            for key, mark in self.marks.items()
            if key.flow == flow and key.side == side and mark.removed == removed
        )

    def __len__(self) -> int:
        return len(self.marks)


class DirtyQueue:
    """Marks come in from the receivers (on the event loop); `next_batch()` waits for a settled batch."""

    def __init__(
        self, delay: float = 0.5, *, max_delay: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.delay = delay
        self.max_delay = max_delay if max_delay is not None else 10 * delay
        self.clock = clock
        self._marks: dict[DirtyKey, Mark] = {}
        self._last_mark = 0.0
        self._marked = asyncio.Event()

    def mark(self, flow: str, side: Side, record_ids: Iterable[str], *, removed: bool = False) -> None:
        """Add ids; a record marked again keeps its first time, and a delete sticks once seen."""
        now = self.clock()
        for record_id in record_ids:
            key = DirtyKey(flow, side, str(record_id))
            known = self._marks.get(key)
            self._marks[key] = Mark(
                first_seen=known.first_seen if known else now, removed=removed or bool(known and known.removed)
            )
            self._last_mark = now
            self._marked.set()

    def pending(self) -> int:
        return len(self._marks)

    async def next_batch(self) -> DirtyBatch:
        """Wait for marks, then until they settle; take every mark made until then."""
        await self._marked.wait()
        while (wait := self._settles_in()) > 0:
            await asyncio.sleep(wait)
        return self.take()

    def take(self) -> DirtyBatch:
        """Every mark made so far, now, without waiting (and the queue starts afresh)."""
        batch, self._marks = DirtyBatch(self._marks), {}
        self._marked.clear()
        return batch

    def _settles_in(self) -> float:
        now = self.clock()
        oldest = min(mark.first_seen for mark in self._marks.values())
        return min(self._last_mark + self.delay, oldest + self.max_delay) - now

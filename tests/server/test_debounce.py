"""The dirty-ids queue: bursts collapse into one batch, handed out once the marks settle."""

from __future__ import annotations

import asyncio
import time

from invoiced_keap.server.debounce import DirtyKey, DirtyQueue



async def test_a_burst_of_fifty_marks_of_one_record_is_one_id_in_one_batch() -> None:
    queue = DirtyQueue(delay=0.05)
    for _ in range(50):
        queue.mark("companies", "invoiced", ["7"])
        await asyncio.sleep(0.001)
    batch = await asyncio.wait_for(queue.next_batch(), 1)
    assert list(batch.marks) == [DirtyKey("companies", "invoiced", "7")]
    assert batch.ids("companies", "invoiced") == ["7"]
    assert queue.pending() == 0


async def test_batch_waits_until_marks_are_quiet_for_the_delay() -> None:
    queue = DirtyQueue(delay=0.1)
    started = time.monotonic()
    queue.mark("contacts", "keap", ["1"])

    async def more_marks() -> None:
        await asyncio.sleep(0.06)
        queue.mark("contacts", "keap", ["2"])

    marker = asyncio.create_task(more_marks())
    batch = await asyncio.wait_for(queue.next_batch(), 1)
    await marker
    assert batch.ids("contacts", "keap") == ["1", "2"]
    assert time.monotonic() - started >= 0.15


async def test_steady_marks_are_handed_out_by_max_delay() -> None:
    queue = DirtyQueue(delay=0.05, max_delay=0.2)
    stop = asyncio.Event()

    async def keep_marking() -> None:
        number = 0
        while not stop.is_set():
            number += 1
            queue.mark("products", "keap", [str(number)])
            await asyncio.sleep(0.01)

    marker = asyncio.create_task(keep_marking())
    started = time.monotonic()
    batch = await asyncio.wait_for(queue.next_batch(), 1)
    waited = time.monotonic() - started
    stop.set()
    await marker
    assert 0.15 <= waited < 0.4
    assert len(batch) > 5


async def test_sides_flows_and_deletes_stay_apart_and_a_delete_sticks() -> None:
    queue = DirtyQueue(delay=0.01)
    queue.mark("companies", "invoiced", ["1", "2"])
    queue.mark("companies", "keap", ["1"])
    queue.mark("contacts", "invoiced", ["3"], removed=True)
    queue.mark("contacts", "invoiced", ["3"])  # a late change event does not undo the delete
    batch = await asyncio.wait_for(queue.next_batch(), 1)
    assert batch.flows() == ["companies", "contacts"]
    assert batch.ids("companies", "invoiced") == ["1", "2"]
    assert batch.ids("companies", "keap") == ["1"]
    assert batch.ids("contacts", "invoiced") == []
    assert batch.ids("contacts", "invoiced", removed=True) == ["3"]


async def test_a_mark_keeps_the_time_it_was_first_seen() -> None:
    now = [100.0]
    queue = DirtyQueue(delay=0.0, clock=lambda: now[0])
    queue.mark("companies", "keap", ["5"])
    now[0] = 103.0
    queue.mark("companies", "keap", ["5"])
    batch = queue.take()
    assert batch.marks[DirtyKey("companies", "keap", "5")].first_seen == 100.0

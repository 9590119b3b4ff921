"""The pacer in virtual time: windows are never exceeded, throughput stays near the limit, server budgets bite."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from invoiced_keap.connectors.errors import CallAbandoned, QuotaExhausted
from invoiced_keap.connectors.pacing import (
    BUDGET_PROBE_INTERVAL,
    DAY,
    KEAP_PAT_LIMITS,
    Pacer,
    RateLimits,
    ServerBudget,
    Window,
    read_keap_budgets,
)

WALL_START = 1_760_000_000.0  # some moment, 2025-10-09 08:53:20 UTC


class VirtualTime:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL_START + self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def virtual_pacer(limits: RateLimits, time: VirtualTime, max_wait: float = 90.0) -> Pacer:
    return Pacer(limits, max_wait=max_wait, clock=time.clock, wall_clock=time.wall, sleep=time.sleep)


async def send_times(pacer: Pacer, time: VirtualTime, calls: int, workers: int = 8) -> list[float]:
    times: list[float] = []

    async def worker(count: int) -> None:
        for _ in range(count):
            async with pacer.turn():
                times.append(time.now)

    await asyncio.gather(*(worker(calls // workers) for _ in range(workers)))
    return sorted(times)


def most_in_any_window(times: list[float], seconds: float) -> int:
    """The largest number of calls inside any half-open stretch [t, t + seconds), to float precision."""
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= seconds - 1e-9:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_keap_pat_limits_are_never_exceeded_and_nearly_reached() -> None:
    time = VirtualTime()
    times = await send_times(virtual_pacer(KEAP_PAT_LIMITS, time), time, calls=1_200)

    assert most_in_any_window(times, 1.0) == 10
    assert most_in_any_window(times, 60.0) == 240
    # 1,200 calls: five minutes' worth of 240, each minute's sent ten per second over 24 s,
    # so the last call cannot go before 4 min + 23 s.
    ideal = 4 * 60 + 23
    assert ideal <= times[-1] <= ideal / 0.95


async def test_small_smooth_windows_keep_throughput() -> None:
    time = VirtualTime()
    limits = RateLimits((Window(3, 0.1), Window(20, 1.0)))
    times = await send_times(virtual_pacer(limits, time), time, calls=400)

    assert most_in_any_window(times, 0.1) == 3
    assert most_in_any_window(times, 1.0) == 20
    assert len(times) / (times[-1] + 1.0) >= 0.95 * 20


async def test_a_call_counts_from_when_its_answer_came_back() -> None:
    """The server saw the call somewhere between sending and answer: only the answer's time is safe."""
    time = VirtualTime()
    pacer = virtual_pacer(RateLimits((Window(1, 1.0),)), time)
    async with pacer.turn():
        await time.sleep(0.4)  # a slow answer
    async with pacer.turn():
        assert time.now == pytest.approx(1.4)


async def test_in_flight_cap_holds() -> None:
    pacer = Pacer(RateLimits(max_in_flight=3))
    in_flight, peak = 0, 0

    async def call() -> None:
        nonlocal in_flight, peak
        async with pacer.turn():
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1

    await asyncio.gather(*(call() for _ in range(12)))
    assert peak == 3


async def test_server_budget_counts_calls_sent_after_the_reported_one() -> None:
    time = VirtualTime()
    pacer = virtual_pacer(RateLimits(), time)
    async with pacer.turn() as first:
        pass
    for _ in range(2):
        async with pacer.turn():
            pass
    # The first call's response says 3 were left then; two calls have gone since, so one is left.
    pacer.observe(first, [ServerBudget("product-throttle", 3, resets_in=30.0)])
    async with pacer.turn():
        assert time.now == 0.0
    async with pacer.turn():
        assert time.now == pytest.approx(30.0)


async def test_server_budget_counts_earlier_calls_still_on_their_way() -> None:
    """Answers come back out of order: the server counted call 3 before calls 1 and 2 arrived, so its "2 left"
    does not include them; with both still unanswered, none is left (found by two processes on one key)."""
    time = VirtualTime()
    pacer = virtual_pacer(RateLimits(), time)
    async with pacer.turn(), pacer.turn():
        async with pacer.turn() as third:
            pacer.observe(third, [ServerBudget("product-quota", 2, resets_in=30.0)])
    async with pacer.turn():
        assert time.now == pytest.approx(30.0)


async def test_another_client_on_the_key_takes_its_part_of_the_per_second_limit() -> None:
    """Keap's `-used` count of the key's minute grows by the other client's calls too: with as many calls of
    theirs as ours, we go at half of Keap's 10 a second; once they stop, back to the full limit."""
    time = VirtualTime()
    pacer = virtual_pacer(KEAP_PAT_LIMITS, time)
    used = 0

    async def call(theirs: int) -> None:
        nonlocal used
        async with pacer.turn() as number:
            used += 1 + theirs
            pacer.observe(number, [ServerBudget("product-throttle", 240 - used, 60.0, window=60.0, used=used)])

    for _ in range(20):
        await call(theirs=1)
        time.now += 0.5
    assert pacer.per_second_limit() == 5
    for _ in range(200):  # a sample of our calls with none of theirs
        await call(theirs=0)
        used = 0 if used > 200 else used
    assert pacer.per_second_limit() == 10


async def test_older_response_does_not_overwrite_newer_budget() -> None:
    time = VirtualTime()
    pacer = virtual_pacer(RateLimits(), time)
    numbers = []
    for _ in range(2):
        async with pacer.turn() as number:
            numbers.append(number)
    pacer.observe(numbers[1], [ServerBudget("product-throttle", 0, resets_in=5.0)])
    pacer.observe(numbers[0], [ServerBudget("product-throttle", 100, resets_in=5.0)])
    async with pacer.turn():
        assert time.now == pytest.approx(5.0)


async def test_used_up_day_window_stops_with_resume_time() -> None:
    time = VirtualTime()
    pacer = virtual_pacer(RateLimits.of(per_day=5), time, max_wait=90.0)
    for _ in range(5):
        async with pacer.turn():
            pass
    with pytest.raises(QuotaExhausted) as raised:
        async with pacer.turn():
            pass
    expected = datetime.fromtimestamp(WALL_START + DAY, UTC)
    assert raised.value.resume_at == expected
    assert "resume at" in str(raised.value)


async def test_a_day_budget_seen_used_up_is_asked_again_by_one_call_after_the_probe_interval() -> None:
    """Keap's day quota reported at 0 until midnight (hours away) is not trusted that long: a pass stops cleanly until
    the probe is due, then one call goes to ask Keap again; its answer's 0 holds the calls for another interval, and
    once an answer reports room the calls go on (found: a `run` made no Keap call until midnight after the quota was
    raised again)."""
    time = VirtualTime()
    pacer = virtual_pacer(KEAP_PAT_LIMITS, time)
    midnight = DAY - WALL_START % DAY
    assert midnight > 2 * BUDGET_PROBE_INTERVAL

    def quota(available: int) -> list[ServerBudget]:
        return [ServerBudget("product-quota", available, resets_in=midnight - time.now)]

    async with pacer.turn() as number:
        pacer.observe(number, quota(0))
    for probe_at in (BUDGET_PROBE_INTERVAL, 2 * BUDGET_PROBE_INTERVAL):
        with pytest.raises(QuotaExhausted) as raised:
            await _take_turn(pacer)
        assert raised.value.resume_at == datetime.fromtimestamp(WALL_START + probe_at, UTC)
        time.now = probe_at
        async with pacer.turn() as number:
            assert time.now == probe_at
            pacer.observe(number, quota(0))  # still used up
    assert pacer.calls_sent == 3

    time.now += BUDGET_PROBE_INTERVAL
    async with pacer.turn() as number:
        pacer.observe(number, quota(29_911))  # Keap's quota was raised
    for _ in range(5):
        await _take_turn(pacer)
    assert pacer.calls_sent == 9


async def test_while_the_probe_is_on_the_wire_no_other_call_goes_and_they_follow_its_answer() -> None:
    time = VirtualTime()
    pacer = virtual_pacer(KEAP_PAT_LIMITS, time)
    midnight = DAY - WALL_START % DAY
    async with pacer.turn() as number:
        pacer.observe(number, [ServerBudget("product-quota", 0, resets_in=midnight)])
    time.now = BUDGET_PROBE_INTERVAL

    async with pacer.turn() as probe:
        others = [asyncio.create_task(_take_turn(pacer)) for _ in range(3)]
        for _ in range(20):
            await asyncio.sleep(0)
        assert pacer.calls_sent == 2 and not any(task.done() for task in others)
        pacer.observe(probe, [ServerBudget("product-quota", 0, resets_in=midnight - time.now)])
    for task in others:
        with pytest.raises(QuotaExhausted):
            await task
    assert pacer.calls_sent == 2


def test_reads_keap_budget_headers_in_both_forms() -> None:
    expiry_ms = int((WALL_START + 3_600) * 1000)
    headers = {
        "x-keap-product-quota-available": "29000",
        "x-keap-product-quota-expiry-time": str(expiry_ms),
        "x-keap-product-throttle-available": "239",
        "x-keap-product-throttle-time-unit": "minute",
        "x-keap-product-throttle-interval": "1",
        "x-keap-tenant-throttle-available": "9990|249000",
        "x-keap-tenant-throttle-time-unit": "minute|day",
        "content-type": "application/json",
    }
    budgets = {budget.name: budget for budget in read_keap_budgets(headers, WALL_START)}

    assert budgets["product-quota"] == ServerBudget("product-quota", 29_000, 3_600.0)
    assert budgets["product-throttle"] == ServerBudget("product-throttle", 239, 60.0, window=60.0)
    assert budgets["tenant-throttle[minute]"] == ServerBudget("tenant-throttle[minute]", 9_990, 60.0, window=60.0)
    assert budgets["tenant-throttle[day]"].available == 249_000
    seconds_to_midnight = DAY - WALL_START % DAY
    assert budgets["tenant-throttle[day]"].resets_in == pytest.approx(seconds_to_midnight)
    assert read_keap_budgets({"content-type": "application/json"}, WALL_START) == []


async def test_used_up_budget_without_expiry_waits_for_our_own_window_not_a_whole_one() -> None:
    """Keap's throttle headers carry no reset time: once our own full minute log shows when the server's
    window must have reset, the pacer goes on then instead of waiting a whole minute from the last call."""
    time = VirtualTime()
    pacer = virtual_pacer(RateLimits.of(per_minute=4), time)
    numbers = []
    for _ in range(4):
        async with pacer.turn() as number:
            numbers.append(number)
        time.now += 5.0
    # The fourth answer says the server's minute is used up; it does not say when it resets.
    pacer.observe(numbers[-1], [ServerBudget("product-throttle", 0, resets_in=60.0, window=60.0)])
    async with pacer.turn():
        assert time.now == pytest.approx(60.0)  # the first call is a minute old, not 20 + 60 s


async def test_a_call_waiting_for_its_turn_is_abandoned_on_stop_and_none_starts_after() -> None:
    """Keap's minute budget spent (production limits): the next call would wait most of a minute; `stop()`
    abandons it at once (nothing was sent), and a call asked for after the stop never starts."""
    now = [0.0]
    slept = asyncio.Event()

    async def sleep_until_cancelled(seconds: float) -> None:  # a real wait of `seconds`, never over by itself
        slept.set()
        await asyncio.Event().wait()

    pacer = Pacer(KEAP_PAT_LIMITS, clock=lambda: now[0], sleep=sleep_until_cancelled)
    for second in range(24):  # 240 calls in 24 s: the per-minute window is full until second 60
        now[0] = float(second)
        for _ in range(10):
            async with pacer.turn():
                pass
    waiting = asyncio.create_task(_take_turn(pacer))
    await slept.wait()
    pacer.stop()
    with pytest.raises(CallAbandoned):
        await asyncio.wait_for(waiting, timeout=30)
    assert pacer.calls_sent == 240
    with pytest.raises(CallAbandoned):
        await _take_turn(pacer)


async def _take_turn(pacer: Pacer) -> None:
    async with pacer.turn():
        pass

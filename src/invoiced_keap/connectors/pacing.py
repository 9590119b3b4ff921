"""Pacing: stay under an API's rate limits instead of running into 429s.

Two sources of truth are combined, and the stricter one wins:
- our own sliding windows (the configured per-second/minute/day limits), which let calls through in
  bursts as long as no window of that length ever holds more than its limit. A call counts from when
  its answer came back, which is no earlier than the server saw it, so network delays cannot push one
  call too many into the server's window;
- the budgets the server reports (Keap's `x-keap-*-available` headers), which also see other clients
  sharing the key. A header describes the server as it was when that call arrived, so calls we sent
  after it are subtracted.

A wait longer than `max_wait` means a long quota (the day's) is used up: `QuotaExhausted` is raised
with the time it resets, so a run stops cleanly instead of sleeping for hours. After `stop()` a call still
waiting for its turn is abandoned (`CallAbandoned`: nothing was sent); calls already sent finish. Hand-written rather
than taken from a rate-limit library because none of them merges server-reported budgets.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime

from invoiced_keap.connectors.errors import CallAbandoned, QuotaExhausted

SECOND, MINUTE, DAY = 1.0, 60.0, 86_400.0
TIME_UNITS = {"second": SECOND, "minute": MINUTE, "hour": 3_600.0, "day": DAY}
KEAP_AVAILABLE_HEADER = re.compile(r"^x-keap-(?P<family>[a-z-]+)-available$")


@dataclass(frozen=True)
class Window:
    """At most `limit` calls in any `seconds`-long stretch of time."""

    limit: int
    seconds: float


@dataclass(frozen=True)
class RateLimits:
    """An API's limits: windows of calls over time, and calls in flight at once."""

    windows: tuple[Window, ...] = ()
    max_in_flight: int | None = None

    @classmethod
    def of(
        cls,
        *,
        per_second: int | None = None,
        per_minute: int | None = None,
        per_day: int | None = None,
        max_in_flight: int | None = None,
    ) -> "RateLimits":
        limits = ((per_second, SECOND), (per_minute, MINUTE), (per_day, DAY))
        return cls(tuple(Window(limit, seconds) for limit, seconds in limits if limit), max_in_flight)


KEAP_PAT_LIMITS = RateLimits.of(per_second=10, per_minute=240, per_day=30_000)
KEAP_OAUTH_LIMITS = RateLimits.of(per_minute=1_500, per_day=150_000)
INVOICED_LIMITS = RateLimits(max_in_flight=20)


@dataclass(frozen=True)
class ServerBudget:
    """What the server says is left in one of its windows, and in how many seconds that window starts afresh.

    `window` is the window's length when the server gave no expiry time, so `resets_in` is only a
    conservative guess (a whole window from now) that the pacer may improve on from its own calls.
    """

    name: str
    available: int
    resets_in: float
    window: float | None = None


def read_keap_budgets(headers: Mapping[str, str], wall_now: float) -> list[ServerBudget]:
    """Budgets from `x-keap-{family}-available` and friends; pipe-separated values (`10000|250000` with
    time-unit `minute|day`) are one budget per part. Headers from other APIs give no budgets."""
    budgets = []
    for name in headers:
        match = KEAP_AVAILABLE_HEADER.match(name.lower())
        if not match:
            continue
        family = match["family"]
        parts = _split(headers, f"x-keap-{family}-available")
        units = _split(headers, f"x-keap-{family}-time-unit")
        intervals = _split(headers, f"x-keap-{family}-interval")
        expiries = _split(headers, f"x-keap-{family}-expiry-time")
        for index, available in enumerate(parts):
            expiry = _at(expiries, index)
            window = _window_seconds(_at(units, index), _at(intervals, index))
            resets_in = _resets_in(expiry, window, wall_now)
            if available.lstrip("-").isdigit() and resets_in is not None:
                label = f"{family}[{_at(units, index) or index}]" if len(parts) > 1 else family
                inferred = None if (expiry and expiry.isdigit()) or window == DAY else window
                budgets.append(ServerBudget(label, int(available), resets_in, inferred))
    return budgets


def _split(headers: Mapping[str, str], name: str) -> list[str]:
    value = headers.get(name)
    return [part.strip() for part in value.split("|")] if value else []


def _at(parts: list[str], index: int) -> str | None:
    return parts[index] if index < len(parts) else None


def _window_seconds(unit: str | None, interval: str | None) -> float | None:
    seconds = TIME_UNITS.get((unit or "").lower())
    if seconds is None:
        return None
    return seconds * (int(interval) if interval and interval.isdigit() else 1)


def _resets_in(expiry_ms: str | None, window: float | None, wall_now: float) -> float | None:
    """Seconds until the window resets: the stated expiry if any, else (conservatively) a whole window;
    a day window resets at 00:00 UTC, as Keap documents."""
    if expiry_ms and expiry_ms.isdigit():
        return max(0.0, int(expiry_ms) / 1000 - wall_now)
    if window == DAY:
        return DAY - wall_now % DAY
    return window


class _Call:
    """When a call was sent, then (once answered) when its answer came back."""

    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at


class _SlidingLog:
    """The last `limit` calls: the next call may go once the oldest is `seconds` old."""

    def __init__(self, window: Window) -> None:
        self.seconds = window.seconds
        self.calls: deque[_Call] = deque(maxlen=window.limit)

    @property
    def full(self) -> bool:
        return len(self.calls) == self.calls.maxlen

    def wait(self, now: float) -> float:
        if not self.full:
            return 0.0
        return self.calls[0].at + self.seconds - now

    def record(self, call: _Call) -> None:
        self.calls.append(call)


@dataclass
class _Budget:
    remaining: int
    resets_at: float
    seen_at_call: int
    window: float | None


class Pacer:
    """Hands out turns: `async with pacer.turn() as call_number:` around each call sent.

    `clock`, `wall_clock` and `sleep` are injectable so tests can run hours of traffic in virtual time.
    """

    def __init__(
        self,
        limits: RateLimits,
        *,
        max_wait: float = 90.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.limits = limits
        self.max_wait = max_wait
        self.clock = clock
        self.wall_clock = wall_clock
        self.sleep = sleep
        self.calls_sent = 0
        self._windows = [_SlidingLog(window) for window in limits.windows]
        self._budgets: dict[str, _Budget] = {}
        self._turns = asyncio.Lock()
        self._in_flight = asyncio.Semaphore(limits.max_in_flight) if limits.max_in_flight else None
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        """Abandon every call waiting for its turn, now and from here on (a graceful stop: nothing was sent yet)."""
        self._stopped.set()

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[int]:
        """Wait for a free in-flight slot and for the rate budget; yield this call's number."""
        slot: AbstractAsyncContextManager[object] = self._in_flight or nullcontext()
        async with slot:
            async with self._turns:
                call_number, call = await self._wait_for_budget()
            try:
                yield call_number
            finally:
                call.at = self.clock()

    def observe(self, call_number: int, budgets: Iterable[ServerBudget]) -> None:
        """Take in what the server reported in the response to call `call_number`."""
        now = self.clock()
        for budget in budgets:
            known = self._budgets.get(budget.name)
            if known and known.seen_at_call > call_number:
                continue  # an older response overtaken by a newer one
            sent_since = self.calls_sent - call_number
            self._budgets[budget.name] = _Budget(
                budget.available - sent_since, now + budget.resets_in, call_number, budget.window
            )

    async def _wait_for_budget(self) -> tuple[int, _Call]:
        while (wait := self._wait_needed(self.clock())) > 0 or self._stopped.is_set():
            if self._stopped.is_set():
                raise CallAbandoned("stopped on request before its turn came; nothing was sent")
            if wait > self.max_wait:
                resume_at = datetime.fromtimestamp(self.wall_clock() + wait, UTC)
                raise QuotaExhausted("rate limit quota used up", resume_at=resume_at)
            await self._sleep_unless_stopped(wait)
        call = _Call(self.clock())
        for window in self._windows:
            window.record(call)
        for budget in self._budgets.values():
            budget.remaining -= 1
        self.calls_sent += 1
        return self.calls_sent, call

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        sleeping, stopping = asyncio.ensure_future(self.sleep(seconds)), asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait({sleeping, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            stopping.cancel()

    def _wait_needed(self, now: float) -> float:
        self._budgets = {name: budget for name, budget in self._budgets.items() if budget.resets_at > now}
        waits = [window.wait(now) for window in self._windows]
        waits += [self._budget_wait(budget, now) for budget in self._budgets.values() if budget.remaining <= 0]
        return max(waits, default=0.0)

    def _budget_wait(self, budget: _Budget, now: float) -> float:
        """How long a used-up server budget holds calls back.

        With no expiry from the server, a whole window from the observation is safe but wastes up to a
        window. When our own log of the same length is full, the server's window cannot have started
        before the oldest of those calls, so it has reset once that call is a window old: waiting for
        that instead keeps a fixed-window (Keap) or sliding-window server at its full rate.
        """
        own = next((log for log in self._windows if log.seconds == budget.window and log.full), None)
        if own is not None:
            return min(own.wait(now), budget.resets_at - now)
        return budget.resets_at - now

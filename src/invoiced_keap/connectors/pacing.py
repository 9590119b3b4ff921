"""Pacing: stay under an API's rate limits instead of running into 429s.

Two sources of truth are combined, and the stricter one wins:
- our own sliding windows (the configured per-second/minute/day limits), which let calls through in
  bursts as long as no window of that length ever holds more than its limit. A call counts from when
  its answer came back, which is no earlier than the server saw it, so network delays cannot push one
  call too many into the server's window;
- the budgets the server reports (Keap's `x-keap-*-available` headers), which also see other clients
  sharing the key. A header describes the server as it was when that call arrived, so calls we sent
  after it are subtracted, and so are those sent before it still unanswered (they may arrive after it).

Other clients on the same key (a second `sync` process, cron overlapping `run`) are seen through the
`-used` header of the key's own (`product`) minute window: what it grew by beyond our own calls is theirs.
Our part of the key's recent calls is our part of the per-second limit (Keap's spike limit, a window no
header reports), and a budget is left alone a second's worth of their calls before it runs out, so a
second process slows down instead of drawing 429s. A 429 all the same (`refused`) holds every call for
the window it names: the minute or day budget the headers say is used up, `Retry-After`, or else the
one-second spike window (unknown windows: the caller's backoff), then halving our per-second rate, which
grows back while no 429 comes.

A server budget reported used up is not trusted all the way to a reset hours away (the day's, at 00:00 UTC): Keap
can raise a quota during the day, and a count can be wrong or forgiven later. `BUDGET_PROBE_INTERVAL` after the answer
that reported it, one call goes to ask again (the others wait for its answer), and what its answer reports replaces
the budget: room, and calls go on; still 0 or a 429, and calls are held for another interval. Our own windows are
not probed (they count our calls; nothing can raise them).

A wait longer than `max_wait` means a long quota (the day's) is used up: `QuotaExhausted` is raised with the time
the next call may go (the window's reset, or the next probe when that is sooner), so a run stops cleanly instead of
sleeping for hours, and a later run on the same pacer (`run`'s next pass) goes on from then. After `stop()` a call
still waiting for its turn is abandoned (`CallAbandoned`: nothing was sent); calls already sent finish. Hand-written
rather than taken from a rate-limit library because none of them merges server-reported budgets.
"""

from __future__ import annotations

import asyncio
import math
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
OWN_KEY_FAMILY = "product-"
"""Keap's `x-keap-product-*` windows count the calls of this key, whoever makes them; `tenant-*` the whole account's."""
OTHERS_HORIZON = 5.0
"""Seconds over which other clients' calls on the key are averaged into a rate."""
SHARE_SAMPLE = 100
"""Our last calls over which our part of the key's calls is measured (the rest: other clients')."""
SHARE_MEMORY = 600.0
"""Seconds after which what was seen of other clients on the key is forgotten."""
BUDGET_PROBE_INTERVAL = 600.0
"""Seconds a server budget reported used up holds every call before one call goes to ask the server again (when its
reset is further away). Long enough that a quota really spent costs at most 6 calls an hour (144 a day, under 0.5 %
of a personal access token's 30,000), short enough that a quota raised during the day, or a count that was wrong,
stops a long-running `run` for minutes rather than until midnight."""
CAP_RAISE_AFTER = 2.0
"""Seconds without a 429 before a per-second rate lowered by one starts to grow again (a quarter, at least
one call, each second, until it is back at the configured limit or, with none, at the rate that was refused)."""


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
    used: int | None = None
    limit: int | None = None


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
        used = _split(headers, f"x-keap-{family}-used")
        limits = _split(headers, f"x-keap-{family}-limit")
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
                spent, limit = _at(used, index), _at(limits, index)
                budgets.append(ServerBudget(label, int(available), resets_in, inferred, _count(spent), _count(limit)))
    return budgets


def _split(headers: Mapping[str, str], name: str) -> list[str]:
    value = headers.get(name)
    return [part.strip() for part in value.split("|")] if value else []


def _count(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


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
    probe_at: float  # when, used up, it lets one call through to ask the server again (`BUDGET_PROBE_INTERVAL`)
    refused: bool = False  # a 429 came while it was used up
    probe: int | None = None  # the number of the last call let through to ask (`_held_wait`)


@dataclass
class _Usage:
    """The last `-used` count of one of the key's windows, the call whose answer gave it, and when."""

    used: int
    call_number: int
    at: float


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
        self.per_second = min((window.limit for window in limits.windows if window.seconds == SECOND), default=None)
        self.refusals = 0  # 429s answered to our calls
        self._unanswered: set[int] = set()  # our calls sent and not answered yet
        self._recent: deque[_Call] = deque()  # our calls of the last second
        self._held_until = 0.0  # no call before this (a 429's window)
        self._cap: int | None = None  # our per-second rate since a 429, growing back while none comes
        self._cap_moved_at = -float("inf")
        self._cap_from = 0  # our rate when the first 429 of a cut came
        self._usage: dict[str, _Usage] = {}
        self._reset_seen: dict[str, float] = {}  # budget -> when its `-used` count was first seen to start afresh
        self._others: deque[tuple[float, float]] = deque()  # (when, calls of other clients seen then)
        self._uncounted: deque[int] = deque()  # our refused calls not yet taken into `_split`
        self._split: deque[tuple[float, int, int]] = deque()  # (when, our calls, other clients') per look at `-used`
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
            self._unanswered.add(call_number)
            try:
                yield call_number
            finally:
                call.at = self.clock()
                self._unanswered.discard(call_number)

    def observe(self, call_number: int, budgets: Iterable[ServerBudget], *, counted: bool = True) -> None:
        """Take in what the server reported in the response to call `call_number`; `counted=False` for a refused
        call (a 429), which the server's `-used` counts leave out."""
        now = self.clock()
        if not counted:
            self._uncounted.append(call_number)
        for budget in budgets:
            known = self._budgets.get(budget.name)
            if known and known.seen_at_call > call_number:
                continue  # an older response overtaken by a newer one
            if budget.used is not None:
                self._count_others(budget, call_number, now)
            # calls sent after this one, and calls sent before it still on their way (the server may not have
            # counted them yet: they may arrive after it)
            sent_since = self.calls_sent - call_number + sum(1 for number in self._unanswered if number < call_number)
            resets_at = now + budget.resets_in
            if budget.window is not None and budget.name in self._reset_seen:
                # the window started afresh at or before that moment, so it does again a window later
                seen = self._reset_seen[budget.name]
                resets_at = min(resets_at, seen + budget.window * (1 + int((now - seen) // budget.window)))
            self._budgets[budget.name] = _Budget(
                budget.available - sent_since, resets_at, call_number, budget.window, now + BUDGET_PROBE_INTERVAL
            )

    def refused(self, budgets: Iterable[ServerBudget], retry_after: float | None, backoff: float) -> float:
        """A call was answered 429 (its budgets already `observe`d): hold every call for the window that refused
        it. The window is the budget the headers say is used up, else the server's `Retry-After`, else, when the
        server reported budgets with room left, Keap's one-second spike window, else (nothing said) the caller's
        `backoff`; in these last two cases our per-second rate is halved too. Answers how long the next call waits."""
        now = self.clock()
        self.refusals += 1
        budgets = list(budgets)
        for budget in budgets:
            if budget.available <= 0 and budget.name in self._budgets:
                self._budgets[budget.name].refused = True
        if any(budget.available <= 0 for budget in budgets):
            return self._wait_needed(now)  # that budget's reset holds the calls
        if retry_after is not None:
            self._held_until = max(self._held_until, now + retry_after)
            return self._wait_needed(now)
        self._held_until = max(self._held_until, now + (SECOND if budgets else backoff))
        if now - self._cap_moved_at >= SECOND:  # one cut per second: the answers of one burst come together
            recent = sum(1 for call in self._recent if call.at > now - SECOND)
            self._cap_from = self._cap_from if self._cap is not None else recent
            self._cap = max(1, min(self._cap or recent, recent) // 2)
            self._cap_moved_at = now
        return self._wait_needed(now)

    def others_rate(self, now: float | None = None) -> float:
        """Calls a second that other clients made on the key lately (from Keap's `-used` counts)."""
        now = self.clock() if now is None else now
        while self._others and self._others[0][0] <= now - OTHERS_HORIZON:
            self._others.popleft()
        return max(0.0, sum(count for _, count in self._others)) / OTHERS_HORIZON

    def our_part(self, now: float | None = None) -> float:
        """Our part of the calls on the key over our last `SHARE_SAMPLE` calls (1.0 when no other client was seen).

        Taking that part of the per-second limit shares it without the clients knowing of each other: two that
        both want more than their part settle on parts that add up to the whole (each one's part of the calls
        is its part of the limit), and one that wants less leaves the rest to the other."""
        now = self.clock() if now is None else now
        while self._split and self._split[0][0] < now - SHARE_MEMORY:
            self._split.popleft()
        ours = sum(calls for _, calls, _ in self._split)
        theirs = max(0, sum(calls for _, _, calls in self._split))
        return ours / (ours + theirs) if ours + theirs else 1.0

    def _count_others(self, budget: ServerBudget, call_number: int, now: float) -> None:
        """What a short window of the key's grew by since our previous look, beyond our calls sent in between
        (less those refused: a 429 is not counted), was spent by other clients; a count lower than the last
        means the window started afresh in between."""
        if not budget.name.startswith(OWN_KEY_FAMILY) or budget.window is None or budget.used is None:
            return
        last = self._usage.get(budget.name)
        if last is not None and call_number <= last.call_number:
            return
        while self._uncounted and last is not None and self._uncounted[0] <= last.call_number:
            self._uncounted.popleft()
        ours = call_number - (last.call_number if last is not None else 0)
        ours -= sum(1 for number in self._uncounted if number <= call_number)
        if last is None:
            # the first look: the calls counted beyond ours so far were someone else's (spent this window)
            self._split.append((now, max(ours, 1), max(0, budget.used - ours)))
        elif budget.used >= last.used:
            theirs = budget.used - last.used - ours
            spread = now - last.at
            if theirs:
                # a long gap between our calls: only its last stretch counts towards the rate
                self._others.append((now, theirs * min(1.0, OTHERS_HORIZON / spread) if spread > 0 else theirs))
            self._split.append((now, ours, theirs))
            while self._split and (sum(calls for _, calls, _ in self._split) > SHARE_SAMPLE or self._split[0][0] < now - SHARE_MEMORY):
                self._split.popleft()
        elif last is not None:
            self._reset_seen[budget.name] = now
        self._usage[budget.name] = _Usage(budget.used, call_number, now)

    async def _wait_for_budget(self) -> tuple[int, _Call]:
        while (wait := self._wait_needed(self.clock())) > 0 or self._stopped.is_set():
            if self._stopped.is_set():
                raise CallAbandoned("stopped on request before its turn came; nothing was sent")
            if wait > self.max_wait:
                resume_at = datetime.fromtimestamp(self.wall_clock() + wait, UTC)
                raise QuotaExhausted("rate limit quota used up: no call left in the window, as the server's rate headers report", resume_at=resume_at)
            await self._sleep_unless_stopped(wait)
        call = _Call(self.clock())
        probed = [budget for budget in self._held_budgets(call.at) if self._budget_wait(budget, call.at) > 0]
        for window in self._windows:
            window.record(call)
        self._recent.append(call)
        for budget in self._budgets.values():
            budget.remaining -= 1
        self.calls_sent += 1
        for budget in probed:  # this call goes only because their probe was due
            budget.probe, budget.probe_at = self.calls_sent, call.at + BUDGET_PROBE_INTERVAL
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
        waits += [self._held_wait(budget, now) for budget in self._held_budgets(now)]
        waits += [self._held_until - now, self._per_second_wait(now)]
        return max(waits, default=0.0)

    def _held_budgets(self, now: float) -> list[_Budget]:
        """The server budgets with no call left for us: other clients on the key spend their share of a budget while
        our view of it ages, so a second's worth of their calls is left to them."""
        reserve = math.ceil(self.others_rate(now))
        return [budget for budget in self._budgets.values() if budget.remaining <= reserve]

    def _held_wait(self, budget: _Budget, now: float) -> float:
        """How long a held budget keeps calls back: until it resets (`_budget_wait`) or, when sooner, until its probe
        is due. While the probe is on the wire the others look again each second: its answer replaces the budget."""
        wait = self._budget_wait(budget, now)
        if wait <= 0:
            return wait
        if budget.probe in self._unanswered:
            return min(wait, SECOND)
        return min(wait, budget.probe_at - now)

    def per_second_limit(self, now: float | None = None) -> int | None:
        """Our calls a second for now: our part (`our_part`) of the configured limit, and no more than the rate a
        429 cut it to (growing back by a quarter a second once none came for a while)."""
        now = self.clock() if now is None else now
        if self._cap is not None and now - self._cap_moved_at >= CAP_RAISE_AFTER:
            self._cap += max(1, self._cap // 4)
            self._cap_moved_at = now - CAP_RAISE_AFTER + SECOND
            if self._cap >= (self.per_second or self._cap_from):  # back to the limit, or to the rate refused
                self._cap = None
        limits = [self._cap] if self._cap is not None else []
        if self.per_second is not None:
            limits.append(max(1, math.floor(self.per_second * self.our_part(now))))
        return min(limits, default=None)

    def _per_second_wait(self, now: float) -> float:
        while self._recent and self._recent[0].at <= now - SECOND:
            self._recent.popleft()
        limit = self.per_second_limit(now)
        if limit is None:
            return 0.0
        times = sorted(call.at for call in self._recent if call.at > now - SECOND)
        return times[-limit] + SECOND - now if len(times) >= limit else 0.0

    def _budget_wait(self, budget: _Budget, now: float) -> float:
        """How long a used-up server budget holds calls back.

        With no expiry from the server, a whole window from the observation is safe but wastes up to a
        window. When our own log of the same length is full, the server's window cannot have started
        before the oldest of those calls, so it has reset once that call is a window old: waiting for
        that instead keeps a fixed-window (Keap) or sliding-window server at its full rate. Not when other
        clients spend the same budget, nor after a 429 (the server did not count that call): the window reset is
        then the server's stated or inferred one (`observe`).
        """
        own = next((log for log in self._windows if log.seconds == budget.window and log.full), None)
        if own is not None and not budget.refused and self.our_part(now) == 1.0:
            return min(own.wait(now), budget.resets_at - now)
        return budget.resets_at - now

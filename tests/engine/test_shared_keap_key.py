"""Two processes on one Keap key (two `sync --flow` processes, or cron overlapping `run`), at Keap's production
limits (the emulator's default: 10/s, 240/min, 30,000/day) and the connector's production pacing and retries.

Each process paces itself to the key's limits; Keap's `x-keap-product-throttle-used` header shows each one the
other's calls, so they share the key instead of drawing 429s, and a 429 all the same (Keap's body
`{"code": "429", "message": "Quota Exceeded"}`) is waited out, never a record's failure. Minutes of pacing run on
the emulators' manual clock (`VirtualTime`), so nothing sleeps through a minute.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from collections import Counter
from dataclasses import dataclass, field

import pytest

from invoiced_keap.connectors.http import RequestEvent
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.connectors.pacing import KEAP_PAT_LIMITS
from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.keap.ratelimit import PAT_LIMITS, window_index
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.engine.options import SyncOptions
from invoiced_keap.engine.report import RunReport
from invoiced_keap.engine.run import Syncer
from invoiced_keap.state import Store
from tests.support import API_KEY, ManualClock, VirtualTime

pytestmark = pytest.mark.parametrize("state_url", ["sqlite"], indirect=True)

RECORDS = 150  # per flow: 300 creates in Keap, more than a minute's 240


@dataclass
class SharedKey:
    clock: ManualClock
    invoiced: InvoicedEmulator
    keap: KeapEmulator
    invoiced_url: str
    keap_url: str
    state_url: str
    refused_at: list[float] = field(default_factory=list)  # the emulator's clock at each 429 either process got

    async def pass_of(self, flows: list[str], time: VirtualTime) -> RunReport:
        """One process's pass: its own store and connectors, Keap paced at the PAT limits on the shared key."""
        with Store(self.state_url) as store:
            async with InvoicedConnector(API_KEY, self.invoiced_url) as invoiced, \
                    KeapConnector(ApiKey(API_KEY), self.keap_url, pacer=time.pacer(KEAP_PAT_LIMITS),
                                  listeners=[self.note_refusal]) as keap:
                return await Syncer(store, invoiced, keap, SyncOptions()).sync(flows)

    async def one_process(self, flows: list[str]) -> RunReport:
        """One pass alone on the virtual time."""
        time = VirtualTime(self.clock)
        driver = asyncio.create_task(time.drive())
        try:
            return await self.pass_of(flows, time)
        finally:
            driver.cancel()

    async def two_processes(self, first: list[str], second: list[str], second_after: float = 0.0) -> tuple[RunReport, RunReport]:
        """Both passes at once, the second starting `second_after` seconds (emulator time) after the first."""
        time = VirtualTime(self.clock)
        driver = asyncio.create_task(time.drive())

        async def later() -> RunReport:
            await time.sleep(second_after)
            return await self.pass_of(second, time)

        try:
            one, two = await asyncio.gather(self.pass_of(first, time), later())
        finally:
            driver.cancel()
        return one, two

    def keap_statuses(self) -> dict[str, int]:
        return dict(self.keap.statuses)

    def note_refusal(self, event: RequestEvent) -> None:
        if event.status == 429:
            self.refused_at.append(self.clock.now)

    def refusals_per_minute(self, after: float) -> Counter[int]:
        """429s per minute window of the emulator's clock, from `after` on."""
        return Counter(window_index("per_minute", at) for at in self.refused_at if at >= after)


@pytest.fixture
def shared(state_url: str, manual_clock: ManualClock) -> Iterator[SharedKey]:
    with Store(state_url) as store:
        store.migrate()
    invoiced = InvoicedEmulator(api_key=API_KEY, random_seed=1, clock=manual_clock)
    invoiced.faults.rate_limit = None  # Invoiced's limits are not what this is about
    keap = KeapEmulator(api_key=API_KEY, random_seed=1, clock=manual_clock)
    assert keap.faults.rate_limit == PAT_LIMITS  # Keap's production limits
    invoiced.seed({
        "customers": [{"name": f"Company {n}", "type": "company"} for n in range(RECORDS)],
        "items": [{"id": f"item-{n}", "name": f"Item {n}", "unit_cost": 10, "currency": "usd"} for n in range(RECORDS)],
    })
    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(keap.asgi()) as keap_server:
        yield SharedKey(manual_clock, invoiced, keap, invoiced_server.url, f"{keap_server.url}/crm/rest", state_url)


def assert_synced_without_failures(shared: SharedKey, *reports: RunReport) -> None:
    for report in reports:
        assert report.error is None and report.exit_code == 0, report.error
    with Store(shared.state_url) as store:
        assert store.failures() == []
        assert len(store.active_link_ids("companies")) == len(store.active_link_ids("products")) == RECORDS


def minute_windows(shared: SharedKey, started: float) -> int:
    """The minute windows of the emulator's clock the passes ran in; at least the key's minute limit needs."""
    minutes = window_index("per_minute", shared.clock.now) - window_index("per_minute", started) + 1
    answered = sum(count for status, count in shared.keap.statuses.items() if status.startswith("2"))
    assert answered >= 2 * RECORDS
    assert minutes >= math.ceil(answered / PAT_LIMITS["per_minute"])  # the key's minute limit was really in the way
    return minutes


async def test_two_processes_starting_together_on_one_key_draw_few_429s_and_record_no_failure(shared: SharedKey) -> None:
    started = shared.clock.now

    reports = await shared.two_processes(["companies"], ["products"])

    assert_synced_without_failures(shared, *reports)
    minute_windows(shared, started)
    # both go at full speed in their first second, before either has seen the other: at most that second's calls
    # are refused; from then on, at most a couple a minute, as a minute's budget runs out under both
    assert len([at for at in shared.refused_at if at < started + 1]) <= 2 * PAT_LIMITS["per_second"]
    assert max(shared.refusals_per_minute(after=started + 1).values(), default=0) <= 2, shared.refused_at
    assert shared.keap.statuses["429"] == len(shared.refused_at)


async def test_a_process_starting_while_another_runs_on_the_key_slows_down_instead_of_drawing_429s(
    shared: SharedKey,
) -> None:
    started = shared.clock.now

    reports = await shared.two_processes(["companies"], ["products"], second_after=10.0)

    assert_synced_without_failures(shared, *reports)
    minute_windows(shared, started)
    # the second one's first calls meet the first going at full speed (a few are refused, in that second); its
    # first answers show the key's minute mostly spent by someone else, so it starts slow, and the first slows
    # down as it sees the second's calls: no flood, at most a couple a minute after that second
    arrival = started + 10.0
    assert all(at >= arrival for at in shared.refused_at), shared.refused_at
    assert len([at for at in shared.refused_at if at < arrival + 1]) <= PAT_LIMITS["per_second"] // 2
    assert max(shared.refusals_per_minute(after=arrival + 1).values(), default=0) <= 2, shared.refused_at
    assert shared.keap.statuses["429"] == len(shared.refused_at)


async def test_a_second_process_that_used_up_the_minute_is_waited_out_not_recorded_as_a_failure(
    shared: SharedKey,
) -> None:
    """The other process spent the key's minute (Keap answers 429 "Quota Exceeded" to every call until the next
    minute): the pass waits for it and syncs everything; nothing goes to the failures list."""
    subject = f"api_key:{API_KEY}"
    now = shared.clock.now + 30  # halfway through a minute
    shared.clock.now = now
    shared.keap.rate_limiter.windows[(subject, "per_minute")] = (window_index("per_minute", now), PAT_LIMITS["per_minute"])

    report = await shared.one_process(["companies"])

    assert report.error is None and report.exit_code == 0, report.error
    with Store(shared.state_url) as store:
        assert store.failures() == []
        assert len(store.active_link_ids("companies")) == RECORDS
    assert shared.keap_statuses().get("429", 0) == 1  # the first call learns the minute is spent, then waits


async def test_a_spent_day_stops_the_pass_cleanly_with_keaps_message_and_leaves_the_records_pending(
    shared: SharedKey,
) -> None:
    subject = f"api_key:{API_KEY}"
    day = window_index("per_day", shared.clock.now)
    shared.keap.rate_limiter.windows[(subject, "per_day")] = (day, PAT_LIMITS["per_day"] - 20)

    report = await shared.one_process(["companies"])

    assert report.exit_code == 1
    assert report.error is not None and "quota" in report.error.lower() and "resume at" in report.error, report.error
    with Store(shared.state_url) as store:
        assert store.failures() == []  # pending for the next pass, not refused
        assert len(store.active_link_ids("companies")) < RECORDS
    assert shared.keap_statuses().get("429", 0) <= 1

"""A paced initial sync: how close to Keap's physical limit a first sync of N records runs.

    python benchmarks/paced.py [--records 1000] [--json PATH|-]

N Invoiced records (`sync.py`'s account: a third organisations, persons, items) are synced into an empty Keap
whose emulator enforces a personal access token's limits (10/s, 240/min, 30,000/day), by a Keap connector paced
at the same limits, as production paces it (`Pacer` with Keap's PAT limits). Both run on emulator time
(`harness.EmulatorTime`): the clock moves only when the pacer sleeps, and only once no call is in flight (a call
answers in no emulator time; else a sleep would jump the clock under a call still on its way and count it late),
so minutes of pacing take seconds and our own processing takes no emulator time.
The physical minimum is the earliest the pass's last call can go under both limits, the pass starting at a
minute's start of emulator time (as `EmulatorTime` does): whole minutes of 240 calls, then the rest at 10 a
second; the ratio is the emulator minutes the pass took over that minimum (1 at best). Also given: the pass's
calls at an average 240 a minute, and the ratio to that, which can be under 1 with no call over the limit: Keap
counts calls in fixed windows of the clock, so a last, part-filled minute's calls go in a burst at 10 a second
at its start, not spread over it (303 calls: 66 s, where 303 / 240 a minute is 76 s).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import sync
from harness import EmulatorTime, KEY, RETRY, post, write_json
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.connectors.pacing import KEAP_PAT_LIMITS, Pacer
from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.keap.ratelimit import PAT_LIMITS
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.engine.run import Syncer
from invoiced_keap.state import Store


def per_minute(limits: dict[str, int]) -> int:
    return min(limits["per_minute"], limits["per_second"] * 60)


def earliest_last_call(calls: int, limits: dict[str, int]) -> float:
    """Seconds from the first call, made at a minute's start, to the earliest moment the last one may go under both
    limits (the emulator's windows: whole seconds and minutes of the clock)."""
    minutes, within = divmod(calls - 1, per_minute(limits))
    return minutes * 60.0 + within // limits["per_second"]


class SettledPacer(Pacer):
    """Production's pacer on emulator time whose sleeps wait until the calls in flight are answered."""

    def __init__(self, clock: EmulatorTime) -> None:
        super().__init__(KEAP_PAT_LIMITS, clock=clock, wall_clock=clock, sleep=self._settled_sleep)
        self.emulator_time = clock
        self.calls_in_flight = 0

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[int]:
        async with super().turn() as call_number:
            self.calls_in_flight += 1
            try:
                yield call_number
            finally:
                self.calls_in_flight -= 1  # and the pacer notes the answer's time, before any sleep can run

    async def _settled_sleep(self, seconds: float) -> None:
        while self.calls_in_flight:
            await asyncio.sleep(0.001)  # real time: the calls on their way come back
        await self.emulator_time.sleep(seconds)


async def paced_initial_sync(records: int) -> dict[str, Any]:
    """The pass's figures (see the module docstring): Keap calls and statuses, emulator minutes, `minimum_minutes`
    (the earliest its last call could go) and `ratio` to it, `average_rate_minutes` (calls / 240) and the ratio to
    that. ValueError if emulator time does not start at a minute's start, which the minimum assumes."""
    clock = EmulatorTime()
    if clock.now % 60:
        raise ValueError(f"emulator time starts at {clock.now}, not at a minute's start: the physical minimum assumes one")
    keap_emulator = KeapEmulator(api_key=KEY, clock=clock)  # Keap's PAT limits by default, on emulator time
    invoiced_emulator = InvoicedEmulator(api_key=KEY)
    invoiced_emulator.faults.rate_limit = None  # Invoiced's limits are not what this measures
    invoiced_emulator.seed(sync.account(records))
    with ExitStack() as stack, tempfile.TemporaryDirectory() as directory:
        keap_server = stack.enter_context(BackgroundServer(keap_emulator.asgi()))
        invoiced_server = stack.enter_context(BackgroundServer(invoiced_emulator.asgi()))
        limits = post(keap_server.url, "faults", {"rate_limit": PAT_LIMITS})["rate_limit"]
        pacer = SettledPacer(clock)
        with Store(f"sqlite:///{Path(directory) / 'state.db'}") as store:
            store.migrate()
            async with InvoicedConnector(KEY, invoiced_server.url, retry=RETRY) as invoiced, \
                    KeapConnector(ApiKey(KEY), f"{keap_server.url}/crm/rest", pacer=pacer, retry=RETRY, clock=clock) as keap:
                started = clock.now
                report = await Syncer(store, invoiced, keap).sync()
                elapsed = clock.now - started
                statuses = dict(keap.stats.statuses)
    calls = report.api_calls["keap"]
    average_minutes = calls / per_minute(limits)
    earliest = earliest_last_call(calls, limits)
    return {"records": records, "keap_calls": calls, "invoiced_calls": report.api_calls["invoiced"],
            "limits": limits, "statuses": statuses, "exit_code": report.exit_code, "counts": report.counts(),
            "emulator_minutes": round(elapsed / 60, 3), "minimum_minutes": round(earliest / 60, 3),
            "ratio": round(elapsed / earliest, 3) if earliest else None,
            "average_rate_minutes": round(average_minutes, 3),
            "ratio_to_average_rate": round(elapsed / 60 / average_minutes, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000, help="Invoiced records to sync into an empty Keap")
    parser.add_argument("--json", default="-", help="where to write the JSON results (- for stdout)")
    arguments = parser.parse_args()
    write_json(asyncio.run(paced_initial_sync(arguments.records)), arguments.json)


if __name__ == "__main__":
    main()

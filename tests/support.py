"""Plain helpers for tests (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from invoiced_keap.connectors.pacing import Pacer, RateLimits

API_KEY = "test"


async def eventually(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait, looking every 20 ms, until `condition()` holds; fail after `timeout` seconds (a bound, not a measure)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def free_port() -> int:
    """A TCP port nothing listens on now, for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])

@contextlib.contextmanager
def run_service(environment: Mapping[str, str], cwd: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`invoiced-keap run` in a child process with `environment`: the process and the URL its first line says it
    serves on; killed on the way out if still running."""
    process = subprocess.Popen([sys.executable, "-m", "invoiced_keap", "run"], cwd=cwd, env=dict(environment),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first_line = process.stdout.readline()  # type: ignore[union-attr]
        found = re.search(r"serving on (http://\S+)", first_line)
        assert found, first_line + process.stderr.read()  # type: ignore[union-attr]
        yield process, found.group(1)
    finally:
        process.kill()


ONE_PASS = Path(__file__).parents[1] / "benchmarks" / "one_pass.py"
"""Runs one pass, or a CLI command, in a process of its own and reports its peak memory."""


def cli_with_peak(args: list[str], env: Mapping[str, str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """`invoiced-keap ARGS` in a child process of its own, and that process's peak resident memory in MB (the
    kernel's `VmHWM`: imports included, not inherited from this process as `ru_maxrss` would be)."""
    done = subprocess.run([sys.executable, str(ONE_PASS), "cli", *args], env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), **env},
                          cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return done, int(done.stderr.strip().splitlines()[-1]) / 1024


class ManualClock:
    """Epoch seconds that tests move by hand: token expiry and rate-limit windows without sleeping."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class VirtualTime:
    """Sleeps on a `ManualClock` shared by several concurrent API clients (two processes on one Keap key, in
    one test): a sleeper wakes when the clock reaches its time, and the clock jumps to the earliest wake-up
    only while no call is on the wire, so each call reaches the emulator at the moment its pacer meant.

    Run `drive()` as a task next to the clients; give each client `pacer(limits)`.
    """

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.in_flight = 0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.clock.now + seconds, next(self._order), woken))
        await woken

    async def drive(self) -> None:
        while True:
            await asyncio.sleep(0.002)
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)
            if self.in_flight or not self._sleepers:
                continue
            self.clock.now = max(self.clock.now, self._sleepers[0][0])
            while self._sleepers and self._sleepers[0][0] <= self.clock.now:
                _, _, woken = heapq.heappop(self._sleepers)
                if not woken.done():
                    woken.set_result(None)

    def pacer(self, limits: "RateLimits", **options: Any) -> "Pacer":
        """A pacer on this virtual time that tells the driver when its calls are on the wire."""
        from invoiced_keap.connectors.pacing import Pacer

        virtual = self

        class TrackedPacer(Pacer):
            @contextlib.asynccontextmanager
            async def turn(self) -> AsyncIterator[int]:
                async with super().turn() as call_number:
                    virtual.in_flight += 1
                    try:
                        yield call_number
                    finally:
                        virtual.in_flight -= 1

        return TrackedPacer(limits, clock=self.clock, wall_clock=self.clock, sleep=self.sleep, **options)

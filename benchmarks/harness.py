"""What the benchmarks share: the emulators' key, a retry policy, emulator time, the emulators in a child
process, the machine a figure was measured on.

The emulators run in a child process wherever a benchmark times the sync: in the same process they take
the GIL from the code being measured (an in-process initial sync ran a quarter slower), and its memory
would count theirs.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import platform
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

from invoiced_keap.connectors.http import RetryPolicy
from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer

KEY = "benchmark"
RETRY = RetryPolicy(attempts=10, wait_initial=0.05, wait_max=1.0)


class EmulatorTime:
    """Epoch seconds that move only when told to, or when the pacer sleeps."""

    def __init__(self, now: float = 1_748_999_160.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)


def post(url: str, path: str, body: Any) -> Any:
    """A call to an emulator's control API (`/_emulator/...`: not counted, limited or faulted)."""
    response = httpx.post(f"{url}/_emulator/{path}", json=body, timeout=300)
    response.raise_for_status()
    return response.json()


@dataclass(frozen=True)
class EmulatorUrls:
    invoiced: str
    keap: str  # the emulator's root; the API is under /crm/rest

    @property
    def keap_api(self) -> str:
        return f"{self.keap}/crm/rest"


def _serve(invoiced_seed: dict[str, Any], keap_seed: dict[str, Any], control: Connection) -> None:
    invoiced, keap = InvoicedEmulator(api_key=KEY), KeapEmulator(api_key=KEY)
    invoiced.faults.rate_limit = None
    keap.faults.rate_limit = None
    refused = invoiced.seed(invoiced_seed)["errors"]
    if refused:
        raise ValueError(f"the Invoiced emulator refused {len(refused)} seeded record(s), the first: {refused[0]}")
    keap.seed(keap_seed)
    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(keap.asgi()) as keap_server:
        control.send(EmulatorUrls(invoiced_server.url, keap_server.url))
        control.recv()  # until the parent is done


@contextmanager
def emulators_apart(invoiced_seed: dict[str, Any] | None = None, keap_seed: dict[str, Any] | None = None) -> Iterator[EmulatorUrls]:
    """Both emulators, seeded and with rate limits lifted, served by a child process. `invoiced_seed` may list
    `contacts` besides customers and items, each naming its customer by position in `customers` (`"customer": 0`)."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=_serve, args=(invoiced_seed or {}, keap_seed or {}, theirs), daemon=True)
    child.start()
    try:
        yield ours.recv()
    finally:
        ours.send("stop")
        child.join(timeout=30)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports kilobytes)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def machine() -> dict[str, Any]:
    """Where and when a figure was measured."""
    return {
        "date": date.today().isoformat(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def write_json(data: Any, target: str | None) -> None:
    """A benchmark's results as indented JSON: on stdout for `-`, else into the file `target` (none when empty)."""
    text = json.dumps(data, indent=2)
    if target == "-":
        print(text)
    elif target:
        Path(target).write_text(text + "\n")

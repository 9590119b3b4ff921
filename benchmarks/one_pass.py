"""One sync pass in a process of its own; prints its peak resident memory and what it did, as one JSON line.

    python benchmarks/one_pass.py INVOICED_URL KEAP_API_URL DATABASE_URL API_KEY [FLOW ...]
    python benchmarks/one_pass.py cli ARG ...

The second form runs the command `invoiced-keap ARG ...` as a user would (its settings from the environment and
`invoiced-keap.toml` in the working directory) and prints its peak in kB as the last line on stderr. The peak is the kernel's `VmHWM` of this process (interpreter and imports included). `ru_maxrss` would not do:
Linux carries a parent's larger peak over fork and exec into the child's. The pass runs at the production
defaults except the circuit breaker (`allow_mass_change`: the passes measured change every pair) and Keap's
pacing (the emulators' limits are lifted; pacing changes waiting, not memory).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.connectors.pacing import RateLimits
from invoiced_keap.engine.options import SyncOptions
from invoiced_keap.engine.run import Syncer
from invoiced_keap.state import Store


def peak_rss_kb() -> int:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]


async def one_pass(invoiced_url: str, keap_url: str, database_url: str, key: str, flows: list[str]) -> dict[str, object]:
    with Store(database_url) as store:
        store.migrate()
        async with InvoicedConnector(key, invoiced_url) as invoiced, \
                KeapConnector(ApiKey(key), keap_url, limits=RateLimits()) as keap:
            report = await Syncer(store, invoiced, keap, SyncOptions(allow_mass_change=True)).sync(flows or None)
    return {"peak_rss_mb": round(peak_rss_kb() / 1024, 1), "calls": report.api_calls, "counts": report.counts(),
            "exit_code": report.exit_code, "error": report.error}


def cli(args: list[str]) -> None:
    from invoiced_keap.cli import app

    try:
        app(args)
    finally:
        print(peak_rss_kb(), file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1:2] == ["cli"]:
        cli(sys.argv[2:])
    else:
        invoiced_url, keap_url, database_url, key, *flows = sys.argv[1:]
        print(json.dumps(asyncio.run(one_pass(invoiced_url, keap_url, database_url, key, flows))))

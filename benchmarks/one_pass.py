"""One sync pass in a process of its own; prints its peak resident memory and what it did, as one JSON line.

    python benchmarks/one_pass.py INVOICED_URL KEAP_API_URL DATABASE_URL API_KEY [FLOW ...]

The peak is the kernel's `VmHWM` of this process (interpreter and imports included). `ru_maxrss` would not do:
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


def peak_rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


async def one_pass(invoiced_url: str, keap_url: str, database_url: str, key: str, flows: list[str]) -> dict[str, object]:
    with Store(database_url) as store:
        store.migrate()
        async with InvoicedConnector(key, invoiced_url) as invoiced, \
                KeapConnector(ApiKey(key), keap_url, limits=RateLimits()) as keap:
            report = await Syncer(store, invoiced, keap, SyncOptions(allow_mass_change=True)).sync(flows or None)
    return {"peak_rss_mb": round(peak_rss_mb(), 1), "calls": report.api_calls, "counts": report.counts(),
            "exit_code": report.exit_code, "error": report.error}


if __name__ == "__main__":
    invoiced_url, keap_url, database_url, key, *flows = sys.argv[1:]
    print(json.dumps(asyncio.run(one_pass(invoiced_url, keap_url, database_url, key, flows))))

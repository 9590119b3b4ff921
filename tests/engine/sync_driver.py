"""Runs one sync pass in its own process, for the crash and chaos tests: `python -m tests.engine.sync_driver
INVOICED_URL KEAP_API_URL DATABASE_URL [STEPS]`, with the production flow locks (a killed pass's locks end with
its process); small batches make the pass commit often.

STEPS is `sync` (the default) or `reconcile,sync` (the full id scans first, as a scheduled clean cycle does).
The keys come from `INVOICED_API_KEY` / `KEAP_API_KEY` (default: the tests' key), so a test can use
distinctive secrets and search for them; `SYNC_DRIVER_FAILURE_RETRY_SECONDS` replaces the failures' backoff
(compressed time for chaos runs); `SYNC_DRIVER_LOG_LEVEL` turns on the program's logging to stderr;
`SYNC_DRIVER_ALLOW_MASS_CHANGE=1` is the user's go-ahead after a circuit breaker tripped (`--allow-mass-change`).
Errors of the pass (a tripped breaker, a read that failed) are printed to stderr.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta

from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.connectors.pacing import RateLimits
from invoiced_keap.engine.options import SyncOptions
from invoiced_keap.engine.report import EXIT_NOT_RUN
from invoiced_keap.engine.run import Syncer
from invoiced_keap.logs import configure_logging
from invoiced_keap.state import Store
from invoiced_keap.state.store import FailureBackoff
from tests.engine.conftest import FAST_RETRIES
from tests.support import API_KEY


async def one_pass(invoiced_url: str, keap_url: str, database_url: str, steps: str = "sync") -> int:
    retry_seconds = os.environ.get("SYNC_DRIVER_FAILURE_RETRY_SECONDS")
    failure_retry = FailureBackoff(base=timedelta(seconds=float(retry_seconds)), cap=timedelta(seconds=float(retry_seconds))) if retry_seconds else FailureBackoff()
    with Store(database_url, failure_backoff=failure_retry) as store:
        store.migrate()
        async with InvoicedConnector(os.environ.get("INVOICED_API_KEY", API_KEY), invoiced_url, retry=FAST_RETRIES) as invoiced, \
                KeapConnector(ApiKey(os.environ.get("KEAP_API_KEY", API_KEY)), keap_url, limits=RateLimits(), retry=FAST_RETRIES) as keap:
            options = SyncOptions(batch_size=5, concurrency=4, allow_mass_change=bool(os.environ.get("SYNC_DRIVER_ALLOW_MASS_CHANGE")))
            syncer = Syncer(store, invoiced, keap, options)
            reports = [await getattr(syncer, step)() for step in steps.split(",")]
    for error in (error for report in reports for error in (report.error, *(flow.error for flow in report.flows.values())) if error):
        print(error, file=sys.stderr)
    codes = [report.exit_code for report in reports]
    return EXIT_NOT_RUN if EXIT_NOT_RUN in codes else max(codes)


if __name__ == "__main__":
    if os.environ.get("SYNC_DRIVER_LOG_LEVEL"):
        configure_logging(level=os.environ["SYNC_DRIVER_LOG_LEVEL"])
    sys.exit(asyncio.run(one_pass(*sys.argv[1:5])))

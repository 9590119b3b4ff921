"""Runs one sync pass in its own process, for the crash tests: `python -m tests.engine.sync_driver
INVOICED_URL KEAP_API_URL DATABASE_URL`. Locks expire after a second, so a killed run's lock does not
hold up the next one for long; small batches make the pass commit (and renew them) often."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.connectors.pacing import RateLimits
from invoiced_keap.engine.options import SyncOptions
from invoiced_keap.engine.run import Syncer
from invoiced_keap.state import Store
from tests.engine.conftest import FAST_RETRIES
from tests.support import API_KEY


async def one_pass(invoiced_url: str, keap_url: str, database_url: str) -> int:
    with Store(database_url, lock_ttl=timedelta(seconds=1)) as store:
        store.migrate()
        async with InvoicedConnector(API_KEY, invoiced_url, retry=FAST_RETRIES) as invoiced, \
                KeapConnector(ApiKey(API_KEY), keap_url, limits=RateLimits(), retry=FAST_RETRIES) as keap:
            report = await Syncer(store, invoiced, keap, SyncOptions(batch_size=5, concurrency=4)).sync()
    return report.exit_code


if __name__ == "__main__":
    sys.exit(asyncio.run(one_pass(*sys.argv[1:4])))

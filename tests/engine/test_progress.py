"""The progress hook hears from a pass from its first page on: reading per stream, matching, then writing (each
writing step announced before its first batch: break-it saw no progress line for 65 s while a batch of creates ran)."""

from __future__ import annotations

from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.connectors.pacing import RateLimits
from invoiced_keap.engine.options import SyncOptions
from invoiced_keap.engine.report import Progress
from invoiced_keap.engine.run import Syncer
from tests.engine.conftest import FAST_RETRIES, World
from tests.support import API_KEY


async def test_a_first_sync_reports_reading_and_matching_before_any_write(world: World) -> None:
    world.invoiced.seed({
        "customers": [{"name": f"Company {n}", "type": "company"} for n in range(230)],
        "items": [{"id": f"item-{n}", "name": f"Item {n}", "unit_cost": 1, "currency": "usd"} for n in range(3)],
    })
    world.keap.seed({"companies": [{"company_name": "Company 0"}]})
    notes: list[Progress] = []
    async with InvoicedConnector(API_KEY, world.invoiced_server.url, retry=FAST_RETRIES) as invoiced, \
            KeapConnector(ApiKey(API_KEY), world.keap_url, limits=RateLimits(), retry=FAST_RETRIES) as keap:
        await Syncer(world.store, invoiced, keap, SyncOptions(batch_size=100), progress=notes.append).sync(["companies", "products"])

    steps = [(note.flow, note.step, note.done, note.total) for note in notes]
    assert steps[:3] == [("companies", "read invoiced customers", 100, None),
                         ("companies", "read invoiced customers", 200, None),
                         ("companies", "read invoiced customers", 230, None)]
    assert ("products", "read invoiced items", 3, None) in steps
    assert ("companies", "read keap companies", 1, None) in steps
    matched = steps.index(("companies", "matched", 230, 230))
    assert steps.index(("companies", "read keap companies", 1, None)) < matched
    assert steps[matched + 1 : matched + 3] == [("companies", "links", 0, 1), ("companies", "links", 1, 1)]
    assert [s for s in steps if s[:2] == ("companies", "creates")] == [  # announced before its first batch's writes
        ("companies", "creates", 0, 229), ("companies", "creates", 100, 229), ("companies", "creates", 200, 229), ("companies", "creates", 229, 229)]

"""On PostgreSQL a link is looked up by its index however many links a first sync made (issue 13: the pass after a
first sync of 100,000 companies ran for over half an hour, each link read by scanning every link of its flow).

The state's unique indexes of links are partial (active links only); a planner without statistics of the table
could not tell them apart and read a lookup by Invoiced id through the Keap id's index. Autovacuum, which would take
them, may be off (it is on the test server) and naps a minute while a first sync grows the table from none to every
record; the store takes them itself at the end of a pass that changed the count (`Store.refresh_statistics`).
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.engine.conftest import World

pytestmark = pytest.mark.parametrize("state_url", ["postgresql"], indirect=True)

COMPANIES = 1_500


def lookup_plan(world: World, invoiced_id: str) -> str:
    """PostgreSQL's plan of the store's lookup of an active link by its Invoiced id."""
    with world.store.engine.connect() as connection:
        rows = connection.execute(text(
            "EXPLAIN SELECT id FROM links WHERE flow = 'companies' AND status = 'active' AND invoiced_id = :id"),
            {"id": invoiced_id})
        return "\n".join(row[0] for row in rows)


async def test_after_a_first_sync_a_link_is_looked_up_by_its_invoiced_id_index(world: World) -> None:
    world.invoiced.seed({"customers": [{"name": f"Company {n}", "type": "company"} for n in range(COMPANIES)]})

    first = await world.sync(flows=["companies"])

    assert first.flows["companies"].counts["created.keap"] == COMPANIES
    plan = lookup_plan(world, "700")
    assert "uq_links_active_invoiced" in plan and "invoiced_id" in plan.split("Index Cond", 1)[-1], plan
    assert world.store.refresh_statistics() is False  # taken at this count: not again until it moves

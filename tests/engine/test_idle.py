"""An idle pass costs the same handful of calls whatever the number of linked records, and writes nothing though a
record Keap refused waits in the failures list (issue: API economy)."""

from __future__ import annotations

import pytest

from invoiced_keap.engine.options import FlowOptions, SyncOptions
from invoiced_keap.engine.report import RunReport
from tests.engine.conftest import World

IDLE_FLOOR = {"invoiced": 3, "keap": 3}  # customers, events (all types, one page), items; one read per Keap object
REFUSED = {"name": "Nobody Reachable", "type": "person"}
"""No email, phone or address: Keap takes no such contact (it answers 400), so the pass refuses it without sending,
with Keap's words (`keap (not sent): ...`). It waits in the failures list as a create Keap refused does."""


def seed(world: World, size: int) -> None:
    world.invoiced.seed({
        "customers": [*({"name": f"Company {n}", "type": "company"} for n in range(size)),
                      *({"name": f"Person {n}", "type": "person", "email": f"p{n}@example.com"} for n in range(size)),
                      REFUSED],
        "items": [{"id": f"item-{n}", "name": f"Item {n}", "unit_cost": n} for n in range(size)],
    })


async def idle_after_initial_sync(world: World, size: int) -> tuple[RunReport, RunReport]:
    seed(world, size)
    first = await world.sync()
    assert first.exit_code == 2 and sum(r.counts["created.keap"] for r in first.flows.values()) == 3 * size
    refused = [customer["id"] for customer in world.invoiced.customers.values() if customer["name"] == REFUSED["name"]]
    assert [failure.record_id for failure in world.store.failures()] == [str(customer_id) for customer_id in refused]
    echo = await world.sync()  # reads back the id stamps the first pass wrote
    world.reset_stats()
    idle = await world.sync()
    return echo, idle


@pytest.mark.parametrize("size", [30, 350])
async def test_an_idle_pass_makes_the_floor_of_calls_and_no_write(world: World, size: int) -> None:
    echo, idle = await idle_after_initial_sync(world, size)

    assert idle.exit_code == 2 and len(world.store.failures()) == 1  # the refused record waits, not sent again
    assert idle.api_calls == IDLE_FLOOR
    assert world.writes() == {}
    assert echo.api_calls["keap"] == 3 and sum(echo.counts()[f].get("updated.keap", 0) for f in echo.flows) == 0


async def test_a_keap_record_invoiced_refused_to_create_is_not_read_again_by_idle_passes(world: World) -> None:
    """Found by break-it: a Keap company with a blank name, made in Invoiced by `create_in_invoiced`, is refused
    there ("Name is missing"); each later pass read it again by id, with the setting on or off."""
    world.keap.seed({"companies": [{"company_name": "   "}]})
    creating = SyncOptions(per_flow={"companies": FlowOptions(create_in_invoiced=True)})
    first = await world.sync(creating, flows=["companies"])
    assert first.exit_code == 2 and len(world.store.failures("companies")) == 1
    await world.sync(creating, flows=["companies"])
    for options in (creating, SyncOptions()):
        world.reset_stats()
        idle = await world.sync(options, flows=["companies"])
        assert idle.api_calls["keap"] == 1 and world.writes() == {}

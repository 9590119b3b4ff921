"""A review decision is carried out by the next pass through the matcher: `--pick` links and stamps like any match."""

from __future__ import annotations

from invoiced_keap.engine import review
from tests.engine.conftest import World


async def test_a_picked_candidate_is_linked_and_stamped_so_relink_finds_it_again(world: World) -> None:
    world.invoiced.seed({"customers": [{"name": "Initech", "type": "company", "email": "ap@initech.example"}]})
    world.keap.seed({"companies": [{"company_name": "Initech"}, {"company_name": "INITECH"}]})
    assert (await world.sync(flows=["companies"])).exit_code == 2
    [item] = world.store.review_items()
    initech = next(iter(world.invoiced.customers.values()))
    picked = item.candidate_ids[1]

    review.pick(world.store, str(initech["id"]), picked)
    report = await world.sync(flows=["companies"])
    assert report.exit_code == 0, report.flows["companies"].actions
    assert world.link_of("companies", initech["id"]) == picked
    assert world.invoiced.customers[initech["id"]]["metadata"] == {"keap_company_id": picked}
    assert world.keap_record("companies", picked)["email_address"]["email"] == "ap@initech.example"  # merged
    assert world.store.intents() == [] and world.store.review_items() == []

    link = world.store.find_link("companies", "invoiced", str(initech["id"]))
    world.store.close_link(link.id, "the state was lost")
    assert (await world.syncer_call("relink", flows=["companies"])).exit_code == 0
    assert world.link_of("companies", initech["id"]) == picked

"""A Keap hook batch costs a bounded number of calls: ids are read in bulk (companies, which Keap lists by no id
list, by id windows), and only linked ids the bulk read did not return are checked one by one, at most
`GETS_PER_READ` a batch (the rest waits for a reconcile)."""

from __future__ import annotations

from collections import Counter

from invoiced_keap.connectors.keap import IDS_PER_CALL
from invoiced_keap.engine.changes import GETS_PER_READ
from invoiced_keap.engine.options import SyncOptions
from tests.engine.conftest import World

HOOK_BATCH = 1000  # the most ids Keap puts in one delivery


def keap_calls(world: World) -> Counter[str]:
    return Counter({key: n for key, n in world.keap.requests.items() if "/_emulator" not in key})


async def test_a_full_hook_batch_of_unlinked_ids_costs_ten_listings_a_window_and_no_get(world: World) -> None:
    world.invoiced.seed({"customers": [{"name": "Acme", "type": "company"},
                                       {"name": "Jane Cooper", "type": "person", "email": "jane@example.com"}]})
    await world.sync()
    world.reset_stats()
    unlinked = [str(90_000 + n) for n in range(HOOK_BATCH)]  # a mass delete of records we never linked

    for flow in ("contacts", "companies"):  # contacts have an id-list filter, companies none
        report = await world.syncer_call("sync_ids", flow=flow, keap_ids=unlinked)
        assert report.exit_code == 0

    calls = keap_calls(world)
    # contacts: 100 ids a listing; companies: the 1,000 ids lie within one window of 1,000 (`KeapConnector.near_ids`)
    assert calls == Counter({"GET /crm/rest/v2/contacts": HOOK_BATCH // IDS_PER_CALL, "GET /crm/rest/v2/companies": 1}), calls
    assert world.writes() == Counter()


async def test_linked_ids_the_bulk_read_missed_are_checked_at_most_a_bounded_number_per_batch(world: World) -> None:
    deleted = GETS_PER_READ + 10
    world.invoiced.seed({"customers": [{"name": f"Company {n}", "type": "company"} for n in range(deleted)]})
    await world.sync()
    gone = sorted(world.store.active_link_ids("companies").values())
    for keap_id in gone:
        world.keap.store.delete("companies", keap_id)
    world.reset_stats()
    batch = [*gone, *(str(90_000 + n) for n in range(HOOK_BATCH - deleted))]

    mass_delete = SyncOptions(allow_mass_change=True)  # past the circuit breaker, which would stop it otherwise

    report = await world.syncer_call("sync_ids", mass_delete, flow="companies", keap_ids=batch)

    # two id windows (the deleted ids, the unlinked ones), then the linked ids they did not return, one by one
    assert keap_calls(world) == Counter({"GET /crm/rest/v2/companies": 2, "GET /crm/rest/v2/companies/{company_id}": GETS_PER_READ})
    assert report.flows["companies"].counts["unlinked"] == GETS_PER_READ
    assert len(world.store.active_link_ids("companies")) == deleted - GETS_PER_READ  # left to the reconcile
    reconciled = await world.syncer_call("reconcile", mass_delete, flows=["companies"])
    assert reconciled.flows["companies"].counts["unlinked"] == deleted - GETS_PER_READ
    assert world.store.active_link_ids("companies") == {}

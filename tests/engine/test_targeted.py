"""`Syncer.sync_ids`: a pass over named records only (webhooks, `verify --repair`), and `request_stop`."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.connectors.pacing import RateLimits
from invoiced_keap.engine.shadows import snapshot
from invoiced_keap.engine.options import FlowOptions, SyncOptions
from invoiced_keap.engine.run import Syncer
from invoiced_keap.flows import build_flows
from tests.engine.conftest import FAST_RETRIES, World
from tests.support import API_KEY

COMPANIES = build_flows()["companies"]


async def linked(world: World) -> dict[str, str]:
    """Two companies, two contacts and an item, synced and settled; then the counters start afresh."""
    world.invoiced.seed({
        "customers": [{"name": "Acme", "type": "company"}, {"name": "Globex", "type": "company"},
                      {"name": "Jane Cooper", "type": "person", "email": "jane@example.com"},
                      {"name": "John Smith", "type": "person", "email": "john@example.com"}],
        "items": [{"id": "widget", "name": "Widget", "description": "Blue", "unit_cost": 5, "currency": "usd"}],
    })
    await world.sync()
    await world.sync()
    world.reset_stats()
    return {"acme": world.link_of("companies", 1), "globex": world.link_of("companies", 2),
            "jane": world.link_of("contacts", 3), "john": world.link_of("contacts", 4),
            "widget": world.link_of("products", "widget")}


def reads(world: World) -> Counter[str]:
    requests = Counter({**world.invoiced.requests, **world.keap.requests})
    return Counter({key: n for key, n in requests.items() if key.startswith("GET ")})


def marks(world: World) -> dict[str, str | None]:
    streams = ("companies.invoiced", "companies.events", "companies.keap", "contacts.keap", "products.invoiced")
    return {stream: world.store.get_watermark(stream) for stream in streams}


async def test_an_invoiced_edit_costs_one_get_and_one_write_and_moves_no_mark(world: World) -> None:
    ids = await linked(world)
    world.invoiced.update_customer(1, {"name": "Acme Ltd"})
    world.invoiced.update_customer(2, {"name": "Globex Corp"})  # not named: left for the next poll
    before = marks(world)

    report = await world.syncer_call("sync_ids", flow="companies", invoiced_ids=["1"])

    assert report.exit_code == 0 and report.flows["companies"].counts["updated.keap"] == 1
    assert world.keap_record("companies", ids["acme"])["company_name"] == "Acme Ltd"
    assert world.keap_record("companies", ids["globex"])["company_name"] == "Globex"
    # and, just before the write, what changed in Keap companies since the last poll (engine.reread): the record
    # written over is the stored copy, which a Keap edit not yet polled would make stale
    assert reads(world) == Counter({"GET /customers/{id}": 1, "GET /crm/rest/v2/companies": 1})
    assert world.writes() == Counter({"PATCH /crm/rest/v2/companies/{company_id}": 1})
    assert marks(world) == before
    await world.sync()
    assert world.keap_record("companies", ids["globex"])["company_name"] == "Globex Corp"  # polling is the safety net


async def test_keap_contacts_and_products_are_read_in_bulk_companies_by_get(world: World) -> None:
    ids = await linked(world)
    world.keap_edit("contacts", ids["jane"], {"given_name": "Janet"})
    world.keap_edit("contacts", ids["john"], {"given_name": "Johnny"})
    world.keap_edit("products", ids["widget"], {"description": "Navy"})
    world.keap_edit("companies", ids["acme"], {"company_name": "Acme Inc"})

    for flow, keap_ids in (("contacts", [ids["jane"], ids["john"]]), ("products", [ids["widget"]]), ("companies", [ids["acme"]])):
        report = await world.syncer_call("sync_ids", flow=flow, keap_ids=keap_ids)
        assert report.exit_code == 0, report.error

    assert [world.invoiced.customer(n)["name"] for n in (1, 3, 4)] == ["Acme Inc", "Janet Cooper", "Johnny Smith"]
    assert world.invoiced.item("widget")["description"] == "Navy"
    assert reads(world) == Counter({"GET /crm/rest/v2/contacts": 1, "GET /crm/rest/v2/products": 1,
                                    "GET /crm/rest/v2/companies/{company_id}": 1,
                                    # before the writes, what changed in Invoiced since the last poll, once a flow
                                    "GET /customers": 2, "GET /items": 1})
    assert world.writes() == Counter({"PATCH /customers/{id}": 3, "PATCH /items/{id}": 1})


async def test_a_keap_404_and_an_invoiced_removal_unlink_and_keep_the_twin(world: World) -> None:
    ids = await linked(world)
    world.keap.store.delete("companies", ids["acme"])

    gone_in_keap = await world.syncer_call("sync_ids", flow="companies", keap_ids=[ids["acme"]])
    removed_in_invoiced = await world.syncer_call("sync_ids", flow="companies", removed_invoiced=["2"])

    assert gone_in_keap.flows["companies"].counts["unlinked"] == 1
    assert removed_in_invoiced.flows["companies"].counts["unlinked"] == 1
    assert world.store.active_link_ids("companies") == {}
    assert world.invoiced.customer(1)["name"] == "Acme"  # policy `unlink`: the twin is kept
    assert world.keap_record("companies", ids["globex"])["company_name"] == "Globex"
    assert world.writes() == Counter()


async def test_a_new_invoiced_record_named_by_id_gets_a_keap_twin(world: World) -> None:
    await linked(world)
    [new_id] = world.invoiced.seed({"customers": [{"name": "Initech", "type": "company"}]})["customers"]

    await world.syncer_call("sync_ids", flow="companies", invoiced_ids=[str(new_id)])

    twin = world.keap_record("companies", world.link_of("companies", new_id))
    assert twin["company_name"] == "Initech"


async def test_repair_settles_a_pair_whose_sides_equal_their_shadows_yet_disagree_by_the_policy(world: World) -> None:
    ids = await linked(world)
    drifted = world.keap_edit("companies", ids["acme"], {"company_name": "Acme (typo)"})
    world.store.upsert_link("companies", "1", ids["acme"], keap=snapshot(COMPANIES, "keap", drifted))  # behind our back

    plain = await world.syncer_call("sync_ids", flow="companies", invoiced_ids=["1"], keap_ids=[ids["acme"]])
    assert plain.flows["companies"].counts["updated.keap"] == 0  # nothing is dirty against the shadows

    invoiced_wins = SyncOptions(per_flow={"companies": FlowOptions(conflicts="invoiced")})
    repaired = await world.syncer_call("sync_ids", invoiced_wins, flow="companies", invoiced_ids=["1"],
                                       keap_ids=[ids["acme"]], repair=True)

    assert repaired.flows["companies"].counts["updated.keap"] == 1
    assert world.keap_record("companies", ids["acme"])["company_name"] == "Acme"  # the policy's side wins
    assert world.store.conflicts("companies")[0].reason.startswith("repair of drift")
    world.reset_stats()
    await world.sync()
    assert world.writes() == Counter()


async def test_a_stop_request_finishes_the_record_in_hand_and_the_next_pass_does_the_rest(world: World) -> None:
    ids = await linked(world)
    for number in (1, 2):
        world.invoiced.update_customer(number, {"name": f"Renamed {number}"})
    httpx.post(f"{world.keap_server.url}/_emulator/faults", json={"latency_ms": 300}).raise_for_status()
    async with InvoicedConnector(API_KEY, world.invoiced_server.url, retry=FAST_RETRIES) as invoiced, \
            KeapConnector(ApiKey(API_KEY), world.keap_url, limits=RateLimits(), retry=FAST_RETRIES) as keap:
        syncer = Syncer(world.store, invoiced, keap, SyncOptions(concurrency=1))
        running = asyncio.create_task(syncer.sync(["companies"]))
        while not world.keap.requests["PATCH /crm/rest/v2/companies/{company_id}"]:  # arrived, held by the latency
            await asyncio.sleep(0.01)
        syncer.request_stop()
        report = await running

    assert report.error and "stopped" in report.error
    names = sorted(world.keap_record("companies", ids[key])["company_name"] for key in ("acme", "globex"))
    assert names in (["Globex", "Renamed 1"], ["Acme", "Renamed 2"])  # one in hand, finished; one not started
    httpx.post(f"{world.keap_server.url}/_emulator/faults", json={"latency_ms": 0}).raise_for_status()
    world.clock.advance(10)
    await world.sync(flows=["companies"])
    assert sorted(world.keap_record("companies", ids[key])["company_name"] for key in ("acme", "globex")) == ["Renamed 1", "Renamed 2"]

"""An edit made while a pass runs, after the pass read the record and before it writes over it, is never lost
unseen (issue #13): the records a chunk of writes targets are read again in bulk just before it (`engine.reread`),
and a pair whose record moved is planned again from the fresh record: an edit of the same field is a conflict the
policy settles and records, an edit of another part is kept.

The edit is made by the emulator itself, right after it answered the pass's read (`Emulator.after_request`), over
real HTTP: nothing of the sync is mocked.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from invoiced_keap.engine.options import FlowOptions, SyncOptions
from tests.engine.conftest import ONE_OF_EACH, World

KEAP_COMPANIES, KEAP_CONTACTS, KEAP_PRODUCTS = ("GET /crm/rest/v2/companies", "GET /crm/rest/v2/contacts",
                                                "GET /crm/rest/v2/products")


async def settled(world: World) -> dict[str, str]:
    """A company, a person and an item, linked and settled; then the counters start afresh."""
    world.invoiced.seed(ONE_OF_EACH)
    await world.sync()
    await world.sync()
    world.reset_stats()
    return {"company": world.link_of("companies", 1), "contact": world.link_of("contacts", 2),
            "product": world.link_of("products", "widget")}


def later(world: World, edit: Any) -> Any:
    """A user's edit, five seconds after whatever came before it (so `newest` can tell them apart)."""
    def action() -> None:
        world.clock.advance(5)
        edit()
    return action


def conflicts_of(report: Any, flow: str) -> list[dict[str, Any]]:
    return [action.fields for action in report.flows[flow].actions if action.verb == "conflict"]


@pytest.mark.parametrize(("winner", "expected"), [("newest", "Acme Keap"), ("invoiced", "Acme Invoiced")])
async def test_a_keap_edit_made_after_the_read_is_settled_as_a_conflict_not_overwritten(
        world: World, winner: str, expected: str) -> None:
    ids = await settled(world)
    world.invoiced.update_customer(1, {"name": "Acme Invoiced"})  # the pass carries it to Keap...
    world.keap.after_request(KEAP_COMPANIES, later(world, lambda: world.keap_edit(  # ...but a Keap user renames it first
        "companies", ids["company"], {"company_name": "Acme Keap"})))
    options = SyncOptions(per_flow={"companies": FlowOptions(conflicts=winner)})  # type: ignore[arg-type]

    report = await world.sync(options, flows=["companies"])

    assert report.exit_code == 0
    assert world.invoiced.customer(1)["name"] == world.keap_record("companies", ids["company"])["company_name"] == expected
    [conflict] = world.store.conflicts("companies")
    assert (conflict.field_group, conflict.invoiced_value, conflict.keap_value) == ("name", "Acme Invoiced", "Acme Keap")
    assert conflict.winner == ("keap" if expected == "Acme Keap" else "invoiced")
    assert [(c["group"], c["keap"]) for c in conflicts_of(report, "companies")] == [("name", "Acme Keap")]
    world.reset_stats()
    await world.sync(options)
    assert world.writes() == Counter()


@pytest.mark.parametrize(("winner", "expected"), [("newest", "Acme Invoiced"), ("keap", "Acme Keap")])
async def test_an_invoiced_edit_made_after_the_read_is_settled_as_a_conflict_not_overwritten(
        world: World, winner: str, expected: str) -> None:
    ids = await settled(world)
    world.keap_edit("companies", ids["company"], {"company_name": "Acme Keap"})
    world.invoiced.after_request("GET /customers", later(world, lambda: world.invoiced.update_customer(
        1, {"name": "Acme Invoiced"})))
    options = SyncOptions(per_flow={"companies": FlowOptions(conflicts=winner)})  # type: ignore[arg-type]

    report = await world.sync(options, flows=["companies"])

    assert report.exit_code == 0
    assert world.invoiced.customer(1)["name"] == world.keap_record("companies", ids["company"])["company_name"] == expected
    [conflict] = world.store.conflicts("companies")
    assert (conflict.invoiced_value, conflict.keap_value) == ("Acme Invoiced", "Acme Keap")
    world.reset_stats()
    await world.sync(options)
    assert world.writes() == Counter()


async def test_an_invoiced_item_edit_made_after_the_read_is_not_overwritten(world: World) -> None:
    """Items are read newest first (the API ignores `updated_after` for them): the re-read pages down to the mark."""
    ids = await settled(world)
    world.keap_edit("products", ids["product"], {"description": "Navy"})
    world.invoiced.after_request("GET /items", later(world, lambda: world.invoiced.update_item("widget", {"description": "Teal"})))

    report = await world.sync(flows=["products"])

    assert report.exit_code == 0
    assert world.invoiced.item("widget")["description"] == "Teal"  # newest: the Invoiced edit came later
    assert world.keap_record("products", ids["product"])["description"] == "Teal"
    assert [(c["group"], c["invoiced"], c["keap"]) for c in conflicts_of(report, "products")] == [("description", "Teal", "Navy")]


async def test_a_keap_edit_of_another_slot_made_after_the_read_is_kept(world: World) -> None:
    """Keap replaces a contact's email array whole: the EMAIL1 write must carry the EMAIL2 a user added meanwhile."""
    ids = await settled(world)
    world.invoiced.update_customer(2, {"email": "jane.cooper@example.com"})
    contact = world.keap_record("contacts", ids["contact"])
    world.keap.after_request(KEAP_CONTACTS, later(world, lambda: world.keap_edit("contacts", ids["contact"], {
        "email_addresses": [*contact["email_addresses"], {"email": "jane@home.example", "field": "EMAIL2"}]})))

    report = await world.sync(flows=["contacts"])

    assert report.exit_code == 0 and conflicts_of(report, "contacts") == []
    emails = {e["field"]: e["email"] for e in world.keap_record("contacts", ids["contact"])["email_addresses"]}
    assert emails == {"EMAIL1": "jane.cooper@example.com", "EMAIL2": "jane@home.example"}
    assert world.invoiced.customer(2)["email"] == "jane.cooper@example.com"


async def test_metadata_set_after_the_read_survives_the_id_stamp(world: World) -> None:
    """A stamp sends the customer's whole metadata map: it merges into the map as it is when stamped."""
    await settled(world)
    initech = world.invoiced.create_customer({"name": "Initech", "type": "company"})
    world.invoiced.after_request("GET /customers", later(world, lambda: world.invoiced.update_customer(
        initech["id"], {"metadata": {"segment": "vip"}})))

    report = await world.sync(flows=["companies"])

    assert report.exit_code == 0
    keap_id = world.link_of("companies", initech["id"])
    assert world.invoiced.customer(initech["id"])["metadata"] == {"segment": "vip", "keap_company_id": keap_id}


async def test_an_invoiced_contact_edit_made_after_the_read_is_settled_as_a_conflict(world: World) -> None:
    """A company's people are listed per customer only: the re-read takes the account's events since the pass's
    cursor and reads the people they name."""
    acme = world.invoiced.create_customer({"name": "Acme", "type": "company"})
    ann = world.invoiced.create_contact(acme["id"], {"name": "Ann Lee", "email": "ann@acme.example", "title": "CFO"})
    await world.sync()
    await world.sync()
    keap_id = world.link_of("company_contacts", f"{acme['id']}/{ann['id']}")
    world.keap_edit("contacts", keap_id, {"job_title": "Treasurer"})
    world.keap.after_request(KEAP_CONTACTS, later(world, lambda: world.invoiced.update_contact(
        acme["id"], ann["id"], {"title": "CEO"})))

    report = await world.sync(flows=["companies", "company_contacts"])

    assert report.exit_code == 0
    assert world.invoiced.contact(acme["id"], ann["id"])["title"] == "CEO"  # newest: the Invoiced edit came later
    assert world.keap_record("contacts", keap_id)["job_title"] == "CEO"
    assert [(c["invoiced"], c["keap"]) for c in conflicts_of(report, "company_contacts")] == [("CEO", "Treasurer")]


async def test_the_re_read_costs_one_bulk_read_per_chunk_and_side_it_writes_and_an_idle_pass_none(world: World) -> None:
    """150 renames carried to Keap: two chunks of writes (100 each at most), one Keap listing before each; no Invoiced
    read, as nothing is written there. Contacts (an id filter): one listing of the chunk's ids. The pass after
    writes nothing, so reads nothing again: an idle pass stays at 6 calls."""
    world.invoiced.seed({"customers": [{"name": f"Company {n}", "type": "company"} for n in range(150)]
                                      + [{"name": "Jane Cooper", "type": "person", "email": "jane@example.com"}]})
    await world.sync()
    await world.sync()
    for customer in list(world.invoiced.customers.values()):
        if customer["type"] == "company":
            world.invoiced.update_customer(customer["id"], {"name": f"{customer['name']} Ltd"})
    world.invoiced.update_customer(151, {"email": "jane.cooper@example.com"})
    world.reset_stats()

    report = await world.sync(SyncOptions(allow_mass_change=True))  # every company renamed: past the breaker

    assert report.exit_code == 0
    assert report.flows["companies"].counts["updated.keap"] == 150 and report.flows["contacts"].counts["updated.keap"] == 1
    reads = Counter({key: n for key, n in {**world.invoiced.requests, **world.keap.requests}.items() if key.startswith("GET ")})
    assert reads == Counter({"GET /events": 2, "GET /customers": 2, "GET /items": 1,  # the pass's reads (151 edits: 2 pages)
                             KEAP_COMPANIES: 1 + 2, KEAP_CONTACTS: 1 + 1, KEAP_PRODUCTS: 1})  # and the re-reads
    await world.sync()  # reads back what it wrote: no write, so no re-read
    world.reset_stats()
    idle = await world.sync()
    assert idle.api_calls == {"invoiced": 3, "keap": 3} and world.writes() == Counter()

"""Initial sync over real HTTP: every Invoiced record gets exactly one Keap twin, created or matched;
ambiguous matches wait for review; a dry run only prints the plan."""

from __future__ import annotations

from collections import Counter

from invoiced_keap.emulators.sample import INVOICED_SAMPLE
from invoiced_keap.engine.plan import disagreements
from invoiced_keap.engine.report import RunReport
from invoiced_keap.connectors.invoiced import CUSTOMER
from invoiced_keap.flows import build_flows, flow_of
from tests.engine.conftest import World

FLOWS = build_flows()
KEAP_COLLECTION = {"companies": "companies", "contacts": "contacts", "products": "products"}


def assert_pairs_agree(world: World, flow: str) -> int:
    """Every active link joins records that agree field by field; returns how many links there are."""
    links = world.store.active_link_ids(flow)
    keap = {record["id"]: record for record in world.keap_records(KEAP_COLLECTION[flow])}
    for invoiced_id, keap_id in links.items():
        invoiced = world.invoiced.item(invoiced_id) if flow == "products" else world.invoiced.customer(invoiced_id)
        differing = [name for name in disagreements(FLOWS[flow], invoiced, keap[keap_id])
                     if not FLOWS[flow].rule(name).blank(FLOWS[flow].rule(name).value("invoiced", invoiced))]
        assert differing == [], (flow, invoiced_id, keap_id)  # a blank value (country-only address) is not sent
        key = FLOWS[flow].metadata_key
        assert invoiced["metadata"].get(key) == keap_id if key else keap[keap_id]["sku"] == invoiced_id
    return len(links)


async def test_initial_sync_into_empty_keap_creates_one_twin_per_record(world: World) -> None:
    seeded = world.invoiced.seed(INVOICED_SAMPLE)
    customers = [world.invoiced.customer(i) for i in seeded["customers"]]
    per_flow = Counter(flow_of(CUSTOMER, customer) for customer in customers)

    report = await world.sync()

    walk_in = next(c for c in customers if c["name"] == "Walk-in Customer")  # no email, phone or address
    assert len(world.keap_records("companies")) == per_flow["companies"] == assert_pairs_agree(world, "companies")
    assert len(world.keap_records("contacts")) == per_flow["contacts"] - 1 == assert_pairs_agree(world, "contacts")
    assert len(world.keap_records("products")) == len(seeded["items"]) == assert_pairs_agree(world, "products")
    acme = next(c for c in world.keap_records("companies") if c["company_name"] == "Acme Corporation")
    assert acme["address"]["country_code"] == "USA" and acme["email_address"]["email"] == "billing@acme.example"
    [failure] = world.store.failures()
    assert (failure.flow, failure.side, failure.record_id, failure.operation) == ("contacts", "invoiced", str(walk_in["id"]), "create")
    assert "at least one email address, phone number or address" in failure.message
    assert report.exit_code == 2 and report.open_failures == 1
    assert report.flows["products"].counts["created.keap"] == len(seeded["items"])

    world.reset_stats()
    await world.sync()  # reads back our own creates and stamps: echoes, nothing to write
    assert world.writes() == Counter()
    world.reset_stats()
    idle = await world.sync()
    assert world.writes() == Counter()
    assert idle.api_calls["keap"] == 3  # one incremental read per stream


async def test_initial_sync_links_existing_keap_records_instead_of_creating(world: World) -> None:
    world.invoiced.seed({"customers": [
        {"name": "Acme, Inc.", "type": "company", "email": "ar@acme.example"},
        {"name": "Jane Cooper", "type": "person", "email": "Jane@Example.com", "phone": "+1 555 0142"},
    ], "items": [{"id": "widget", "name": "Widget", "unit_cost": 5, "currency": "usd"}]})
    world.keap.seed({
        "companies": [{"company_name": "ACME Inc"}],
        "contacts": [{"given_name": "Jane", "family_name": "Cooper",
                      "email_addresses": [{"email": "jane@example.com", "field": "EMAIL1"},
                                          {"email": "jc@home.example", "field": "EMAIL2"}]}],
        "products": [{"name": "widget", "price": 500, "short_description": "Widget"}],
    })

    report = await world.sync()

    assert {flow: r.counts["linked"] for flow, r in report.flows.items()} == {"companies": 1, "contacts": 1, "products": 1,
                                                                                        "company_contacts": 0}
    assert [len(world.keap_records(c)) for c in ("companies", "contacts", "products")] == [1, 1, 1]
    [company] = world.keap_records("companies")
    assert company["company_name"] == "Acme, Inc."  # both had a name: Invoiced wins on a first link
    assert company["email_address"]["email"] == "ar@acme.example"  # empty never wins on a first link
    [contact] = world.keap_records("contacts")
    assert {e["field"]: e["email"] for e in contact["email_addresses"]} == {"EMAIL1": "Jane@Example.com", "EMAIL2": "jc@home.example"}
    assert contact["phone_numbers"][0]["number"] == "+1 555 0142"
    assert report.exit_code == 0


async def test_ambiguous_candidates_go_to_review_and_nothing_is_created(world: World) -> None:
    world.invoiced.seed({"customers": [{"name": "Globex", "type": "company"}, {"name": "Initech", "type": "company"}]})
    world.keap.seed({"companies": [{"company_name": "Globex"}, {"company_name": "GLOBEX"}]})

    report = await world.sync()

    [item] = world.store.review_items()
    assert item.flow == "companies" and sorted(item.candidate_ids) == ["1", "2"]
    assert [c["company_name"] for c in world.keap_records("companies")] == ["Globex", "GLOBEX", "Initech"]
    assert report.exit_code == 2 and report.open_review == 1


async def test_dry_run_prints_the_plan_and_writes_nothing(world: World) -> None:
    world.invoiced.seed({"customers": [{"name": "Acme", "type": "company", "email": "a@acme.example"}]})
    world.reset_stats()

    report = await world.sync(dry_run=True)

    assert world.writes() == Counter()
    assert world.keap_records("companies") == []
    assert world.store.runs() == [] and world.store.watermarks() == {}
    [create, stamp] = [line for line in report.plan_lines() if line.startswith("companies")]
    assert "create" in create and '"company_name": "Acme"' in create
    assert "stamp" in stamp and "invoiced:1" in stamp
    real = await world.sync()
    assert real.flows["companies"].counts["created.keap"] == 1


def what(report: RunReport) -> Counter[tuple[str, str, str, str | None]]:
    """The actions of a report without their field values (a created record's id is known only once made)."""
    return Counter((action.flow, action.verb, action.side, action.record_id) for flow in report.flows.values()
                   for action in flow.actions)


async def test_the_dry_run_plan_is_what_the_following_sync_does(world: World) -> None:
    world.invoiced.seed({"customers": [{"name": "Acme", "type": "company", "email": "a@acme.example"},
                                       {"name": "Jane Cooper", "type": "person", "email": "jane@example.com"},
                                       {"name": "Globex", "type": "company"}],
                         "items": [{"id": "widget", "name": "Widget", "unit_cost": 5}]})
    world.keap.seed({"companies": [{"company_name": "Globex", "email_address": {"email": "hq@globex.example", "field": "EMAIL1"}}]})
    await world.sync()
    acme = next(c for c in world.invoiced.customers.values() if c["name"] == "Acme")
    world.invoiced.update_customer(acme["id"], {"name": "Acme Corporation"})
    world.invoiced.seed({"customers": [{"name": "Initech", "type": "company"}]})
    jane = next(c for c in world.keap_records("contacts"))
    world.keap_edit("contacts", jane["id"], {"family_name": "Cooper-Smith"})

    planned = await world.sync(dry_run=True)
    done = await world.sync()

    assert what(planned) == what(done) and sum(what(done).values()) >= 4
    assert planned.counts() == done.counts()
    assert [line for line in planned.plan_lines() if " update " in line] == [line for line in done.plan_lines() if " update " in line]


async def test_a_new_record_with_the_key_of_a_linked_keap_record_waits_for_review_as_in_one_pass(world: World) -> None:
    """Found by break-it: two people with one email new in one pass make one Keap contact (the other waits for review),
    but the second one made in a later pass got a second Keap contact of that email."""
    [first] = world.invoiced.seed({"customers": [{"name": "Dup A", "type": "person", "email": "Dup@X.com"}]})["customers"]
    await world.sync()
    [second] = world.invoiced.seed({"customers": [{"name": "Dup B", "type": "person", "email": "dup@x.com"}]})["customers"]

    report = await world.sync()

    assert len(world.keap_records("contacts")) == 1 and report.exit_code == 2
    [item] = world.store.review_items("contacts")
    assert item.invoiced_id == str(second) and item.candidate_ids == [world.link_of("contacts", first)]

"""Rejected records land in the failures list and sync once fixed; deletes follow the policy; the breaker holds."""

from __future__ import annotations

import httpx

from invoiced_keap.engine.options import FlowOptions, SyncOptions
from tests.engine.conftest import World
from tests.support import API_KEY

LONG_EMAIL = "a" * 70 + "@example.com"  # over Keap's 75 characters


async def test_rejected_records_are_failures_the_rest_syncs_and_a_fix_at_the_source_syncs(world: World) -> None:
    world.invoiced.seed({"customers": [
        {"name": "Walk-in Customer", "type": "person"},
        {"name": "Bad Email", "type": "person", "email": LONG_EMAIL},  # Invoiced takes it; Keap cannot hold it
        *({"name": f"Person {n}", "type": "person", "email": f"p{n}@example.com"} for n in range(5)),
    ]})
    first = await world.sync(flows=["contacts"])

    failures = {f.record_id: f for f in world.store.failures("contacts")}
    assert set(failures) == {"1", "2"} and first.exit_code == 2
    assert "at least one email address, phone number or address" in failures["1"].message
    assert failures["2"].message.startswith("keap (not sent): ") and f"email_addresses[EMAIL1].email: {LONG_EMAIL!r}" in failures["2"].message
    assert failures["2"].payload["given_name"] == "Bad"
    assert len(world.store.active_link_ids("contacts")) == 5

    world.invoiced.update_customer(1, {"phone": "+1 555 0100"})
    world.invoiced.update_customer(2, {"email": "bad@example.com"})
    fixed = await world.sync(flows=["contacts"])

    assert world.store.failures("contacts") == [] and fixed.exit_code == 0
    assert len(world.store.active_link_ids("contacts")) == 7 == len(world.keap_records("contacts"))


async def test_a_refused_person_turned_company_leaves_no_failure_behind(world: World) -> None:
    """Its failure in the contacts flow closes in the pass that reads it as a company, not at its next retry."""
    walk_in = world.invoiced.create_customer({"name": "Walk-in Customer", "type": "person"})  # Keap refuses it
    assert (await world.sync()).exit_code == 2

    world.invoiced.update_customer(walk_in["id"], {"type": "company"})
    report = await world.sync()

    assert report.exit_code == 0, [failure.message for failure in world.store.failures()]
    assert world.store.failures() == []
    assert world.link_of("companies", walk_in["id"])


async def test_retry_one_failure_retries_that_record_only(world: World) -> None:
    world.invoiced.seed({"customers": [{"name": f"Bad {n}", "type": "person", "email": f"{n}{LONG_EMAIL}"} for n in range(2)]})
    await world.sync(flows=["contacts"])
    first, second = world.store.failures("contacts")
    world.reset_stats()

    report = await world.syncer_call("retry", failure_id=first.id)

    # the email is left out (longer than Keap's 75), and a contact without one Keap refuses: not sent, noted
    assert list(report.flows) == ["contacts"] and world.writes() == {}
    assert {f.record_id: f.attempts for f in world.store.failures()}[first.record_id] == 2
    assert "left out: keap holds at most 75 characters" in first.message
    everything = await world.syncer_call("retry")
    assert everything.flows["contacts"].counts["refused"] == 2


async def test_deleted_customers_unlink_by_default_and_propagate_when_asked(world: World) -> None:
    world.invoiced.seed({"customers": [{"name": f"Company {n}", "type": "company"} for n in range(4)]})
    await world.sync(flows=["companies"])
    world.invoiced.delete_customer(1)
    world.invoiced.merge_customers(3, 2)

    await world.sync(flows=["companies"])
    assert sorted(world.store.active_link_ids("companies")) == ["3", "4"]
    assert len(world.keap_records("companies")) == 4  # unlink keeps both records

    world.invoiced.delete_customer(4)
    propagate = SyncOptions(per_flow={"companies": FlowOptions(deletes="propagate")})
    await world.sync(propagate, flows=["companies"])
    assert list(world.store.active_link_ids("companies")) == ["3"]
    assert [c["company_name"] for c in world.keap_records("companies")] == ["Company 0", "Company 1", "Company 2"]


async def test_circuit_breaker_stops_mass_deletes_until_allowed(world: World) -> None:
    world.invoiced.seed({"customers": [{"name": f"Company {n}", "type": "company"} for n in range(12)]})
    await world.sync(flows=["companies"])
    for customer_id in range(1, 12):
        world.invoiced.delete_customer(customer_id)
    propagate = {"companies": FlowOptions(deletes="propagate")}

    halted = await world.sync(SyncOptions(per_flow=propagate), flows=["companies"])
    assert halted.exit_code == 1 and "circuit breaker: 11 of 12 links" in (halted.flows["companies"].error or "")
    assert len(world.keap_records("companies")) == 12 and len(world.store.active_link_ids("companies")) == 12

    allowed = await world.sync(SyncOptions(per_flow=propagate, allow_mass_change=True), flows=["companies"])
    assert allowed.exit_code == 0 and len(world.keap_records("companies")) == 1


async def test_circuit_breaker_counts_a_mass_type_change_as_unlinks(world: World) -> None:
    world.invoiced.seed({"customers": [{"name": f"Company {n}", "type": "company", "email": f"c{n}@example.com"}
                                       for n in range(12)]})
    await world.sync()
    for customer_id in range(1, 12):
        world.invoiced.update_customer(customer_id, {"type": "person"})

    halted = await world.sync()
    assert halted.exit_code == 1 and "companies: circuit breaker: 11 of 12 links" in (halted.flows["contacts"].error or "")
    assert len(world.store.active_link_ids("companies")) == 12 and world.store.active_link_ids("contacts") == {}
    assert world.keap_records("contacts") == []

    allowed = await world.sync(SyncOptions(allow_mass_change=True))
    assert allowed.exit_code == 0
    assert list(world.store.active_link_ids("companies")) == ["12"]
    assert len(world.store.active_link_ids("contacts")) == 11 == len(world.keap_records("contacts"))


async def test_reconcile_finds_records_deleted_in_keap(world: World) -> None:
    world.invoiced.seed({"customers": [{"name": f"Company {n}", "type": "company"} for n in range(3)]})
    await world.sync(flows=["companies"])
    world.keap.store.delete("companies", world.link_of("companies", 2))

    report = await world.syncer_call("reconcile", flows=["companies"])

    assert report.flows["companies"].counts["unlinked"] == 1
    assert sorted(world.store.active_link_ids("companies")) == ["1", "3"]


async def test_a_reconcile_lists_keap_contacts_once_for_both_contact_flows(world: World) -> None:
    acme, _ = world.invoiced.seed({"customers": [{"name": "Acme", "type": "company", "email": "ar@acme.example"},
                                                 {"name": "Jane Cooper", "type": "person", "email": "jane@example.com"}]})["customers"]
    world.invoiced.create_contact(acme, {"name": "Ann Lee", "email": "ann@acme.example"})
    await world.sync()
    people = {world.link_of("contacts", 2), *world.store.active_link_ids("company_contacts").values()}
    assert len(people) == 2
    world.keap.store.delete("contacts", world.link_of("contacts", 2))
    world.reset_stats()

    report = await world.syncer_call("reconcile", flows=["contacts", "company_contacts"])

    assert world.keap.requests["GET /crm/rest/v2/contacts"] == 1  # one id listing serves both flows
    assert report.flows["contacts"].counts["unlinked"] == 1 and not report.flows["company_contacts"].counts["unlinked"]


PROPAGATE = SyncOptions(per_flow={"companies": FlowOptions(deletes="propagate")})


def invoiced_customer_with_an_invoice(world: World, name: str) -> tuple[int, int]:
    """A company customer with a past-due invoice of 120 (Invoiced refuses to delete it: "Customers with
    transactions"); the customer's id and the invoice's."""
    customer = world.invoiced.create_customer({"name": name, "type": "company"})
    now = int(world.clock())
    invoice = world.invoiced.create_invoice({"customer": customer["id"], "date": now - 40 * 86_400, "due_date": now - 10 * 86_400,
                                             "items": [{"name": "Consulting", "quantity": 1, "unit_cost": 120}]})
    return int(customer["id"]), int(invoice["id"])


def keap_companies(world: World) -> list[tuple[str, str]]:
    return [(str(company["id"]), company["company_name"]) for company in world.keap_records("companies")]


async def test_a_keap_delete_invoiced_refuses_to_propagate_unlinks_the_pair_and_a_later_edit_makes_a_new_twin(world: World) -> None:
    customer, invoice = invoiced_customer_with_an_invoice(world, "Has Invoice")
    assert (await world.sync(PROPAGATE, flows=["companies"])).exit_code == 0
    gone = world.link_of("companies", customer)
    world.keap.store.delete("companies", gone)
    world.invoiced.create_payment({"customer": customer, "amount": 20,
                                   "applied_to": [{"type": "invoice", "invoice": invoice, "amount": 20}]})
    await world.sync(PROPAGATE, flows=["companies"])  # what it owes now cannot be written: its Keap company is gone
    assert [(f.side, f.record_id, f.operation) for f in world.store.failures()] == [("keap", gone, "receivables")]

    reconcile = await world.syncer_call("reconcile", PROPAGATE, flows=["companies"])

    [failure] = world.store.failures()  # the receivables failure closes with the link
    assert (failure.flow, failure.side, failure.record_id, failure.operation) == ("companies", "invoiced", str(customer), "delete")
    assert failure.message.startswith("invoiced: Customers with transactions cannot be deleted")
    assert f"its twin keap:company:{gone} is gone; the pair is unlinked and invoiced:customer:{customer} kept" in failure.message
    assert reconcile.exit_code == 2 and reconcile.flows["companies"].counts["unlinked"] == 1
    assert world.store.active_link_ids("companies") == {}  # no link to a Keap record that is gone
    assert world.invoiced.customer(customer)["name"] == "Has Invoice"  # the refusal keeps it

    world.invoiced.update_customer(customer, {"name": "Has Invoice EDITED"})
    report = await world.sync(PROPAGATE, flows=["companies"])

    assert report.exit_code == 0, [f.message for f in world.store.failures()]
    assert world.store.failures() == []
    twin = world.link_of("companies", customer)
    assert keap_companies(world) == [(twin, "Has Invoice EDITED")]  # the edit reached Keap, one twin
    assert world.keap.custom_values("companies", twin)["Invoiced past due"] == 100  # what it owes follows it


async def test_a_keap_delete_found_by_an_update_invoiced_refuses_to_propagate_keeps_the_edit_for_the_retry(world: World) -> None:
    customer, _ = invoiced_customer_with_an_invoice(world, "Has Invoice")
    await world.sync(PROPAGATE, flows=["companies"])
    gone = world.link_of("companies", customer)
    world.keap.store.delete("companies", gone)
    world.invoiced.update_customer(customer, {"name": "Has Invoice EDITED"})
    world.clock.advance(1)  # the edit's second is over when the pass reads it: the next pass does not read it again

    refused = await world.sync(PROPAGATE, flows=["companies"])  # the edit's write finds the Keap company gone

    assert refused.exit_code == 2
    assert [(f.side, f.record_id, f.operation) for f in world.store.failures()] == [("invoiced", str(customer), "delete")]
    assert world.store.active_link_ids("companies") == {}
    idle = await world.sync(PROPAGATE, flows=["companies"])
    assert idle.exit_code == 2 and keap_companies(world) == []  # nothing more until the failure is retried

    retried = await world.syncer_call("retry", PROPAGATE, flows=["companies"])

    assert retried.exit_code == 0 and world.store.failures() == []
    assert keap_companies(world) == [(world.link_of("companies", customer), "Has Invoice EDITED")]


async def test_a_keap_delete_invoiced_was_unavailable_to_propagate_is_carried_by_its_retry(world: World) -> None:
    customer = world.invoiced.create_customer({"name": "No Invoice", "type": "company"})["id"]
    await world.sync(PROPAGATE, flows=["companies"])
    gone = world.link_of("companies", customer)
    world.keap.store.delete("companies", gone)
    world.invoiced.faults.error_rate = 1.0  # Invoiced answers 503 until the delete's retries are spent

    await world.syncer_call("reconcile", PROPAGATE, flows=["companies"])

    assert [(f.side, f.record_id, f.operation) for f in world.store.failures()] == [("keap", gone, "delete")]
    assert world.link_of("companies", customer) == gone  # the delete is still to be carried
    world.invoiced.faults.error_rate = 0.0

    retried = await world.syncer_call("retry", PROPAGATE, flows=["companies"])

    assert retried.exit_code == 0 and world.store.failures() == []
    assert world.store.active_link_ids("companies") == {}
    assert httpx.get(f"{world.invoiced_server.url}/customers/{customer}", auth=(API_KEY, "")).status_code == 404


async def test_an_invoiced_delete_keap_was_unavailable_to_propagate_is_carried_by_its_retry(world: World) -> None:
    customer = world.invoiced.create_customer({"name": "Leaving", "type": "company"})["id"]
    await world.sync(PROPAGATE, flows=["companies"])
    twin = world.link_of("companies", customer)
    world.invoiced.delete_customer(customer)  # its `customer.deleted` event is read once
    world.keap.after_request("GET /crm/rest/v2/companies", lambda: world.keap.faults.update({"error_rate": 1.0}))

    await world.sync(PROPAGATE, flows=["companies"])  # the pass's read goes through, the delete meets 503s

    assert [(f.side, f.record_id, f.operation) for f in world.store.failures()] == [("invoiced", str(customer), "delete")]
    assert world.link_of("companies", customer) == twin
    world.keap.faults.error_rate = 0.0

    retried = await world.syncer_call("retry", PROPAGATE, flows=["companies"])

    assert retried.exit_code == 0 and world.store.failures() == []
    assert world.store.active_link_ids("companies") == {} and keap_companies(world) == []

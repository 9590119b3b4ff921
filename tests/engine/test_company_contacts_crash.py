"""A company's person is never made twice: creates of Invoiced contacts for Keap-born people cut short by a crash
(`company_contacts` in `create_in_invoiced`), and people with no email whose customer is merged away (their moves
between customers: tests/engine/test_company_contacts.py).

The SIGKILL of a real `invoiced-keap sync` is in tests/engine/test_crash.py; here the state a crash leaves is set up
directly: an open create intent, and the Invoiced contact its create made (sent with the intent's idempotency key).
"""

from __future__ import annotations

import httpx

from invoiced_keap.engine.options import FlowOptions, SyncOptions
from tests.engine.conftest import World
from tests.support import API_KEY

CREATE_IN_INVOICED = SyncOptions(per_flow={"company_contacts": FlowOptions(create_in_invoiced=True)})


async def test_a_twin_made_before_a_crash_and_linked_since_to_another_record_is_a_failure_naming_both(world: World) -> None:
    """The Invoiced contact a cut-short create made, renamed before the next pass (so nothing can tell it is that
    create's twin), is linked to a Keap contact of its own; the create's retry gets it again (idempotency key): the
    state refuses the second link, the pass names the flow and both records as a failure of the source, keeps its
    intent (no third record), and goes on with the rest of the batch."""
    acme = world.invoiced.create_customer({"name": "Acme", "type": "company"})
    await world.sync()
    company = {"id": world.link_of("companies", acme["id"])}
    world.keap.seed({"contacts": [
        {"given_name": "Kim", "family_name": "Born", "company": company, "phone_numbers": [{"field": "PHONE1", "number": "555 0101"}]},
        {"given_name": "Lou", "family_name": "Born", "company": company, "phone_numbers": [{"field": "PHONE1", "number": "555 0102"}]}]})
    kim, lou = (str(contact["id"]) for contact in world.keap_records("contacts"))
    intent = world.store.open_intent("company_contacts", "keap", kim, None)
    made = httpx.post(f"{world.invoiced_server.url}/customers/{acme['id']}/contacts", auth=(API_KEY, ""),
                      json={"name": "Kim Born", "phone": "555 0101"}, headers={"Idempotency-Key": intent.idempotency_key})
    world.invoiced.update_contact(acme["id"], made.json()["id"], {"name": "Kimberly Born"})  # then the process died

    report = await world.sync(CREATE_IN_INVOICED)

    twin = f"{acme['id']}/{made.json()['id']}"
    [failure] = world.store.failures("company_contacts")
    assert (failure.side, failure.record_id, failure.operation) == ("keap", kim, "create")
    assert f"Invoiced {twin} and Keap {kim}" in failure.message and "UNIQUE" in failure.message.upper()
    assert report.exit_code == 2 and world.store.intents()[0].source_id == kim
    links = world.store.active_link_ids("company_contacts")
    assert lou in links.values() and links[twin] != kim  # Lou went on; the renamed twin has its own Keap contact
    assert sorted(c["name"] for c in world.invoiced.customer_contacts(acme["id"])) == ["Kimberly Born", "Lou Born"]

    again = await world.sync(CREATE_IN_INVOICED)

    assert again.exit_code == 2 and len(world.invoiced.customer_contacts(acme["id"])) == 2
    assert len(world.store.failures("company_contacts")) == 1


async def test_a_person_with_no_email_of_a_customer_merged_away_keeps_its_keap_contact(world: World) -> None:
    alpha = world.invoiced.create_customer({"name": "Alpha Co", "type": "company"})
    dup = world.invoiced.create_customer({"name": "Alpha Company Dup", "type": "company"})
    world.invoiced.create_contact(alpha["id"], {"name": "Ann Alpha", "email": "ann@example.com"})
    world.invoiced.create_contact(dup["id"], {"name": "Ben Beta", "email": "ben@example.com"})
    phone = world.invoiced.create_contact(dup["id"], {"name": "Phone Person", "phone": "555 7777"})
    await world.sync()
    keap_id = world.link_of("company_contacts", f"{dup['id']}/{phone['id']}")

    world.invoiced.merge_customers(alpha["id"], dup["id"])  # Dup into Alpha: the contact keeps its id
    report = await world.sync()

    assert report.exit_code == 0, report.flows["company_contacts"].actions
    assert world.link_of("company_contacts", f"{alpha['id']}/{phone['id']}") == keap_id
    assert str(world.keap_record("contacts", keap_id)["company"]["id"]) == world.link_of("companies", alpha["id"])
    assert sorted(c["given_name"] for c in world.keap_records("contacts")) == ["Ann", "Ben", "Phone"]

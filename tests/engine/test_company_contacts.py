"""The people of organisation customers become Keap contacts of their company (flow `company_contacts`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from invoiced_keap.engine.options import FlowOptions, SyncOptions
from invoiced_keap.engine.review import ReviewRefused, pick
from invoiced_keap.state import Store
from tests.engine.conftest import World


def seed_company_with_two_people(world: World) -> dict[str, Any]:
    acme = world.invoiced.create_customer({"name": "Acme", "type": "company", "email": "ar@acme.example"})
    ann = world.invoiced.create_contact(acme["id"], {"name": "Ann Lee", "email": "ann@acme.example", "title": "CFO",
                                                     "phone": "+1 555 0101"})
    bob = world.invoiced.create_contact(acme["id"], {"name": "Bob Stone", "email": "bob@acme.example"})
    return {"acme": acme, "ann": ann, "bob": bob}


def keap_contact(world: World, invoiced_contact: dict[str, Any]) -> dict[str, Any]:
    keap_id = world.link_of("company_contacts", f"{invoiced_contact['customer']}/{invoiced_contact['id']}")
    return world.keap_record("contacts", keap_id)


async def test_people_of_a_company_arrive_attached_to_its_keap_company(world: World) -> None:
    seeded = seed_company_with_two_people(world)

    report = await world.sync()

    assert report.exit_code == 0, report.flows["company_contacts"].actions
    company_id = world.link_of("companies", seeded["acme"]["id"])
    ann, bob = keap_contact(world, seeded["ann"]), keap_contact(world, seeded["bob"])
    assert (ann["given_name"], ann["family_name"], ann["job_title"]) == ("Ann", "Lee", "CFO")
    assert ann["email_addresses"][0]["email"] == "ann@acme.example" and ann["phone_numbers"][0]["number"] == "+1 555 0101"
    assert str(ann["company"]["id"]) == company_id and str(bob["company"]["id"]) == company_id
    assert len(world.keap_records("contacts")) == 2
    assert report.flows["company_contacts"].counts["created.keap"] == 2


async def test_edits_reach_the_other_side_both_ways_and_an_idle_pass_adds_no_call(world: World) -> None:
    seeded = seed_company_with_two_people(world)
    await world.sync()
    await world.sync()  # the echo of the first pass's writes
    world.reset_stats()
    idle = await world.sync()
    assert idle.api_calls == {"invoiced": 3, "keap": 3} and world.writes() == {}  # the floor: no call of its own

    world.invoiced.update_contact(seeded["acme"]["id"], seeded["ann"]["id"], {"title": "CEO"})
    bob_keap = keap_contact(world, seeded["bob"])
    world.keap_edit("contacts", str(bob_keap["id"]), {"phone_numbers": [{"field": "PHONE1", "number": "+1 555 0199"}]})
    world.reset_stats()
    report = await world.sync()

    assert report.exit_code == 0
    assert keap_contact(world, seeded["ann"])["job_title"] == "CEO"
    assert world.invoiced.contact(seeded["acme"]["id"], seeded["bob"]["id"])["phone"] == "+1 555 0199"
    counts = report.flows["company_contacts"].counts
    assert (counts["updated.keap"], counts["updated.invoiced"]) == (1, 1)
    # one listing of Acme's people (its contact event named it), one PATCH each way
    assert world.invoiced.requests["GET /customers/{parent_id}/contacts"] == 1
    again = await world.sync()
    assert sum(again.counts()["company_contacts"].get(key, 0) for key in ("updated.keap", "updated.invoiced")) == 0


async def test_a_person_already_in_keap_by_email_is_linked_not_duplicated(world: World) -> None:
    world.keap.seed({"contacts": [{"given_name": "Ann", "family_name": "Lee",
                                   "email_addresses": [{"email": "ANN@acme.example", "field": "EMAIL1"}]}]})
    seeded = seed_company_with_two_people(world)

    report = await world.sync()

    assert report.flows["company_contacts"].counts["linked"] == 1
    assert len(world.keap_records("contacts")) == 2  # Ann linked, Bob created
    ann = keap_contact(world, seeded["ann"])
    assert ann["id"] == 1 or str(ann["id"]) == "1"
    assert str(ann["company"]["id"]) == world.link_of("companies", seeded["acme"]["id"])  # attached on link
    assert ann["job_title"] == "CFO"


async def test_a_keap_contact_linked_to_a_person_customer_is_not_taken(world: World) -> None:
    jane = world.invoiced.create_customer({"name": "Jane Cooper", "type": "person", "email": "jane@example.com"})
    await world.sync()
    jane_keap = world.link_of("contacts", jane["id"])
    acme = world.invoiced.create_customer({"name": "Acme", "type": "company"})
    world.invoiced.create_contact(acme["id"], {"name": "Jane Cooper", "email": "jane@example.com"})

    report = await world.sync()

    [item] = world.store.review_items("company_contacts")
    assert item.candidate_ids == [jane_keap] and "linked in flow contacts" in item.reason
    assert len(world.keap_records("contacts")) == 1  # no duplicate, no second link
    assert world.store.active_link_ids("company_contacts") == {}
    assert report.exit_code == 2


@pytest.mark.parametrize("person", [{"name": "Ann Lee", "email": "ann@example.com"},
                                    {"name": "Nat NoMail", "phone": "555-4242"}], ids=["by-email", "no-email"])
async def test_a_contact_moved_to_another_customer_moves_to_the_other_keap_company(world: World, person: dict) -> None:
    """A person with no email is found again by name and phone (or street) among the people new in the pass."""
    acme = world.invoiced.create_customer({"name": "Acme", "type": "company"})
    globex = world.invoiced.create_customer({"name": "Globex", "type": "company"})
    ann = world.invoiced.create_contact(acme["id"], person)
    await world.sync()
    keap_id = world.link_of("company_contacts", f"{acme['id']}/{ann['id']}")

    # Invoiced keeps a contact's customer for life: a move is the person removed from one and added to the other
    world.invoiced.delete_contact(acme["id"], ann["id"])
    moved = world.invoiced.create_contact(globex["id"], person)
    report = await world.sync()

    assert report.exit_code == 0, report.flows["company_contacts"].actions
    assert world.link_of("company_contacts", f"{globex['id']}/{moved['id']}") == keap_id  # the same Keap contact
    assert str(world.keap_record("contacts", keap_id)["company"]["id"]) == world.link_of("companies", globex["id"])
    assert [contact["given_name"] for contact in world.keap_records("contacts")] == [person["name"].split()[0]]


async def test_a_customer_deleted_or_now_a_person_closes_its_peoples_links(world: World) -> None:
    acme = world.invoiced.create_customer({"name": "Acme", "type": "company"})
    globex = world.invoiced.create_customer({"name": "Globex", "type": "company"})
    world.invoiced.create_contact(acme["id"], {"name": "Ann Lee", "email": "ann@example.com"})
    world.invoiced.create_contact(globex["id"], {"name": "Bob Stone", "email": "bob@example.com"})
    await world.sync()

    world.invoiced.delete_customer(acme["id"])
    world.invoiced.update_customer(globex["id"], {"type": "person"})
    options = SyncOptions(allow_mass_change=True)
    report = await world.sync(options)

    assert world.store.active_link_ids("company_contacts") == {}
    reasons = sorted(a.fields["reason"] for a in report.flows["company_contacts"].actions if a.verb == "unlink")
    assert reasons == [f"its customer {acme['id']} has no Keap company any more",
                       f"its customer {globex['id']} has no Keap company any more"]
    assert len(world.keap_records("contacts")) >= 2  # unlinked, not deleted (deletes policy "unlink")


async def test_a_keap_contact_detached_from_its_company_is_reported_not_deleted(world: World) -> None:
    seeded = seed_company_with_two_people(world)
    await world.sync()
    ann_keap = keap_contact(world, seeded["ann"])
    world.keap_edit("contacts", str(ann_keap["id"]), {"company": None})
    world.reset_stats()

    report = await world.sync()

    [note] = [a for a in report.flows["company_contacts"].actions if a.verb == "lossy"]
    assert note.side == "invoiced" and note.fields["field"] == "company" and "cannot move" in note.fields["reason"]
    assert world.keap_record("contacts", str(ann_keap["id"])).get("company") is None  # left as the Keap user made it
    assert world.invoiced.contact(seeded["acme"]["id"], seeded["ann"]["id"])["name"] == "Ann Lee"  # not deleted
    assert world.writes() == {}
    assert world.store.active_link_ids("company_contacts")  # still linked


async def test_keap_born_people_of_a_linked_company_reach_invoiced_only_when_configured(world: World) -> None:
    acme = world.invoiced.create_customer({"name": "Acme", "type": "company"})
    await world.sync()
    company_id = world.link_of("companies", acme["id"])
    world.keap.seed({"contacts": [{"given_name": "Cy", "family_name": "Young", "company": {"id": company_id},
                                   "email_addresses": [{"email": "cy@acme.example", "field": "EMAIL1"}]}]})

    off = await world.sync()
    assert world.invoiced.customer_contacts(acme["id"]) == [] and off.flows["company_contacts"].counts["unlinked.keap"] == 1
    assert off.flows["contacts"].counts.get("unlinked.keap", 0) == 0  # a company's person is no person customer

    on = await world.sync(SyncOptions(per_flow={"company_contacts": FlowOptions(create_in_invoiced=True),
                                                "contacts": FlowOptions(create_in_invoiced=True)}))

    [cy] = world.invoiced.customer_contacts(acme["id"])
    assert (cy["name"], cy["email"]) == ("Cy Young", "cy@acme.example")
    assert on.flows["company_contacts"].counts["created.invoiced"] == 1
    assert [c["name"] for c in world.invoiced.customers.values()] == ["Acme"]  # no person customer made of Cy


async def test_a_merge_moves_the_merged_customers_people_to_the_survivors_keap_company(world: World) -> None:
    acme = world.invoiced.create_customer({"name": "Acme", "type": "company"})
    globex = world.invoiced.create_customer({"name": "Globex", "type": "company"})
    ann = world.invoiced.create_contact(globex["id"], {"name": "Ann Lee", "email": "ann@example.com"})
    await world.sync()
    keap_id = world.link_of("company_contacts", f"{globex['id']}/{ann['id']}")

    world.invoiced.merge_customers(acme["id"], globex["id"])  # Globex into Acme: its people go along, no contact event
    report = await world.sync()

    assert report.exit_code == 0, report.flows["company_contacts"].actions
    assert world.store.active_link_ids("company_contacts") == {f"{acme['id']}/{ann['id']}": keap_id}
    assert str(world.keap_record("contacts", keap_id)["company"]["id"]) == world.link_of("companies", acme["id"])
    assert len(world.keap_records("contacts")) == 1


async def test_a_keap_person_of_an_unlinked_company_is_no_ones_even_with_create_in_invoiced(world: World) -> None:
    acme = world.invoiced.create_customer({"name": "Acme", "type": "company"})
    await world.sync()
    [stray] = world.keap.seed({"companies": [{"company_name": "Unlinked Co"}]})["companies"]
    world.keap.seed({"contacts": [{"given_name": "Cy", "family_name": "Young", "company": {"id": str(stray)},
                                   "email_addresses": [{"email": "cy@unlinked.example", "field": "EMAIL1"}]}]})
    creating = SyncOptions(per_flow={name: FlowOptions(create_in_invoiced=True) for name in ("company_contacts", "contacts")})

    report = await world.sync(creating)

    assert report.exit_code == 0 and report.error is None
    assert world.invoiced.customer_contacts(acme["id"]) == [] and world.store.intents() == []
    assert [c["name"] for c in world.invoiced.customers.values()] == ["Acme"]
    world.reset_stats()
    assert (await world.sync(creating)).api_calls == {"invoiced": 3, "keap": 3}  # nothing left behind to re-read


async def test_a_person_customer_and_a_company_person_new_in_one_pass_share_one_keap_contact(world: World) -> None:
    bob = world.invoiced.create_customer({"name": "Bob Stone", "type": "person", "email": "bob@example.com"})
    acme = world.invoiced.create_customer({"name": "Acme", "type": "company"})
    world.invoiced.create_contact(acme["id"], {"name": "Bob Stone", "email": "bob@example.com"})

    report = await world.sync()  # the contacts flow makes Bob's Keap contact before the company's people are planned

    assert [c["email_addresses"][0]["email"] for c in world.keap_records("contacts")] == ["bob@example.com"]
    [item] = world.store.review_items("company_contacts")
    assert item.candidate_ids == [world.link_of("contacts", bob["id"])] and report.exit_code == 2


async def test_a_title_longer_than_keap_holds_is_cut_with_a_note_and_the_rest_goes(world: World) -> None:
    acme = world.invoiced.create_customer({"name": "Acme", "type": "company"})
    ann = world.invoiced.create_contact(acme["id"], {"name": "Ann Lee", "email": "ann@example.com", "title": "T" * 300})

    report = await world.sync()

    assert report.exit_code == 0
    person = keap_contact(world, ann)
    assert person["job_title"] == "T" * 255
    [note] = [a for a in report.flows["company_contacts"].actions if a.verb == "lossy"]
    assert note.fields["field"] == "job_title" and "255" in note.fields["reason"]
    world.invoiced.update_contact(acme["id"], ann["id"], {"title": "T" * 301, "phone": "+1 555 0101"})
    await world.sync()
    assert keap_contact(world, ann)["phone_numbers"][0]["number"] == "+1 555 0101"
    assert world.invoiced.contact(acme["id"], ann["id"])["title"] == "T" * 301  # the cut copy never flows back


async def test_a_pick_of_a_keap_contact_linked_in_the_other_flow_is_refused(world: World) -> None:
    jane = world.invoiced.create_customer({"name": "Jane Cooper", "type": "person", "email": "jane@example.com"})
    await world.sync()
    acme = world.invoiced.create_customer({"name": "Acme", "type": "company"})
    person = world.invoiced.create_contact(acme["id"], {"name": "Jane Cooper", "email": "jane@example.com"})
    await world.sync()
    taken = world.link_of("contacts", jane["id"])

    with pytest.raises(ReviewRefused, match=f"Keap contact {taken} is linked in flow contacts"):
        pick(world.store, f"{acme['id']}/{person['id']}", taken)
    assert world.store.review_items("company_contacts")  # still waiting for a decision


async def test_a_person_with_no_email_keeps_its_keap_contact_through_a_type_round_trip_and_a_merge(world: World) -> None:
    acme = world.invoiced.create_customer({"name": "Acme", "type": "company"})
    globex = world.invoiced.create_customer({"name": "Globex", "type": "company"})
    gus = world.invoiced.create_contact(acme["id"], {"name": "Gus Hale", "phone": "+1 555 0177"})
    await world.sync()
    keap_id = world.link_of("company_contacts", f"{acme['id']}/{gus['id']}")

    world.invoiced.update_customer(acme["id"], {"type": "person"})
    await world.sync(SyncOptions(allow_mass_change=True))
    world.invoiced.update_customer(acme["id"], {"type": "company"})
    await world.sync(SyncOptions(allow_mass_change=True))
    assert world.link_of("company_contacts", f"{acme['id']}/{gus['id']}") == keap_id  # its Keap contact again

    world.invoiced.merge_customers(globex["id"], acme["id"])  # Acme into Globex: Gus keeps his contact id
    report = await world.sync(SyncOptions(allow_mass_change=True))

    assert report.exit_code in (0, 2) and not world.store.failures("company_contacts")  # Acme as a person had no
    assert world.link_of("company_contacts", f"{globex['id']}/{gus['id']}") == keap_id  # email: its own refusal
    assert str(world.keap_record("contacts", keap_id)["company"]["id"]) == world.link_of("companies", globex["id"])
    assert [c["given_name"] for c in world.keap_records("contacts")] == ["Gus"]


async def test_relink_finds_a_person_with_no_email_by_name_and_phone_within_its_company(world: World, tmp_path: Path) -> None:
    acme = world.invoiced.create_customer({"name": "Acme", "type": "company"})
    gus = world.invoiced.create_contact(acme["id"], {"name": "Gus Hale", "phone": "+1 555 0177"})
    await world.sync()
    keap_id = world.link_of("company_contacts", f"{acme['id']}/{gus['id']}")
    world.store = Store(f"sqlite:///{tmp_path}/lost.db")  # the state database is lost: a new, empty one
    world.store.migrate()

    await world.syncer_call("relink", flows=["companies"])
    await world.syncer_call("relink", flows=["company_contacts"])
    report = await world.sync()

    assert world.link_of("company_contacts", f"{acme['id']}/{gus['id']}") == keap_id
    assert len(world.keap_records("contacts")) == 1 and report.flows["company_contacts"].counts.get("created.keap", 0) == 0


async def test_a_review_waiting_for_a_link_in_the_other_flow_settles_once_that_link_closes(world: World) -> None:
    smith = world.invoiced.create_customer({"name": "Smith Plumbing", "type": "company", "email": "joe@smith.example"})
    world.invoiced.create_contact(smith["id"], {"name": "Joe Smith", "email": "joe@smith.example"})
    await world.sync()
    joe_keap = [c for c in world.keap_records("contacts") if c["given_name"] == "Joe"][0]

    world.invoiced.update_customer(smith["id"], {"type": "person"})  # Joe's Keap contact is the person's now
    first = await world.sync(SyncOptions(allow_mass_change=True))
    assert [item.candidate_ids for item in world.store.review_items("contacts")] == [[str(joe_keap["id"])]]
    assert first.exit_code == 2
    second = await world.sync(SyncOptions(allow_mass_change=True))

    assert world.link_of("contacts", smith["id"]) == str(joe_keap["id"]) and world.store.review_items() == []
    assert second.exit_code == 0


async def test_people_new_in_one_pass_with_one_email_make_one_keap_contact_and_the_others_wait_for_review(
        world: World) -> None:
    acme = world.invoiced.create_customer({"name": "Acme", "type": "company"})
    beta = world.invoiced.create_customer({"name": "Beta", "type": "company"})
    one = world.invoiced.create_contact(acme["id"], {"name": "Twin One", "email": "twin@example.com"})
    two = world.invoiced.create_contact(acme["id"], {"name": "Twin Two", "email": "twin@example.com"})
    sam = world.invoiced.create_contact(acme["id"], {"name": "Sam Same", "email": "sam@example.com"})
    sam_at_beta = world.invoiced.create_contact(beta["id"], {"name": "Sam Same", "email": "SAM@example.com"})

    report = await world.sync()

    emails = sorted(c["email_addresses"][0]["email"].casefold() for c in world.keap_records("contacts"))
    assert emails == ["sam@example.com", "twin@example.com"]  # one Keap contact per email
    waiting = {item.invoiced_id: item.reason for item in world.store.review_items("company_contacts")}
    assert sorted(waiting) == sorted([f"{acme['id']}/{two['id']}", f"{beta['id']}/{sam_at_beta['id']}"])
    assert f"{acme['id']}/{one['id']}" in waiting[f"{acme['id']}/{two['id']}"]
    assert f"{acme['id']}/{sam['id']}" in waiting[f"{beta['id']}/{sam_at_beta['id']}"]
    assert report.exit_code == 2

    # later, two more with one email, new in one pass, under a company linked before
    world.invoiced.create_contact(beta["id"], {"name": "Dee One", "email": "dee@example.com"})
    world.invoiced.create_contact(beta["id"], {"name": "Dee Two", "email": "Dee@Example.com"})
    await world.sync()
    assert [c["email_addresses"][0]["email"].casefold() for c in world.keap_records("contacts")].count("dee@example.com") == 1
    assert len(world.store.review_items("company_contacts")) == 3


async def test_person_customers_new_in_one_pass_with_one_email_make_one_keap_contact(world: World) -> None:
    first = world.invoiced.create_customer({"name": "Jo Twin", "type": "person", "email": "jo@example.com"})
    second = world.invoiced.create_customer({"name": "Jo Twin", "type": "person", "email": "JO@example.com"})

    report = await world.sync()

    assert len(world.keap_records("contacts")) == 1 and world.link_of("contacts", first["id"])
    [item] = world.store.review_items("contacts")
    assert item.invoiced_id == str(second["id"]) and f"customer {first['id']}" in item.reason
    assert report.exit_code == 2


async def test_a_keap_contact_found_by_its_second_email_waits_for_a_pick_and_keeps_its_main_email(world: World) -> None:
    [keap_id] = world.keap.seed({"contacts": [{"given_name": "Sec", "family_name": "Ond", "email_addresses": [
        {"email": "primary@example.com", "field": "EMAIL1"}, {"email": "second@example.com", "field": "EMAIL2"}]}]})["contacts"]
    acme = world.invoiced.create_customer({"name": "Acme", "type": "company"})
    sec = world.invoiced.create_contact(acme["id"], {"name": "Sec Ond", "email": "Second@example.com"})
    person = f"{acme['id']}/{sec['id']}"

    report = await world.sync()

    [item] = world.store.review_items("company_contacts")
    assert item.candidate_ids == [str(keap_id)] and f"contact {keap_id} has it besides its main email" in item.reason
    assert report.exit_code == 2 and len(world.keap_records("contacts")) == 1
    assert world.keap_record("contacts", str(keap_id))["email_addresses"][0]["email"] == "primary@example.com"

    pick(world.store, person, str(keap_id))
    await world.sync()

    assert world.link_of("company_contacts", person) == str(keap_id)
    emails = {e["field"]: e["email"] for e in world.keap_record("contacts", str(keap_id))["email_addresses"]}
    assert emails == {"EMAIL1": "Second@example.com", "EMAIL2": "primary@example.com"}  # moved, not lost


async def test_a_second_pick_of_one_keap_contact_is_refused_naming_the_first(world: World) -> None:
    [shared] = world.keap.seed({"contacts": [{"given_name": "Shared", "family_name": "Person", "email_addresses": [
        {"email": "shared@example.com", "field": "EMAIL1"}]}]})["contacts"]
    two_a = world.invoiced.create_customer({"name": "Two A", "type": "company"})
    two_b = world.invoiced.create_customer({"name": "Two B", "type": "company"})
    at_a = world.invoiced.create_contact(two_a["id"], {"name": "Shared Person", "email": "shared@example.com"})
    at_b = world.invoiced.create_contact(two_b["id"], {"name": "Shared Person", "email": "SHARED@example.com"})
    await world.sync()
    assert len(world.store.review_items("company_contacts")) == 2  # both claim it

    pick(world.store, f"{two_a['id']}/{at_a['id']}", str(shared))
    with pytest.raises(ReviewRefused, match=f"contact {shared} is picked already for Invoiced {two_a['id']}/{at_a['id']}"):
        pick(world.store, f"{two_b['id']}/{at_b['id']}", str(shared))
    report = await world.sync()

    assert world.link_of("company_contacts", f"{two_a['id']}/{at_a['id']}") == str(shared)
    [item] = world.store.review_items("company_contacts")
    assert item.invoiced_id == f"{two_b['id']}/{at_b['id']}" and report.exit_code == 2


@pytest.mark.parametrize("gone", ["contact", "customer"])
async def test_a_review_item_whose_person_or_customer_is_deleted_closes_in_the_pass_that_learns_it(
        world: World, gone: str) -> None:
    stay = world.invoiced.create_customer({"name": "Stay Co", "type": "company"})
    doomed = world.invoiced.create_customer({"name": "Doomed Co", "type": "company"})
    world.invoiced.create_contact(stay["id"], {"name": "Rev Ann", "email": "rev@example.com"})
    await world.sync()
    again = world.invoiced.create_contact(doomed["id"], {"name": "Rev Ann", "email": "rev@example.com"})
    assert (await world.sync()).exit_code == 2  # her email is linked already: review

    if gone == "contact":
        world.invoiced.delete_contact(doomed["id"], again["id"])
    else:
        world.invoiced.delete_customer(doomed["id"])
    report = await world.sync()

    assert world.store.review_items() == [] and report.exit_code == 0
    [closed] = world.store.review_items(include_resolved=True)
    assert closed.invoiced_id == f"{doomed['id']}/{again['id']}" and (closed.resolution or "").startswith("closed: ")
    assert (await world.sync()).exit_code == 0


async def test_a_review_item_of_a_person_customer_now_a_company_closes(world: World) -> None:
    first = world.invoiced.create_customer({"name": "Jo Twin", "type": "person", "email": "jo@example.com"})
    second = world.invoiced.create_customer({"name": "Jo Twin", "type": "person", "email": "jo@example.com"})
    await world.sync()
    assert [item.invoiced_id for item in world.store.review_items("contacts")] == [str(second["id"])]

    world.invoiced.update_customer(second["id"], {"type": "company"})
    report = await world.sync()

    assert world.store.review_items("contacts") == [] and world.link_of("companies", second["id"])
    assert world.link_of("contacts", first["id"]) and report.exit_code == 0

"""The chaos checker finds each kind of difference it promises to, and names the records involved."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from invoiced_keap.flows import CATALOGUE
from tests.chaos.checker import ConflictRow, LinkRow, LossyRow, Snapshot, WriteRow, check
from tests.chaos.world import Edit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
USER_MADE: dict[str, set[str]] = {"companies": set(), "contacts": set(), "products": set()}


def converged() -> Snapshot:
    """One company linked to its Keap twin, both named "Acme"."""
    return Snapshot(
        customers={"1": {"id": 1, "name": "Acme", "type": "company"}},
        items={},
        keap={"companies": {"7": {"id": "7", "company_name": "Acme"}}, "contacts": {}, "products": {}},
        links=[LinkRow("companies", "1", "7", True, None)],
        failures={}, review=set(), conflicts=[], writes=[], intents=0,
    )


def renamed_in_keap(at: datetime = T0) -> Edit:
    return Edit(0, "keap", "companies", "7", "name", "Acme Inc", at)


def test_a_converged_world_has_no_problems() -> None:
    assert check(converged(), [Edit(0, "invoiced", "companies", "1", "name", "Acme", T0)], USER_MADE).problems == []


def test_a_lost_edit_is_reported_unless_a_conflict_or_a_race_explains_it() -> None:
    lost = check(converged(), [renamed_in_keap()], USER_MADE)
    assert lost.problems == ["companies: pair invoiced 1 / keap 7: last edit #0 of name on keap ('Acme Inc') was lost: keap now has "
                             "'Acme', and no conflict went to the other side; edits: #0 keap 'Acme Inc'"]
    conflict = replace(converged(), conflicts=[ConflictRow("companies", "1", "7", "name", "invoiced")])
    assert check(conflict, [renamed_in_keap()], USER_MADE).problems == []
    race = replace(converged(), writes=[WriteRow("companies", "keap", "7", frozenset({"company_name"}), T0 - timedelta(seconds=1),
                                                 T0 + timedelta(seconds=1))])
    raced = check(race, [renamed_in_keap()], USER_MADE)
    assert raced.problems == [] and raced.raced == [renamed_in_keap()]
    assert check(race, [renamed_in_keap(T0 + timedelta(seconds=2))], USER_MADE).problems != []  # written before the edit


def test_drift_duplicates_unlinked_records_and_open_intents_are_reported() -> None:
    world = converged()
    world.keap["companies"]["7"]["company_name"] = "Acme Corp"
    world.keap["companies"]["8"] = {"id": "8", "company_name": "Acme"}
    world.customers["2"] = {"id": 2, "name": "Globex", "type": "company"}
    problems = check(replace(world, intents=1), [], USER_MADE).problems
    assert problems == [
        "1 create intents still open",
        "companies: invoiced 2 ('Globex') has no link and no failure, review item or deleted twin explains it",
        "companies: keap 8 ('Acme') was made by the sync but is in no link (a duplicate)",
        "companies: pair invoiced 1 / keap 7: name differs: invoiced 'Acme', keap 'Acme Corp'; edits: none",
    ]
    explained = replace(world, failures={("companies", "invoiced", "2"): "keap: refused", ("companies", "invoiced", "1"): "keap: refused"})
    assert check(explained, [], {**USER_MADE, "companies": {"8"}}).problems == []


def address_edit(seq: int, side: str, line1: str, country: str, changed: tuple[str, ...] | None) -> Edit:
    value = CATALOGUE["companies"].rule("address").value("invoiced", {"address1": line1, "country": country})
    return Edit(seq, side, "companies", "1" if side == "invoiced" else "7", "address", value, T0, changed)  # type: ignore[arg-type]


def test_parts_the_last_edit_left_alone_may_hold_the_other_sides_concurrent_edit() -> None:
    # Invoiced typed a new street and kept the country while a Keap user changed the country: merged part by part
    world = converged()
    world.customers["1"].update({"address1": "2 Elm St", "country": "US"})
    world.keap["companies"]["7"]["address"] = {"line1": "2 Elm St", "country_code": "USA"}
    edits = [address_edit(0, "invoiced", "1 Oak St", "GB", None), address_edit(1, "keap", "1 Oak St", "US", ("country",)),
             address_edit(2, "invoiced", "2 Elm St", "GB", ("line1",))]
    assert check(world, edits, USER_MADE).problems == []
    changed_too = [*edits[:2], replace(edits[2], changed=("line1", "country"))]
    assert [p.split(": ", 2)[2][:31] for p in check(world, changed_too, USER_MADE).problems] == ["last edit #2 of address on invo"]
    keap_first = [address_edit(0, "keap", "1 Oak St", "US", ("country",)), address_edit(1, "invoiced", "1 Oak St", "GB", ("country",)),
                  edits[2]]  # Invoiced set the country after the Keap edit: its own value should have stayed
    assert [p.split(": ", 2)[2][:31] for p in check(world, keap_first, USER_MADE).problems] == ["last edit #2 of address on invo"]


def test_twice_linked_records_and_links_to_gone_records_are_reported() -> None:
    world = replace(converged(), links=[LinkRow("companies", "1", "7", True, None), LinkRow("companies", "1", "9", True, None)])
    assert check(world, [], USER_MADE).problems == [
        "companies: invoiced 1 is in 2 active links",
        "companies: pair invoiced 1 / keap 9: active link to a record gone from keap",
    ]


def test_edits_of_an_earlier_twin_count_until_the_pass_that_moved_the_customer_started_unless_the_twin_was_deleted() -> None:
    moved_from = LinkRow("contacts", "1", "3", False, "type changed: customer 1 moved to companies", closed_at=T0)
    world = replace(converged(), links=[*converged().links, moved_from])
    contact_edit = [Edit(0, "keap", "contacts", "3", "name", "Acme Inc", T0 - timedelta(seconds=1))]
    assert [p.split(":")[1] for p in check(world, contact_edit, USER_MADE).problems] == [" pair invoiced 1 / keap 7"]
    late = [replace(contact_edit[0], at=T0 + timedelta(seconds=1))]
    assert check(world, late, USER_MADE).problems == []
    settled = replace(world, conflicts=[ConflictRow("contacts", "1", "3", "name", "invoiced")])  # on the first link, as it merged
    assert check(settled, contact_edit, USER_MADE).problems == []
    deleted = replace(world, links=[*converged().links, replace(moved_from, reason="not found in keap (reconcile)")])
    assert check(deleted, contact_edit, USER_MADE).problems == []


def test_a_later_edit_of_a_deleted_twin_may_stand_as_the_value_but_is_not_asked_for() -> None:
    deleted_twin = LinkRow("companies", "1", "5", False, "not found in keap (reconcile)", closed_at=T0)
    world = replace(converged(), links=[*converged().links, deleted_twin])
    invoiced_edit = Edit(0, "invoiced", "companies", "1", "name", "Acme Co", T0)
    twin_edit = Edit(1, "keap", "companies", "5", "name", "Acme", T0 + timedelta(seconds=1))
    assert check(world, [invoiced_edit, twin_edit], USER_MADE).problems == []  # synced before the delete
    world.customers["1"]["name"] = world.keap["companies"]["7"]["company_name"] = "Acme Co"
    assert check(world, [invoiced_edit, twin_edit], USER_MADE).problems == []  # made after the last read
    world.customers["1"]["name"] = world.keap["companies"]["7"]["company_name"] = "Acme Ltd"
    assert check(world, [invoiced_edit, twin_edit], USER_MADE).problems != []


# --- the people of company customers (flow company_contacts) -------------------------------------------------

def people() -> Snapshot:
    """Company 1 linked to Keap company 7; its person 1/5 linked to Keap contact 9, a person of company 7; person
    customer 2 linked to Keap contact 3."""
    return Snapshot(
        customers={"1": {"id": 1, "name": "Acme", "type": "company"}, "2": {"id": 2, "name": "Bo Ray", "type": "person"}},
        items={},
        contacts={"1/5": {"id": "1/5", "customer": 1, "name": "Ann Lee", "email": "ann@acme.example", "title": "CFO"}},
        keap={"companies": {"7": {"id": "7", "company_name": "Acme"}, "8": {"id": "8", "company_name": "Globex"}},
              "contacts": {"9": {"id": "9", "given_name": "Ann", "family_name": "Lee", "job_title": "CFO", "company": {"id": "7"},
                                 "email_addresses": [{"email": "ann@acme.example", "field": "EMAIL1"}]},
                           "3": {"id": "3", "given_name": "Bo", "family_name": "Ray"}},
              "products": {}},
        links=[LinkRow("companies", "1", "7", True, None, created_at=T0 - timedelta(hours=1)),
               LinkRow("company_contacts", "1/5", "9", True, None, created_at=T0 - timedelta(hours=1)),
               LinkRow("contacts", "2", "3", True, None)],
        failures={}, review=set(), conflicts=[], writes=[], intents=0,
    )


MADE_BY_USERS: dict[str, set[str]] = {"companies": {"8"}, "contacts": set(), "products": set()}  # Globex is a Keap user's


def moved_in_keap(world: Snapshot, to: str | None = "8") -> Snapshot:
    world.keap["contacts"]["9"]["company"] = {"id": to} if to else None
    return world


def test_a_company_person_linked_to_a_keap_person_of_its_company_is_converged() -> None:
    edits = [Edit(0, "invoiced", "company_contacts", "1/5", "title", "CFO", T0),
             Edit(1, "keap", "contacts", "9", "name", "Ann Lee", T0)]  # a Keap contact's edits count in both contact flows
    assert check(people(), edits, MADE_BY_USERS).problems == []
    lost = [Edit(0, "keap", "contacts", "9", "name", "Annie Lee", T0)]
    assert [problem.split(": ", 2)[2][:28] for problem in check(people(), lost, MADE_BY_USERS).problems] == ["last edit #0 of name on keap"]


def test_a_keap_contact_in_both_contact_flows_or_two_linked_keap_contacts_with_one_email_are_reported() -> None:
    world = replace(people(), links=[*people().links, LinkRow("contacts", "6", "9", True, None)])
    world.customers["6"] = {"id": 6, "name": "Ann Lee", "type": "person", "email": "ann@acme.example"}
    assert check(world, [], MADE_BY_USERS).problems == ["keap contacts 9 is linked in company_contacts and contacts"]

    world = people()
    world.keap["contacts"]["3"]["email_addresses"] = [{"email": "ANN@acme.example", "field": "EMAIL1"}]
    world.customers["2"]["email"] = "bo@example.com"
    assert check(world, [], MADE_BY_USERS).problems == [
        "contacts: pair invoiced 2 / keap 3: email differs: invoiced 'bo@example.com', keap 'ANN@acme.example'; edits: none",
        "contacts/company_contacts: keap contacts 3, 9 are linked and share the email 'ann@acme.example', held by 1 of their "
        "Invoiced twins (a duplicate)"]
    world.customers["2"]["email"] = "ANN@acme.example"  # Invoiced holds the same email twice: not the sync's duplicate
    assert check(world, [], MADE_BY_USERS).problems == []


def test_a_keap_person_made_by_the_sync_in_no_link_of_either_contact_flow_is_a_duplicate() -> None:
    world = people()
    world.keap["contacts"]["4"] = {"id": "4", "given_name": "Ann", "family_name": "Lee", "company": {"id": "7"}}
    assert check(world, [], MADE_BY_USERS).problems == [
        "contacts/company_contacts: keap 4 (('Ann', 'Lee')) was made by the sync but is in no link (a duplicate)"]
    world.links.append(LinkRow("company_contacts", "1/6", "4", False, "deleted or merged in Invoiced"))
    assert check(world, [], MADE_BY_USERS).problems == []


def test_a_person_moved_to_another_keap_company_needs_a_keap_users_edit_and_a_lossy_note() -> None:
    move = Edit(0, "keap", "company_contacts", "9", "company", "8", T0)
    assert check(moved_in_keap(people()), [], MADE_BY_USERS).problems == [
        "company_contacts: pair invoiced 1/5 / keap 9: company differs: invoiced '7', keap '8', and no edit of a keap user "
        "left it so; edits: none"]
    assert check(moved_in_keap(people()), [move], MADE_BY_USERS).problems == [
        "company_contacts: pair invoiced 1/5 / keap 9: company differs: invoiced '7', keap '8' (edit #0 of a keap user), and no "
        "lossy carry on the pair notes that invoiced keeps its own"]
    noted = replace(moved_in_keap(people()), lossy={LossyRow("company_contacts", "1/5", "9", "invoiced", "company")})
    assert check(noted, [move], MADE_BY_USERS).problems == []
    detached = replace(moved_in_keap(people(), None), lossy=noted.lossy)
    assert check(detached, [replace(move, value=None)], MADE_BY_USERS).problems == []


def test_a_keap_move_is_superseded_by_the_customer_linked_to_another_keap_company_after_it() -> None:
    move = Edit(0, "keap", "company_contacts", "9", "company", "8", T0)
    assert check(people(), [move], MADE_BY_USERS).problems == [
        "company_contacts: pair invoiced 1/5 / keap 9: last edit #0 of company on keap ('8') was lost: keap now has '7', and "
        "no conflict went to the other side; edits: #0 keap '8'"]
    relinked = people()
    relinked.links[0] = replace(relinked.links[0], created_at=T0 + timedelta(seconds=5))
    assert check(relinked, [move], MADE_BY_USERS).problems == []


def test_people_of_a_customer_that_is_no_linked_company_are_out_of_scope_unless_its_keap_company_was_deleted() -> None:
    world = people()
    world.customers["1"]["type"] = "person"
    world.links[0] = replace(world.links[0], active=False, reason="type changed: customer 1 moved to contacts")
    world.links.append(LinkRow("contacts", "1", "4", True, None))
    world.keap["contacts"]["4"] = {"id": "4", "given_name": "Acme"}
    assert check(world, [], MADE_BY_USERS).problems == [
        "company_contacts: pair invoiced 1/5 / keap 9: active link, but its customer 1 is no linked company (a person now, "
        "or unlinked)"]
    world = people()
    world.links[0] = replace(world.links[0], active=False, reason="not found in keap (reconcile)")
    del world.keap["companies"]["7"]
    assert check(world, [], MADE_BY_USERS).problems == []  # no event named the customer: its people stay linked until one does
    del world.contacts["1/5"]
    assert check(world, [], MADE_BY_USERS).problems == ["company_contacts: pair invoiced 1/5 / keap 9: active link to a record gone from invoiced"]


def test_an_unlinked_person_of_a_linked_company_is_reported_unless_in_review_and_an_open_intent_only_then() -> None:
    world = replace(people(), links=[link for link in people().links if link.flow != "company_contacts"], intents=1,
                    intent_sources={("company_contacts", "invoiced", "1/5")})
    assert check(world, [], MADE_BY_USERS).problems == [
        "1 create intents still open",
        "contacts/company_contacts: keap 9 (('Ann', 'Lee')) was made by the sync but is in no link (a duplicate)",
        "company_contacts: invoiced 1/5 ('Ann Lee') has no link and no failure, review item or deleted twin explains it"]
    waiting = replace(world, review={("company_contacts", "1/5")})
    assert check(waiting, [], {**MADE_BY_USERS, "contacts": {"9"}}).problems == []
    stale = replace(people(), review={("company_contacts", "1/5")})  # linked since, yet still asking a person to decide
    assert check(stale, [], MADE_BY_USERS).problems == [
        "company_contacts: invoiced 1/5 is linked (keap 9) but still waits in the review list"]


def test_edits_a_former_invoiced_twin_had_carried_onto_the_keap_record_count_for_the_pair_that_took_it() -> None:
    """Person customer 2, linked to Keap contact 3, is deleted; 3 is freed for the company's person 1/6 with its email.
    Its Keap edit #0 was superseded by the customer's edit #1, which a pass carried onto contact 3 before the delete."""
    world = people()
    world.contacts["1/6"] = {"id": "1/6", "customer": 1, "name": "Bo Rae", "email": "bo@acme.example"}
    world.keap["contacts"]["3"].update(given_name="Bo", family_name="Rae", company={"id": "7"},
                                       email_addresses=[{"email": "bo@acme.example", "field": "EMAIL1"}])
    del world.customers["2"]
    closed = LinkRow("contacts", "2", "3", False, "deleted or merged in Invoiced", closed_at=T0 + timedelta(seconds=5))
    linked = replace(world, links=[*world.links[:2], closed, LinkRow("company_contacts", "1/6", "3", True, None)])
    edits = [Edit(0, "keap", "contacts", "3", "name", "Bob Ray", T0), Edit(1, "invoiced", "contacts", "2", "name", "Bo Rae", T0 + timedelta(seconds=1))]
    carried = WriteRow("contacts", "keap", "3", frozenset({"given_name", "family_name"}), T0 + timedelta(seconds=2), T0 + timedelta(seconds=3))

    assert check(replace(linked, writes=[carried]), edits, MADE_BY_USERS).problems == []
    lost = check(linked, edits, MADE_BY_USERS).problems  # no pass carried it: the Keap edit was lost
    assert len(lost) == 1 and "last edit #0 of name on keap ('Bob Ray') was lost" in lost[0], lost

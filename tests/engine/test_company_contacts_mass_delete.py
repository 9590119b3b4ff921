"""The people (`company_contacts`) of company customers deleted in a mass delete: their links close by the deletes
policy whatever closes their customers' links (a pass the breaker held, then one with `--allow-mass-change`; a pass
over the companies alone), counted by their own flow's breaker, and a reconcile closes those an earlier pass left."""

from __future__ import annotations

from invoiced_keap.engine.options import FlowOptions, SyncOptions
from tests.engine.conftest import World

COMPANIES, DELETED = 30, 12  # 12 of 30 links: over the breaker's default limit (max(10, 10 % of 30))
ALLOWED = SyncOptions(allow_mass_change=True)


def seed_companies_with_a_person_each(world: World) -> list[tuple[int, int]]:
    """`COMPANIES` company customers with one contact each: (customer id, contact id) of each."""
    people = []
    for n in range(COMPANIES):
        customer = world.invoiced.create_customer({"name": f"Company {n}", "type": "company"})
        contact = world.invoiced.create_contact(customer["id"], {"name": f"Person {n}", "email": f"person{n}@example.com"})
        people.append((int(customer["id"]), int(contact["id"])))
    return people


async def linked_world(world: World) -> list[tuple[int, int]]:
    people = seed_companies_with_a_person_each(world)
    assert (await world.sync()).exit_code == 0
    assert len(world.store.active_link_ids("companies")) == len(world.store.active_link_ids("company_contacts")) == COMPANIES
    return people


def person_ids(people: list[tuple[int, int]]) -> set[str]:
    return {f"{customer}/{contact}" for customer, contact in people}


def unlink_reasons(report, flow: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {action.record_id: action.fields["reason"] for action in report.flows[flow].actions if action.verb == "unlink"}


async def test_people_of_companies_deleted_past_the_breaker_close_in_the_pass_that_overrides_it(world: World) -> None:
    people = await linked_world(world)
    gone, kept = people[:DELETED], people[DELETED:]
    for customer, _ in gone:
        world.invoiced.delete_customer(customer)

    held = await world.sync()
    assert held.flows["companies"].held_deletes and f"{DELETED} of {COMPANIES} links" in (held.flows["companies"].held or "")
    assert len(world.store.active_link_ids("company_contacts")) == COMPANIES  # their customers are still linked

    allowed = await world.sync(ALLOWED)

    assert allowed.exit_code == 0, allowed.flows["company_contacts"].actions
    assert set(world.store.active_link_ids("companies")) == {str(customer) for customer, _ in kept}
    assert set(world.store.active_link_ids("company_contacts")) == person_ids(kept)
    assert unlink_reasons(allowed, "company_contacts") == {
        f"{customer}/{contact}": f"its customer {customer} has no Keap company any more" for customer, contact in gone}
    assert len(world.keap_records("contacts")) == COMPANIES == len(world.keap_records("companies"))  # unlinked only
    after = await world.sync()
    assert after.exit_code == 0 and not unlink_reasons(after, "company_contacts")


async def test_people_a_pass_over_the_companies_alone_left_linked_are_held_by_their_breaker_then_go_by_its_policy(
    world: World,
) -> None:
    people = await linked_world(world)
    gone, kept = people[:DELETED], people[DELETED:]
    for customer, _ in gone:
        world.invoiced.delete_customer(customer)
    assert (await world.sync(ALLOWED, flows=["companies"])).exit_code == 0
    assert len(world.store.active_link_ids("company_contacts")) == COMPANIES
    twins = world.store.active_link_ids("company_contacts")

    held = await world.sync()  # counted as the single delete's people are: unlinks of company_contacts

    assert held.flows["company_contacts"].held_deletes
    assert f"company_contacts: circuit breaker: {DELETED} of {COMPANIES} links" in (held.flows["company_contacts"].held or "")
    assert len(world.store.active_link_ids("company_contacts")) == COMPANIES

    propagate = SyncOptions(allow_mass_change=True, per_flow={"company_contacts": FlowOptions(deletes="propagate")})
    allowed = await world.sync(propagate)

    assert allowed.exit_code == 0
    assert set(world.store.active_link_ids("company_contacts")) == person_ids(kept)
    assert allowed.flows["company_contacts"].counts["deleted.keap"] == DELETED
    assert {str(contact["id"]) for contact in world.keap_records("contacts")} == {twins[person] for person in person_ids(kept)}
    assert len(world.keap_records("companies")) == COMPANIES  # companies' deletes policy is "unlink"


async def test_a_reconcile_closes_the_people_links_whose_customer_or_person_is_gone(world: World) -> None:
    people = await linked_world(world)
    gone, left = people[:DELETED], people[DELETED:]
    for customer, _ in gone:
        world.invoiced.delete_customer(customer)
    assert (await world.sync(ALLOWED, flows=["companies"])).exit_code == 0  # the people's links stay for now
    (customer, contact), kept = left[0], left[1:]
    world.invoiced.delete_contact(customer, contact)  # the reconcile reads no event: found by its customer's listing

    held = await world.syncer_call("reconcile", flows=["company_contacts"])
    assert held.flows["company_contacts"].held_deletes and len(world.store.active_link_ids("company_contacts")) == COMPANIES

    reconciled = await world.syncer_call("reconcile", ALLOWED, flows=["company_contacts"])

    assert reconciled.exit_code == 0
    assert set(world.store.active_link_ids("company_contacts")) == person_ids(kept)
    assert unlink_reasons(reconciled, "company_contacts") == {
        **{f"{one}/{own}": f"its customer {one} has no Keap company any more" for one, own in gone},
        f"{customer}/{contact}": "not found in invoiced (reconcile)"}
    assert len(world.keap_records("contacts")) == COMPANIES  # unlinked only
    assert len(world.store.active_link_ids("companies")) == COMPANIES - DELETED


async def test_a_reconcile_finds_the_people_of_customers_deleted_while_the_breaker_holds_them(world: World) -> None:
    people = await linked_world(world)
    gone, kept = people[:DELETED], people[DELETED:]
    for customer, _ in gone:
        world.invoiced.delete_customer(customer)
    assert (await world.sync()).flows["companies"].held_deletes  # the customers stay linked

    reconciled = await world.syncer_call("reconcile", ALLOWED, flows=["company_contacts"])

    assert reconciled.exit_code == 0
    assert set(world.store.active_link_ids("company_contacts")) == person_ids(kept)
    assert set(unlink_reasons(reconciled, "company_contacts")) == person_ids(gone)
    assert len(world.store.active_link_ids("companies")) == COMPANIES  # the companies' own breaker still holds them

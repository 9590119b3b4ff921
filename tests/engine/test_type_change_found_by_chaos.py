"""What the chaos run (with the people of company customers added) found in the customer flows' type changes."""

from __future__ import annotations

from tests.engine.conftest import World


async def test_a_rename_in_invoiced_with_a_change_to_a_person_is_not_overwritten_by_the_old_keap_companys_name(
        world: World) -> None:
    # Found by chaos (INVOICED_KEAP_CHAOS_SEED=47 INVOICED_KEAP_CHAOS_EDITS=300: customer 9, "Given1175 Family1175"
    # became "Company 1170" with no conflict). A Keap user renamed a company; then its Invoiced customer became a
    # person and was renamed. The next pass reads the customer for the contacts flow (its owner now), but the companies
    # flow, planned first, syncs the pair of the Keap edit against its stored Invoiced record (the old name): the Keap
    # name looks like the only change and is written over the newer Invoiced name; the contacts flow then closes the
    # link and makes the Keap contact. The customer's own edit is lost, and no conflict says so.
    acme = world.invoiced.create_customer({"name": "Acme", "type": "company"})
    await world.sync()
    world.keap_edit("companies", world.link_of("companies", acme["id"]), {"company_name": "Acme Holdings"})
    world.clock.advance(5)
    world.invoiced.update_customer(acme["id"], {"type": "person", "name": "Ann Lee", "email": "ann@example.com"})

    await world.sync()
    await world.sync()

    assert world.invoiced.customer(acme["id"])["name"] == "Ann Lee"
    keap_id = world.link_of("contacts", acme["id"])
    assert (world.keap_record("contacts", keap_id)["given_name"], world.keap_record("contacts", keap_id)["family_name"]) == ("Ann", "Lee")

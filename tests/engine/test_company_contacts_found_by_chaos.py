"""What the chaos run found in flow `company_contacts`, each on the smallest world that shows it."""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.state import Store
from tests.engine.conftest import World
from tests.support import API_KEY, ManualClock


async def test_a_person_moved_while_a_pass_lists_the_new_customers_people_keeps_one_keap_contact(
        world_clock: ManualClock, store: Store) -> None:
    # Found by chaos (INVOICED_KEAP_CHAOS_SEED=22 INVOICED_KEAP_CHAOS_EDITS=300: contact 7/7 moved to 11/20 got Keap
    # contact 29 beside 14). A pass reads the account's events first, then lists the people of the customers they
    # name. A user moved Ann from Acme to Globex (delete + create, same email) in between: the listing of Globex
    # (named by an earlier contact event of its own) has the new Ann, but the pass never saw the delete, so Ann's
    # Keap contact, still linked to the old Ann, was no candidate, and a second Keap contact with her email was made.
    # The next pass closes the old link for the delete; the first Keap contact stays behind, unlinked: a duplicate.
    invoiced = InvoicedEmulator(api_key=API_KEY, random_seed=1, clock=world_clock)
    keap = KeapEmulator(api_key=API_KEY, random_seed=1, clock=world_clock)
    invoiced.faults.rate_limit = keap.faults.rate_limit = None
    acme = invoiced.create_customer({"name": "Acme", "type": "company"})
    globex = invoiced.create_customer({"name": "Globex", "type": "company"})
    ann = invoiced.create_contact(acme["id"], {"name": "Ann Lee", "email": "ann@example.com"})
    invoiced_app = invoiced.asgi()
    move_due = False

    async def user_moves_ann_before_globex_is_listed(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal move_due
        if move_due and scope["type"] == "http" and scope["path"] == f"/customers/{globex['id']}/contacts":
            move_due = False
            invoiced.delete_contact(acme["id"], ann["id"])
            invoiced.create_contact(globex["id"], {"name": "Ann Lee", "email": "ann@example.com"})
        await invoiced_app(scope, receive, send)

    with BackgroundServer(user_moves_ann_before_globex_is_listed) as invoiced_server, BackgroundServer(keap.asgi()) as keap_server:
        world = World(world_clock, invoiced, keap, invoiced_server, keap_server, store)
        await world.sync()
        keap_id = world.link_of("company_contacts", f"{acme['id']}/{ann['id']}")
        invoiced.create_contact(globex["id"], {"name": "Bob Stone", "email": "bob@example.com"})  # Globex is listed next
        move_due = True
        await world.sync()
        await world.sync()

    assert not move_due, "the pass did not list Globex's people"
    [moved] = [contact for contact in invoiced.customer_contacts(globex["id"]) if contact["name"] == "Ann Lee"]
    assert [str(c["id"]) for c in world.keap_records("contacts") if c["email_addresses"][0]["email"] == "ann@example.com"] == [keap_id]
    assert world.link_of("company_contacts", f"{globex['id']}/{moved['id']}") == keap_id
    assert world.store.review_items("company_contacts") == []

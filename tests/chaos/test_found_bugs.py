"""Regression tests for the bugs the chaos run found, each on the smallest world that shows it."""

from __future__ import annotations

import time

from starlette.types import Receive, Scope, Send

from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.keap.resources import RESOURCES
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.state import Store
from tests.engine.conftest import World
from tests.support import API_KEY, ManualClock


async def test_a_merge_on_first_link_that_overwrites_a_keap_value_is_recorded_as_a_conflict(world: World) -> None:
    # Found by chaos: a Keap user renamed a contact before the first link; the merge (Invoiced wins) wrote the
    # Invoiced name over it and left no trace, so the edit was silently lost.
    world.invoiced.seed({"customers": [{"name": "Ann Lee", "type": "person", "email": "ann@example.com"}]})
    world.keap.seed({"contacts": [{"given_name": "Annie", "family_name": "Lee",
                                   "email_addresses": [{"email": "ann@example.com", "field": "EMAIL1"}]}]})

    report = await world.sync()

    keap_id = world.link_of("contacts", 1)
    assert world.keap_record("contacts", keap_id)["given_name"] == "Ann"
    conflicts = world.store.conflicts()
    assert [(c.flow, c.field_group, c.invoiced_value, c.keap_value, c.winner) for c in conflicts] == [
        ("contacts", "name", "Ann Lee", "Annie Lee", "invoiced")]
    assert report.flows["contacts"].counts["conflicts"] == 1


async def test_an_edit_made_between_our_read_and_our_write_is_synced_on_the_next_pass(
        world_clock: ManualClock, store: Store) -> None:
    # Found by chaos: a Keap user changed a contact's phone while the pass was writing its new name; the write's
    # answer (with the new phone) became the shadow, so the phone looked synced and never reached Invoiced.
    invoiced = InvoicedEmulator(api_key=API_KEY, random_seed=1, clock=world_clock)
    keap = KeapEmulator(api_key=API_KEY, random_seed=1, clock=world_clock)
    invoiced.faults.rate_limit = keap.faults.rate_limit = None
    invoiced.seed({"customers": [{"name": "Ann Lee", "type": "person", "email": "ann@example.com"}]})
    keap_app = keap.asgi()
    user_edit_due = False

    async def user_edits_before_our_write(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal user_edit_due
        if user_edit_due and scope["type"] == "http" and scope["method"] == "PATCH":
            user_edit_due = False
            RESOURCES["contacts"].update(keap.store, "1", {"phone_numbers": [{"number": "+1 555 0199", "field": "PHONE1"}]}, None)
        await keap_app(scope, receive, send)

    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(user_edits_before_our_write) as keap_server:
        world = World(world_clock, invoiced, keap, invoiced_server, keap_server, store)
        await world.sync()
        invoiced.update_customer(1, {"name": "Ann Smith"})
        user_edit_due = True
        await world.sync()
        await world.sync()

    assert world.keap_record("contacts", "1")["family_name"] == "Smith"
    assert invoiced.customer(1)["phone"] == "+1 555 0199"


async def test_a_customer_edited_again_within_the_second_it_was_read_is_read_again(
        invoiced_emulator: InvoicedEmulator, invoiced_server: BackgroundServer) -> None:
    # Found by chaos: Invoiced times have 1 s resolution; the mark remembered the id read at second S, so an edit
    # later in S (often the sync's own write followed by a user's) kept `updated_at` S and was skipped for good.
    time.sleep(1 - time.time() % 1 + 0.02)  # early in a second, so the read and the edit share it
    customer = invoiced_emulator.create_customer({"name": "Acme"})
    async with InvoicedConnector(API_KEY, invoiced_server.url) as connector:
        first = connector.changed_customers(None)
        assert [c["id"] async for c in first] == [customer["id"]]
        invoiced_emulator.update_customer(customer["id"], {"name": "Acme Inc"})
        assert invoiced_emulator.customer(customer["id"])["updated_at"] == customer["updated_at"], "the test ran past the second"
        again = connector.changed_customers(first.watermark)
        assert [c["name"] async for c in again] == ["Acme Inc"]


async def test_reconcile_closes_a_product_link_once_when_both_sides_are_gone(world: World) -> None:
    # Found by chaos: an item archived in Invoiced whose Keap product was deleted too was listed as gone twice,
    # and closing its link a second time crashed every later reconcile ("no active link with id ...").
    world.invoiced.seed({"items": [{"id": "widget", "name": "Widget", "unit_cost": 1, "currency": "usd"}]})
    await world.sync()
    keap_id = world.link_of("products", "widget")
    RESOURCES["products"].delete(world.keap.store, keap_id)
    world.invoiced.archived_item_ids.add("widget")

    report = await world.syncer_call("reconcile")

    assert report.error is None and report.flows["products"].counts["unlinked"] == 1
    assert world.store.active_link_ids("products") == {}

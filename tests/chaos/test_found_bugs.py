"""Regression tests for the bugs the chaos run found, each on the smallest world that shows it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from starlette.types import Message, Receive, Scope, Send

from invoiced_keap.connectors.invoiced import CUSTOMER, InvoicedConnector
from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.keap.resources import RESOURCES
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.state import Store
from tests.engine.conftest import World
from tests.support import API_KEY, ManualClock

ROOT = Path(__file__).resolve().parents[2]


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
        first = connector.changed(CUSTOMER, None)
        assert [c["id"] async for c in first] == [customer["id"]]
        invoiced_emulator.update_customer(customer["id"], {"name": "Acme Inc"})
        assert invoiced_emulator.customer(customer["id"])["updated_at"] == customer["updated_at"], "the test ran past the second"
        again = connector.changed(CUSTOMER, first.watermark)
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


async def test_a_read_that_still_fails_after_its_retries_ends_the_pass_cleanly(world: World) -> None:
    # Found by chaos: a Keap listing answered 429 through all its retries; the error escaped `Syncer.sync()`,
    # printing a traceback and leaving the run row without a result.
    world.invoiced.seed({"customers": [{"name": "Acme", "type": "company"}]})
    world.keap.faults.update({"error_rate": 1.0, "error_status": 429})

    report = await world.sync()

    assert report.exit_code == 1 and "429" in (report.error or "")
    assert [run.result for run in world.store.runs()] == ["error"]
    assert (world.store.watermarks(), world.store.active_link_ids("companies")) == ({}, {}), "half a pass was committed"
    world.keap.faults.update({"error_rate": 0.0})
    assert (await world.sync()).exit_code == 0 and list(world.store.active_link_ids("companies")) == ["1"]


async def test_a_refused_id_stamp_is_retried_until_it_is_made(world: World) -> None:
    # Found by chaos: with 10 metadata keys the stamp was refused and recorded as a failure, but the next pass
    # that synced the pair resolved that failure without stamping (or retrying); `relink` then had nothing to go by.
    full = world.invoiced.create_customer({"name": "Full Metadata", "metadata": {f"key{n}": f"value {n}" for n in range(10)}})
    await world.sync()
    await world.syncer_call("retry")
    assert [(f.operation, f.attempts) for f in world.store.failures("companies")] == [("stamp", 2)]

    metadata = {key: value for key, value in full["metadata"].items() if key != "key0"}
    world.invoiced.update_customer(full["id"], {"metadata": metadata})
    await world.sync()

    keap_id = world.link_of("companies", full["id"])
    assert world.invoiced.customer(full["id"])["metadata"]["keap_company_id"] == keap_id
    assert world.store.failures("companies") == []


async def test_a_failure_of_a_customer_that_moved_to_the_other_flow_is_resolved(world: World) -> None:
    # Found by chaos: a contact Keap refused (no email, phone or address) became a company; its contacts failure
    # was skipped on every retry, never resolved, and kept every later pass at exit code 2.
    person = world.invoiced.create_customer({"name": "Bob Nobody", "type": "person"})
    await world.sync()
    assert [f.record_id for f in world.store.failures("contacts")] == [str(person["id"])]

    world.invoiced.update_customer(person["id"], {"type": "company"})
    report = await world.syncer_call("retry")

    assert world.store.failures() == [] and report.exit_code == 0
    assert str(person["id"]) in world.store.active_link_ids("companies")


async def test_an_edit_of_the_old_twin_read_in_the_pass_that_moves_the_customer_reaches_invoiced(world: World) -> None:
    # Found by chaos: a Keap user changed a contact's email, then its Invoiced customer became a company; the
    # companies part of the next pass closed the contacts link before the contacts part synced the pair, so the
    # edit, made while the two were linked, was lost.
    person = world.invoiced.create_customer({"name": "Ann Lee", "type": "person", "email": "ann@example.com"})
    await world.sync()
    contact_id = world.link_of("contacts", person["id"])
    world.keap_edit("contacts", contact_id, {"email_addresses": [{"email": "ann.lee@example.com", "field": "EMAIL1"}]})
    world.invoiced.update_customer(person["id"], {"type": "company"})

    await world.sync()
    await world.sync()

    assert world.invoiced.customer(person["id"])["email"] == "ann.lee@example.com"
    company = world.keap_record("companies", world.link_of("companies", person["id"]))
    assert company["email_address"]["email"] == "ann.lee@example.com"
    assert world.keap_record("contacts", contact_id)["email_addresses"][0]["email"] == "ann.lee@example.com"


def test_a_conflict_whose_write_went_through_is_recorded_though_the_pass_is_killed_before_it_commits(
        world_clock: ManualClock, tmp_path: Path) -> None:
    # Found by chaos: a pass settled a conflict (newest: Invoiced), wrote the Invoiced name over the Keap user's
    # and was SIGKILLed before its commit; the next pass found both sides equal and the conflict had no record.
    invoiced = InvoicedEmulator(api_key=API_KEY, random_seed=1, clock=world_clock)
    keap = KeapEmulator(api_key=API_KEY, random_seed=1, clock=world_clock)
    invoiced.faults.rate_limit = keap.faults.rate_limit = None
    invoiced.seed({"customers": [{"name": "Acme", "type": "company"}]})
    keap_app = keap.asgi()
    passes: list[subprocess.Popen[bytes]] = []

    async def pass_killed_as_keap_answers_a_write(scope: Scope, receive: Receive, send: Send) -> None:
        async def kill_first(message: Message) -> None:
            if message["type"] == "http.response.start" and scope["method"] == "PATCH":
                passes[-1].send_signal(signal.SIGKILL)
                passes[-1].wait()
            await send(message)

        await keap_app(scope, receive, kill_first if scope["type"] == "http" else send)

    database_url = f"sqlite:///{tmp_path}/state.db"
    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(pass_killed_as_keap_answers_a_write) as keap_server:
        def run_pass() -> int:
            passes.append(subprocess.Popen([sys.executable, "-m", "tests.engine.sync_driver", invoiced_server.url,
                                            f"{keap_server.url}/crm/rest", database_url], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}))
            return passes[-1].wait(timeout=60)

        assert run_pass() == 0
        world_clock.advance(10)
        RESOURCES["companies"].update(keap.store, "1", {"company_name": "Acme Keap"}, None)
        world_clock.advance(10)
        invoiced.update_customer(1, {"name": "Acme Invoiced"})
        assert run_pass() == -signal.SIGKILL

    assert RESOURCES["companies"].get(keap.store, "1")["company_name"] == "Acme Invoiced"
    with Store(database_url) as store:
        assert [(c.field_group, c.invoiced_value, c.keap_value, c.winner) for c in store.conflicts()] == [
            ("name", "Acme Invoiced", "Acme Keap", "invoiced")]


async def test_the_twin_of_a_create_cut_short_is_kept_in_a_closed_link_when_the_customer_moved_flows(world: World) -> None:
    # Found by chaos: a pass was killed after Keap made a company for a customer and before the link was stored;
    # the customer then became a person, the next pass closed the intent as owed to nobody, and the Keap company
    # was left in no link: a duplicate made by the sync.
    customer = world.invoiced.create_customer({"name": "Acme Co", "type": "company", "email": "acme@example.com"})
    world.store.open_intents("companies", "invoiced", [(str(customer["id"]), "name:acme co")])
    made = RESOURCES["companies"].create(world.keap.store, {"company_name": "Acme Co",  # as our cut-short create wrote it
                                                            "email_address": {"email": "acme@example.com", "field": "EMAIL1"}})
    world.invoiced.update_customer(customer["id"], {"type": "person"})

    report = await world.sync()

    assert report.exit_code == 0 and world.store.intents() == []
    assert [(link.keap_id, link.status, link.closed_reason) for link in world.store.links_of_record(str(customer["id"]))
            if link.flow == "companies"] == [(made["id"], "closed", f"type changed: customer {customer['id']} moved to contacts")]
    assert str(customer["id"]) in world.store.active_link_ids("contacts")


async def test_an_invoiced_edit_newer_than_the_old_twins_wins_in_the_pass_that_moves_the_customer(world: World) -> None:
    # Found by chaos: the old twin's edit was carried to Invoiced as if Invoiced had not changed, overwriting an
    # Invoiced address edit made after it, with no conflict recorded.
    person = world.invoiced.create_customer({"name": "Ann Lee", "type": "person", "email": "ann@example.com"})
    await world.sync()
    contact_id = world.link_of("contacts", person["id"])
    world.keap_edit("contacts", contact_id, {"email_addresses": [{"email": "ann.keap@example.com", "field": "EMAIL1"}]})
    world.clock.advance(5)
    world.invoiced.update_customer(person["id"], {"email": "ann.invoiced@example.com", "type": "company"})

    await world.sync()
    await world.sync()

    assert world.invoiced.customer(person["id"])["email"] == "ann.invoiced@example.com"
    assert [(c.flow, c.field_group, c.winner) for c in world.store.conflicts()] == [("contacts", "email", "invoiced")]
    assert world.keap_record("contacts", contact_id)["email_addresses"][0]["email"] == "ann.keap@example.com", "the old twin was written"


async def test_a_company_our_cut_short_create_made_is_adopted_by_its_email_after_a_keap_user_renamed_it(world: World) -> None:
    # Found by chaos: a pass was killed after Keap made a company and before the link was stored; a Keap user
    # renamed it before the next pass, which found no company of that name and made a second one.
    customer = world.invoiced.create_customer({"name": "Acme Co", "type": "company", "email": "acme@example.com"})
    world.store.open_intents("companies", "invoiced", [(str(customer["id"]), "company_name:acme co")])
    made = RESOURCES["companies"].create(world.keap.store, {"company_name": "Acme Co",  # as our cut-short create wrote it
                                                            "email_address": {"email": "acme@example.com", "field": "EMAIL1"}})
    world.keap_edit("companies", made["id"], {"company_name": "Acme Renamed"})

    await world.sync()

    assert [company["id"] for company in world.keap_records("companies")] == [made["id"]]
    assert world.link_of("companies", customer["id"]) == made["id"] and world.store.intents() == []

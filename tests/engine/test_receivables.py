"""What a customer owes, in Keap (issue 15): figures in custom fields and a past-due tag on the linked company or
contact, driven by Invoiced's events, over HTTP against both emulators, at production defaults.

Figures are checked against what the official `invoiced` client's `customer.balance()` reports.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import invoiced
import pytest
import sqlalchemy
from alembic import command

from invoiced_keap.emulators.keap.custom_fields import CustomFieldModels
from invoiced_keap.emulators.keap.errors import KeapError
from invoiced_keap.engine.options import FlowOptions, SyncOptions
from invoiced_keap.engine.receivables import ReceivablesOptions
from invoiced_keap.state import Store
from invoiced_keap.state.database import alembic_config
from tests.engine.conftest import World
from tests.support import API_KEY, ManualClock

DAY = 86_400
TAG = "Invoiced: past due"
LABELS = ["Invoiced balance", "Invoiced past due", "Invoiced days past due", "Invoiced open invoices",
          "Invoiced last payment"]


@pytest.fixture
def store(state_url: str, world_clock: ManualClock) -> Iterator[Store]:
    """The state on the world's clock, so that a day can pass (the daily recompute)."""
    with Store(state_url, clock=lambda: datetime.fromtimestamp(world_clock(), UTC)) as store:
        store.migrate()
        yield store


def official(world: World) -> invoiced.Client:
    client = invoiced.Client(API_KEY)
    client.api_url = world.invoiced_server.url  # 3.0.0 takes no base URL argument; it reads this attribute
    return client


def today(world: World) -> str:
    return datetime.fromtimestamp(world.clock(), UTC).date().isoformat()


def tag_id(world: World) -> str:
    tags = [tag for tag in world.keap.store.records("tags") if tag["name"] == TAG]
    assert len(tags) == 1
    return str(tags[0]["id"])


async def linked_pair(world: World) -> tuple[int, int]:
    """An organisation and a person, synced (linked to a Keap company and contact); their Invoiced ids."""
    acme = world.invoiced.create_customer({"name": "Acme Ltd", "type": "company"})
    jane = world.invoiced.create_customer({"name": "Jane Cooper", "type": "person", "email": "jane@example.com"})
    assert (await world.sync()).exit_code == 0
    return acme["id"], jane["id"]


def past_due_invoice(world: World, customer: int, amount: float, *, days_late: int = 10, **extra: Any) -> dict[str, Any]:
    now = int(world.clock())
    return world.invoiced.create_invoice({
        "customer": customer, "date": now - (days_late + 30) * DAY, "due_date": now - days_late * DAY,
        "items": [{"name": "Consulting", "quantity": 1, "unit_cost": amount}], **extra})


async def test_a_past_due_invoice_puts_the_figures_and_the_tag_on_the_linked_company_and_contact(world: World) -> None:
    acme, jane = await linked_pair(world)
    past_due_invoice(world, acme, 120.5, days_late=10)
    world.invoiced.create_invoice({"customer": acme, "payment_terms": "NET 30",
                                   "items": [{"name": "Support", "quantity": 2, "unit_cost": 40}]})  # open, not yet due
    past_due_invoice(world, jane, 99.99, days_late=3)

    report = await world.sync()

    assert report.exit_code == 0
    company, contact = world.link_of("companies", acme), world.link_of("contacts", jane)
    assert world.keap.custom_values("companies", company) == {
        "Invoiced balance": 200.5, "Invoiced past due": 120.5, "Invoiced days past due": 10, "Invoiced open invoices": 2}
    assert world.keap.custom_values("contacts", contact) == {
        "Invoiced balance": 99.99, "Invoiced past due": 99.99, "Invoiced days past due": 3, "Invoiced open invoices": 1}
    assert world.keap.tag_ids("companies", company) == [tag_id(world)]
    assert world.keap.tag_ids("contacts", contact) == [tag_id(world)]
    client = official(world)
    for customer, values in ((acme, world.keap.custom_values("companies", company)),
                             (jane, world.keap.custom_values("contacts", contact))):
        balance = client.Customer.retrieve(customer).balance()
        assert (balance["currency"], balance["total_outstanding"], balance["past_due"]) == (
            "usd", values["Invoiced balance"], values["Invoiced past due"] > 0)
    assert report.flows["receivables"].counts["updated.keap"] == 2
    assert report.flows["receivables"].counts["tagged"] == 2


async def test_a_payment_that_settles_it_removes_the_tag_and_updates_the_figures(world: World) -> None:
    acme, jane = await linked_pair(world)
    invoice = past_due_invoice(world, jane, 250)
    await world.sync()
    contact = world.link_of("contacts", jane)
    assert world.keap.tag_ids("contacts", contact) == [tag_id(world)]

    world.invoiced.create_payment({"customer": jane, "amount": 250,
                                   "applied_to": [{"type": "invoice", "invoice": invoice["id"], "amount": 250}]})
    report = await world.sync()

    assert report.exit_code == 0
    assert world.keap.tag_ids("contacts", contact) == []
    assert world.keap.custom_values("contacts", contact) == {
        "Invoiced balance": 0, "Invoiced past due": 0, "Invoiced days past due": 0, "Invoiced open invoices": 0,
        "Invoiced last payment": today(world)}
    assert official(world).Customer.retrieve(jane).balance()["total_outstanding"] == 0
    assert report.flows["receivables"].counts["untagged"] == 1


async def test_a_partial_payment_keeps_the_tag_and_lowers_the_figures(world: World) -> None:
    acme, _ = await linked_pair(world)
    invoice = past_due_invoice(world, acme, 300)
    await world.sync()
    world.invoiced.create_payment({"customer": acme, "amount": 100,
                                   "applied_to": [{"type": "invoice", "invoice": invoice["id"], "amount": 100}]})
    await world.sync()

    company = world.link_of("companies", acme)
    values = world.keap.custom_values("companies", company)
    assert (values["Invoiced balance"], values["Invoiced past due"], values["Invoiced last payment"]) == (200, 200, today(world))
    assert official(world).Customer.retrieve(acme).balance()["total_outstanding"] == 200
    assert world.keap.tag_ids("companies", company) == [tag_id(world)]


def step_calls(world: World) -> dict[str, int]:
    """The calls of the step's own endpoints (the figures' reads, custom fields, tags) since `reset_stats`."""
    mine = ("/invoices", "/payments", "/model", "/tags", "/balance")
    requests = {**world.invoiced.requests, **world.keap.requests}
    return {key: count for key, count in requests.items() if any(part in key for part in mine)}


async def test_nothing_is_written_when_nothing_changed(world: World) -> None:
    acme, jane = await linked_pair(world)
    invoice = past_due_invoice(world, acme, 80)
    await world.sync()
    world.reset_stats()
    after_writes = await world.sync()  # the flows read the records the step tagged and wrote: shadows, no echo
    assert world.writes() == {}
    assert step_calls(world) == {}
    assert "receivables" not in after_writes.flows

    world.invoiced.update_invoice(invoice["id"], {"notes": "Called on Monday"})  # an event, same figures
    world.reset_stats()
    report = await world.sync()

    assert world.writes() == {}
    assert step_calls(world) == {"GET /invoices": 1}  # the customer's open invoices, read again: nothing changed
    assert report.flows["receivables"].counts == {"read.invoiced": 1}


async def test_a_customer_without_a_keap_twin_gets_its_figures_when_the_link_appears(world: World) -> None:
    bob = world.invoiced.create_customer({"name": "Bob Nobody", "type": "person"})  # Keap refuses a bare contact
    past_due_invoice(world, bob["id"], 45, days_late=5)
    first = await world.sync()
    assert first.exit_code == 2 and world.store.active_link_ids("contacts") == {}

    world.invoiced.update_customer(bob["id"], {"email": "bob@example.com"})
    await world.sync()

    contact = world.link_of("contacts", bob["id"])
    assert world.keap.custom_values("contacts", contact) == {
        "Invoiced balance": 45, "Invoiced past due": 45, "Invoiced days past due": 5, "Invoiced open invoices": 1}
    assert world.keap.tag_ids("contacts", contact) == [tag_id(world)]


async def test_the_custom_fields_and_the_tag_are_created_once(world: World) -> None:
    acme, jane = await linked_pair(world)
    past_due_invoice(world, acme, 10)
    await world.sync()
    past_due_invoice(world, jane, 20)
    other = world.invoiced.create_customer({"name": "Globex", "type": "company"})
    past_due_invoice(world, other["id"], 30)
    await world.sync()
    await world.sync()

    for collection in ("companies", "contacts"):
        fields = world.keap.custom_fields(collection)
        assert sorted(field["label"] for field in fields) == sorted(LABELS)
        assert {field["label"]: field["field_type"] for field in fields} == {
            "Invoiced balance": "CURRENCY", "Invoiced past due": "CURRENCY", "Invoiced days past due": "WHOLE_NUMBER",
            "Invoiced open invoices": "WHOLE_NUMBER", "Invoiced last payment": "DATE"}
    tag_id(world)  # exactly one tag of that name


async def test_fields_and_a_tag_that_exist_already_are_used_not_made_again(world: World) -> None:
    world.keap.create_custom_field("companies", "invoiced BALANCE", "CURRENCY")
    existing = world.keap.create_tag(TAG)
    acme, _ = await linked_pair(world)
    past_due_invoice(world, acme, 10)
    await world.sync()

    company = world.link_of("companies", acme)
    assert world.keap.custom_values("companies", company)["invoiced BALANCE"] == 10
    assert world.keap.tag_ids("companies", company) == [str(existing["id"])]
    assert len(world.keap.custom_fields("companies")) == len(LABELS)


async def test_other_custom_values_of_the_record_are_kept(world: World) -> None:
    acme, jane = await linked_pair(world)
    company, contact = world.link_of("companies", acme), world.link_of("contacts", jane)
    assert company == contact  # ids of two objects: each record keeps its own values
    manager = world.keap.create_custom_field("companies", "Account manager", "TEXT")
    nickname = world.keap.create_custom_field("contacts", "Nickname", "TEXT")
    world.keap_edit("companies", company, {"custom_fields": [{"id": manager["id"], "content": "Dana"}]})
    world.keap_edit("contacts", contact, {"custom_fields": [{"id": nickname["id"], "content": "JC"}]})
    past_due_invoice(world, acme, 10)
    past_due_invoice(world, jane, 20)
    report = await world.sync()

    assert report.exit_code == 0
    assert world.keap.custom_values("companies", company) == {
        "Account manager": "Dana", "Invoiced balance": 10, "Invoiced past due": 10, "Invoiced days past due": 10,
        "Invoiced open invoices": 1}
    assert world.keap.custom_values("contacts", contact) == {
        "Nickname": "JC", "Invoiced balance": 20, "Invoiced past due": 20, "Invoiced days past due": 10,
        "Invoiced open invoices": 1}


async def test_an_invoice_in_another_currency_goes_to_fields_naming_it(world: World) -> None:
    acme, _ = await linked_pair(world)
    past_due_invoice(world, acme, 70, currency="eur")
    past_due_invoice(world, acme, 30)
    await world.sync()

    company = world.link_of("companies", acme)
    assert world.keap.custom_values("companies", company) == {
        "Invoiced balance": 30, "Invoiced balance (EUR)": 70, "Invoiced past due": 30, "Invoiced past due (EUR)": 70,
        "Invoiced days past due": 10, "Invoiced open invoices": 2}
    types = {field["label"]: field["field_type"] for field in world.keap.custom_fields("companies")}
    assert (types["Invoiced balance (EUR)"], types["Invoiced balance"]) == ("DECIMAL_NUMBER", "CURRENCY")
    client = official(world)
    assert client.Customer.retrieve(acme).balance()["total_outstanding"] == 30  # the customer's currency (USD)
    in_euros = client.request("GET", f"/customers/{acme}/balance", {"currency": "eur"})["body"]  # balance(), in EUR
    assert in_euros["total_outstanding"] == 70


async def test_aging_is_recomputed_daily_for_customers_with_open_invoices_only(world: World) -> None:
    acme, jane = await linked_pair(world)
    past_due_invoice(world, acme, 60, days_late=2)
    paid = past_due_invoice(world, jane, 15)
    world.invoiced.create_payment({"customer": jane, "amount": 15,
                                   "applied_to": [{"type": "invoice", "invoice": paid["id"], "amount": 15}]})
    await world.sync()
    company = world.link_of("companies", acme)
    assert world.keap.custom_values("companies", company)["Invoiced days past due"] == 2

    world.clock.advance(DAY)
    world.reset_stats()
    report = await world.sync()

    assert world.keap.custom_values("companies", company)["Invoiced days past due"] == 3
    assert report.flows["receivables"].counts["read.invoiced"] == 1  # Acme only: Jane has nothing open
    assert world.writes() == {"PATCH /crm/rest/v2/companies/{company_id}": 1}
    assert step_calls(world) == {"GET /invoices": 1}  # Acme's open invoices (its last payment is known)


def invoice_dated_ahead(world: World, customer: int, amount: float, *, days: int) -> dict[str, Any]:
    now = int(world.clock())
    return world.invoiced.create_invoice({
        "customer": customer, "date": now + days * DAY, "due_date": now + (days + 30) * DAY,
        "items": [{"name": "Annual plan", "quantity": 1, "unit_cost": amount}]})


@pytest.mark.parametrize("first_pass", [True, False], ids=["listed-by-a-first-pass", "named-by-its-event"])
async def test_an_invoice_dated_ahead_counts_from_its_date_though_no_event_says_so(world: World, first_pass: bool) -> None:
    """Invoiced sends no event when an invoice's date comes: the customer is read again once it has."""
    if first_pass:
        acme = world.invoiced.create_customer({"name": "Acme Ltd", "type": "company"})["id"]
        invoice_dated_ahead(world, acme, 500, days=3)
        await world.sync()
    else:
        acme, _ = await linked_pair(world)
        invoice_dated_ahead(world, acme, 500, days=3)
        await world.sync()
    company = world.link_of("companies", acme)
    assert world.keap.custom_values("companies", company) == {}  # nothing owed yet, as Invoiced's balance says
    assert official(world).Customer.retrieve(acme).balance()["total_outstanding"] == 0

    world.clock.advance(2 * DAY)  # before its date: nothing to read
    world.reset_stats()
    await world.sync()
    assert step_calls(world) == {} and world.writes() == {}

    world.clock.advance(DAY + 60)  # its date has come
    world.reset_stats()
    report = await world.sync()

    calls = step_calls(world)
    assert calls.pop("GET /invoices") == 1  # its open invoices, once; the rest makes the fields, the first to write
    assert set(calls) <= {"GET /crm/rest/v2/companies/model", "POST /crm/rest/v2/companies/model/customFields"}
    assert report.flows["receivables"].counts["read.invoiced"] == 1
    assert world.keap.custom_values("companies", company) == {
        "Invoiced balance": 500, "Invoiced past due": 0, "Invoiced days past due": 0, "Invoiced open invoices": 1}
    assert official(world).Customer.retrieve(acme).balance()["total_outstanding"] == 500

    world.reset_stats()
    await world.sync()  # read once: the next pass reads and writes nothing for it
    assert step_calls(world) == {} and world.writes() == {}


async def test_a_state_from_before_dates_ahead_were_kept_lists_the_open_invoices_once_to_learn_them(world: World) -> None:
    """Migration 0009: the dates of invoices dated ahead that the state read before it are learnt by one listing."""
    acme, _ = await linked_pair(world)
    invoice_dated_ahead(world, acme, 500, days=3)
    await world.sync()
    config = alembic_config()
    with world.store.engine.begin() as connection:  # the state as the version before kept it
        config.attributes["connection"] = connection
        command.downgrade(config, "0008")
    world.store.migrate()

    world.reset_stats()
    await world.sync()
    assert step_calls(world) == {"GET /invoices": 1}  # the account's open invoices, once
    world.reset_stats()
    await world.sync()
    assert step_calls(world) == {}

    world.clock.advance(3 * DAY + 60)
    await world.sync()
    assert world.keap.custom_values("companies", world.link_of("companies", acme))["Invoiced balance"] == 500


async def test_turned_off_it_reads_and_writes_nothing(world: World) -> None:
    options = SyncOptions(receivables=ReceivablesOptions(enabled=False))
    acme = world.invoiced.create_customer({"name": "Acme Ltd", "type": "company"})
    await world.sync(options)
    past_due_invoice(world, acme["id"], 10)
    world.reset_stats()
    report = await world.sync(options)

    assert "receivables" not in report.flows
    assert world.writes() == {}
    assert world.keap.custom_fields("companies") == []


async def test_chosen_fields_labels_and_tag(world: World) -> None:
    options = SyncOptions(receivables=ReceivablesOptions(fields=("past_due", "days_past_due"),
                                                         labels={"past_due": "Overdue"}, tag="Chase"))
    acme = world.invoiced.create_customer({"name": "Acme Ltd", "type": "company"})
    await world.sync(options)
    past_due_invoice(world, acme["id"], 10)
    await world.sync(options)

    company = world.link_of("companies", acme["id"])
    assert world.keap.custom_values("companies", company) == {"Overdue": 10, "Invoiced days past due": 10}
    assert [tag["name"] for tag in world.keap.store.records("tags")] == ["Chase"]


async def test_a_dry_run_reads_the_figures_and_writes_nothing(world: World) -> None:
    acme, _ = await linked_pair(world)
    past_due_invoice(world, acme, 10)
    world.reset_stats()
    report = await world.sync(dry_run=True)

    assert world.writes() == {}
    verbs = sorted(action.verb for action in report.flows["receivables"].actions)
    assert verbs == ["tag", "update"]
    real = await world.sync()
    assert real.flows["receivables"].counts["updated.keap"] == 1


async def test_a_keap_refusal_is_a_failure_with_keap_s_words_and_the_pass_goes_on(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    acme, jane = await linked_pair(world)
    checked = CustomFieldModels.checked

    def refuse_contacts(self: CustomFieldModels, collection: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if collection == "contacts" and items:
            raise KeapError(400, "custom_fields.0.content: Invoiced open invoices needs a date as YYYY-MM-DD")
        return checked(self, collection, items)

    monkeypatch.setattr(CustomFieldModels, "checked", refuse_contacts)
    past_due_invoice(world, acme, 10)
    past_due_invoice(world, jane, 20)
    report = await world.sync()

    assert report.exit_code == 2
    contact, company = world.link_of("contacts", jane), world.link_of("companies", acme)
    [failure] = world.store.failures("contacts")
    assert (failure.side, failure.record_id, failure.operation) == ("keap", contact, "receivables")
    assert "needs a date as YYYY-MM-DD" in failure.message and "Invoiced open invoices" in failure.message
    assert world.keap.custom_values("contacts", contact) == {}
    assert world.keap.tag_ids("contacts", contact) == [tag_id(world)]  # the tag is its own call
    assert world.keap.custom_values("companies", company)["Invoiced balance"] == 10

    world.reset_stats()
    await world.sync()  # the retry is not due yet: nothing is tried again
    assert world.writes() == {}

    past_due_invoice(world, jane, 5)  # its source changed: tried at once, not after the backoff
    monkeypatch.setattr(CustomFieldModels, "checked", checked)
    report = await world.sync()
    assert world.keap.custom_values("contacts", contact)["Invoiced balance"] == 25
    assert world.store.failures("contacts") == []


async def test_a_same_named_field_of_another_type_is_left_alone_and_ours_is_made_apart(world: World) -> None:
    theirs = world.keap.create_custom_field("companies", "Invoiced balance", "TEXT")
    world.keap.create_custom_field("contacts", "Invoiced past due", "DATE")
    acme, jane = await linked_pair(world)
    past_due_invoice(world, acme, 100)
    past_due_invoice(world, jane, 40)
    report = await world.sync()

    assert report.exit_code == 0, report
    company, contact = world.link_of("companies", acme), world.link_of("contacts", jane)
    assert world.keap.custom_values("companies", company) == {
        "Invoiced balance (invoiced-keap)": 100, "Invoiced past due": 100, "Invoiced days past due": 10,
        "Invoiced open invoices": 1}
    assert world.keap.custom_values("contacts", contact) == {
        "Invoiced balance": 40, "Invoiced past due (invoiced-keap)": 40, "Invoiced days past due": 10,
        "Invoiced open invoices": 1}
    assert [field["field_type"] for field in world.keap.custom_fields("companies")
            if field["id"] == theirs["id"]] == ["TEXT"]


async def test_a_tag_deleted_in_keap_is_made_again_in_the_same_pass(world: World) -> None:
    acme, jane = await linked_pair(world)
    past_due_invoice(world, acme, 10)
    await world.sync()
    world.keap.delete_tag(tag_id(world))
    past_due_invoice(world, jane, 20)
    other = world.invoiced.create_customer({"name": "Other Ltd", "type": "company"})
    await world.sync()
    past_due_invoice(world, other["id"], 30)
    report = await world.sync()

    assert report.exit_code == 0, report
    assert world.store.failures("contacts") == [] and world.store.failures("companies") == []
    assert world.keap.tag_ids("contacts", world.link_of("contacts", jane)) == [tag_id(world)]
    assert world.keap.tag_ids("companies", world.link_of("companies", other["id"])) == [tag_id(world)]


async def test_a_custom_field_deleted_in_keap_is_made_again_in_the_same_pass(world: World) -> None:
    acme, jane = await linked_pair(world)
    past_due_invoice(world, jane, 20)
    await world.sync()
    [balance] = [field for field in world.keap.custom_fields("contacts") if field["label"] == "Invoiced balance"]
    world.keap.delete_custom_field("contacts", balance["id"])
    past_due_invoice(world, jane, 5)
    report = await world.sync()

    assert report.exit_code == 0, report
    assert world.store.failures("contacts") == []
    assert world.keap.custom_values("contacts", world.link_of("contacts", jane)) == {
        "Invoiced balance": 25, "Invoiced past due": 25, "Invoiced days past due": 10, "Invoiced open invoices": 2}


async def test_no_tag_makes_no_tag_call_and_takes_off_the_tags_the_sync_put_on(world: World) -> None:
    acme, jane = await linked_pair(world)
    past_due_invoice(world, acme, 10)
    past_due_invoice(world, jane, 20)
    await world.sync()
    the_tag = tag_id(world)
    company, contact = world.link_of("companies", acme), world.link_of("contacts", jane)
    assert world.keap.tag_ids("companies", company) == [the_tag]

    options = SyncOptions(receivables=ReceivablesOptions(tag=""))
    world.reset_stats()
    report = await world.sync(options)  # turned off: the sync's own tag comes off, without looking for a tag
    assert report.exit_code == 0, report
    assert world.keap.tag_ids("companies", company) == [] and world.keap.tag_ids("contacts", contact) == []
    assert not any(key.endswith("/v2/tags") for key in world.keap.requests)

    past_due_invoice(world, acme, 5)
    world.reset_stats()
    report = await world.sync(options)
    assert report.exit_code == 0, report
    assert world.keap.custom_values("companies", company)["Invoiced balance"] == 15
    assert not any("tags" in key for key in world.keap.requests)

    world.reset_stats()
    await world.sync(options)  # idle: no Keap call of the step
    assert step_calls(world) == {}


def test_a_blank_tag_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="tag"):
        ReceivablesOptions(tag="   ")
    assert ReceivablesOptions(tag="").tag == ""


def by_endpoint(requests: dict[str, int], *parts: str) -> dict[str, int]:
    return {key: count for key, count in requests.items() if any(part in key for part in parts)}


async def test_the_calls_of_a_pass_with_affected_customers(world: World) -> None:
    """The exact calls per affected customer, at production defaults. Invoiced: one read of its open invoices (one
    page per 100), and one of its latest payment the first time its figures are read and after a payment event;
    never the balance endpoint (it gives neither the amount past due, nor how late, nor the count). Keap, per
    record whose figures changed: one PATCH, and for a company one tag call when the tag comes or goes (v2 has no
    write that does both); its custom values read first, companies less than 1000 ids apart one listing, contacts
    one listing per 100; contacts tagged 100 a call. Setup calls happen once."""
    n = 3
    companies = [world.invoiced.create_customer({"name": f"Company {i}", "type": "company"})["id"] for i in range(n)]
    people = [world.invoiced.create_customer({"name": f"Person {i}", "type": "person", "email": f"p{i}@example.com"})["id"]
              for i in range(n)]
    await world.sync()
    await world.sync()
    invoices = {customer: past_due_invoice(world, customer, 100) for customer in companies + people}
    world.reset_stats()
    await world.sync()  # first figures: invoices and the latest payment of each; the fields and the tag made
    assert step_calls(world) == {"GET /invoices": 2 * n, "GET /payments": 2 * n,
                                 "GET /crm/rest/v2/companies/model": 1, "POST /crm/rest/v2/companies/model/customFields": 5,
                                 "GET /crm/rest/v2/contacts/model": 1, "POST /crm/rest/v2/contacts/model/customFields": 5,
                                 "GET /crm/rest/v2/tags": 1, "POST /crm/rest/v2/tags": 1,
                                 "POST /crm/rest/v2/companies/{company_id}/tags/{tag_id}": n,
                                 "POST /crm/rest/v2/tags/{tag_id}/contacts:applyTags": 1}
    assert by_endpoint(world.keap.requests, "/companies", "/contacts") == {
        "GET /crm/rest/v2/companies": 2, "GET /crm/rest/v2/contacts": 2,  # the flows' reads, and the values' reads
        "GET /crm/rest/v2/companies/model": 1, "POST /crm/rest/v2/companies/model/customFields": 5,
        "GET /crm/rest/v2/contacts/model": 1, "POST /crm/rest/v2/contacts/model/customFields": 5,
        "PATCH /crm/rest/v2/companies/{company_id}": n, "PATCH /crm/rest/v2/contacts/{contact_id}": n,
        "POST /crm/rest/v2/companies/{company_id}/tags/{tag_id}": n, "POST /crm/rest/v2/tags/{tag_id}/contacts:applyTags": 1}

    later = {customer: past_due_invoice(world, customer, 50) for customer in companies + people}
    world.reset_stats()
    await world.sync()  # an invoice event: one read each, one PATCH each
    assert by_endpoint(world.invoiced.requests, "/invoices", "/payments", "/balance") == {"GET /invoices": 2 * n}
    assert world.writes() == {"PATCH /crm/rest/v2/companies/{company_id}": n, "PATCH /crm/rest/v2/contacts/{contact_id}": n}
    assert (world.keap.requests["GET /crm/rest/v2/companies"], world.keap.requests["GET /crm/rest/v2/contacts"]) == (2, 2)

    for customer, invoice in invoices.items():
        world.invoiced.create_payment({"customer": customer, "amount": 150, "applied_to": [
            {"type": "invoice", "invoice": invoice["id"], "amount": 100},
            {"type": "invoice", "invoice": later[customer]["id"], "amount": 50}]})
    world.reset_stats()
    await world.sync()  # a payment event: the latest payment read too; nothing past due, so the tag comes off
    assert by_endpoint(world.invoiced.requests, "/invoices", "/payments", "/balance") == {
        "GET /invoices": 2 * n, "GET /payments": 2 * n}
    assert world.writes() == {"PATCH /crm/rest/v2/companies/{company_id}": n, "PATCH /crm/rest/v2/contacts/{contact_id}": n,
                              "DELETE /crm/rest/v2/companies/{company_id}/tags/{tag_id}": n,
                              "POST /crm/rest/v2/tags/{tag_id}/contacts:removeTags": 1}
    assert world.keap.custom_values("companies", world.link_of("companies", companies[0]))["Invoiced last payment"] == today(world)

    world.reset_stats()
    await world.sync()  # idle
    assert step_calls(world) == {} and world.writes() == {}


async def test_a_record_the_link_left_loses_the_figures_and_tag_the_sync_put_there(world: World) -> None:
    """A type change moves the customer to a Keap contact: its old Keap company does not show the debt twice."""
    acme, _ = await linked_pair(world)
    past_due_invoice(world, acme, 70)
    await world.sync()
    company = world.link_of("companies", acme)
    assert world.keap.tag_ids("companies", company) == [tag_id(world)]

    world.invoiced.update_customer(acme, {"type": "person", "email": "acme@example.com"})
    report = await world.sync()

    assert report.exit_code == 0, report
    contact = world.link_of("contacts", acme)
    assert world.keap.custom_values("contacts", contact)["Invoiced past due"] == 70
    assert world.keap.tag_ids("contacts", contact) == [tag_id(world)]
    assert world.keap.custom_values("companies", company) == {}
    assert world.keap.tag_ids("companies", company) == []


async def test_a_failure_on_a_keap_record_no_longer_linked_is_resolved(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    acme, jane = await linked_pair(world)
    checked = CustomFieldModels.checked

    def refuse_contacts(self: CustomFieldModels, collection: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if collection == "contacts" and items:
            raise KeapError(400, "custom_fields.0.content: refused")
        return checked(self, collection, items)

    monkeypatch.setattr(CustomFieldModels, "checked", refuse_contacts)
    past_due_invoice(world, jane, 20)
    await world.sync()
    contact = world.link_of("contacts", jane)
    assert [failure.record_id for failure in world.store.failures("contacts")] == [contact]

    world.keap.store.delete("contacts", contact)  # deleted in Keap; the reconcile closes the link
    await world.syncer_call("reconcile", flows=["contacts"])
    assert contact not in world.store.active_link_ids("contacts")
    await world.sync()
    assert [failure.record_id for failure in world.store.failures("contacts") if failure.operation == "receivables"] == []


def tag_named(world: World, name: str) -> str:
    [found] = [str(tag["id"]) for tag in world.keap.store.records("tags") if tag["name"] == name]
    return found


async def test_a_renamed_tag_comes_off_the_records_the_sync_tagged_and_the_new_one_goes_on(world: World) -> None:
    acme, jane = await linked_pair(world)
    past_due_invoice(world, acme, 10)
    invoice = past_due_invoice(world, jane, 20)
    initech = world.invoiced.create_customer({"name": "Initech", "type": "company"})["id"]
    await world.sync()
    old = tag_id(world)
    company, contact, theirs = (world.link_of("companies", acme), world.link_of("contacts", jane),
                                world.link_of("companies", initech))
    world.keap.apply_tag("companies", theirs, old)  # a Keap user's own use of the old tag: not the sync's to take off

    renamed = SyncOptions(receivables=ReceivablesOptions(tag="Chase"))
    world.reset_stats()
    report = await world.sync(renamed)

    assert report.exit_code == 0, report
    new = tag_named(world, "Chase")
    assert world.keap.tag_ids("companies", company) == [new]
    assert world.keap.tag_ids("contacts", contact) == [new]
    assert world.keap.tag_ids("companies", theirs) == [old]
    counts = report.flows["receivables"].counts
    assert (counts["untagged"], counts["tagged"]) == (2, 2)
    assert {key: count for key, count in world.writes().items() if "tags" in key} == {
        "POST /crm/rest/v2/tags": 1,  # "Chase" made once
        "DELETE /crm/rest/v2/companies/{company_id}/tags/{tag_id}": 1, "POST /crm/rest/v2/companies/{company_id}/tags/{tag_id}": 1,
        "POST /crm/rest/v2/tags/{tag_id}/contacts:removeTags": 1, "POST /crm/rest/v2/tags/{tag_id}/contacts:applyTags": 1}

    world.reset_stats()
    await world.sync(renamed)  # done once: nothing is written again
    assert world.writes() == {}

    world.invoiced.create_payment({"customer": jane, "amount": 20,
                                   "applied_to": [{"type": "invoice", "invoice": invoice["id"], "amount": 20}]})
    await world.sync(renamed)  # settled: the new tag comes off where the sync put it
    assert world.keap.tag_ids("contacts", contact) == []
    assert world.keap.tag_ids("companies", company) == [new]


async def test_a_tag_renamed_while_nothing_is_past_due_only_takes_the_old_one_off_where_it_still_is(world: World) -> None:
    acme, _ = await linked_pair(world)
    past_due_invoice(world, acme, 10)
    await world.sync()
    company = world.link_of("companies", acme)
    world.keap.delete_tag(tag_id(world))  # deleted in Keap: on no record now

    report = await world.sync(SyncOptions(receivables=ReceivablesOptions(tag="Chase")))

    assert report.exit_code == 0, report
    assert world.keap.tag_ids("companies", company) == [tag_named(world, "Chase")]
    assert world.store.failures("companies") == []


async def deleted_with_what_it_owes(world: World, deletes: str) -> tuple[int, str, str]:
    """Acme (its invoice past due) and Jane synced, their figures and tag written; then Acme's invoice and Acme are
    deleted in Invoiced (Invoiced refuses to delete a customer with transactions) and a pass runs with the
    companies flow's deletes policy."""
    acme, jane = await linked_pair(world)
    invoice = past_due_invoice(world, acme, 70)
    past_due_invoice(world, jane, 5)
    await world.sync()
    company = world.link_of("companies", acme)
    assert world.keap.tag_ids("companies", company) == [tag_id(world)]
    world.invoiced.delete_invoice(invoice["id"])
    world.invoiced.delete_customer(acme)
    world.reset_stats()
    report = await world.sync(SyncOptions(per_flow={"companies": FlowOptions(deletes=deletes)}))  # type: ignore[arg-type]
    assert report.exit_code == 0, report
    assert world.store.failures("companies") == []
    return acme, company, world.link_of("contacts", jane)


async def test_a_customer_deleted_and_unlinked_leaves_no_figures_or_tag_on_its_keap_record(world: World) -> None:
    acme, company, contact = await deleted_with_what_it_owes(world, "unlink")

    assert company in {record["id"] for record in world.keap_records("companies")}  # unlink keeps the record
    assert world.keap.custom_values("companies", company) == {}
    assert world.keap.tag_ids("companies", company) == []
    assert world.keap.custom_values("contacts", contact)["Invoiced balance"] == 5  # the others stay
    assert world.store.receivables([str(acme)]) == {}
    world.reset_stats()
    await world.sync()
    assert world.writes() == {}


async def test_a_customer_deleted_with_deletes_ignore_leaves_its_keap_record_as_it_was(world: World) -> None:
    _, company, _ = await deleted_with_what_it_owes(world, "ignore")

    assert world.keap.custom_values("companies", company)["Invoiced past due"] == 70
    assert world.keap.tag_ids("companies", company) == [tag_id(world)]
    assert {key for key in world.writes() if "compan" in key} == set()


async def test_a_customer_deleted_with_deletes_propagate_costs_no_failure(world: World) -> None:
    acme, company, _ = await deleted_with_what_it_owes(world, "propagate")

    assert company not in {record["id"] for record in world.keap_records("companies")}
    assert world.store.receivables([str(acme)]) == {}
    world.reset_stats()
    await world.sync()
    assert world.writes() == {}


async def test_a_merged_customer_s_record_is_cleared_and_the_survivor_s_shows_both_debts(world: World) -> None:
    acme, _ = await linked_pair(world)
    globex = world.invoiced.create_customer({"name": "Globex", "type": "company"})["id"]
    past_due_invoice(world, acme, 30)
    past_due_invoice(world, globex, 12)
    await world.sync()
    kept, merged = world.link_of("companies", acme), world.link_of("companies", globex)

    world.invoiced.merge_customers(acme, globex)
    report = await world.sync()

    assert report.exit_code == 0, report
    assert world.keap.custom_values("companies", kept)["Invoiced past due"] == 42
    assert world.keap.custom_values("companies", merged) == {}
    assert world.keap.tag_ids("companies", merged) == []
    assert official(world).Customer.retrieve(acme).balance()["total_outstanding"] == 42


async def test_a_clear_keap_could_not_take_for_a_while_is_tried_again_by_the_next_pass(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    checked = CustomFieldModels.checked

    def unavailable(self: CustomFieldModels, collection: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if collection == "companies":
            raise KeapError(503, "Service Unavailable")
        return checked(self, collection, items)

    acme, jane = await linked_pair(world)
    invoice = past_due_invoice(world, acme, 70)
    await world.sync()
    company = world.link_of("companies", acme)
    world.invoiced.delete_invoice(invoice["id"])
    world.invoiced.delete_customer(acme)
    monkeypatch.setattr(CustomFieldModels, "checked", unavailable)
    await world.sync()
    assert world.keap.custom_values("companies", company)["Invoiced past due"] == 70  # Keap was down for it
    assert world.keap.tag_ids("companies", company) == []  # the tag call went through: not sent again

    monkeypatch.setattr(CustomFieldModels, "checked", checked)
    world.reset_stats()
    report = await world.sync()
    assert report.exit_code == 0, report
    assert world.keap.custom_values("companies", company) == {}
    assert world.writes() == {"PATCH /crm/rest/v2/companies/{company_id}": 1}
    assert world.store.receivables([str(acme)]) == {}


def not_yet_due_invoice(world: World, customer: int, amount: float, **extra: Any) -> dict[str, Any]:
    return world.invoiced.create_invoice({"customer": customer, "payment_terms": "NET 30",
                                          "items": [{"name": "Support", "quantity": 1, "unit_cost": amount}], **extra})


async def test_zeros_written_are_cleared_from_the_record_a_type_change_left(world: World) -> None:
    """Issue 15: a zero written (nothing past due yet) was not kept in the state, so the clear of the record a type
    change left kept 'Invoiced past due': 0 and 'Invoiced days past due': 0 there."""
    acme, _ = await linked_pair(world)
    not_yet_due_invoice(world, acme, 40)
    await world.sync()
    company = world.link_of("companies", acme)
    assert world.keap.custom_values("companies", company) == {
        "Invoiced balance": 40, "Invoiced past due": 0, "Invoiced days past due": 0, "Invoiced open invoices": 1}
    assert world.store.receivables([str(acme)])[str(acme)].written == world.keap.custom_values("companies", company)

    world.invoiced.update_customer(acme, {"type": "person", "email": "acme@example.com"})
    report = await world.sync()

    assert report.exit_code == 0, report
    assert world.keap.custom_values("companies", company) == {}
    assert world.keap.custom_values("contacts", world.link_of("contacts", acme)) == {
        "Invoiced balance": 40, "Invoiced past due": 0, "Invoiced days past due": 0, "Invoiced open invoices": 1}


@pytest.mark.parametrize("settings", [
    ReceivablesOptions(fields=("balance", "open_invoices")),  # fields turned off
    ReceivablesOptions(labels={"past_due": "Overdue", "days_past_due": "Days overdue"}),  # labels renamed
])
async def test_zeros_written_under_labels_no_longer_written_are_cleared(world: World, settings: ReceivablesOptions) -> None:
    acme, _ = await linked_pair(world)
    not_yet_due_invoice(world, acme, 40)
    await world.sync()
    company = world.link_of("companies", acme)

    report = await world.sync(SyncOptions(receivables=settings))

    assert report.exit_code == 0, report
    values = world.keap.custom_values("companies", company)
    assert "Invoiced past due" not in values and "Invoiced days past due" not in values
    assert values["Invoiced balance"] == 40
    assert world.store.receivables([str(acme)])[str(acme)].written == values


def values_changed(entry: Any) -> bool:
    """An audit entry of the step that records custom values written (not a tag alone)."""
    return (entry.before or {}).get("custom_fields") != (entry.after or {}).get("custom_fields")


def patched_companies(world: World) -> set[str]:
    return {str(record["id"]) for record in world.keap_records("companies") if world.keap.custom_values("companies", str(record["id"]))}


async def test_a_pass_the_day_s_quota_stops_keeps_and_audits_exactly_the_writes_that_went_through(world: World) -> None:
    """Issue 15: the PATCHes that went through before Keap's daily quota stopped the pass left no audit entry and no
    state, and the next pass reported an update for each record though it sent fewer PATCHes."""
    customers = [world.invoiced.create_customer({"name": f"Company {n}", "type": "company"})["id"] for n in range(12)]
    await world.sync()
    for n, customer in enumerate(customers):
        past_due_invoice(world, customer, 10 + n)
    spent = {"per_second": None, "per_minute": None, "per_day": 0}
    world.keap.after_request("PATCH /crm/rest/v2/companies/{company_id}",
                             lambda: world.keap.faults.update({"rate_limit": spent}), nth=4)

    stopped = await world.sync()

    assert stopped.exit_code == 1 and "quota" in (stopped.error or "").lower(), stopped.error
    done = patched_companies(world)
    assert 4 <= len(done) < len(customers)
    linked = {keap_id: customer for customer, keap_id in world.store.active_link_ids("companies").items()}
    rows = world.store.receivables(linked.values())
    for keap_id, customer in linked.items():
        row = rows[customer]
        if keap_id in done:
            assert (row.written_keap_id, row.written) == (keap_id, world.keap.custom_values("companies", keap_id))
        else:
            assert row.written_keap_id is None and row.pending
    audited = {entry.record_id for entry in world.store.audit_entries(flow="companies", run_id=stopped.run_id)
               if values_changed(entry)}
    assert audited == done
    assert stopped.flows["receivables"].counts["updated.keap"] == len(done)
    assert world.store.failures() == []

    world.keap.faults.rate_limit = None
    world.reset_stats()
    report = await world.sync()

    assert report.exit_code == 0, report
    assert patched_companies(world) == set(linked)
    patches = world.writes()["PATCH /crm/rest/v2/companies/{company_id}"]
    assert patches == len(customers) - len(done) == report.flows["receivables"].counts["updated.keap"]
    assert len([entry for entry in world.store.audit_entries(flow="companies", run_id=report.run_id)
                if values_changed(entry)]) == patches


async def test_a_fresh_state_finding_keap_as_it_should_be_reports_no_update(world: World) -> None:
    """Issue 15: a pass on a fresh state (what it wrote lost, Keap holding the figures) reported 'updated.keap 55'
    with no PATCH."""
    acme, jane = await linked_pair(world)
    not_yet_due_invoice(world, acme, 30)
    not_yet_due_invoice(world, jane, 20)
    await world.sync()
    with world.store.engine.begin() as connection:  # the step's state lost (an older backup, say)
        connection.execute(sqlalchemy.text("DELETE FROM receivables"))
        connection.execute(sqlalchemy.text("DELETE FROM watermarks WHERE stream IN ('receivables.events', 'receivables.settings')"))
    world.reset_stats()

    report = await world.sync()

    assert report.exit_code == 0, report
    assert not any(key.startswith("PATCH") for key in world.writes())
    counts = report.flows["receivables"].counts
    assert counts["read.invoiced"] == 2 and counts["updated.keap"] == 0
    assert [entry for entry in world.store.audit_entries(run_id=report.run_id)] == []


def keap_call(world: World, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """A Keap user's (or automation's) call over HTTP, with the account's key."""
    response = httpx.request(method, f"{world.keap_url}{path}", headers={"X-Keap-API-Key": API_KEY}, **kwargs)
    response.raise_for_status()
    return response


async def three_past_due(world: World) -> tuple[list[int], list[str], list[str]]:
    """Two organisations and a person, each with an invoice past due, synced: figures and tag on their records."""
    acme, jane = await linked_pair(world)
    globex = world.invoiced.create_customer({"name": "Globex", "type": "company"})["id"]
    await world.sync()
    for customer in (acme, jane, globex):
        past_due_invoice(world, customer, 50)
    await world.sync()
    companies = [world.link_of("companies", acme), world.link_of("companies", globex)]
    contacts = [world.link_of("contacts", jane)]
    for collection, ids in (("companies", companies), ("contacts", contacts)):
        assert all(world.keap.tag_ids(collection, record) == [tag_id(world)] for record in ids)
    return [acme, jane, globex], companies, contacts


async def test_a_tag_a_keap_user_took_off_goes_back_with_the_daily_look_at_keap(world: World) -> None:
    """Issue 15: the tag is on "while it has anything past due"; the sync applied it only where its own state said it
    was not, and never looked at Keap. Once a day Keap's records are read in bulk and a missing tag goes back."""
    _, companies, contacts = await three_past_due(world)
    old = tag_id(world)
    keap_call(world, "POST", f"/v2/tags/{old}/contacts:removeTags", json={"contact_ids": contacts})
    keap_call(world, "DELETE", f"/v2/companies/{companies[0]}/tags/{old}")
    world.reset_stats()
    await world.sync()  # the same day, nothing to write: no call to look
    assert world.writes() == {} and step_calls(world) == {}

    world.clock.advance(DAY)
    world.reset_stats()
    report = await world.sync()

    assert report.exit_code == 0, report
    assert world.keap.tag_ids("contacts", contacts[0]) == [old]
    assert all(world.keap.tag_ids("companies", company) == [old] for company in companies)
    assert report.flows["receivables"].counts["drift.keap"] == 2
    tag_writes = {key: count for key, count in world.writes().items() if "tags" in key}
    assert tag_writes == {"POST /crm/rest/v2/companies/{company_id}/tags/{tag_id}": 1,
                          "POST /crm/rest/v2/tags/{tag_id}/contacts:applyTags": 1}
    # the look: one listing per object (1000 records a page), the flows' own read besides; the writes read no more
    assert (world.keap.requests["GET /crm/rest/v2/companies"], world.keap.requests["GET /crm/rest/v2/contacts"]) == (2, 2)
    world.reset_stats()
    await world.sync()
    assert world.writes() == {}


async def test_a_tag_taken_off_a_record_the_pass_writes_goes_back_in_that_pass(world: World) -> None:
    """Its values are read before the PATCH, with its tags (contacts' tag_ids, companies' groups): no call more."""
    (acme, jane, _), companies, contacts = await three_past_due(world)
    old = tag_id(world)
    keap_call(world, "POST", f"/v2/tags/{old}/contacts:removeTags", json={"contact_ids": contacts})
    keap_call(world, "DELETE", f"/v2/companies/{companies[0]}/tags/{old}")
    past_due_invoice(world, acme, 5)
    past_due_invoice(world, jane, 5)
    world.reset_stats()

    report = await world.sync()

    assert report.exit_code == 0, report
    assert world.keap.tag_ids("contacts", contacts[0]) == [old] and world.keap.tag_ids("companies", companies[0]) == [old]
    assert report.flows["receivables"].counts["drift.keap"] == 2


async def test_a_tag_deleted_in_keap_goes_back_on_every_record_the_sync_tagged_in_the_pass_that_finds_it(world: World) -> None:
    """Issue 15: with the tag deleted in Keap, the sync made a new one for a customer going past due later, but the
    records already past due stayed untagged; `sync --full` did not help."""
    _, companies, contacts = await three_past_due(world)
    keap_call(world, "DELETE", f"/v2/tags/{tag_id(world)}")
    initech = world.invoiced.create_customer({"name": "Initech", "type": "company"})["id"]
    await world.sync()
    past_due_invoice(world, initech, 9)
    world.reset_stats()

    report = await world.sync()

    assert report.exit_code == 0, report
    new = tag_id(world)
    for company in [*companies, world.link_of("companies", initech)]:
        assert world.keap.tag_ids("companies", company) == [new]
    assert world.keap.tag_ids("contacts", contacts[0]) == [new]
    assert {key: count for key, count in world.writes().items() if "tags" in key} == {
        "POST /crm/rest/v2/tags": 1,  # made again once
        "POST /crm/rest/v2/companies/{company_id}/tags/{tag_id}": 1 + 1 + 2,  # refused (old id), Initech, the two
        "POST /crm/rest/v2/tags/{tag_id}/contacts:applyTags": 1}  # the contacts, 100 a call
    assert world.store.failures() == []


async def test_a_tag_deleted_in_keap_is_put_back_by_a_pass_that_only_takes_it_off(world: World) -> None:
    """Found by the second break-it: a payment settling one customer after the tag was deleted in Keap only took it
    off (a 404, counted as done); the others kept going untagged until the daily look."""
    (acme, _, globex), companies, contacts = await three_past_due(world)
    keap_call(world, "DELETE", f"/v2/tags/{tag_id(world)}")
    [invoice] = [found for found in world.invoiced.invoices.values() if found["customer"] == globex]
    world.invoiced.create_payment({"customer": globex, "amount": invoice["balance"],
                                   "applied_to": [{"type": "invoice", "invoice": invoice["id"], "amount": invoice["balance"]}]})

    report = await world.sync()

    assert report.exit_code == 0, report
    new = tag_id(world)
    assert world.keap.tag_ids("companies", companies[0]) == [new] and world.keap.tag_ids("contacts", contacts[0]) == [new]
    assert world.keap.tag_ids("companies", companies[1]) == []  # Globex paid
    assert world.store.failures() == []


async def test_a_tag_deleted_in_keap_while_nothing_changes_goes_back_with_the_daily_look(world: World) -> None:
    _, companies, contacts = await three_past_due(world)
    keap_call(world, "DELETE", f"/v2/tags/{tag_id(world)}")
    world.clock.advance(DAY)

    report = await world.sync()

    assert report.exit_code == 0, report
    new = tag_id(world)
    assert all(world.keap.tag_ids("companies", company) == [new] for company in companies)
    assert world.keap.tag_ids("contacts", contacts[0]) == [new]
    assert world.store.failures() == []


async def test_figures_a_keap_user_changed_are_put_back_by_the_daily_look(world: World) -> None:
    """Issue 15: a PATCH setting 'Invoiced balance' to 999 and wiping the other values was never corrected. The
    figures are one-way (Invoiced's): once a day what Keap holds is compared with what the sync wrote."""
    acme, jane = await linked_pair(world)
    not_yet_due_invoice(world, acme, 40)  # nothing past due: no daily write of its own
    await world.sync()
    company = world.link_of("companies", acme)
    written = world.keap.custom_values("companies", company)
    [balance] = [field["id"] for field in world.keap.custom_fields("companies") if field["label"] == "Invoiced balance"]
    keap_call(world, "PATCH", f"/v2/companies/{company}", params={"update_mask": "custom_fields"},
              json={"custom_fields": [{"id": balance, "content": 999}]})
    assert world.keap.custom_values("companies", company) == {"Invoiced balance": 999}

    world.clock.advance(DAY)
    world.reset_stats()
    report = await world.sync()

    assert report.exit_code == 0, report
    assert world.keap.custom_values("companies", company) == written
    assert report.flows["receivables"].counts["drift.keap"] == 1
    assert world.writes() == {"PATCH /crm/rest/v2/companies/{company_id}": 1}
    [entry] = [entry for entry in world.store.audit_entries(record_id=company, run_id=report.run_id)]
    assert entry.before["custom_fields"] == {"Invoiced balance": 999} and entry.after["custom_fields"] == written


async def test_a_custom_field_deleted_in_keap_is_made_again_and_refilled_by_the_daily_look(world: World) -> None:
    acme, jane = await linked_pair(world)
    not_yet_due_invoice(world, acme, 40)
    not_yet_due_invoice(world, jane, 15)
    await world.sync()
    company, contact = world.link_of("companies", acme), world.link_of("contacts", jane)
    written = {"companies": world.keap.custom_values("companies", company), "contacts": world.keap.custom_values("contacts", contact)}
    for collection in ("companies", "contacts"):
        [balance] = [field["id"] for field in world.keap.custom_fields(collection) if field["label"] == "Invoiced balance"]
        keap_call(world, "DELETE", f"/v2/{collection}/model/customFields/{balance}")
    world.clock.advance(DAY)

    report = await world.sync()

    assert report.exit_code == 0, report
    assert world.keap.custom_values("companies", company) == written["companies"]
    assert world.keap.custom_values("contacts", contact) == written["contacts"]
    assert world.store.failures() == []


async def test_a_figure_keap_has_no_field_for_stays_a_failure_of_the_record_until_it_can_be_written(world: World) -> None:
    """Issue 15: with TEXT fields already named "Invoiced past due" and "Invoiced past due (invoiced-keap)", the
    figure was reported once (exit 1, "could not run"), then every later pass exited 0 with no open failure."""
    theirs = world.keap.create_custom_field("companies", "Invoiced past due", "TEXT")
    world.keap.create_custom_field("companies", "Invoiced past due (invoiced-keap)", "TEXT")
    acme, _ = await linked_pair(world)
    past_due_invoice(world, acme, 30)

    first = await world.sync()

    assert first.exit_code == 2 and first.error is None and first.flows["receivables"].error is None, first
    company = world.link_of("companies", acme)
    [failure] = world.store.failures("companies")
    assert (failure.side, failure.record_id, failure.operation) == ("keap", company, "receivables")
    assert "'Invoiced past due'" in failure.message and "TEXT" in failure.message and "CURRENCY" in failure.message
    values = world.keap.custom_values("companies", company)
    assert values["Invoiced balance"] == 30 and values.get("Invoiced past due") is None  # the others are written

    world.reset_stats()
    idle = await world.sync()
    assert idle.exit_code == 2 and idle.open_failures == 1  # still visible
    assert step_calls(world) == {} and world.writes() == {}

    past_due_invoice(world, acme, 12)  # the other figures still move with Invoiced while it waits
    moved = await world.sync()
    assert moved.exit_code == 2
    assert world.keap.custom_values("companies", company)["Invoiced balance"] == 42
    assert len(world.store.failures("companies")) == 1

    keap_call(world, "DELETE", f"/v2/companies/model/customFields/{theirs['id']}")  # the account makes room
    world.clock.advance(24 * 3600)  # the retry is due (and the daily figures)
    fixed = await world.sync()

    assert fixed.exit_code == 0, fixed
    assert world.keap.custom_values("companies", company)["Invoiced past due"] == 42
    assert world.store.failures("companies") == []


async def test_a_keap_twin_deleted_its_failure_closes_with_its_link_and_the_new_twin_gets_the_figures_at_once(
        world: World) -> None:
    """Issue 15: "Company with id 1 not found" stayed open after `sync --full` unlinked the record, until the next
    pass; a twin made by a pass that does not run the step (a webhook's) got its figures only a pass later."""
    acme, _ = await linked_pair(world)
    past_due_invoice(world, acme, 30)
    await world.sync()
    company = world.link_of("companies", acme)
    keap_call(world, "DELETE", f"/v2/companies/{company}")  # a Keap user deletes the twin
    past_due_invoice(world, acme, 5)
    first = await world.sync()
    assert first.exit_code == 2
    assert [(failure.record_id, failure.operation) for failure in world.store.failures()] == [(company, "receivables")]

    scan = await world.syncer_call("reconcile")  # `sync --full`'s scans: not found in Keap, unlinked

    assert scan.flows["companies"].counts["unlinked"] == 1
    assert world.store.failures() == [] and scan.open_failures == 0 and scan.exit_code == 0, scan

    world.invoiced.update_customer(acme, {"name": "Acme Ltd (Europe)"})
    hook = await world.syncer_call("sync_ids", flow="companies", invoiced_ids=[str(acme)])  # as a webhook does

    assert hook.exit_code == 0, hook
    twin = world.link_of("companies", acme)
    assert twin != company
    assert world.keap.custom_values("companies", twin) == {
        "Invoiced balance": 35, "Invoiced past due": 35, "Invoiced days past due": 10, "Invoiced open invoices": 2}
    assert world.keap.tag_ids("companies", twin) == [tag_id(world)]
    world.reset_stats()
    await world.sync()
    assert world.writes() == {}


async def test_sync_full_puts_back_a_tag_deleted_in_keap_without_waiting_a_day(world: World) -> None:
    """Issue 15: `sync --full` did not put back a tag deleted in Keap; its scans look at what the sync wrote too."""
    _, companies, contacts = await three_past_due(world)
    keap_call(world, "DELETE", f"/v2/tags/{tag_id(world)}")

    scan = await world.syncer_call("reconcile")

    assert scan.exit_code == 0, scan
    new = tag_id(world)
    assert all(world.keap.tag_ids("companies", company) == [new] for company in companies)
    assert world.keap.tag_ids("contacts", contacts[0]) == [new]
    assert scan.flows["receivables"].counts["drift.keap"] == 3


async def test_a_voided_payment_puts_the_debt_and_the_tag_back_and_the_last_payment_date_with_it(world: World) -> None:
    """The payment voided in Invoiced (`DELETE /payments/{id}`, its `payment.deleted` event): what it paid is owed
    again, and the last payment is the latest one not voided (here: none)."""
    acme, _ = await linked_pair(world)
    invoice = past_due_invoice(world, acme, 80)
    world.invoiced.create_payment({"customer": acme, "amount": 80,
                                   "applied_to": [{"type": "invoice", "invoice": invoice["id"], "amount": 80}]})
    await world.sync()
    company = world.link_of("companies", acme)
    assert world.keap.custom_values("companies", company)["Invoiced last payment"] == today(world)
    assert world.keap.tag_ids("companies", company) == []
    [payment] = official(world).Payment.list()[0]

    assert payment.delete() is True  # over HTTP, by the official client
    report = await world.sync()

    assert report.exit_code == 0, report
    assert world.keap.custom_values("companies", company) == {
        "Invoiced balance": 80, "Invoiced past due": 80, "Invoiced days past due": 10, "Invoiced open invoices": 1}
    assert world.keap.tag_ids("companies", company) == [tag_id(world)]

"""`invoiced-keap demo`: the whole product in a minute, with no account and no network.

Both emulators run in-process on free loopback ports with the sample account (`emulators.sample`),
and the state lives in a temporary SQLite file. The script: the first sync (the existing Globex and
Jane Cooper are matched, the rest created, Acme Corporation's two people made Keap contacts of its Keap
company, the person with no email/phone/address rejected by Keap into the failures list); an edit on each side, synced and read back from the other side; the same
field edited on both sides, settled as a recorded conflict; an invoice going past due in Invoiced, and its figures
and the past-due tag appearing on the Keap company; and a summary table.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from invoiced_keap import console
from invoiced_keap.connectors.invoiced import CUSTOMER, ITEM, InvoicedConnector
from invoiced_keap.connectors.keap import COMPANIES, CONTACTS, PRODUCTS, KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.sample import INVOICED_SAMPLE, KEAP_SAMPLE
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.engine.options import SyncOptions
from invoiced_keap.engine.report import RunReport
from invoiced_keap.engine.run import Syncer
from invoiced_keap.flows import CATALOGUE
from invoiced_keap.state import Store

ACME_PEOPLE = (
    {"name": "Dana Whitfield", "title": "Accounts payable", "email": "dana.whitfield@acme.example", "phone": "+1 555 0101"},
    {"name": "Omar Haddad", "title": "CFO", "email": "omar.haddad@acme.example"},
)
INVOICED_KEY = "demo-invoiced-key"
KEAP_KEY = "demo-keap-key"


@dataclass
class DemoWorld:
    store: Store
    invoiced: InvoicedConnector
    keap: KeapConnector
    syncer: Syncer

    def keap_id(self, flow: str, invoiced_name: str) -> tuple[str, str]:
        """(Invoiced id, Keap id) of the linked record whose Invoiced name is `invoiced_name`."""
        for link in self.store.iter_links(flow):
            shadow = link.shadow("invoiced")
            if shadow is not None and shadow.field_values.get("name") == invoiced_name:
                return link.invoiced_id, link.keap_id
        raise LookupError(f"{flow}: no link for {invoiced_name!r}")

    async def sync(self, title: str) -> RunReport:
        console.out.rule(title)
        with console.progress_bars() as bars:
            self.syncer.progress = lambda note: bars(f"{note.flow}: {note.step}", note.done, note.total)
            report = await self.syncer.sync()
        console.print_run_report(report, show_plan=False)
        return report


async def run_demo() -> None:
    invoiced_emulator = InvoicedEmulator(api_key=INVOICED_KEY)
    keap_emulator = KeapEmulator(api_key=KEAP_KEY, hook_batch_delay=0.1, hook_retry_delays=(0.1,))
    invoiced_emulator.seed(INVOICED_SAMPLE)
    keap_emulator.seed(KEAP_SAMPLE)
    acme = next(customer for customer in invoiced_emulator.customers.values() if customer["name"] == "Acme Corporation")
    for person in ACME_PEOPLE:
        invoiced_emulator.create_contact(acme["id"], person)
    with (
        tempfile.TemporaryDirectory(prefix="invoiced-keap-demo-") as directory,
        BackgroundServer(invoiced_emulator.asgi()) as invoiced_server,
        BackgroundServer(keap_emulator.asgi()) as keap_server,
        Store(f"sqlite:///{Path(directory) / 'demo.db'}") as store,
    ):
        store.migrate()
        console.note(f"Invoiced emulator at {invoiced_server.url}, Keap emulator at {keap_server.url}/crm/rest")
        async with (
            InvoicedConnector(INVOICED_KEY, invoiced_server.url) as invoiced,
            KeapConnector(ApiKey(KEAP_KEY), f"{keap_server.url}/crm/rest") as keap,
        ):
            world = DemoWorld(store, invoiced, keap, Syncer(store, invoiced, keap, SyncOptions()))
            await world.sync("1. First sync: match what exists, create the rest")
            await _people_of_acme(world, acme["id"])
            await _edit_each_side(world)
            await _conflict(world)
            await _past_due(world, invoiced_emulator, keap_emulator)
        _summary(store)


async def _people_of_acme(world: DemoWorld, acme_id: int) -> None:
    """The people of a company customer, as Keap contacts of its Keap company (flow company_contacts)."""
    companies = dict(world.store.active_link_ids("companies"))
    rows = []
    for invoiced_id, keap_id in world.store.active_link_ids("company_contacts").items():
        if invoiced_id.partition("/")[0] == str(acme_id):
            person = await world.keap.get(CONTACTS, keap_id, fields=CATALOGUE["company_contacts"].keap_fields)
            rows.append((invoiced_id, keap_id, f"{person.get('given_name')} {person.get('family_name')}",
                         person.get("job_title"), (person.get("company") or {}).get("id")))
    console.print_table(f"Acme Corporation's people in Keap (its Keap company is {companies[str(acme_id)]})",
                        ["Invoiced contact", "Keap contact", "name", "job title", "Keap company"], rows)


async def _edit_each_side(world: DemoWorld) -> None:
    acme_id, acme_keap_id = world.keap_id("companies", "Acme Corporation")
    widget_id, widget_keap_id = world.keap_id("products", "Widget")
    await world.invoiced.update(CUSTOMER, acme_id, {"phone": "+1 555 0111"})
    console.note("Edited in Invoiced: Acme Corporation's phone is now +1 555 0111")
    await world.keap.update(PRODUCTS, widget_keap_id, {"description": "Blue widget, 12 cm"})
    console.note("Edited in Keap: Widget's description is now 'Blue widget, 12 cm'")
    await world.sync("2. Sync again: each edit arrives on the other side")
    company = await world.keap.get(COMPANIES, acme_keap_id)
    item = await world.invoiced.get(ITEM, widget_id)
    console.note(f"Keap company {acme_keap_id} phone: {(company.get('phone_number') or {}).get('number')}")
    console.note(f"Invoiced item {widget_id} description: {item.get('description')}")


async def _conflict(world: DemoWorld) -> None:
    initech_id, initech_keap_id = world.keap_id("companies", "Initech")
    await world.invoiced.update(CUSTOMER, initech_id, {"name": "Initech LLC"})
    await asyncio.sleep(1 - time.time() % 1)  # `newest` compares whole seconds: the Keap edit is the later one
    await world.keap.update(COMPANIES, initech_keap_id, {"company_name": "Initech Incorporated"})
    console.note("Edited both sides: Initech is 'Initech LLC' in Invoiced and 'Initech Incorporated' in Keap")
    await world.sync("3. A conflict: the newest edit wins, and the conflict is recorded")
    console.print_table("Conflicts", ["flow", "field", "Invoiced value", "Keap value", "winner", "why"],
                        [(c.flow, c.field_group, c.invoiced_value, c.keap_value, c.winner, c.reason)
                         for c in world.store.conflicts()])


async def _past_due(world: DemoWorld, invoiced_emulator: InvoicedEmulator, keap_emulator: KeapEmulator) -> None:
    """What a customer owes, in Keap: an invoice goes past due in Invoiced (its clock moves on), the next sync puts the
    figures and the tag on the linked Keap company."""
    acme_id, acme_keap_id = world.keap_id("companies", "Acme Corporation")
    invoice = invoiced_emulator.create_invoice({"customer": acme_id, "payment_terms": "NET 14",
                                                "items": [{"name": "Widget", "quantity": 12, "unit_cost": 37.5}]})
    console.note(f"Invoiced: invoice {invoice['number']} to Acme Corporation, {invoice['total']} USD, due in 14 days")
    invoiced_emulator.advance_clock(20 * 86_400)
    console.note(f"Twenty days later in Invoiced, {invoice['number']} is {invoiced_emulator.invoice(invoice['id'])['status']}")
    await world.sync("4. An invoice goes past due: its figures and a tag on the Keap company")
    tags = {str(tag["id"]): tag["name"] for tag in keap_emulator.store.records("tags")}
    console.print_table(f"Keap company {acme_keap_id} (Acme Corporation)", ["custom field or tag", "value"],
                        [*keap_emulator.custom_values("companies", acme_keap_id).items(),
                         *(("tag", tags[tag_id]) for tag_id in keap_emulator.tag_ids("companies", acme_keap_id))])


def _summary(store: Store) -> None:
    console.out.rule("5. Where things stand")
    console.print_table("Rejected records wait in the failures list (retried later, or with `retry`)",
                        ["flow", "record", "message"],
                        [(f.flow, f"{f.side} {f.record_id}", f.message) for f in store.failures()])
    counts = store.status_counts()
    console.print_table("Summary", ["flow", "linked pairs", "failures", "waiting for review"],
                        [(flow, counts.active_links.get(flow, 0), counts.open_failures.get(flow, 0),
                          counts.open_review_items.get(flow, 0)) for flow in CATALOGUE])
    console.note(f"Conflicts settled: {counts.conflicts}. Everything ran against local emulators; nothing left this machine.")

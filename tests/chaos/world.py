"""The chaos run's world: both emulators served on loopback (real clock), users editing both sides at random,
sync passes in a subprocess (`tests.engine.sync_driver`) that get faults and SIGKILLs.

Edits go through the emulators' Python-level operations, run on each server's own event loop so that they never
interleave with a request being handled. Every edit of a field group is logged with the neutral value it left on
the edited record (`Edit`), which the checker compares with the end state.

The people of company customers (flow `company_contacts`, ids `customer/contact`) are seeded with the customers and
edited like the rest: created, edited and deleted in Invoiced, moved to another company customer (Invoiced keeps a
contact's customer for life, so a move is a delete and a create with the same values), edited, deleted, moved to
another Keap company or detached from theirs in Keap; their customers are deleted or turned into persons as before.
Their `company` (the customer's Keap company) is no field an Invoiced user edits: only Keap's side of it is logged.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from starlette.types import Receive, Scope, Send

from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.keap.resources import RESOURCES
from invoiced_keap.emulators.kit import Emulator
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.connectors.invoiced import CONTACT, CUSTOMER
from invoiced_keap.flows import CATALOGUE, Side, Value, flow_of

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
Record = dict[str, Any]

KEAP_COLLECTIONS = {"companies": "companies", "contacts": "contacts", "products": "products", "company_contacts": "contacts"}
"""Each flow's Keap collection; the two contact flows share Keap's contacts."""
KEAP_OBJECTS = ("companies", "contacts", "products")
CONTACT_FIELDS = ("name", "email", "phone", "title", "address1", "address2", "city", "state", "postal_code", "country")
"""What a move copies of an Invoiced contact to the one made under the other customer."""
COUNTRIES = ("US", "GB", "DE", "FR", "CA")


@dataclass(frozen=True)
class Edit:
    """A user's change to one field group of one record; `value` is the neutral value it left there, `changed` the
    parts of it the edit changed (`FieldRule.parts`: a name's given and family name, an address's lines, city, region, postal code and country;
    None: all of them, as a create sets them)."""

    seq: int
    side: Side
    flow: str
    record_id: str
    group: str
    value: Value
    at: datetime
    changed: tuple[str, ...] | None = None

    @property
    def record_key(self) -> tuple[Side, str, str]:
        return record_key(self.side, self.flow, self.record_id)


def record_key(side: Side, flow: str, record_id: str) -> tuple[Side, str, str]:
    """Which record an edit touched: an Invoiced record of the flow's resource (customers are one object across both
    customer flows), or a record of the flow's Keap collection (contacts are one object across both contact flows)."""
    return side, CATALOGUE[flow].invoiced.name if side == "invoiced" else KEAP_COLLECTIONS[flow], record_id


def keap_contact_flow(contact: Record) -> str:
    """The contact flow a Keap contact's edits are logged under: a company's person's or a person customer's."""
    return "company_contacts" if contact.get("company") else "contacts"


class Served:
    """An emulator on a loopback port whose Python-level operations run on the server's event loop."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.loop: asyncio.AbstractEventLoop | None = None
        app = emulator.asgi()

        async def remembering_loop(scope: Scope, receive: Receive, send: Send) -> None:
            self.loop = asyncio.get_running_loop()
            await app(scope, receive, send)

        self.server = BackgroundServer(remembering_loop)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.server.start()
        httpx.get(f"{self.url}/_emulator/stats").raise_for_status()  # the first request shows us the loop

    def stop(self) -> None:
        self.server.stop()

    def call(self, operation: Callable[[], T]) -> T:
        async def run() -> T:
            return operation()

        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    def set_faults(self, **settings: Any) -> None:
        httpx.post(f"{self.url}/_emulator/faults", json=settings).raise_for_status()

    def calls(self) -> int:
        return int(httpx.get(f"{self.url}/_emulator/stats").json()["total"])


@dataclass
class ChaosWorld:
    """Both emulators, the state database, the edit log and the users' own Keap records."""

    invoiced: Served
    keap: Served
    database_url: str
    rng: random.Random
    edits: list[Edit] = field(default_factory=list)
    journal: list[str] = field(default_factory=list)  # what each random edit did, with its time
    user_keap_ids: dict[str, set[str]] = field(default_factory=lambda: {c: set() for c in KEAP_OBJECTS})
    log_dir: Path = field(default_factory=Path)
    passes: int = 0
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(1000))
    env: dict[str, str] = field(default_factory=dict)

    @property
    def invoiced_emulator(self) -> InvoicedEmulator:
        return self.invoiced.emulator  # type: ignore[return-value]

    @property
    def keap_emulator(self) -> KeapEmulator:
        return self.keap.emulator  # type: ignore[return-value]

    @property
    def keap_url(self) -> str:
        return f"{self.keap.url}/crm/rest"

    # --- seeding --------------------------------------------------------------------------------
    def seed(self, size: int) -> None:
        """`size` companies (each with a person, every other one with two), persons and items in Invoiced; a few Keap
        records that match them, a few that don't: people of the Keap company that Company 0 links to by name, whom
        its people link to by email, a contact a company's person links to by email (and attaches to the company), a
        person of a Keap company no one in Invoiced has; and a company's person with the email of a person customer,
        whose Keap contact the person customer's flow links (so the company's person goes to review)."""
        invoiced = self.invoiced_emulator
        for n in range(size):
            company = invoiced.create_customer({"name": f"Company {n}", "type": "company", "email": f"c{n}@chaos.example"})
            invoiced.create_customer({"name": f"Given{n} Family{n}", "type": "person", "email": f"p{n}@chaos.example"})
            invoiced.create_item({"id": f"item-{n}", "name": f"Product {n}", "description": f"Description {n}",
                                  "unit_cost": n + 1, "currency": "usd"})
            invoiced.create_contact(company["id"], {"name": f"Staff{n} Member{n}", "email": f"s{n}@chaos.example",
                                                    "title": f"Title {n}", "phone": f"+1 555 {n:04d}"})
            if n % 2 == 0:
                invoiced.create_contact(company["id"], {"name": f"Second{n} Member{n}", "email": f"t{n}@chaos.example",
                                                        "address1": f"{n} Side Street", "city": "Springfield",
                                                        "postal_code": str(20000 + n), "country": "US"})
            if n == 2:
                invoiced.create_contact(company["id"], {"name": "Given2 Family2", "email": "p2@chaos.example"})
        keap = self.keap_emulator
        companies = [RESOURCES["companies"].create(keap.store, body) for body in ({"company_name": "Company 0"},
                                                                                  {"company_name": "Keap company 1"})]
        bodies = {
            "contacts": [{"given_name": "Given1", "family_name": "Family1",
                          "email_addresses": [{"email": "p1@chaos.example", "field": "EMAIL1"}]},
                         {"given_name": "Keap", "family_name": "Person",
                          "email_addresses": [{"email": "keap.person@chaos.example", "field": "EMAIL1"}]},
                         {"given_name": "Staff0", "family_name": "Member0", "company": {"id": str(companies[0]["id"])},
                          "job_title": "Keap title 0", "email_addresses": [{"email": "s0@chaos.example", "field": "EMAIL1"}]},
                         {"given_name": "Second0", "family_name": "Member0", "company": {"id": str(companies[0]["id"])},
                          "email_addresses": [{"email": "t0@chaos.example", "field": "EMAIL1"}]},
                         {"given_name": "Staff1", "family_name": "Member1",
                          "email_addresses": [{"email": "s1@chaos.example", "field": "EMAIL1"}]},
                         {"given_name": "Keap", "family_name": "Staff", "company": {"id": str(companies[1]["id"])},
                          "email_addresses": [{"email": "keap.staff@chaos.example", "field": "EMAIL1"}]}],
            "products": [{"name": "Product 2", "price": 300, "short_description": "Product 2"}],
        }
        self.user_keap_ids["companies"].update(str(company["id"]) for company in companies)
        for collection, records in bodies.items():
            for body in records:
                self.user_keap_ids[collection].add(str(RESOURCES[collection].create(keap.store, body)["id"]))

    # --- random edits ---------------------------------------------------------------------------
    def random_edit(self) -> str:
        """Make one random user edit on either side; answers what it did (for failure messages)."""
        side = self.rng.choice(("invoiced", "keap"))
        invoiced_only = 1 if side == "invoiced" else 0
        kind = self.rng.choices(("edit", "clear", "create", "delete", "type", "move"),
                                weights=(10, 2, 2, 1, invoiced_only, invoiced_only))[0]
        server = self.invoiced if side == "invoiced" else self.keap
        done = server.call(lambda: getattr(self, f"_{side}_{kind}")())
        self.journal.append(f"{datetime.now(UTC).isoformat()} {done}")
        return done

    def _value(self, flow: str, group: str) -> Value:
        n = next(self.counter)
        if group == "name":
            return {"companies": f"Company {n}", "products": f"Product {n}"}.get(flow, f"Given{n} Family{n}")
        if group == "email":
            return f"e{n}@chaos.example"
        if group == "phone":
            return f"+1 555 {n:04d}"
        if group == "description":
            return f"Description {n}"
        if group == "title":
            return f"Title {n}"
        rule = CATALOGUE[flow].rule("address")
        return rule.value("invoiced", {"address1": f"{n} Main Street", "city": "Springfield",
                                       "postal_code": str(10000 + n), "country": self.rng.choice(COUNTRIES)})

    def _log(self, side: Side, flow: str, record_id: str, group: str, record: Record, before: Record | None = None) -> None:
        """Log the group's value an edit left; an edit that left it as it was (clearing an empty field) changed
        nothing a sync could see, so it is no edit of the group."""
        rule = CATALOGUE[flow].rule(group)
        value = rule.value(side, record)
        if before is not None and rule.value(side, before) == value:
            return
        changed = None
        if before is not None:
            was = rule.parts(rule.value(side, before))
            changed = tuple(name for name, part in rule.parts(value).items() if was.get(name) != part)
        self.edits.append(Edit(len(self.edits), side, flow, record_id, group, value, datetime.now(UTC), changed))

    def _log_all(self, side: Side, flow: str, record: Record) -> None:
        for rule in CATALOGUE[flow].rules:
            if not rule.blank(rule.value(side, record)):
                self._log(side, flow, str(record["id"]), rule.name, record)

    def _change(self, side: Side, clear: bool) -> str:
        """A user edit (or clear) of one field group of a random record on `side`. A one-way group is edited on its
        other side only (a Keap contact moved to another Keap company, or detached: a clear)."""
        chosen = self._invoiced_record() if side == "invoiced" else self._keap_record()
        if chosen is None:
            return "nothing to edit"
        flow, record = chosen
        groups = [r.name for r in CATALOGUE[flow].rules if not (clear and r.required) and r.one_way != side]
        group = self.rng.choice(groups)
        rule = CATALOGUE[flow].rule(group)
        if clear:
            value = rule.value("invoiced", {})
        elif rule.one_way is not None:  # a person's company: a Keap user moves the contact to another one
            value = self._other_company(record)
        else:
            value = self._value(flow, group)
        fields = rule.write(side, value, record).fields
        record_id = str(record["id"])
        if side == "keap":
            updated = RESOURCES[KEAP_COLLECTIONS[flow]].update(self.keap_emulator.store, record_id, fields, None)
        elif flow == "products":
            updated = self.invoiced_emulator.update_item(record["id"], fields)
        elif flow == "company_contacts":
            updated = CONTACT.as_read(self.invoiced_emulator.update_contact(record["customer"], record_id.partition("/")[2], fields))
        else:
            updated = self.invoiced_emulator.update_customer(record["id"], fields)
        self._log(side, flow, record_id, group, updated, before=record)
        return f"{side} {flow} {record['id']} {group} = {value!r}"

    def _other_company(self, contact: Record) -> Value:
        """Another Keap company than the contact's (None, a detach, when there is none)."""
        current = str((contact.get("company") or {}).get("id") or "")
        others = [str(company["id"]) for company in self.keap_emulator.store.records("companies") if str(company["id"]) != current]
        return self.rng.choice(others) if others else None

    # Invoiced
    def _invoiced_record(self) -> tuple[str, Record] | None:
        emulator = self.invoiced_emulator
        items = [i for i in emulator.items.values() if i["id"] not in emulator.archived_item_ids]
        choices = [("products", i) for i in items] + [(flow_of(CUSTOMER, c), c) for c in emulator.customers.values()]
        choices += [("company_contacts", contact) for contact in self._invoiced_contacts()]
        return self.rng.choice(choices) if choices else None

    def _invoiced_contacts(self) -> list[Record]:
        """Every Invoiced contact, with its engine id `customer/contact` (of company and person customers alike)."""
        return [CONTACT.as_read(contact) for contact in self.invoiced_emulator.contacts.values()]

    def _company_customers(self) -> list[Record]:
        return [c for c in self.invoiced_emulator.customers.values() if flow_of(CUSTOMER, c) == "companies"]

    def _invoiced_edit(self) -> str:
        return self._change("invoiced", clear=False)

    def _invoiced_clear(self) -> str:
        return self._change("invoiced", clear=True)

    def _invoiced_create(self) -> str:
        emulator = self.invoiced_emulator
        flow = self.rng.choice(("companies", "contacts", "products", "company_contacts"))
        n = next(self.counter)
        if flow == "products":
            record = emulator.create_item({"name": f"Product {n}", "description": f"Description {n}", "unit_cost": 5, "currency": "usd"})
        elif flow == "company_contacts":
            customers = self._company_customers()
            if not customers:
                return "no company customer to add a person to"
            body = {"name": self._value(flow, "name"), "title": self._value(flow, "title")}
            if self.rng.random() < 0.9:
                body["email"] = self._value(flow, "email")
            record = CONTACT.as_read(emulator.create_contact(self.rng.choice(customers)["id"], body))
        else:
            body = {"name": self._value(flow, "name"), "type": "company" if flow == "companies" else "person"}
            if self.rng.random() < 0.9:
                body["email"] = self._value(flow, "email")
            record = emulator.create_customer(body)
        self._log_all("invoiced", flow, record)
        return f"invoiced {flow} {record['id']} created"

    def _invoiced_delete(self) -> str:
        chosen = self._invoiced_record()
        if chosen is None:
            return "nothing to delete"
        flow, record = chosen
        if flow == "products":
            self.invoiced_emulator.archived_item_ids.add(record["id"])
        elif flow == "company_contacts":
            self.invoiced_emulator.delete_contact(record["customer"], str(record["id"]).partition("/")[2])
        else:
            self.invoiced_emulator.delete_customer(record["id"])  # a company's people go with it, without events
        return f"invoiced {flow} {record['id']} deleted"

    def _invoiced_move(self) -> str:
        """A person moved to another company customer: deleted under one, made with the same values under the other
        (the new record's groups are logged as a create's; the Keap contact should follow, not be duplicated)."""
        contacts = self._invoiced_contacts()
        if not contacts:
            return "no contact to move"
        contact = self.rng.choice(contacts)
        targets = [c for c in self._company_customers() if c["id"] != contact["customer"]]
        if not targets:
            return "no other company customer to move a contact to"
        target = self.rng.choice(targets)
        emulator = self.invoiced_emulator
        emulator.delete_contact(contact["customer"], str(contact["id"]).partition("/")[2])
        moved = CONTACT.as_read(emulator.create_contact(target["id"], {name: contact[name] for name in CONTACT_FIELDS
                                                                       if contact.get(name) is not None}))
        self._log_all("invoiced", "company_contacts", moved)
        return f"invoiced company_contacts {contact['id']} moved to {moved['id']}"

    def _invoiced_type(self) -> str:
        customers = list(self.invoiced_emulator.customers.values())
        if not customers:
            return "no customer to retype"
        customer = self.rng.choice(customers)
        new_type = "company" if customer.get("type") == "person" else "person"
        self.invoiced_emulator.update_customer(customer["id"], {"type": new_type})
        return f"invoiced customer {customer['id']} is now a {new_type}"

    # Keap
    def _keap_record(self) -> tuple[str, Record] | None:
        """A random Keap record and the flow its edits are logged under (a contact: `keap_contact_flow`)."""
        store = self.keap_emulator.store
        choices = []
        for collection in KEAP_OBJECTS:  # a company's or a product's flow is named as its collection
            for stored in store.records(collection):
                record = RESOURCES[collection].get(store, str(stored["id"]))
                choices.append((keap_contact_flow(record) if collection == "contacts" else collection, record))
        return self.rng.choice(choices) if choices else None

    def _keap_edit(self) -> str:
        return self._change("keap", clear=False)

    def _keap_clear(self) -> str:
        return self._change("keap", clear=True)

    def _keap_create(self) -> str:
        """A Keap user's company, product or contact; a contact is a person of a Keap company half the time."""
        flow = self.rng.choice(("companies", "contacts", "products"))
        n = next(self.counter)
        body: Record = {
            "companies": {"company_name": f"Keap company {n}"},
            "contacts": {"given_name": f"Keap{n}", "family_name": "Person",
                         "email_addresses": [{"email": f"k{n}@chaos.example", "field": "EMAIL1"}]},
            "products": {"name": f"Keap product {n}", "price": 100, "short_description": "Keap product"},
        }[flow]
        if flow == "contacts" and self.rng.random() < 0.5:
            company = self._other_company({})
            body = {**body, "company": {"id": company}} if company else body
        record = RESOURCES[KEAP_COLLECTIONS[flow]].create(self.keap_emulator.store, body)
        self.user_keap_ids[KEAP_COLLECTIONS[flow]].add(str(record["id"]))
        flow = keap_contact_flow(record) if flow == "contacts" else flow
        self._log_all("keap", flow, record)
        return f"keap {flow} {record['id']} created"

    def _keap_delete(self) -> str:
        chosen = self._keap_record()
        if chosen is None:
            return "nothing to delete"
        flow, record = chosen
        RESOURCES[KEAP_COLLECTIONS[flow]].delete(self.keap_emulator.store, str(record["id"]))
        return f"keap {flow} {record['id']} deleted"

    # --- faults and passes ----------------------------------------------------------------------
    def set_faults(self, *, storm: bool, latency_ms: int, error_rate: float, drop_rate: float) -> None:
        """5xx and dropped connections at the given rates, added latency; a 429 storm tightens both APIs' limits."""
        common = {"error_rate": error_rate, "error_status": 503, "latency_ms": latency_ms, "drop_rate": drop_rate}
        self.invoiced.set_faults(**common, rate_limit={"max_in_flight": 1} if storm else None)
        self.keap.set_faults(**common, rate_limit={"per_second": 3, "per_minute": 60, "per_day": 100_000} if storm else None)

    def faults_off(self) -> None:
        self.set_faults(storm=False, latency_ms=0, error_rate=0.0, drop_rate=0.0)

    @contextmanager
    def sync_process(self, steps: str = "sync") -> Iterator[subprocess.Popen[bytes]]:
        """A pass in its own process, killed if still running at the end; its output is kept in `log_dir`
        (`pass-N.log`; the security checks read them). The users confirm every mass change: after a pass
        whose circuit breaker tripped, the next one runs with `--allow-mass-change`, as a user would be asked to."""
        confirmed = {"SYNC_DRIVER_ALLOW_MASS_CHANGE": "1"} if self.breaker_tripped() else {}
        self.passes += 1
        command = [sys.executable, "-m", "tests.engine.sync_driver", self.invoiced.url, self.keap_url, self.database_url, steps]
        with open(self.log_dir / f"pass-{self.passes:04d}.log", "w") as log:
            process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **self.env, **confirmed},
                                       stdout=log, stderr=subprocess.STDOUT)
            try:
                yield process
            finally:
                if process.poll() is None:
                    process.send_signal(signal.SIGKILL)
                process.wait()

    def breaker_tripped(self) -> bool:
        """Whether the last pass stopped a flow at its circuit breaker (the driver prints the pass's errors)."""
        last = self.log_dir / f"pass-{self.passes:04d}.log"
        return last.exists() and "circuit breaker" in last.read_text()

    def outputs(self) -> list[str]:
        return [path.read_text() for path in sorted(self.log_dir.glob("pass-*.log"))]

    def api_calls(self) -> int:
        return self.invoiced.calls() + self.keap.calls()


"""The chaos run's world: both emulators served on loopback (real clock), users editing both sides at random,
sync passes in a subprocess (`tests.engine.sync_driver`) that get faults and SIGKILLs.

Edits go through the emulators' Python-level operations, run on each server's own event loop so that they never
interleave with a request being handled. Every edit of a field group is logged with the neutral value it left on
the edited record (`Edit`), which the checker compares with the end state.
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
from invoiced_keap.connectors.invoiced import CUSTOMER
from invoiced_keap.flows import CATALOGUE, Side, Value, flow_of

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
Record = dict[str, Any]

KEAP_COLLECTIONS = {"companies": "companies", "contacts": "contacts", "products": "products"}
COUNTRIES = ("US", "GB", "DE", "FR", "CA")


@dataclass(frozen=True)
class Edit:
    """A user's change to one field group of one record; `value` is the neutral value it left there."""

    seq: int
    side: Side
    flow: str
    record_id: str
    group: str
    value: Value
    at: datetime

    @property
    def record_key(self) -> tuple[Side, str, str]:
        return record_key(self.side, self.flow, self.record_id)


def record_key(side: Side, flow: str, record_id: str) -> tuple[Side, str, str]:
    """Which record an edit touched: Invoiced customers are one object across both customer flows."""
    return side, "customers" if side == "invoiced" and flow != "products" else flow, record_id


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
    user_keap_ids: dict[str, set[str]] = field(default_factory=lambda: {c: set() for c in KEAP_COLLECTIONS})
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
        """`size` companies, persons and items in Invoiced; a few Keap records that match them, a few that don't."""
        for n in range(size):
            self.invoiced_emulator.create_customer({"name": f"Company {n}", "type": "company", "email": f"c{n}@chaos.example"})
            self.invoiced_emulator.create_customer({"name": f"Given{n} Family{n}", "type": "person", "email": f"p{n}@chaos.example"})
            self.invoiced_emulator.create_item({"id": f"item-{n}", "name": f"Product {n}", "description": f"Description {n}",
                                                "unit_cost": n + 1, "currency": "usd"})
        keap = self.keap_emulator
        bodies = {
            "companies": [{"company_name": "Company 0"}, {"company_name": "Keap company 1"}],
            "contacts": [{"given_name": "Given1", "family_name": "Family1",
                          "email_addresses": [{"email": "p1@chaos.example", "field": "EMAIL1"}]},
                         {"given_name": "Keap", "family_name": "Person",
                          "email_addresses": [{"email": "keap.person@chaos.example", "field": "EMAIL1"}]}],
            "products": [{"name": "Product 2", "price": 300, "short_description": "Product 2"}],
        }
        for collection, records in bodies.items():
            for body in records:
                self.user_keap_ids[collection].add(str(RESOURCES[collection].create(keap.store, body)["id"]))

    # --- random edits ---------------------------------------------------------------------------
    def random_edit(self) -> str:
        """Make one random user edit on either side; answers what it did (for failure messages)."""
        side = self.rng.choice(("invoiced", "keap"))
        kind = self.rng.choices(("edit", "clear", "create", "delete", "type"), weights=(10, 2, 2, 1, 1 if side == "invoiced" else 0))[0]
        server = self.invoiced if side == "invoiced" else self.keap
        return server.call(lambda: getattr(self, f"_{side}_{kind}")())

    def _value(self, flow: str, group: str) -> Value:
        n = next(self.counter)
        if group == "name":
            return {"companies": f"Company {n}", "contacts": f"Given{n} Family{n}", "products": f"Product {n}"}[flow]
        if group == "email":
            return f"e{n}@chaos.example"
        if group == "phone":
            return f"+1 555 {n:04d}"
        if group == "description":
            return f"Description {n}"
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
        self.edits.append(Edit(len(self.edits), side, flow, record_id, group, value, datetime.now(UTC)))

    def _log_all(self, side: Side, flow: str, record: Record) -> None:
        for rule in CATALOGUE[flow].rules:
            if not rule.blank(rule.value(side, record)):
                self._log(side, flow, str(record["id"]), rule.name, record)

    def _change(self, side: str, clear: bool) -> str:
        """A user edit (or clear) of one field group of a random record on `side`."""
        chosen = self._invoiced_record() if side == "invoiced" else self._keap_record()
        if chosen is None:
            return "nothing to edit"
        flow, record = chosen
        groups = [r.name for r in CATALOGUE[flow].rules if not (clear and r.required)]
        group = self.rng.choice(groups)
        rule = CATALOGUE[flow].rule(group)
        value = rule.value("invoiced", {}) if clear else self._value(flow, group)
        fields = rule.write(side, value, record).fields
        record_id = str(record["id"])
        if side == "keap":
            updated = RESOURCES[KEAP_COLLECTIONS[flow]].update(self.keap_emulator.store, record_id, fields, None)
        elif flow == "products":
            updated = self.invoiced_emulator.update_item(record["id"], fields)
        else:
            updated = self.invoiced_emulator.update_customer(record["id"], fields)
        self._log(side, flow, record_id, group, updated, before=record)
        return f"{side} {flow} {record['id']} {group} = {value!r}"

    # Invoiced
    def _invoiced_record(self) -> tuple[str, Record] | None:
        emulator = self.invoiced_emulator
        items = [i for i in emulator.items.values() if i["id"] not in emulator.archived_item_ids]
        choices = [("products", i) for i in items] + [(flow_of(CUSTOMER, c), c) for c in emulator.customers.values()]
        return self.rng.choice(choices) if choices else None

    def _invoiced_edit(self) -> str:
        return self._change("invoiced", clear=False)

    def _invoiced_clear(self) -> str:
        return self._change("invoiced", clear=True)

    def _invoiced_create(self) -> str:
        emulator = self.invoiced_emulator
        flow = self.rng.choice(("companies", "contacts", "products"))
        n = next(self.counter)
        if flow == "products":
            record = emulator.create_item({"name": f"Product {n}", "description": f"Description {n}", "unit_cost": 5, "currency": "usd"})
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
        else:
            self.invoiced_emulator.delete_customer(record["id"])
        return f"invoiced {flow} {record['id']} deleted"

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
        store = self.keap_emulator.store
        choices = [(flow, RESOURCES[collection].get(store, str(r["id"])))
                   for flow, collection in KEAP_COLLECTIONS.items() for r in store.records(collection)]
        return self.rng.choice(choices) if choices else None

    def _keap_edit(self) -> str:
        return self._change("keap", clear=False)

    def _keap_clear(self) -> str:
        return self._change("keap", clear=True)

    def _keap_create(self) -> str:
        flow = self.rng.choice(("companies", "contacts", "products"))
        n = next(self.counter)
        body: Record = {
            "companies": {"company_name": f"Keap company {n}"},
            "contacts": {"given_name": f"Keap{n}", "family_name": "Person",
                         "email_addresses": [{"email": f"k{n}@chaos.example", "field": "EMAIL1"}]},
            "products": {"name": f"Keap product {n}", "price": 100, "short_description": "Keap product"},
        }[flow]
        record = RESOURCES[KEAP_COLLECTIONS[flow]].create(self.keap_emulator.store, body)
        self.user_keap_ids[KEAP_COLLECTIONS[flow]].add(str(record["id"]))
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


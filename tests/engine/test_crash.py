"""A pass killed with SIGKILL at random points, then run again, leaves no duplicates and every record linked.

The pass runs in a subprocess (`sync_driver`) against the emulators served by this process, slowed down by
a latency fault so the kills land mid-run; the kill times come from a seeded random generator.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from starlette.types import Message, Receive, Scope, Send

from invoiced_keap.emulators.keap.resources import RESOURCES
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.keys import normalise_email, normalise_name
from invoiced_keap.engine.plan import plan_create
from invoiced_keap.flows import build_flows
from invoiced_keap.state import Store
from tests.engine.conftest import World
from tests.support import API_KEY

pytestmark = pytest.mark.parametrize("state_url", ["sqlite"], indirect=True)

ROOT = Path(__file__).resolve().parents[2]
KILLS = 6


def start_pass(world: World, database_url: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "tests.engine.sync_driver", world.invoiced_server.url, world.keap_url, database_url]
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def duplicates(world: World) -> dict[str, list[str]]:
    keys = {
        "companies": [normalise_name(c.get("company_name")) for c in world.keap_records("companies")],
        "contacts": [normalise_name(f"{c.get('given_name')} {c.get('family_name')}") for c in world.keap_records("contacts")],
        "products": [p.get("sku") for p in world.keap_records("products")],
    }
    return {flow: [key for key, n in Counter(values).items() if n > 1] for flow, values in keys.items()}


def made_now(world: World) -> int:
    return sum(len(world.keap_records(c)) for c in ("companies", "contacts", "products"))


@pytest.mark.parametrize("seed", [7])
async def test_killed_initial_sync_ends_with_no_duplicates_and_every_record_linked(world: World, tmp_path: Path, seed: int) -> None:
    world.invoiced.seed({
        "customers": [*({"name": f"Company {n}", "type": "company"} for n in range(25)),
                      *({"name": f"Person {n}", "type": "person", "email": f"p{n}@example.com"} for n in range(25)),
                      *({"name": f"Walk-in {n}", "type": "person", "phone": f"+1 555 010 {n:04}"} for n in range(5))],
        "items": [{"id": f"item-{n}", "name": f"Item {n}", "unit_cost": n, "currency": "usd"} for n in range(20)],
    })
    for emulator in (world.invoiced, world.keap):
        emulator.faults.latency_ms = 25
    database_url = f"sqlite:///{tmp_path}/crash.db"
    chance = random.Random(seed)
    in_keap_after_kills = []
    made = 0
    for _ in range(KILLS):
        process = start_pass(world, database_url)
        deadline = time.monotonic() + 120  # kill once this pass made a record (however slow its start), then soon after
        while made_now(world) <= made and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(chance.uniform(0.0, 0.3))
        process.send_signal(signal.SIGKILL)
        process.wait()
        made = made_now(world)
        in_keap_after_kills.append(made)

    for emulator in (world.invoiced, world.keap):
        emulator.faults.latency_ms = 0
    assert start_pass(world, database_url).wait(timeout=60) == 0

    assert min(in_keap_after_kills) < 75 and max(in_keap_after_kills) > 0  # kills did land mid-run
    assert duplicates(world) == {"companies": [], "contacts": [], "products": []}
    assert [len(world.keap_records(c)) for c in ("companies", "contacts", "products")] == [25, 30, 20]
    with Store(database_url) as store:
        assert {flow: len(store.active_link_ids(flow)) for flow in ("companies", "contacts", "products")} == {
            "companies": 25, "contacts": 30, "products": 20}
        assert store.intents() == []


def test_a_sync_killed_as_keap_makes_a_record_holds_up_no_later_sync(world: World, tmp_path: Path) -> None:
    """`invoiced-keap sync` itself, default settings: SIGKILLed as Keap answers its first create, it leaves
    no lock behind; the next `sync` starts at once, adopts the twin of the cut-short create, makes no duplicate."""
    world.invoiced.seed({
        "customers": [*({"name": f"Company {n}", "type": "company"} for n in range(8)),
                      *({"name": f"Person {n}", "type": "person", "email": f"p{n}@example.com"} for n in range(8))],
        "items": [{"id": f"item-{n}", "name": f"Item {n}", "unit_cost": n, "currency": "usd"} for n in range(8)],
    })
    keap_app = world.keap.asgi()
    passes: list[subprocess.Popen[bytes]] = []

    async def first_pass_killed_at_its_first_create(scope: Scope, receive: Receive, send: Send) -> None:
        async def kill_first(message: Message) -> None:
            if message["type"] == "http.response.start" and scope["method"] == "POST" and len(passes) == 1:
                passes[0].send_signal(signal.SIGKILL)
                passes[0].wait()
            await send(message)

        await keap_app(scope, receive, kill_first if scope["type"] == "http" else send)

    database_url = f"sqlite:///{tmp_path}/cli.db"
    with BackgroundServer(first_pass_killed_at_its_first_create) as keap_server:
        settings = {"INVOICED_API_KEY": API_KEY, "INVOICED_API_URL": world.invoiced_server.url, "KEAP_API_KEY": API_KEY,
                    "KEAP_API_URL": f"{keap_server.url}/crm/rest", "INVOICED_KEAP_DATABASE_URL": database_url}
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("INVOICED_", "KEAP_"))}, **settings}
        command = [sys.executable, "-m", "invoiced_keap", "sync"]
        passes.append(subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        assert passes[0].wait(timeout=60) == -signal.SIGKILL
        with Store(database_url) as store:
            # killed mid-create: creates already in flight may have landed too (they are sent concurrently)
            assert len(store.intents()) >= 1 and 1 <= len(world.keap_records("companies")) <= 8

        passes.append(subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        output = passes[1].communicate(timeout=120)[0].decode()

    assert passes[1].returncode in (0, 2), output
    assert "locked" not in output
    assert duplicates(world) == {"companies": [], "contacts": [], "products": []}
    assert [len(world.keap_records(c)) for c in ("companies", "contacts", "products")] == [8, 8, 8]
    with Store(database_url) as store:
        assert {flow: len(store.active_link_ids(flow)) for flow in ("companies", "contacts", "products")} == {
            "companies": 8, "contacts": 8, "products": 8}
        assert store.intents() == []


def test_a_sync_killed_as_invoiced_makes_people_of_keap_born_contacts_leaves_no_duplicate(world: World, tmp_path: Path) -> None:
    """`invoiced-keap sync`, default settings, `company_contacts` in `create_in_invoiced`: SIGKILLed as Invoiced answers
    its fourth contact create for the Keap-born people of a linked company (half with no email), the next passes
    adopt the Invoiced contacts the creates made (by email, else by name and phone) and go on: no duplicate on
    either side, no open intent, exit 0."""
    acme = world.invoiced.create_customer({"name": "Acme", "type": "company"})
    invoiced_app = world.invoiced.asgi()
    passes: list[subprocess.Popen[bytes]] = []
    creates = Counter[str]()

    async def killed_at_the_fourth_contact_create(scope: Scope, receive: Receive, send: Send) -> None:
        async def kill_at_fourth(message: Message) -> None:
            if message["type"] == "http.response.start" and scope["method"] == "POST" and scope["path"].endswith("/contacts"):
                creates[scope["path"]] += 1
                if creates.total() == 4:
                    passes[-1].send_signal(signal.SIGKILL)
                    passes[-1].wait()
            await send(message)

        await invoiced_app(scope, receive, kill_at_fourth if scope["type"] == "http" else send)

    database_url = f"sqlite:///{tmp_path}/cli.db"
    (tmp_path / "invoiced-keap.toml").write_text('create_in_invoiced = ["company_contacts"]\n')
    with BackgroundServer(killed_at_the_fourth_contact_create) as invoiced_server:
        settings = {"INVOICED_API_KEY": API_KEY, "INVOICED_API_URL": invoiced_server.url, "KEAP_API_KEY": API_KEY,
                    "KEAP_API_URL": world.keap_url, "INVOICED_KEAP_DATABASE_URL": database_url}
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("INVOICED_", "KEAP_"))}, **settings}
        command = [sys.executable, "-m", "invoiced_keap", "sync"]

        def sync() -> tuple[int, str]:
            passes.append(subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
            output = passes[-1].communicate(timeout=120)[0].decode()
            world.clock.advance(10)
            return passes[-1].returncode, output

        assert sync()[0] == 0  # Acme is linked to a Keap company
        company = {"id": world.keap_records("companies")[0]["id"]}
        for n in range(12):
            reach = ({"phone_numbers": [{"field": "PHONE1", "number": f"+1 555 010 {n:04}"}]} if n % 2 else
                     {"email_addresses": [{"field": "EMAIL1", "email": f"kb{n}@example.com"}]})
            RESOURCES["contacts"].create(world.keap.store, {"given_name": f"Kb{n}", "family_name": "Born", "company": company, **reach})
        world.clock.advance(10)
        assert sync()[0] == -signal.SIGKILL
        with Store(database_url) as store:
            assert store.intents() and 4 <= len(world.invoiced.customer_contacts(acme["id"])) < 12  # killed mid-creates
        reruns = [sync(), sync()]

    assert [code for code, _ in reruns] == [0, 0], reruns[0][1]
    people = [f"{c.get('given_name')} {c.get('family_name')}" for c in world.keap_records("contacts")]
    assert len(people) == 12 == len(set(people))
    assert sorted(c["name"] for c in world.invoiced.customer_contacts(acme["id"])) == sorted(people)
    with Store(database_url) as store:
        assert len(store.active_link_ids("company_contacts")) == 12 and store.intents() == []


async def test_contacts_without_email_made_just_before_a_crash_are_adopted_not_created_again(world: World) -> None:
    world.invoiced.seed({"customers": [
        {"name": "Walk-in Phone", "type": "person", "phone": "+1 (555) 010-0200"},
        {"name": "Walk-in Street", "type": "person", "address1": "1 Main St", "postal_code": "85001", "country": "US"},
        {"name": "Walk-in Phone", "type": "person", "phone": "+1 555 010 0300"},  # same name, another phone: not adopted
    ]})
    contacts = build_flows()["contacts"]
    for customer_id in (1, 2):  # a pass opened the intents, Keap made the twins, then the process died
        world.store.open_intent("contacts", "invoiced", str(customer_id), None)
        RESOURCES["contacts"].create(world.keap.store, plan_create(contacts, "invoiced", world.invoiced.customers[customer_id]).fields)
    world.store.open_intent("contacts", "invoiced", "3", None)

    report = await world.sync(flows=["contacts"])

    assert report.exit_code == 0 and report.flows["contacts"].counts["created.keap"] == 1
    assert report.flows["contacts"].counts["linked"] == 2
    assert len(world.keap_records("contacts")) == 3 == len(world.store.active_link_ids("contacts"))
    assert world.store.intents() == []


async def test_an_open_intent_of_a_customer_that_moved_flows_is_closed(world: World) -> None:
    world.invoiced.seed({"customers": [{"name": "Ann Lee", "type": "company"}]})
    world.store.open_intent("companies", "invoiced", "1", "company_name:ann lee")  # a create cut short, then...
    world.invoiced.update_customer(1, {"type": "person", "email": "ann@example.com"})  # ...she became a person

    assert (await world.sync()).exit_code == 0
    assert world.store.intents() == [] and list(world.store.active_link_ids("contacts")) == ["1"]

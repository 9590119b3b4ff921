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

from invoiced_keap.engine.match import normalise_email, normalise_name
from invoiced_keap.state import Store
from tests.engine.conftest import World

pytestmark = pytest.mark.parametrize("store", ["sqlite"], indirect=True)

ROOT = Path(__file__).resolve().parents[2]
KILLS = 6


def start_pass(world: World, database_url: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "tests.engine.sync_driver", world.invoiced_server.url, world.keap_url, database_url]
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def duplicates(world: World) -> dict[str, list[str]]:
    keys = {
        "companies": [normalise_name(c.get("company_name")) for c in world.keap_records("companies")],
        "contacts": [normalise_email(e["email"]) for c in world.keap_records("contacts") for e in c.get("email_addresses", [])],
        "products": [p.get("sku") for p in world.keap_records("products")],
    }
    return {flow: [key for key, n in Counter(values).items() if n > 1] for flow, values in keys.items()}


@pytest.mark.parametrize("seed", [7])
async def test_killed_initial_sync_ends_with_no_duplicates_and_every_record_linked(world: World, tmp_path: Path, seed: int) -> None:
    world.invoiced.seed({
        "customers": [*({"name": f"Company {n}", "type": "company"} for n in range(25)),
                      *({"name": f"Person {n}", "type": "person", "email": f"p{n}@example.com"} for n in range(25))],
        "items": [{"id": f"item-{n}", "name": f"Item {n}", "unit_cost": n, "currency": "usd"} for n in range(20)],
    })
    for emulator in (world.invoiced, world.keap):
        emulator.faults.latency_ms = 25
    database_url = f"sqlite:///{tmp_path}/crash.db"
    chance = random.Random(seed)
    in_keap_after_kills = []
    for _ in range(KILLS):
        process = start_pass(world, database_url)
        time.sleep(chance.uniform(1.0, 3.0))  # the driver needs about a second to start
        process.send_signal(signal.SIGKILL)
        process.wait()
        time.sleep(1.1)  # the killed run's flow locks expire
        in_keap_after_kills.append(sum(len(world.keap_records(c)) for c in ("companies", "contacts", "products")))

    for emulator in (world.invoiced, world.keap):
        emulator.faults.latency_ms = 0
    assert start_pass(world, database_url).wait(timeout=60) == 0

    assert min(in_keap_after_kills) < 70 and max(in_keap_after_kills) > 0  # kills did land mid-run
    assert duplicates(world) == {"companies": [], "contacts": [], "products": []}
    assert [len(world.keap_records(c)) for c in ("companies", "contacts", "products")] == [25, 25, 20]
    with Store(database_url) as store:
        assert {flow: len(store.active_link_ids(flow)) for flow in ("companies", "contacts", "products")} == {
            "companies": 25, "contacts": 25, "products": 20}
        assert store.intents() == []

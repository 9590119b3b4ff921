"""A pass's peak memory does not grow with the number of pairs it changes, nor a dry run's with its plan, nor
`links --json` with the links (issue: API economy and memory).

For each size, N linked companies (linked by `relink` from the Keap ids stamped in Invoiced, then read once)
are renamed in Keap, and one pass carries every rename to Invoiced in a child process of its own
(`benchmarks/one_pass.py`: the kernel's peak resident set of that process). Between 2,000 and 10,000 changed
pairs the peak may grow by what does scale with N, the ids the plan keeps, and not by the records or plans:
before passes streamed it grew by about 100 MB over that range. The same holds for the command
`invoiced-keap sync` over all four flows (N pairs in the mix of `benchmarks/memory.py --all-flows`).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.connectors.pacing import RateLimits
from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.keap.resources import RESOURCES
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.engine.options import SyncOptions
from invoiced_keap.engine.run import Syncer
from invoiced_keap.flows import CATALOGUE, Shadow
from invoiced_keap.state import Store
from invoiced_keap.state.store import NewLink
from tests.support import API_KEY, ONE_PASS, cli_with_peak
SIZES = (2_000, 10_000)
GROWTH_BOUND_MB = 30.0  # generous: ids of 8,000 more pairs take a few MB; the records and plans took 100 MB


def assert_flat(peaks: dict[int, float], what: str) -> None:
    """Peak RSS (MB) by size (`SIZES`) grows by at most `GROWTH_BOUND_MB` from the smaller to the larger; `what` names
    the N (e.g. "changed pairs") in the message, which is also printed."""
    (small_size, small), (large_size, large) = (size_peak for size_peak in sorted(peaks.items()))
    message = f"{what}: peak RSS {small} MB at {small_size:,}, {large} MB at {large_size:,}"
    print(message)
    assert large - small <= GROWTH_BOUND_MB, message


async def link_companies(invoiced_url: str, keap_url: str, database_url: str) -> None:
    """Rebuild the links from the stamps, then one pass that reads both sides whole (no mark yet) and writes nothing."""
    with Store(database_url) as store:
        store.migrate()
        async with InvoicedConnector(API_KEY, invoiced_url) as invoiced, \
                KeapConnector(ApiKey(API_KEY), keap_url, limits=RateLimits()) as keap:
            syncer = Syncer(store, invoiced, keap)
            relinked = await syncer.relink(["companies"])
            first = await syncer.sync(["companies"])
    assert relinked.flows["companies"].counts["linked"] > 0
    assert first.exit_code == 0 and not any(key.startswith(("updated", "created")) for key in first.flows["companies"].counts)


def peak_of_a_pass_changing(size: int, directory: Path) -> float:
    invoiced, keap = InvoicedEmulator(api_key=API_KEY, random_seed=1), KeapEmulator(api_key=API_KEY, random_seed=1)
    invoiced.faults.rate_limit = keap.faults.rate_limit = None
    keap_ids = keap.seed({"companies": [{"company_name": f"Company {n}"} for n in range(size)]})["companies"]
    invoiced.seed({"customers": [{"name": f"Company {n}", "type": "company", "metadata": {"keap_company_id": str(keap_id)}}
                                 for n, keap_id in enumerate(keap_ids)]})
    database_url = f"sqlite:///{directory / f'state-{size}.db'}"
    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(keap.asgi()) as keap_server:
        keap_url = f"{keap_server.url}/crm/rest"
        asyncio.run(link_companies(invoiced_server.url, keap_url, database_url))
        for keap_id in keap_ids:  # a Keap user renames every company
            RESOURCES["companies"].update(keap.store, str(keap_id), {"company_name": f"Renamed {keap_id}"}, None)
        done = subprocess.run([sys.executable, str(ONE_PASS), invoiced_server.url, keap_url, database_url, API_KEY, "companies"],
                              capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["exit_code"] == 0, result
    assert result["counts"]["companies"]["updated.invoiced"] == size, result
    assert {customer["name"] for customer in invoiced.customers.values()} == {f"Renamed {keap_id}" for keap_id in keap_ids}
    return float(result["peak_rss_mb"])


def test_peak_memory_of_a_pass_does_not_grow_with_the_pairs_it_changes(tmp_path: Path) -> None:
    peaks = {size: peak_of_a_pass_changing(size, tmp_path) for size in SIZES}

    assert_flat(peaks, "changed pairs")


def peak_of_a_first_dry_run(size: int, directory: Path) -> float:
    """`invoiced-keap sync --dry-run` of N companies not yet in Keap, in a child process: its peak memory (MB)."""
    invoiced = InvoicedEmulator(api_key=API_KEY, random_seed=1)
    keap = KeapEmulator(api_key=API_KEY, random_seed=1)
    invoiced.faults.rate_limit = keap.faults.rate_limit = None
    invoiced.seed({"customers": [{"name": f"Company {n}", "type": "company", "email": f"c{n}@example.com"} for n in range(size)]})
    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(keap.asgi()) as keap_server:
        env = {"INVOICED_API_KEY": API_KEY, "KEAP_API_KEY": API_KEY, "INVOICED_API_URL": invoiced_server.url,
               "KEAP_API_URL": f"{keap_server.url}/crm/rest", "INVOICED_KEAP_DATABASE_URL": f"sqlite:///{directory / f'dry-{size}.db'}"}
        done, peak = cli_with_peak(["sync", "--dry-run", "--flow", "companies"], env, directory)
    assert done.returncode == 0, done.stderr
    assert "companies create   keap:(new)" in done.stdout and f'"company_name": "Company {size - 1}"' in done.stdout
    assert len(keap.store.table("companies")) == 0  # a dry run writes nothing
    return peak


def test_a_dry_run_of_a_first_sync_prints_its_plan_without_holding_it(tmp_path: Path) -> None:
    peaks = {size: peak_of_a_first_dry_run(size, tmp_path) for size in SIZES}

    assert_flat(peaks, "planned creates")


def peak_of_listing_links(size: int, directory: Path) -> float:
    """`invoiced-keap links --json` over N links with their shadows, in a child process: its peak memory (MB)."""
    database_url = f"sqlite:///{directory / f'links-{size}.db'}"
    with Store(database_url) as store:
        store.migrate()
        shadow = {"company_name": "A company with a name of some length", "email": "someone@example.com", "phone": "+1 555 0100"}
        store.add_links("companies", [NewLink(str(n), str(n), invoiced=Shadow({**shadow, "n": n}), keap=Shadow({**shadow, "n": n}))
                                      for n in range(size)])
    done, peak = cli_with_peak(["links", "--json"], {"INVOICED_KEAP_DATABASE_URL": database_url}, directory)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == size
    return peak


def test_listing_links_as_json_does_not_hold_them_all(tmp_path: Path) -> None:
    peaks = {size: peak_of_listing_links(size, tmp_path) for size in SIZES}

    assert_flat(peaks, "links")


KEAP_NAMES = {"companies": "company_name", "contacts": "given_name", "products": "name"}


def all_flows(pairs: int) -> tuple[list[dict[str, object]], list[dict[str, object]], list[dict[str, object]]]:
    """Invoiced customers, contacts (by position of their customer) and items for `pairs` pairs of the four flows:
    40 % organisations, a person under each, 10 % person customers, the rest items."""
    organisations, persons = pairs * 2 // 5, pairs // 10
    customers = [*({"name": f"Company {n}", "type": "company"} for n in range(organisations)),
                 *({"name": f"Given{n} Family", "type": "person", "email": f"p{n}@example.com"} for n in range(persons))]
    contacts = [{"customer": n, "name": f"Staff{n} Member", "email": f"staff{n}@company.example"} for n in range(organisations)]
    items = [{"id": f"item-{n}", "name": f"Item {n}"} for n in range(pairs - 2 * organisations - persons)]
    return customers, contacts, items


async def first_syncs(invoiced_url: str, keap_url: str, database_url: str) -> None:
    """The initial sync of every flow into an empty Keap, then the pass that reads back its stamps."""
    with Store(database_url) as store:
        store.migrate()
        async with InvoicedConnector(API_KEY, invoiced_url) as invoiced, \
                KeapConnector(ApiKey(API_KEY), keap_url, limits=RateLimits()) as keap:
            syncer = Syncer(store, invoiced, keap, SyncOptions(allow_mass_change=True))
            for _ in range(2):
                report = await syncer.sync()
                assert report.exit_code == 0, report.error


def peak_of_a_sync_changing_every_flow(pairs: int, directory: Path) -> float:
    """`invoiced-keap sync --allow-mass-change` after a Keap user renamed every linked record of the four flows, in a
    child process: its peak memory (MB)."""
    invoiced, keap = InvoicedEmulator(api_key=API_KEY, random_seed=1), KeapEmulator(api_key=API_KEY, random_seed=1)
    invoiced.faults.rate_limit = keap.faults.rate_limit = None
    customers, contacts, items = all_flows(pairs)
    customer_ids = invoiced.seed({"customers": customers, "items": items})["customers"]
    for contact in contacts:
        invoiced.create_contact(customer_ids[int(str(contact["customer"]))], contact)
    database_url = f"sqlite:///{directory / f'all-{pairs}.db'}"
    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(keap.asgi()) as keap_server:
        keap_url = f"{keap_server.url}/crm/rest"
        asyncio.run(first_syncs(invoiced_server.url, keap_url, database_url))
        for name, field in KEAP_NAMES.items():  # a Keap user renames every record
            for keap_id in list(keap.store.table(name)):
                RESOURCES[name].update(keap.store, str(keap_id), {field: f"Renamed {keap_id}"}, None)
        (directory / "invoiced-keap.toml").write_text("[rate_limits.keap_api_key]\n")  # no pacing: the emulator's limits are lifted
        env = {"INVOICED_API_KEY": API_KEY, "KEAP_API_KEY": API_KEY, "INVOICED_API_URL": invoiced_server.url,
               "KEAP_API_URL": keap_url, "INVOICED_KEAP_DATABASE_URL": database_url}
        done, peak = cli_with_peak(["sync", "--allow-mass-change"], env, directory)
    assert done.returncode == 0, done.stdout + done.stderr
    with Store(database_url) as store:
        linked = {name: store.count_links(name) for name in CATALOGUE}
    assert sum(linked.values()) == pairs and all(linked.values()), linked
    renamed = [customer for customer in invoiced.customers.values() if str(customer["name"]).startswith("Renamed")]
    assert len(renamed) == len(customers), f"{len(renamed)} of {len(customers)} customers renamed"
    return peak


def test_peak_memory_of_a_sync_of_every_flow_does_not_grow_with_the_pairs_it_changes(tmp_path: Path) -> None:
    peaks = {size: peak_of_a_sync_changing_every_flow(size, tmp_path) for size in SIZES}

    assert_flat(peaks, "changed pairs")

"""Peak memory of sync passes (whole process: the kernel's peak resident set, `VmHWM`), per kind of pass and size.

    python benchmarks/memory.py [--sizes 2000,10000] [--databases sqlite,postgresql] [--all-flows] [--json PATH|-]

N Invoiced records are synced into an empty Keap (initial), then come the echo pass (it reads back the id
stamps), an idle pass, and a pass after every linked Keap record was renamed (all changed). Each pass runs in a
child process of its own and reports that process's peak resident memory, so a figure is one pass's, imports and
connections included; the emulators run in another process. By default the records are N companies and a pass is
the companies flow alone (`one_pass.py`); with `--all-flows` they are N links' worth of all four flows
(`all_flows_account`) and a pass is the command `invoiced-keap sync --allow-mass-change` as a user runs it
(reconciles when due included), Keap's pacing lifted in its settings file (pacing changes waiting, not memory).
State is an SQLite file in a temporary directory, or a fresh schema of the PostgreSQL server at `--postgres-url`
(default: $INVOICED_KEAP_TEST_POSTGRES_URL), dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from invoiced_keap.state.database import fresh_schema

from harness import EmulatorUrls, KEY, emulators_apart, machine, write_json

ONE_PASS = Path(__file__).with_name("one_pass.py")
PASS_KINDS = ("initial", "echo", "idle", "all_changed")
UNPACED = """[rate_limits.keap_api_key]
"""
"""Settings of the CLI passes: no pacing of Keap calls (every limit of the key left unset)."""
KEAP_NAMES = {"companies": "company_name", "contacts": "given_name", "products": "name"}
"""The field renamed in each Keap object for the all-changed pass."""


def all_flows_account(links: int) -> dict[str, list[dict[str, Any]]]:
    """Invoiced records that make `links` links over the four flows: 40 % organisation customers (companies), one
    person under each of them (company_contacts, 40 %), 10 % person customers (contacts), the rest items (products)."""
    organisations, persons = links * 2 // 5, links // 10
    return {
        "customers": [
            *({"name": f"Company {n}", "type": "company", "email": f"ar{n}@company.example"} for n in range(organisations)),
            *({"name": f"Given{n} Family", "type": "person", "email": f"p{n}@example.com"} for n in range(persons)),
        ],
        "contacts": [{"customer": n, "name": f"Staff{n} Member", "email": f"staff{n}@company.example", "title": "Buyer"}
                     for n in range(organisations)],
        "items": [{"id": f"item-{n}", "name": f"Item {n}", "unit_cost": n % 500, "currency": "usd"}
                  for n in range(links - 2 * organisations - persons)],
    }


def cli_pass(urls: EmulatorUrls, database_url: str, directory: Path) -> dict[str, Any]:
    """`invoiced-keap sync --allow-mass-change` in a child process (`one_pass.py cli`, run in `directory` where the
    settings file lifts Keap's pacing): its peak memory, exit code and API calls (its pass and a reconcile if due)."""
    environment = {"INVOICED_API_KEY": KEY, "KEAP_API_KEY": KEY, "INVOICED_API_URL": urls.invoiced,
                   "KEAP_API_URL": urls.keap_api, "INVOICED_KEAP_DATABASE_URL": database_url,
                   "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(directory),
                   **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {})}
    (directory / "invoiced-keap.toml").write_text(UNPACED)
    done = subprocess.run([sys.executable, str(ONE_PASS), "cli", "sync", "--allow-mass-change"], env=environment,
                          cwd=directory, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"invoiced-keap sync exited {done.returncode}: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    calls = [tuple(map(int, found)) for found in re.findall(r"API calls: invoiced (\d+), keap (\d+)", done.stdout)]
    return {"peak_rss_mb": round(int(done.stderr.strip().splitlines()[-1]) / 1024, 1), "exit_code": done.returncode,
            "calls": {"invoiced": sum(invoiced for invoiced, _ in calls), "keap": sum(keap for _, keap in calls)}}


def one_pass(urls: EmulatorUrls, database_url: str) -> dict[str, Any]:
    """One pass of the companies flow in a child process (`one_pass.py`): its peak memory, calls and counts."""
    done = subprocess.run([sys.executable, str(ONE_PASS), urls.invoiced, urls.keap_api, database_url, KEY, "companies"],
                          capture_output=True, text=True, check=True)
    answer: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    answer["counts"] = answer["counts"]["companies"]
    return answer


async def rename_in_keap(urls: EmulatorUrls, keap_object: str = "companies") -> int:
    """A Keap user renames every record of `keap_object` (companies, contacts, products; 20 requests in flight)."""
    headers, field = {"X-Keap-API-Key": KEY}, KEAP_NAMES[keap_object]
    async with httpx.AsyncClient(base_url=urls.keap_api, headers=headers, timeout=60) as keap:
        ids: list[str] = []
        token = None
        while True:
            params = {"page_size": "1000", **({"page_token": token} if token else {})}
            body = (await keap.get(f"/v2/{keap_object}", params=params)).json()
            ids += [str(record["id"]) for record in body[keap_object]]
            token = body.get("next_page_token")
            if not token:
                break
        limit = asyncio.Semaphore(20)

        async def rename(record_id: str) -> None:
            async with limit:
                answer = await keap.patch(f"/v2/{keap_object}/{record_id}", params={"update_mask": field},
                                          json={field: f"Renamed {record_id}"})
                answer.raise_for_status()

        await asyncio.gather(*(rename(record_id) for record_id in ids))
        return len(ids)


@contextmanager
def state_database(kind: str, postgres_url: str | None) -> Iterator[str]:
    """A fresh state database of `kind` (sqlite, postgresql), removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{Path(directory) / 'state.db'}"
        return
    if not postgres_url:
        raise SystemExit("postgresql: give --postgres-url or set INVOICED_KEAP_TEST_POSTGRES_URL")
    with fresh_schema(postgres_url, "bench") as url:
        yield url


def measure(size: int, database: str, postgres_url: str | None) -> dict[str, Any]:
    """The companies flow's passes over `size` companies, each by `one_pass.py`."""
    seed = {"customers": [{"name": f"Company {n}", "type": "company", "email": f"c{n}@example.com"} for n in range(size)]}
    with state_database(database, postgres_url) as database_url, emulators_apart(seed) as urls:
        passes = {kind: one_pass(urls, database_url) for kind in PASS_KINDS[:-1]}
        renamed = asyncio.run(rename_in_keap(urls))
        passes["all_changed"] = one_pass(urls, database_url)
        assert passes["all_changed"]["counts"].get("updated.invoiced") == renamed, passes["all_changed"]
    return {"records": size, "database": database, "passes": passes}


def measure_all_flows(links: int, database: str, postgres_url: str | None) -> dict[str, Any]:
    """Whole `invoiced-keap sync` passes over `links` links of all four flows (`all_flows_account`); all changed:
    every Keap company, contact and product renamed."""
    with state_database(database, postgres_url) as database_url, emulators_apart(all_flows_account(links)) as urls, \
            tempfile.TemporaryDirectory() as directory:
        passes: dict[str, Any] = {}
        for kind in PASS_KINDS:
            renamed = {name: asyncio.run(rename_in_keap(urls, name)) for name in KEAP_NAMES} if kind == "all_changed" else {}
            passes[kind] = {**cli_pass(urls, database_url, Path(directory)), **({"renamed": renamed} if renamed else {})}
            print(f"all flows, {links:,} links, {database}: {kind} {passes[kind]['peak_rss_mb']} MB", file=sys.stderr, flush=True)
    return {"records": links, "database": database, "flows": "all", "passes": passes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,10000", help="comma-separated record counts")
    parser.add_argument("--databases", default="sqlite", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--postgres-url", default=os.environ.get("INVOICED_KEAP_TEST_POSTGRES_URL"))
    parser.add_argument("--all-flows", action="store_true", help="all four flows, whole `invoiced-keap sync` passes")
    parser.add_argument("--json", default="-", help="where to write the JSON results (- for stdout)")
    args = parser.parse_args()
    run = measure_all_flows if args.all_flows else measure
    results = {"machine": machine(), "runs": [run(int(size), database, args.postgres_url)
                                                    for database in args.databases.split(",") for size in args.sizes.split(",")]}
    write_json(results, args.json)


if __name__ == "__main__":
    main()

"""Peak memory of sync passes (whole process: the kernel's peak resident set, `VmHWM`), per kind of pass and size.

    python benchmarks/memory.py [--sizes 2000,10000] [--databases sqlite,postgresql] [--json PATH|-]

N Invoiced companies are synced into an empty Keap (initial), then come the echo pass (it reads back the id
stamps), an idle pass, and a pass after every linked Keap company was renamed (all changed). Each pass runs in a
child process of its own and reports that process's peak resident memory, so a figure is one pass's, imports and
connections included; the emulators run in another process. State is an SQLite file in a temporary directory,
or a fresh schema of the PostgreSQL server at `--postgres-url` (default: $INVOICED_KEAP_TEST_POSTGRES_URL), dropped
afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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


def one_pass(urls: EmulatorUrls, database_url: str) -> dict[str, Any]:
    """One pass of the companies flow in a child process (`one_pass.py`): its peak memory, calls and counts."""
    done = subprocess.run([sys.executable, str(ONE_PASS), urls.invoiced, urls.keap_api, database_url, KEY, "companies"],
                          capture_output=True, text=True, check=True)
    answer: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    answer["counts"] = answer["counts"]["companies"]
    return answer


async def rename_every_company(urls: EmulatorUrls) -> int:
    """A Keap user renames every company (20 requests in flight)."""
    headers = {"X-Keap-API-Key": KEY}
    async with httpx.AsyncClient(base_url=urls.keap_api, headers=headers, timeout=60) as keap:
        ids: list[str] = []
        token = None
        while True:
            params = {"page_size": "1000", "fields": "company_name", **({"page_token": token} if token else {})}
            body = (await keap.get("/v2/companies", params=params)).json()
            ids += [str(company["id"]) for company in body["companies"]]
            token = body.get("next_page_token")
            if not token:
                break
        limit = asyncio.Semaphore(20)

        async def rename(company_id: str) -> None:
            async with limit:
                answer = await keap.patch(f"/v2/companies/{company_id}", params={"update_mask": "company_name"},
                                          json={"company_name": f"Renamed {company_id}"})
                answer.raise_for_status()

        await asyncio.gather(*(rename(company_id) for company_id in ids))
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
    seed = {"customers": [{"name": f"Company {n}", "type": "company", "email": f"c{n}@example.com"} for n in range(size)]}
    with state_database(database, postgres_url) as database_url, emulators_apart(seed) as urls:
        passes = {kind: one_pass(urls, database_url) for kind in ("initial", "echo", "idle")}
        renamed = asyncio.run(rename_every_company(urls))
        passes["all_changed"] = one_pass(urls, database_url)
        assert passes["all_changed"]["counts"].get("updated.invoiced") == renamed, passes["all_changed"]
    return {"records": size, "database": database, "passes": passes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,10000", help="comma-separated record counts")
    parser.add_argument("--databases", default="sqlite", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--postgres-url", default=os.environ.get("INVOICED_KEAP_TEST_POSTGRES_URL"))
    parser.add_argument("--json", default="-", help="where to write the JSON results (- for stdout)")
    args = parser.parse_args()
    results = {"machine": machine(), "runs": [measure(int(size), database, args.postgres_url)
                                                    for database in args.databases.split(",") for size in args.sizes.split(",")]}
    write_json(results, args.json)


if __name__ == "__main__":
    main()

"""Peak memory of sync passes (whole process: the kernel's peak resident set, `VmHWM`), per kind of pass and size.

    python benchmarks/memory.py [--sizes 2000,10000] [--json PATH|-]

N Invoiced companies are synced into an empty Keap (initial), then come the echo pass (it reads back the id
stamps), an idle pass, and a pass after every linked Keap company was renamed (all changed). Each pass runs in a
child process of its own and reports that process's peak resident memory, so a figure is one pass's, imports and
connections included; the emulators run in another process. State is an SQLite file in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from harness import KEY, EmulatorUrls, emulators_apart, machine

PASS = """
import asyncio, json, re, sys
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.connectors.pacing import RateLimits
from invoiced_keap.engine.options import SyncOptions
from invoiced_keap.engine.run import Syncer
from invoiced_keap.state import Store

async def main(invoiced_url, keap_url, database_url):
    with Store(database_url) as store:
        store.migrate()
        async with InvoicedConnector(sys.argv[4], invoiced_url) as invoiced, \\
                KeapConnector(ApiKey(sys.argv[4]), keap_url, limits=RateLimits()) as keap:
            report = await Syncer(store, invoiced, keap, SyncOptions(allow_mass_change=True)).sync(["companies"])
    # VmHWM: this process's own peak RSS (ru_maxrss would carry over a larger parent's peak across fork and exec)
    peak = int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1)) / 1024
    print(json.dumps({"peak_rss_mb": round(peak, 1), "calls": report.api_calls, "counts": report.counts()["companies"],
                      "exit_code": report.exit_code, "error": report.error}))

asyncio.run(main(*sys.argv[1:4]))
"""


def one_pass(urls: EmulatorUrls, database_url: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", PASS, urls.invoiced, urls.keap_api, database_url, KEY],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


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


def measure(size: int) -> dict[str, Any]:
    seed = {"customers": [{"name": f"Company {n}", "type": "company", "email": f"c{n}@example.com"} for n in range(size)]}
    with tempfile.TemporaryDirectory() as directory, emulators_apart(seed) as urls:
        database_url = f"sqlite:///{Path(directory) / 'state.db'}"
        passes = {kind: one_pass(urls, database_url) for kind in ("initial", "echo", "idle")}
        renamed = asyncio.run(rename_every_company(urls))
        passes["all_changed"] = one_pass(urls, database_url)
        assert passes["all_changed"]["counts"].get("updated.invoiced") == renamed, passes["all_changed"]
    return {"records": size, "passes": passes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,10000", help="comma-separated record counts")
    parser.add_argument("--json", default="-", help="where to write the JSON results (- for stdout)")
    args = parser.parse_args()
    results = {"machine": machine(), "runs": [measure(int(size)) for size in args.sizes.split(",")]}
    text = json.dumps(results, indent=2)
    if args.json == "-":
        print(text)
    else:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()

"""`verify`'s peak memory does not grow with the number of linked pairs (issue 13: 554 MB at 50,000 links).

For each size, N linked companies (linked by `relink` from the Keap ids stamped in Invoiced, then read once by a
pass, as in `tests/engine/test_memory.py`), a few of them then renamed in Keap; `invoiced-keap verify --json` runs in
a child process of its own (`tests.support.cli_with_peak`: the kernel's peak resident set of that process). Between
2,000 and 10,000 pairs the peak may grow by what does scale with N, the ids verify keeps and the differences it
found, and not by the records, links or shadows: before verify spooled its listings and walked the links a page at
a time it grew by about 105 MB over that range.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import invoiced_keap
from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.keap.resources import RESOURCES
from invoiced_keap.emulators.serve import BackgroundServer
from tests.engine.test_memory import SIZES, assert_flat, link_companies
from tests.support import API_KEY, cli_with_peak

RENAMED = 5
"""Companies renamed in Keap after the pass: pending pairs verify must still find among the N."""


def peak_of_verify(size: int, directory: Path) -> float:
    """`invoiced-keap verify --json --flow companies` over N linked companies, in a child process: its peak (MB)."""
    invoiced, keap = InvoicedEmulator(api_key=API_KEY, random_seed=1), KeapEmulator(api_key=API_KEY, random_seed=1)
    invoiced.faults.rate_limit = keap.faults.rate_limit = None
    keap_ids = keap.seed({"companies": [{"company_name": f"Company {n}"} for n in range(size)]})["companies"]
    invoiced_ids = invoiced.seed({"customers": [
        {"name": f"Company {n}", "type": "company", "metadata": {"keap_company_id": str(keap_id)}}
        for n, keap_id in enumerate(keap_ids)]})["customers"]
    database_url = f"sqlite:///{directory / f'verify-{size}.db'}"
    renamed = [str(keap_id) for keap_id in keap_ids[size // 2:size // 2 + RENAMED]]
    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(keap.asgi()) as keap_server:
        keap_url = f"{keap_server.url}/crm/rest"
        asyncio.run(link_companies(invoiced_server.url, keap_url, database_url))
        for keap_id in renamed:
            RESOURCES["companies"].update(keap.store, keap_id, {"company_name": f"Renamed {keap_id}"}, None)
        env = {"INVOICED_API_KEY": API_KEY, "KEAP_API_KEY": API_KEY, "INVOICED_API_URL": invoiced_server.url,
               "KEAP_API_URL": keap_url, "INVOICED_KEAP_DATABASE_URL": database_url,
               "PYTHONPATH": str(Path(invoiced_keap.__file__).parents[1])}  # the child runs the code this test imported
        done, peak = cli_with_peak(["verify", "--json", "--flow", "companies"], env, directory)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    [companies] = json.loads(done.stdout)["flows"]
    assert companies["linked_pairs"] == size
    assert companies["agreeing_pairs_by_rule"]["name"] == size - RENAMED
    assert [(d["keap_id"], d["keap_value"]) for d in companies["pending"]] == [(keap_id, f"Renamed {keap_id}") for keap_id in renamed]
    assert companies["drifted"] == companies["invoiced_without_twin"] == companies["links_to_missing_records"] == []
    assert len(invoiced_ids) == size
    return peak


def test_peak_memory_of_verify_does_not_grow_with_the_linked_pairs(tmp_path: Path) -> None:
    peaks = {size: peak_of_verify(size, tmp_path) for size in SIZES}

    assert_flat(peaks, "linked pairs")

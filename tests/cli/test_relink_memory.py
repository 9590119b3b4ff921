"""`relink`'s peak memory does not grow with the number of links it rebuilds (issue 13: it held both sides' whole
listings and every pair's records at once).

For each size, N Keap companies and N Invoiced customers stamped with their Keap ids, the state database empty (lost);
`invoiced-keap relink --flow companies` runs in a child process of its own (`tests.support.cli_with_peak`: the
kernel's peak resident set of that process). Between 2,000 and 10,000 links the peak may grow by what does scale
with N, the ids relink keeps, and not by the records.
"""

from __future__ import annotations

from pathlib import Path

import invoiced_keap
from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.state import Store
from tests.engine.test_memory import SIZES, assert_flat
from tests.support import API_KEY, cli_with_peak

NOTES = "Net 30, ship to the loading dock at the back; " * 20
"""A long value in each Keap company and Invoiced customer, as real accounts hold: about 1 KB a record."""


def peak_of_relink(size: int, directory: Path) -> float:
    """`invoiced-keap relink --flow companies` over N stamped customers and an empty state, in a child process: its
    peak (MB); every pair linked with the shadows of both records."""
    invoiced, keap = InvoicedEmulator(api_key=API_KEY, random_seed=1), KeapEmulator(api_key=API_KEY, random_seed=1)
    invoiced.faults.rate_limit = keap.faults.rate_limit = None
    keap_ids = keap.seed({"companies": [{"company_name": f"Company {n}", "notes": NOTES} for n in range(size)]})["companies"]
    invoiced_ids = invoiced.seed({"customers": [
        {"name": f"Company {n}", "type": "company", "notes": NOTES, "metadata": {"keap_company_id": str(keap_id)}}
        for n, keap_id in enumerate(keap_ids)]})["customers"]
    database_url = f"sqlite:///{directory / f'relink-{size}.db'}"
    with Store(database_url) as store:
        store.migrate()
    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(keap.asgi()) as keap_server:
        env = {"INVOICED_API_KEY": API_KEY, "KEAP_API_KEY": API_KEY, "INVOICED_API_URL": invoiced_server.url,
               "KEAP_API_URL": f"{keap_server.url}/crm/rest", "INVOICED_KEAP_DATABASE_URL": database_url,
               "PYTHONPATH": str(Path(invoiced_keap.__file__).parents[1])}  # the child runs the code this test imported
        done, peak = cli_with_peak(["relink", "--flow", "companies"], env, directory)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with Store(database_url) as store:
        links = store.active_link_ids("companies")
        first = store.find_link("companies", "invoiced", str(invoiced_ids[0]))
    assert links == {str(invoiced_id): str(keap_id) for invoiced_id, keap_id in zip(invoiced_ids, keap_ids, strict=True)}
    assert first is not None
    assert [first.shadow(side).field_values["name"] for side in ("invoiced", "keap")] == ["Company 0", "Company 0"]  # type: ignore[union-attr]
    return peak


def test_peak_memory_of_relink_does_not_grow_with_the_links_it_rebuilds(tmp_path: Path) -> None:
    peaks = {size: peak_of_relink(size, tmp_path) for size in SIZES}

    assert_flat(peaks, "links")

"""A pass's peak memory is bounded whatever the length of the values it carries (issue 13: at 1,000 items with
20,000-character descriptions of mixed text, peaks of 1,049 MB initial, 746 MB echo, 302 MB idle, 663 MB with every
pair changed).

A thousand items whose descriptions are 20,000 characters of text with accents, CJK and an emoji (4 bytes a
character in a Python string) go through the whole command `invoiced-keap sync --allow-mass-change`, each pass in a
child process of its own (`tests.support.cli_with_peak`): the initial sync, the echo pass that reads back what it
wrote, an idle pass, and a pass after a Keap user changed every description. Each peak stays under `BOUND_MB`:
Keap's pages of products (change reads and the reconcile's id scan, which gets whole products) are sized by the
longest record stored lately (100 such products a page). At 1,000 records a page they peaked at 282 MB (initial,
its reconcile), 269 MB (echo), 269 MB (idle) and 257 MB (every pair changed); before batches and the pass report were
bounded by characters as well as by count, 400 items took 413 MB (initial), 344 MB (echo) and 344 MB (every pair
changed).
"""

from __future__ import annotations

from pathlib import Path

import invoiced_keap
from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.keap.resources import RESOURCES
from invoiced_keap.emulators.serve import BackgroundServer
from tests.support import API_KEY, cli_with_peak

ITEMS = 1_000
BOUND_MB = 200.0  # issue 13's goal for any pass; ordinary data peaks at 90-125 MB
TEXT = "lorem ipsum dolor sit amet \u00e9\u4e2d\U0001F600 "


def description(n: int) -> str:
    return (f"Item {n} " + TEXT * 700)[:20_000]


def test_passes_over_long_descriptions_stay_under_the_bound(tmp_path: Path) -> None:
    invoiced, keap = InvoicedEmulator(api_key=API_KEY, random_seed=1), KeapEmulator(api_key=API_KEY, random_seed=1)
    invoiced.faults.rate_limit = keap.faults.rate_limit = None
    invoiced.seed({"items": [{"id": f"item-{n}", "name": f"Item {n}", "unit_cost": 100, "currency": "usd",
                              "description": description(n)} for n in range(ITEMS)]})
    peaks: dict[str, float] = {}
    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(keap.asgi()) as keap_server:
        (tmp_path / "invoiced-keap.toml").write_text("[rate_limits.keap_api_key]\n")  # the emulator's limits are lifted
        env = {"INVOICED_API_KEY": API_KEY, "KEAP_API_KEY": API_KEY, "INVOICED_API_URL": invoiced_server.url,
               "KEAP_API_URL": f"{keap_server.url}/crm/rest", "INVOICED_KEAP_DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
               "PYTHONPATH": str(Path(invoiced_keap.__file__).parents[1])}  # the child runs the code this test imported
        for label in ("initial", "echo", "idle", "changed"):
            if label == "changed":  # a Keap user rewrites every description
                for keap_id in list(keap.store.table("products")):
                    RESOURCES["products"].update(keap.store, str(keap_id), {"description": f"Changed {keap_id} " + TEXT * 600}, None)
            done, peaks[label] = cli_with_peak(["sync", "--allow-mass-change"], env, tmp_path)
            assert done.returncode == 0, f"{label}: " + done.stdout[-2000:] + done.stderr[-2000:]

    products = keap.store.table("products").values()
    assert len(products) == ITEMS
    assert {str(item["description"]) for item in invoiced.items.values()} == {str(product["description"]).strip() for product in products}
    assert all(str(item["description"]).startswith("Changed") for item in invoiced.items.values())
    print("peak RSS (MB):", peaks)
    assert all(peak <= BOUND_MB for peak in peaks.values()), peaks

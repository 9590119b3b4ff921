"""`--log-format json`: every line a first `sync` writes on stderr is a JSON object; there is an event per
record created naming it, a pass start and end with counts, and, off a terminal, progress lines while the
creates go at Keap's pace (default settings: 10 calls a second)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from tests.cli.conftest import INVOICED_KEY, KEAP_KEY

ITEMS = 150  # 15 s of creates at Keap's pace: more than one progress interval


def test_the_json_log_of_a_first_sync_parses_line_by_line_and_names_each_created_record(tmp_path: Path) -> None:
    invoiced = InvoicedEmulator(api_key=INVOICED_KEY, random_seed=1)
    keap = KeapEmulator(api_key=KEAP_KEY, random_seed=1)
    invoiced.seed({"customers": [{"name": "Acme", "type": "company"}, {"name": "Globex", "type": "company"}],
                   "items": [{"id": f"item-{n}", "name": f"Item {n}", "unit_cost": n, "currency": "usd"} for n in range(ITEMS)]})
    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(keap.asgi()) as keap_server:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("INVOICED_", "KEAP_"))},
               "INVOICED_API_KEY": INVOICED_KEY, "INVOICED_API_URL": invoiced_server.url, "KEAP_API_KEY": KEAP_KEY,
               "KEAP_API_URL": f"{keap_server.url}/crm/rest", "INVOICED_KEAP_DATABASE_URL": f"sqlite:///{tmp_path}/state.db"}
        done = subprocess.run([sys.executable, "-m", "invoiced_keap", "--log-format", "json", "--log-level", "INFO", "sync",
                               "--flow", "companies", "--flow", "products"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines()]  # each line parses, or this fails
    created = {(event["flow"], event["source_id"]): event for event in events if event.get("event") == "create"}
    assert {source_id for flow, source_id in created if flow == "products"} == {f"item-{n}" for n in range(ITEMS)}
    assert sorted(event["name"] for (flow, _), event in created.items() if flow == "companies") == ["Acme", "Globex"]
    assert {event["created_id"] for (flow, _), event in created.items() if flow == "products"} == {
        str(record["id"]) for record in keap.store.records("products")}
    product = created[("products", "item-7")]
    assert "price" in product["fields"] and "price" not in product and "sku" not in product  # names, not values
    finished = [event for event in events if event.get("event") == "pass.finished"]
    assert finished[0]["counts"]["products"]["created.keap"] == ITEMS and finished[0]["exit_code"] == 0
    progress = [event for event in events if event.get("event") == "progress"]
    assert progress and all({"step", "done"} <= set(event) for event in progress)

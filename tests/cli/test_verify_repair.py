"""`verify --repair`: a pair that drifted behind the engine's back (both sides equal their shadows, yet
disagree) is invisible to `sync`; verify reports it, --repair settles it by the conflict policy, and verify then
exits 0."""

from __future__ import annotations

import json
import time

from invoiced_keap.emulators.keap.resources import RESOURCES
from invoiced_keap.engine.shadows import snapshot
from invoiced_keap.flows import build_flows


def test_repair_settles_drift_that_sync_never_sees(connected, invoiced, keap) -> None:
    keap[0].faults.rate_limit = None  # this test is about what is written, not about pacing
    invoiced[0].seed({"customers": [{"name": "Acme", "type": "company"}, {"name": "Globex", "type": "company"}]})
    assert connected("sync").exit_code == 0
    with connected.store() as store:
        acme_keap = store.active_link_ids("companies")["1"]
        time.sleep(1 - time.time() % 1)  # `newest` compares whole seconds: the drift lands in a later one than Invoiced's
        drifted = RESOURCES["companies"].update(keap[0].store, acme_keap, {"company_name": "Acme (typo)"}, None)
        store.upsert_link("companies", "1", acme_keap, keap=snapshot(build_flows()["companies"], "keap", drifted))

    assert connected("sync").exit_code == 0
    before = connected("verify", "--json", "--flow", "companies")
    assert before.exit_code == 2
    [companies] = json.loads(before.stdout)["flows"]
    assert [(d["invoiced_id"], d["rule"], d["keap_value"]) for d in companies["drifted"]] == [("1", "name", "Acme (typo)")]

    repaired = connected("verify", "--repair")

    assert repaired.exit_code == 0, repaired.stdout + repaired.stderr
    assert "verify: everything agrees" in repaired.stdout
    # conflicts = newest (the default): the drifted Keap edit is the later one, so it wins on both sides
    assert keap[0].store.get("companies", acme_keap)["company_name"] == "Acme (typo)" == invoiced[0].customers[1]["name"]
    again = connected("verify")
    assert again.exit_code == 0, again.stdout + again.stderr
    keap[0].requests.clear()
    invoiced[0].requests.clear()
    assert connected("sync").exit_code == 0
    writes = [key for key in {**keap[0].requests, **invoiced[0].requests} if not key.startswith("GET")]
    assert writes == []

"""Chaos: random edits on both sides of every flow race sync passes under 5xx, 429 storms, latency, dropped
connections and SIGKILLs; once the faults stop, at most two clean passes converge (see `checker` for what that means).

CI size by default; the long run: `INVOICED_KEAP_CHAOS_EDITS=1000 INVOICED_KEAP_CHAOS_RESULTS=benchmarks/results/chaos.json
.venv/bin/python -m pytest tests/chaos/test_chaos.py` (`INVOICED_KEAP_CHAOS_SEED` picks another run).
The run directory (state database, one log per pass, `edits.jsonl`: every user edit with its time, `journal.log`:
what each random action did: edits, creates, deletes, moves, type changes) is named in a failure's message;
`INVOICED_KEAP_CHAOS_DIR=path` puts it there instead of pytest's temporary directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from tests.chaos.scenario import chaos_world, converge, run_chaos
from tests.chaos.world import ChaosWorld

EDITS = int(os.environ.get("INVOICED_KEAP_CHAOS_EDITS", "60"))
SEED = int(os.environ.get("INVOICED_KEAP_CHAOS_SEED", "7"))
RESULTS = os.environ.get("INVOICED_KEAP_CHAOS_RESULTS")
RUN_DIR = os.environ.get("INVOICED_KEAP_CHAOS_DIR")


def keep_edits(world: ChaosWorld, run_dir: Path) -> None:
    """The edit log beside the passes' logs and the state, to line a problem up with what each pass did."""
    with open(run_dir / "edits.jsonl", "w") as log:
        for edit in world.edits:
            log.write(json.dumps({**asdict(edit), "at": edit.at.isoformat()}) + "\n")
    (run_dir / "journal.log").write_text("".join(f"{line}\n" for line in world.journal))


def test_chaos_run_converges_in_at_most_two_clean_passes(tmp_path: Path) -> None:
    run_dir = Path(RUN_DIR) if RUN_DIR else tmp_path
    run_dir.mkdir(parents=True, exist_ok=True)
    with chaos_world(run_dir, SEED) as world:
        figures = run_chaos(world, EDITS)
        figures.seed = SEED
        problems = converge(world, figures)
        keep_edits(world, run_dir)

    if RESULTS:
        command = (f"INVOICED_KEAP_CHAOS_EDITS={EDITS} INVOICED_KEAP_CHAOS_SEED={SEED} INVOICED_KEAP_CHAOS_RESULTS={RESULTS} "
                   ".venv/bin/python -m pytest tests/chaos/test_chaos.py")
        Path(RESULTS).write_text(json.dumps({**figures.as_json(), "converged": not problems, "command": command}, indent=2) + "\n")
    assert problems == [], "\n".join([*problems, f"run directory: {run_dir}"])
    assert figures.kills >= 1, "no pass was killed: the run did not test crash safety"
    assert figures.passes_to_converge is not None and figures.passes_to_converge <= 2

"""`failures`' peak memory does not grow with the number of failures (169 MB at 2,000 and 472 MB at 10,000 while it
built a Rich table of them all): it reads the store a page at a time and prints each failure as it comes, as a block
or, with `--json`, as an item of a JSON list written an item at a time.

For each size, N open failures are recorded in the state store (`Store.record_failure`, as a pass does for each record
a system rejects, with a message and the payload that was sent); `invoiced-keap failures` and `failures --json` run in
child processes of their own (`tests.support.cli_with_peak`: the kernel's peak resident set of that process). Every
failure is still listed.
"""

from __future__ import annotations

import json
from pathlib import Path

import invoiced_keap
from invoiced_keap.state import Store
from tests.engine.test_memory import SIZES, assert_flat
from tests.support import cli_with_peak

MESSAGE = "Contact must contain at least one email address, phone number or address: the record was refused " * 3
PAYLOAD = {"given_name": "Jane", "family_name": "Cooper", "notes": "n" * 1_000}


def peaks_of_failures(size: int, directory: Path) -> tuple[float, float]:
    """The peaks (MB) of `failures` and `failures --json` over N open failures of the contacts flow."""
    database_url = f"sqlite:///{directory / f'failures-{size}.db'}"
    with Store(database_url) as store:
        store.migrate()
        for number in range(size):
            store.record_failure("contacts", "invoiced", f"cus_{number}", "create", f"{MESSAGE}#{number}",
                                 field="email", payload=PAYLOAD)
    env = {"INVOICED_KEAP_DATABASE_URL": database_url, "COLUMNS": "80",
           "PYTHONPATH": str(Path(invoiced_keap.__file__).parents[1])}  # the child runs the code this test imported
    listed, listed_peak = cli_with_peak(["failures"], env, directory)
    assert listed.returncode == 0, listed.stderr[-2000:]
    lines = listed.stdout.splitlines()
    messages = [line.strip() for line in lines if line.startswith("    ")]
    assert messages == [f"{MESSAGE}#{number} (field email)" for number in range(size)]
    assert lines[-1].startswith(f"{size} open failures")
    as_json, json_peak = cli_with_peak(["failures", "--json"], env, directory)
    assert as_json.returncode == 0, as_json.stderr[-2000:]
    rows = json.loads(as_json.stdout)
    assert [row["record_id"] for row in rows] == [f"cus_{number}" for number in range(size)]
    return listed_peak, json_peak


def test_peak_memory_of_failures_does_not_grow_with_the_failures(tmp_path: Path) -> None:
    peaks = {size: peaks_of_failures(size, tmp_path) for size in SIZES}

    for index, listing in enumerate(("failures", "failures --json")):
        assert_flat({size: peak[index] for size, peak in peaks.items()}, f"{listing} (N failures)")

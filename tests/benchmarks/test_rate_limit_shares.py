"""The rate-limit figures of `benchmarks/connectors.py` and `benchmarks/paced.py` can be read without thinking Keap's
limit was broken: beside the average rate (which passes 100 % over a run shorter than Keap's windows, all calls
admitted) each gives a share that is exact, at most 1 for a paced run, and 1 where the pacer fills every window.
(A tester saw 113.6 % of the limit and a pass "faster than its physical minimum", all statuses 200.)"""

from __future__ import annotations

import connectors
import paced

PAT = connectors.PAT_LIMIT
MINUTE = 1_748_999_160.0  # a minute's start, as harness.EmulatorTime begins


def test_the_windows_allowance_counts_every_second_and_minute_touched() -> None:
    assert connectors.window_allowance(MINUTE, MINUTE + 0.5, PAT) == 10
    assert connectors.window_allowance(MINUTE + 0.9, MINUTE + 1.1, PAT) == 20  # two seconds touched
    assert connectors.window_allowance(MINUTE, MINUTE + 65, PAT) == 240 + 6 * 10
    assert connectors.window_allowance(MINUTE + 59, MINUTE + 60, PAT) == 20  # a second of each minute


async def test_a_paced_run_of_300_calls_at_240_a_minute_uses_all_its_windows_allow_and_no_more() -> None:
    run = await connectors.emulator_time_throughput(300)

    assert run["statuses"] == {"200": 300}
    assert run["share_of_limit"] > 1  # the average over 66 s: the first minute's 240 and the next one's 60
    assert (run["window_allowance"], run["share_of_allowance"]) == (300, 1.0)


async def test_a_paced_initial_sync_takes_at_least_its_physical_minimum() -> None:
    result = await paced.paced_initial_sync(300)

    assert result["exit_code"] == 0 and "429" not in result["statuses"]
    assert result["minimum_minutes"] * 60 == paced.earliest_last_call(result["keap_calls"], result["limits"])
    assert result["ratio"] >= 1  # (its ratio to calls / 240 a minute was 0.87 here: the last minute's calls go at 10/s)

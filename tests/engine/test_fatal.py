"""A fatal error in the middle of a pass's writes (the day's Keap quota used up) stops the pass cleanly."""

from __future__ import annotations

import time

import pytest

from tests.engine.conftest import World
from tests.support import ManualClock

pytestmark = pytest.mark.parametrize("state_url", ["sqlite"], indirect=True)


@pytest.fixture
def world_clock() -> ManualClock:
    """The real time: the emulator's day quota then ends at a midnight the client sees as hours away."""
    return ManualClock(time.time())


async def test_quota_used_up_mid_writes_stops_the_pass_and_keeps_what_was_done(world: World) -> None:
    for index in range(6):
        world.invoiced.create_customer({"name": f"Company {index}", "type": "company"})
    world.keap.faults.rate_limit = {"per_day": 4}

    report = await world.sync(flows=["companies"])

    assert report.exit_code == 1
    assert "resume at" in (report.error or report.flows["companies"].error or "")
    created = world.keap_records("companies")
    assert 0 < len(created) < 6
    assert len(world.store.active_link_ids("companies")) == len(created)

    world.keap.faults.rate_limit = None
    again = await world.sync(flows=["companies"])
    assert again.exit_code == 0
    assert len(world.keap_records("companies")) == 6
    assert len(world.store.active_link_ids("companies")) == 6

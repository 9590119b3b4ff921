"""Keap quota of an idle day of `invoiced-keap run`, from measured calls, as a share of a key's daily quota.

    python benchmarks/quota.py [--sizes 10000,100000] [--json PATH|-]

Measured: the Keap calls of an idle poll that reads Keap, of one that does not (what `run` polls between
Keap polls while Keap's hooks are verified), and of a reconcile of every flow, at N linked records
(`sync.py`'s passes: a third companies, contacts and products); and the Keap calls of one hook check
(`keap_hooks.ensure_hooks` against the Keap emulator, the nine hooks already registered and Verified).

Read from the code, not copied: the poll intervals (`config.Schedule`'s defaults: `poll_interval`, and
`keap_poll_interval` while the hooks are verified), the reconcile interval (`full_scan_interval`), the
hook check interval (`server.service.HOOK_CHECK_INTERVAL`) and a personal access token's daily quota
(`config.RateLimitSettings`). An idle day with hooks on: every poll reads Invoiced, one every
`keap_poll_interval` also reads Keap, a hook check every `HOOK_CHECK_INTERVAL`, one reconcile. With hooks
off (`keap_hooks = false`): every poll reads Keap, no hook checks, one reconcile.
"""

from __future__ import annotations

import argparse
import asyncio
import math
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import sync
from harness import KEY, RETRY, write_json
from invoiced_keap.config import RateLimitSettings, Schedule
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.connectors.pacing import RateLimits
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.flows import CATALOGUE
from invoiced_keap.server.keap_hooks import RECEIVER_PATH, SECRET_HEADER, ensure_hooks, event_keys, hook_url
from invoiced_keap.server.service import HOOK_CHECK_INTERVAL

DAY = 86_400.0
GOAL_WITH_HOOKS = 0.02
GOAL_WITHOUT_HOOKS = 0.15
TOKEN = "benchmark-token"


def handshake_receiver() -> Starlette:
    """What Keap's verification needs from our receiver: the `X-Hook-Secret` echoed with a 200."""

    async def receive(request: Request) -> Response:
        secret = request.headers.get(SECRET_HEADER)
        return Response(status_code=200, headers={SECRET_HEADER: secret} if secret else None)

    return Starlette(routes=[Route(f"{RECEIVER_PATH}/{{token}}", receive, methods=["POST"])])


async def hook_check_calls() -> dict[str, Any]:
    """Keap calls of one hook check of `run` (`ensure_hooks`) with every hook of the catalogue's flows Verified."""
    keap_emulator = KeapEmulator(api_key=KEY)
    keap_emulator.faults.rate_limit = None
    wanted = event_keys(CATALOGUE.values())
    with BackgroundServer(keap_emulator.asgi()) as keap_server, BackgroundServer(handshake_receiver()) as receiver:
        url = hook_url(receiver.url, TOKEN)
        async with KeapConnector(ApiKey(KEY), f"{keap_server.url}/crm/rest", limits=RateLimits(), retry=RETRY) as keap:
            first = await ensure_hooks(keap, url, wanted)  # at start: registers them
            before = keap.stats.total
            check = await ensure_hooks(keap, url, wanted)  # every HOOK_CHECK_INTERVAL after
            calls = keap.stats.total - before
    assert sorted(first.created) == sorted(wanted) and sorted(check.verified) == sorted(wanted), (first, check)
    return {"hooks": len(wanted), "calls_per_check": calls}


def idle_day(passes: dict[str, Any], calls_per_check: int) -> dict[str, Any]:
    """Keap calls of an idle day with hooks verified and with hooks off, from one size's measured passes."""
    schedule, quota = Schedule(), RateLimitSettings().keap_api_key.per_day
    assert quota is not None
    polls = DAY / schedule.poll_interval
    keap_polls = DAY / schedule.keap_poll_interval
    checks = DAY / HOOK_CHECK_INTERVAL
    reconciles = DAY / schedule.full_scan_interval
    idle, without_keap = passes["idle"]["keap_calls"], passes["idle_without_keap"]["keap_calls"]
    reconcile = passes["reconcile"]["keap_calls"]
    with_hooks = {
        "polls reading Keap": (keap_polls, idle),
        "polls not reading Keap": (polls - keap_polls, without_keap),
        "hook checks": (checks, calls_per_check),
        "reconciles": (reconciles, reconcile),
    }
    without_hooks = {"polls reading Keap": (polls, idle), "reconciles": (reconciles, reconcile)}

    def total(parts: dict[str, tuple[float, int]]) -> int:
        return math.ceil(sum(times * calls for times, calls in parts.values()))

    on, off = total(with_hooks), total(without_hooks)
    return {
        "records": passes["records"], "quota_per_day": quota,
        "schedule": {"poll_interval": schedule.poll_interval, "keap_poll_interval": schedule.keap_poll_interval,
                     "hook_check_interval": HOOK_CHECK_INTERVAL, "full_scan_interval": schedule.full_scan_interval},
        "calls": {"idle_poll": idle, "idle_poll_without_keap": without_keap, "hook_check": calls_per_check,
                  "reconcile": reconcile},
        "with_hooks": {"parts": with_hooks, "calls": on, "share": on / quota, "goal": GOAL_WITH_HOOKS,
                       "met": on / quota <= GOAL_WITH_HOOKS},
        "without_hooks": {"parts": without_hooks, "calls": off, "share": off / quota, "goal": GOAL_WITHOUT_HOOKS,
                          "met": off / quota <= GOAL_WITHOUT_HOOKS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated linked record counts")
    parser.add_argument("--json", default="-", help="where to write the JSON results (- for stdout)")
    arguments = parser.parse_args()
    check = asyncio.run(hook_check_calls())
    days = [idle_day(asyncio.run(sync.measure(int(size))), check["calls_per_check"]) for size in arguments.sizes.split(",")]
    write_json({"hook_check": check, "idle_days": days}, arguments.json)


if __name__ == "__main__":
    main()

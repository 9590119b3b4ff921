"""Keap REST hooks: the receiver, and keeping our subscriptions registered and Verified.

Keap signs nothing: the receiver's URL carries a secret token (`/hooks/keap/{token}`), and a wrong
token gets a 404 as if nothing were there. On subscribe or verify Keap POSTs an `X-Hook-Secret`
header that must be echoed with a 200. Deliveries carry only ids (`object_keys`, up to 1000), which
are marked dirty for the flow whose Keap object they name.

A hook is ours when its URL's path ends in our receiver path and one token (`is_ours`), whatever its host: a
hook left on an address `run` no longer serves (`public_url` or the token changed, or hooks turned off) is
deleted by the next check (`ensure_hooks`) or, with hooks off, once at start (`remove_hooks`), so Keap does not
go on delivering to a dead address. Hooks of other receivers on the account are never touched. So one `run`
registers hooks per Keap account: a second one at another address would delete the first one's.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from invoiced_keap.connectors.keap import KeapConnector, RestHook
from invoiced_keap.flows import Flow
from invoiced_keap.server.debounce import DirtyQueue
from invoiced_keap.server.metrics import Metrics
from invoiced_keap.server.upkeep import PushUpkeep


logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Hook-Secret"
RECEIVER_PATH = "/hooks/keap"
ACTIONS = ("add", "edit", "delete")
VERIFIED = "Verified"
SOURCE = "keap"


def event_keys(flows: Iterable[Flow]) -> list[str]:
    """The hook events the flows need: add, edit and delete of each flow's Keap object."""
    objects = dict.fromkeys(flow.keap.hook_object for flow in flows)
    return [f"{hook_object}.{action}" for hook_object in objects for action in ACTIONS]


def hook_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}{RECEIVER_PATH}/{token}"


_OURS = re.compile(rf"{re.escape(RECEIVER_PATH)}/[^/]+/?$")


def is_ours(url: str) -> bool:
    """A hook URL of this sync's receiver, at any address and with any token: its path ends in
    `RECEIVER_PATH/<token>` (a `public_url` with a path of its own, behind a proxy, included)."""
    try:
        return _OURS.search(urlsplit(url).path) is not None
    except ValueError:
        return False


def without_token(url: str) -> str:
    """A hook URL of ours as it may be logged: its token (a secret, perhaps an old one) cut."""
    return f"{url[: url.rindex(RECEIVER_PATH)]}{RECEIVER_PATH}/…" if RECEIVER_PATH in url else url


class KeapHookReceiver:
    """`POST /hooks/keap/{token}`: answer the handshake, mark delivered ids dirty."""

    def __init__(self, token: str, queue: DirtyQueue, metrics: Metrics, flows: Mapping[str, Flow]) -> None:
        self.token = token
        self.queue = queue
        self.metrics = metrics
        self.flows_of_object: dict[str, list[str]] = {}
        for name, flow in flows.items():
            self.flows_of_object.setdefault(flow.keap.hook_object, []).append(name)

    async def handle(self, request: Request) -> Response:
        if not hmac.compare_digest(request.path_params.get("token", ""), self.token):
            return self._answer("rejected", 404, "not found")
        handshake = request.headers.get(SECRET_HEADER)
        if handshake is not None:
            self.metrics.delivered(SOURCE, "handshake")
            return Response(status_code=200, headers={SECRET_HEADER: handshake})
        try:
            payload = json.loads(await request.body())
            event_key = str(payload["event_key"])
            ids = [str(key["id"]) for key in payload["object_keys"]]
        except (ValueError, KeyError, TypeError):
            return self._answer("rejected", 400, "not a Keap hook payload")
        object_type, _, action = event_key.partition(".")
        flows = self.flows_of_object.get(object_type)
        about = {"type": event_key, "ids": len(ids)}
        if not flows or action not in ACTIONS:
            return self._answer("ignored", 200, "not an event this sync follows", **about)
        for flow in flows:  # every flow on the object: each one's sync by id reads what it links
            self.queue.mark(flow, "keap", ids, removed=action == "delete")
        return self._answer("accepted", 200, "queued", **about, flows=flows)

    def _answer(self, outcome: str, status: int, message: str, **about: object) -> Response:
        self.metrics.delivered(SOURCE, outcome, reason=message, **about)
        return JSONResponse({"result": outcome, "message": message}, status_code=status)


@dataclass(frozen=True)
class HookReport:
    """What `ensure_hooks` did, by event key."""

    verified: list[str]
    created: list[str]
    reverified: list[str]
    removed: list[str]
    unverified: list[str]
    elsewhere: set[str] = field(default_factory=set)  # the addresses (tokens cut) of removed hooks not on our URL


async def ensure_hooks(keap: KeapConnector, url: str, wanted: Iterable[str]) -> HookReport:
    """Make each wanted event key have one Verified subscription to `url`.

    Called at start and then periodically (`keap_hook_upkeep`): a subscription that went Unverified or Inactive
    (Keap gives up after four failed deliveries) is re-verified; a missing one is created. Hooks of ours
    (`is_ours`) that are not wanted are deleted: those on another address or token (`public_url` or the token
    changed), of a dropped flow, duplicates. The receiver must already be serving `url`, because Keap verifies
    during the call. Once one handshake fails, the other hooks (the same URL) are not tried in this check: they
    are reported unverified, so a receiver Keap cannot reach costs the listing and one call, not one or three
    per event key. A check that finds everything in place costs the listing alone.
    """
    wanted = list(dict.fromkeys(wanted))
    existing = [hook for hook in await keap.list_hooks() if is_ours(hook.hook_url)]
    report = HookReport([], [], [], [], [])
    kept: dict[str, RestHook] = {}
    for hook in existing:
        if hook.hook_url == url and hook.event_key in wanted and hook.event_key not in kept:
            kept[hook.event_key] = hook
        else:
            await keap.delete_hook(hook.key)
            report.removed.append(hook.event_key)
            if hook.hook_url != url:
                report.elsewhere.add(without_token(hook.hook_url))
    for event_key in wanted:
        hook = kept.get(event_key)
        if hook is not None and hook.status == VERIFIED:
            report.verified.append(event_key)
        elif report.unverified:
            report.unverified.append(event_key)  # Keap could not reach the receiver a moment ago: nor now
        elif hook is not None:
            hook = await keap.verify_hook(hook.key)
            (report.reverified if hook.status == VERIFIED else report.unverified).append(event_key)
        else:
            hook = await keap.create_hook(event_key, url)
            (report.created if hook.status == VERIFIED else report.unverified).append(event_key)
    if report.elsewhere:
        logger.info("deleted %d Keap hook(s) of ours on an address this service no longer serves (%s): Keap "
                    "delivered there", len(report.removed), ", ".join(sorted(report.elsewhere)))
    return report


async def remove_hooks(keap: KeapConnector) -> list[RestHook]:
    """With hooks off: delete every hook of ours (`is_ours`) so Keap stops delivering to an address that no longer
    answers; the listing plus one call per hook deleted (the listing alone when there is none), and said in the
    log. Hooks of other receivers are left alone."""
    ours = [hook for hook in await keap.list_hooks() if is_ours(hook.hook_url)]
    for hook in ours:
        await keap.delete_hook(hook.key)
    if ours:
        logger.warning("Keap hooks off: deleted the %d Keap hook(s) of ours still registered (%s), so Keap no longer "
                       "delivers to them", len(ours), ", ".join(sorted({without_token(hook.hook_url) for hook in ours})))
    return ours


def keap_hook_upkeep(*, enabled: bool, public_url: str | None, receiver_url: str | None = None) -> PushUpkeep:
    """The upkeep of our Keap hooks (`PushUpkeep`). Without `public_url` no hook is registered at all: Keap (a cloud
    service) cannot reach this process's own address, so every handshake would fail. A check of hooks Keap cannot
    verify costs two calls (the listing and one handshake: `ensure_hooks`)."""
    off_reason = None
    if not enabled:
        off_reason = "keap_hooks = false: Keap is read by a poll every poll_interval"
    elif not public_url:
        where = f" (this service listens on {receiver_url})" if receiver_url else ""
        off_reason = (f"no public_url is configured{where}: Keap could not reach it to verify hooks, so none is registered "
                      "and Keap is read by a poll every poll_interval; set public_url (INVOICED_KEAP_PUBLIC_URL) to the "
                      "address Keap reaches this service at")
    return PushUpkeep("Keap hooks", "Keap is read by a poll every {interval}", off_reason=off_reason,
                      slow_poll="keap_poll_interval")


def hook_problem(report: HookReport, public_url: str) -> str | None:
    """What a check's report says is wrong (`PushUpkeep.checked`): None when every hook is Verified."""
    if not report.unverified:
        return None
    return (f"Keap could not verify the hooks at {public_url.rstrip('/')} ({', '.join(report.unverified)}): its "
            "handshake did not reach this service there; is public_url right and reachable from the internet?")

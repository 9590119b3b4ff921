"""Keap REST hooks: the receiver, and keeping our subscriptions registered and Verified.

Keap signs nothing: the receiver's URL carries a secret token (`/hooks/keap/{token}`), and a wrong
token gets a 404 as if nothing were there. On subscribe or verify Keap POSTs an `X-Hook-Secret`
header that must be echoed with a 200. Deliveries carry only ids (`object_keys`, up to 1000), which
are marked dirty for the flow whose Keap object they name.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from invoiced_keap.connectors.keap import KeapConnector, RestHook
from invoiced_keap.flows import Flow
from invoiced_keap.server.debounce import DirtyQueue
from invoiced_keap.server.metrics import Metrics


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
        self.metrics.delivered(SOURCE, outcome, message=message, **about)
        return JSONResponse({"result": outcome, "message": message}, status_code=status)


@dataclass(frozen=True)
class HookReport:
    """What `ensure_hooks` did, by event key."""

    verified: list[str]
    created: list[str]
    reverified: list[str]
    removed: list[str]
    unverified: list[str]


async def ensure_hooks(keap: KeapConnector, url: str, wanted: Iterable[str], *, ours_prefix: str) -> HookReport:
    """Make each wanted event key have one Verified subscription to `url`.

    Called at start and then periodically: a subscription that went Unverified or Inactive (Keap gives up
    after four failed deliveries) is re-verified, and re-created if that fails. Subscriptions under
    `ours_prefix` that are not wanted (another token, a dropped flow, duplicates) are deleted. The
    receiver must already be serving `url`, because Keap verifies during the call.
    """
    wanted = list(dict.fromkeys(wanted))
    existing = [hook for hook in await keap.list_hooks() if hook.hook_url.startswith(ours_prefix)]
    report = HookReport([], [], [], [], [])
    kept: dict[str, RestHook] = {}
    for hook in existing:
        if hook.hook_url == url and hook.event_key in wanted and hook.event_key not in kept:
            kept[hook.event_key] = hook
        else:
            await keap.delete_hook(hook.key)
            report.removed.append(hook.event_key)
    for event_key in wanted:
        hook = kept.get(event_key)
        if hook is not None and hook.status == VERIFIED:
            report.verified.append(event_key)
            continue
        if hook is not None:
            hook = await keap.verify_hook(hook.key)
            if hook.status == VERIFIED:
                report.reverified.append(event_key)
                continue
            await keap.delete_hook(hook.key)
        hook = await keap.create_hook(event_key, url)
        (report.created if hook.status == VERIFIED else report.unverified).append(event_key)
    if report.unverified:
        logger.warning("Keap hooks not verified (is %s reachable from Keap?): %s", url, ", ".join(report.unverified))
    return report

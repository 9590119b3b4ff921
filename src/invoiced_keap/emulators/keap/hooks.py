"""Keap's v1 REST hooks: subscriptions, the `X-Hook-Secret` handshake, and batched deliveries with retries.

Deliveries follow Keap's documented policy with configurable timings: record changes are collected per
subscription for `batch_delay` seconds and sent as `{event_key, object_type, object_keys}` (at most 1000
keys a payload); a failed POST is retried after each of `retry_delays`; when all attempts fail, or the
receiver answers 410, the subscription goes Inactive and its pending events are dropped.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from invoiced_keap.emulators.keap.store import EVENT_OBJECTS, RecordStore

HOOKS_PATH = "/crm/rest/v1/hooks"
ACTIONS = ("add", "edit", "delete")
EVENT_KEYS = [f"{object_type}.{action}" for object_type in EVENT_OBJECTS.values() for action in ACTIONS]
COLLECTIONS = {object_type: collection for collection, object_type in EVENT_OBJECTS.items()}
MAX_OBJECT_KEYS = 1000
SECRET_HEADER = "X-Hook-Secret"


class HookStatus(StrEnum):
    UNVERIFIED = "Unverified"
    VERIFIED = "Verified"
    INACTIVE = "Inactive"


@dataclass(eq=False)
class Hook:
    """One subscription, plus what the emulator needs to serve it (last secret sent, pending object keys)."""

    key: str
    event_key: str
    hook_url: str
    api_base: str  # the emulator's own URL, for each object key's `apiUrl`
    status: HookStatus = HookStatus.UNVERIFIED
    secret: str = ""
    pending: list[dict[str, Any]] = field(default_factory=list)
    sender: asyncio.Task[None] | None = None

    def as_json(self) -> dict[str, str]:
        return {"key": self.key, "eventKey": self.event_key, "hookUrl": self.hook_url, "status": self.status.value}


def v1_error(status_code: int, message: str) -> JSONResponse:
    """Keap v1's actual error body."""
    return JSONResponse({"message": message}, status_code=status_code)


class RestHooks:
    """The hook subscriptions of one account, fed by the record store's change notifications."""

    def __init__(
        self,
        store: RecordStore,
        *,
        batch_delay: float,
        retry_delays: Sequence[float],
        timeout: float = 30.0,
    ) -> None:
        self.store = store
        self.batch_delay = batch_delay
        self.retry_delays = tuple(retry_delays)
        self.timeout = timeout
        self.hooks: dict[str, Hook] = {}
        self.last_key = 0
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's loop, where deliveries run
        store.subscribe(self.record_changed)

    def reset(self) -> None:
        for hook in self.hooks.values():
            self._stop_sending(hook)
        self.hooks.clear()
        self.last_key = 0

    # --- events ------------------------------------------------------------------------------
    def record_changed(self, event_key: str, record_id: str) -> None:
        """Store callback (any thread): queue the object key for every Verified subscription to the event."""
        loop = self.loop
        subscribers = [hook for hook in list(self.hooks.values()) if hook.event_key == event_key]
        if loop is None or loop.is_closed() or not subscribers:
            return
        timestamp = self.store.now()
        collection = COLLECTIONS[event_key.partition(".")[0]]
        for hook in subscribers:
            object_key = {
                "id": int(record_id) if record_id.isdigit() else record_id,
                "apiUrl": f"{hook.api_base}/crm/rest/v2/{collection}/{record_id}",
                "timestamp": timestamp,
            }
            loop.call_soon_threadsafe(self._enqueue, hook, object_key)

    def _enqueue(self, hook: Hook, object_key: dict[str, Any]) -> None:
        if not self._is_active(hook):
            return
        hook.pending.append(object_key)
        if hook.sender is None or hook.sender.done():
            hook.sender = asyncio.get_running_loop().create_task(self._send_pending(hook))

    async def _send_pending(self, hook: Hook) -> None:
        while hook.pending and self._is_active(hook):
            await asyncio.sleep(self.batch_delay)
            batch = hook.pending[:MAX_OBJECT_KEYS]
            del hook.pending[:MAX_OBJECT_KEYS]
            await self._deliver(hook, batch)

    async def _deliver(self, hook: Hook, object_keys: list[dict[str, Any]]) -> None:
        object_type = hook.event_key.partition(".")[0]
        payload = {"event_key": hook.event_key, "object_type": object_type, "object_keys": object_keys}
        for delay in (0.0, *self.retry_delays):
            await asyncio.sleep(delay)
            if not self._is_active(hook):
                return
            response = await self._post(hook.hook_url, json=payload)
            if response is not None and response.status_code == 410:
                break
            if response is not None and 200 <= response.status_code < 400:
                return
        hook.status = HookStatus.INACTIVE
        hook.pending.clear()

    def _is_active(self, hook: Hook) -> bool:
        return self.hooks.get(hook.key) is hook and hook.status is HookStatus.VERIFIED

    def _stop_sending(self, hook: Hook) -> None:
        hook.pending.clear()
        if hook.sender is not None and self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(hook.sender.cancel)
        hook.sender = None

    async def _post(self, url: str, **kwargs: Any) -> httpx.Response | None:
        """The receiver's response, or None when it cannot be reached or does not answer in time."""
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                return await client.post(url, **kwargs)
        except httpx.HTTPError:
            return None

    # --- verification ------------------------------------------------------------------------
    async def _handshake(self, hook: Hook) -> None:
        """POST a fresh secret to the hook URL; a 200 echoing it verifies the hook, anything else leaves it be."""
        hook.secret = secrets.token_hex(32)
        response = await self._post(hook.hook_url, headers={SECRET_HEADER: hook.secret})
        if response is not None and response.status_code == 200 and response.headers.get(SECRET_HEADER) == hook.secret:
            hook.status = HookStatus.VERIFIED

    # --- HTTP --------------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        return [
            Route(f"{HOOKS_PATH}/event_keys", self._event_keys, methods=["GET"]),
            Route(HOOKS_PATH, self._list, methods=["GET"]),
            Route(HOOKS_PATH, self._create, methods=["POST"]),
            Route(f"{HOOKS_PATH}/{{key}}", self._get, methods=["GET"]),
            Route(f"{HOOKS_PATH}/{{key}}", self._update, methods=["PUT"]),
            Route(f"{HOOKS_PATH}/{{key}}", self._delete, methods=["DELETE"]),
            Route(f"{HOOKS_PATH}/{{key}}/verify", self._verify, methods=["POST"]),
            Route(f"{HOOKS_PATH}/{{key}}/delayedVerify", self._delayed_verify, methods=["POST"]),
        ]

    async def _event_keys(self, _: Request) -> Response:
        return JSONResponse(EVENT_KEYS)

    async def _list(self, _: Request) -> Response:
        return JSONResponse([hook.as_json() for hook in self.hooks.values()])

    async def _create(self, request: Request) -> Response:
        body = await json_object(request)
        problem = subscription_problem(body)
        if problem:
            return v1_error(400, problem)
        self.loop = asyncio.get_running_loop()
        self.last_key += 1
        hook = Hook(str(self.last_key), body["eventKey"], body["hookUrl"], api_base=str(request.base_url).rstrip("/"))
        self.hooks[hook.key] = hook
        await self._handshake(hook)
        return JSONResponse(hook.as_json())

    async def _get(self, request: Request) -> Response:
        hook = self.hooks.get(request.path_params["key"])
        return JSONResponse(hook.as_json()) if hook else not_found(request)

    async def _update(self, request: Request) -> Response:
        """Change event and URL; the new URL has to pass the handshake before events flow again."""
        hook = self.hooks.get(request.path_params["key"])
        if hook is None:
            return not_found(request)
        body = await json_object(request)
        problem = subscription_problem(body)
        if problem:
            return v1_error(400, problem)
        self._stop_sending(hook)
        hook.event_key, hook.hook_url, hook.status = body["eventKey"], body["hookUrl"], HookStatus.UNVERIFIED
        await self._handshake(hook)
        return JSONResponse(hook.as_json())

    async def _delete(self, request: Request) -> Response:
        hook = self.hooks.pop(request.path_params["key"], None)
        if hook is None:
            return not_found(request)
        self._stop_sending(hook)
        return Response(status_code=204)

    async def _verify(self, request: Request) -> Response:
        """Immediate re-verification: how an Inactive or Unverified subscription comes back."""
        hook = self.hooks.get(request.path_params["key"])
        if hook is None:
            return not_found(request)
        self.loop = asyncio.get_running_loop()
        await self._handshake(hook)
        return JSONResponse(hook.as_json())

    async def _delayed_verify(self, request: Request) -> Response:
        """Out-of-band verification: the caller hands back the secret the handshake POST carried."""
        hook = self.hooks.get(request.path_params["key"])
        if hook is None:
            return not_found(request)
        self.loop = asyncio.get_running_loop()
        if hook.secret and secrets.compare_digest(request.headers.get(SECRET_HEADER, ""), hook.secret):
            hook.status = HookStatus.VERIFIED
        return JSONResponse(hook.as_json())


def not_found(request: Request) -> JSONResponse:
    return v1_error(404, f"Hook subscription {request.path_params['key']} not found")


async def json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def subscription_problem(body: dict[str, Any]) -> str | None:
    """Why a `RestHookRequest` body cannot be accepted, or None."""
    if body.get("eventKey") not in EVENT_KEYS:
        return f"eventKey must be one of {', '.join(EVENT_KEYS)}"
    url = body.get("hookUrl")
    try:
        scheme = httpx.URL(url).scheme if isinstance(url, str) else ""
    except httpx.InvalidURL:
        scheme = ""
    return None if scheme in ("http", "https") else "hookUrl must be an http(s) URL"

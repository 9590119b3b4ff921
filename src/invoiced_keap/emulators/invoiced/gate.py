"""What stands in front of every API route: API-key auth, the in-flight request limit, idempotency keys.

Each is a small ASGI middleware; the order (auth, limit, idempotency) is the real server's: the limiter
counts per API key, and only responses after authentication are cached under an idempotency key.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from invoiced_keap.emulators.invoiced.errors import API_HEADERS, error_response
from invoiced_keap.emulators.kit import CONTROL_PREFIX

MISSING_KEY = "Missing API key! HINT: You can pass in your API key as the username parameter using HTTP Basic Auth."
IDEMPOTENT_METHODS = ("POST", "PATCH")
IDEMPOTENCY_KEY_MIN, IDEMPOTENCY_KEY_MAX = 6, 64
IDEMPOTENCY_TTL_SECONDS = 86400
REFUSED_LIMIT = "invoiced.refused_by_limit"


def too_many_requests(limit: int) -> str:
    return f"Too many concurrent requests! You can only make {limit} concurrent requests at a time."


def presented_key(headers: Headers) -> str | None:
    """The key from Basic auth: the user name, or the password when both are given (company user + key)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (password if user and password else user) or None


def scrubbed(key: str) -> str:
    """`abc****xyz`: the first and last three characters of a key longer than six, as the server echoes it."""
    return f"{key[:3]}{'*' * (len(key) - 6)}{key[-3:]}" if len(key) > 6 else key


class ApiKeyAuth:
    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = presented_key(Headers(scope=scope))
        if key is None:
            await error_response(401, MISSING_KEY)(scope, receive, send)
        elif key != self.api_key:
            await error_response(401, f"We could not authenticate you with the API Key: {scrubbed(key)}")(
                scope, receive, send
            )
        else:
            await self.app(scope, receive, send)


class ConcurrencyLimiter:
    """Invoiced limits requests *in flight* (20 per key), not a rate; there is no Retry-After.

    A request is in flight from its arrival to the end of its response, latency included, so `admit` wraps
    the whole emulator (the kit's latency fault sleeps before the API middleware runs) and takes a slot;
    `enforce`, behind auth, answers 429 to a request that found no free slot. (One key per emulator, so a
    request with a wrong key also holds a slot while in flight; the real server counts only authenticated ones.)
    """

    def __init__(self, max_in_flight: Callable[[], int | None]) -> None:
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    def admit(self, app: ASGIApp) -> ASGIApp:
        async def admitted(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
                await app(scope, receive, send)
                return
            limit = self.max_in_flight()
            if limit is not None and self.in_flight >= limit:
                scope[REFUSED_LIMIT] = limit
                await app(scope, receive, send)
                return
            self.in_flight += 1
            try:
                await app(scope, receive, send)
            finally:
                self.in_flight -= 1

        return admitted

    def enforce(self, app: ASGIApp) -> ASGIApp:
        async def enforced(scope: Scope, receive: Receive, send: Send) -> None:
            limit = scope.get(REFUSED_LIMIT)
            if limit is None:
                await app(scope, receive, send)
                return
            await error_response(429, too_many_requests(limit))(scope, receive, send)

        return enforced


@dataclass(frozen=True)
class CachedResponse:
    expires_at: float
    status: int
    body: bytes


class Idempotency:
    """`Idempotency-Key` on POST/PATCH: the first response (status and body only) is replayed for 24 h from its request.

    As on the real server, a replay ignores the new request's body and path, and errors are cached too. A request
    that was never answered (its client gone before its body was read: the handler raised, and Starlette's
    500 went nowhere) is not cached, so a retry with the key is carried out (inference: the real server never ran
    such a request, so it has no response to replay).
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.cache: dict[str, CachedResponse] = {}

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def idempotent(scope: Scope, receive: Receive, send: Send) -> None:
            key = Headers(scope=scope).get("idempotency-key")
            if not key:
                await app(scope, receive, send)
                return
            if problem := self._invalid(scope["method"], key):
                await error_response(400, problem)(scope, receive, send)
                return
            cached = self.cache.get(key)
            if cached and cached.expires_at > self.clock():
                replay = Response(cached.body, cached.status, headers=API_HEADERS, media_type="application/json")
                await replay(scope, receive, send)
                return
            arrived_at = self.clock()
            status = 0
            chunks: list[bytes] = []

            async def recording_send(message: Message) -> None:
                # The response is cached before its last chunk leaves, so a client that has it can count on the replay.
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                elif message["type"] == "http.response.body":
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body", False):
                        self.cache[key] = CachedResponse(arrived_at + IDEMPOTENCY_TTL_SECONDS, status, b"".join(chunks))
                await send(message)

            try:
                await app(scope, receive, recording_send)
            except BaseException:  # a request never answered: Starlette's 500 went nowhere, so nothing stays cached
                self.cache.pop(key, None)
                raise

        return idempotent

    @staticmethod
    def _invalid(method: str, key: str) -> str | None:
        if method not in IDEMPOTENT_METHODS:
            return f"Unsupported method: {method}. Idempotency keys can only be used with POST and PATCH requests."
        if len(key) < IDEMPOTENCY_KEY_MIN:
            return f"Idempotency key is too short. Must be at least {IDEMPOTENCY_KEY_MIN} characters long."
        if len(key) > IDEMPOTENCY_KEY_MAX:
            return f"Idempotency key is too long. Must be no longer than {IDEMPOTENCY_KEY_MAX} characters."
        return None

"""Keap's rate limits: fixed windows per credential and per tenant, the `x-keap-*` headers, and 429.

Windows are aligned to the clock (second, minute, UTC day, as Keap's daily quota resets at 00:00 UTC), so
a test with an injected clock crosses a boundary by moving the clock. A refused call is not counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from invoiced_keap.emulators.keap.auth import Credential

WINDOW_SECONDS = {"per_second": 1, "per_minute": 60, "per_day": 86400}
PAT_LIMITS = {"per_second": 10, "per_minute": 240, "per_day": 30000}
TENANT_LIMITS = {"per_minute": 10000, "per_day": 250000}  # per application instance, any credential
TENANT_SUBJECT = "tenant"

# The documented newer gateway body (`code` is a string there).
QUOTA_EXCEEDED = {"code": "429", "message": "Quota Exceeded", "status": "Request Throttled", "details": None}

Limits = Mapping[str, int]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    headers: dict[str, str]


class RateLimiter:
    """Counts calls per subject in the current second, minute and day; old windows are forgotten."""

    def __init__(self, clock: Callable[[], float], tenant_id: str, tenant_limits: Limits = TENANT_LIMITS) -> None:
        self.clock = clock
        self.tenant_id = tenant_id
        self.tenant_limits = tenant_limits
        self.reset()

    def reset(self) -> None:
        # (subject, window) -> (window index, calls counted in it)
        self.windows: dict[tuple[str, str], tuple[int, int]] = {}

    def admit(self, subject: str, limits: Mapping[str, int | None]) -> Decision:
        """Count the call if every window of `subject` and of the tenant has room; answer the headers either way."""
        now = self.clock()
        own_limits = {window: limit for window, limit in limits.items() if window in WINDOW_SECONDS and limit is not None}
        checks = [(subject, own_limits), (TENANT_SUBJECT, self.tenant_limits)]
        allowed = all(self.used(who, window, now) < limit for who, windows in checks for window, limit in windows.items())
        if allowed:
            for who, windows in checks:
                for window in windows:
                    self._count(who, window, now)
        own_used = {window: self.used(subject, window, now) for window in own_limits}
        tenant_used = {window: self.used(TENANT_SUBJECT, window, now) for window in self.tenant_limits}
        headers = {
            **product_headers(own_limits, own_used, now),
            **tenant_headers(self.tenant_id, self.tenant_limits, tenant_used),
        }
        return Decision(allowed, headers)

    def used(self, subject: str, window: str, now: float) -> int:
        index, count = self.windows.get((subject, window), (None, 0))
        return count if index == window_index(window, now) else 0

    def _count(self, subject: str, window: str, now: float) -> None:
        self.windows[(subject, window)] = (window_index(window, now), self.used(subject, window, now) + 1)


def window_index(window: str, now: float) -> int:
    return math.floor(now / WINDOW_SECONDS[window])


def product_headers(limits: Limits, used: Mapping[str, int], now: float) -> dict[str, str]:
    """Per-credential headers: spike (per second), throttle (per minute) and quota (per UTC day)."""
    headers: dict[str, str] = {}
    if "per_second" in limits:
        headers["x-keap-product-spike-limit"] = f"{limits['per_second']}ps"
    for prefix, window, unit in (("throttle", "per_minute", "minute"), ("quota", "per_day", "day")):
        if window in limits:
            headers.update({
                f"x-keap-product-{prefix}-limit": str(limits[window]),
                f"x-keap-product-{prefix}-time-unit": unit,
                f"x-keap-product-{prefix}-interval": "1",
                f"x-keap-product-{prefix}-available": str(max(limits[window] - used[window], 0)),
                f"x-keap-product-{prefix}-used": str(used[window]),
            })
    if "per_day" in limits:
        day_end = (window_index("per_day", now) + 1) * WINDOW_SECONDS["per_day"]
        headers["x-keap-product-quota-expiry-time"] = str(day_end * 1000)
    return headers


def tenant_headers(tenant_id: str, limits: Limits, used: Mapping[str, int]) -> dict[str, str]:
    """Tenant headers in the pipe form seen from 2026 on: one value per window, e.g. `10000|250000`."""
    windows = [window for window in WINDOW_SECONDS if window in limits]

    def joined(values: Callable[[str], object]) -> str:
        return "|".join(str(values(window)) for window in windows)

    return {
        "x-keap-tenant-id": tenant_id,
        "x-keap-tenant-throttle-limit": joined(lambda w: limits[w]),
        "x-keap-tenant-throttle-time-unit": joined(lambda w: w.removeprefix("per_")),
        "x-keap-tenant-throttle-interval": joined(lambda w: 1),
        "x-keap-tenant-throttle-available": joined(lambda w: max(limits[w] - used[w], 0)),
        "x-keap-tenant-throttle-used": joined(lambda w: used[w]),
    }


class RateLimitMiddleware:
    """Applies `limits()` (the emulator's `faults.rate_limit`; None lifts all limits) to authenticated calls."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter, limits: Callable[[], Mapping[str, Any] | None]) -> None:
        self.app = app
        self.limiter = limiter
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        credential: Credential | None = scope.get("state", {}).get("credential")
        limits = self.limits()
        if credential is None or limits is None:
            await self.app(scope, receive, send)
            return
        decision = self.limiter.admit(credential.subject, limits)
        if not decision.allowed:
            await JSONResponse(QUOTA_EXCEEDED, status_code=429, headers=decision.headers)(scope, receive, send)
            return
        extra = [(name.encode(), value.encode()) for name, value in decision.headers.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

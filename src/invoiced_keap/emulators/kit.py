"""What both emulators share: request stats, fault injection, a clock tests can move forward, test triggers and the
`/_emulator` control routes (stats, reset, faults, seed, clock).

An emulator subclasses `Emulator`, supplies its API routes, its error body and its seeding, and is
served by `Emulator.asgi()`. Requests under `/_emulator` are never counted, limited or faulted.

`in_flight` counts the API requests being answered now, from arrival (before the latency fault) to the end of the
response, and `peak_in_flight` the most at once since the last reset, `peaks` the same per kind of request
(`GET /_emulator/stats`: `peak_in_flight`, `peak_in_flight_by_request`): a test aid, to see that a client's reads
overlap (a customer's contacts read side by side, not only next to another listing) or stay under a limit.

A test trigger (`Emulator.after_request`) runs a test's action once, in the server's loop, right after the emulator
answered the n-th request of a kind (`GET /customers`) and before it takes the next one: how a test makes an edit land
between a client's read and its writes, over real HTTP (e.g. a user's edit while a pass runs).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from email.utils import formatdate
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTROL_PREFIX = "/_emulator"


@dataclass
class Faults:
    """Fault settings in force; `rate_limit` is emulator-specific (None lifts it)."""

    error_rate: float = 0.0
    error_status: int = 503
    latency_ms: int = 0
    drop_rate: float = 0.0
    rate_limit: dict[str, Any] | None = field(default=None)

    def update(self, changes: dict[str, Any]) -> None:
        unknown = set(changes) - set(asdict(self))
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        for key, value in changes.items():
            setattr(self, key, value)


class AdjustableClock:
    """An emulator's clock that tests can move forward: the clock it was given, plus an offset.

    Every part of an emulator must read this one object (not the clock it wraps) for `advance` to move them all.
    """

    def __init__(self, base: Callable[[], float]) -> None:
        self.base = base
        self.offset = 0.0

    def __call__(self) -> float:
        return self.base() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Trigger:
    """A test's `action`, run once after the `nth` answered request counted as `request` (`GET /customers`)."""

    request: str
    action: Callable[[], object]
    nth: int = 1
    seen: int = 0
    fired: bool = False

    def answered(self, request: str) -> None:
        if self.fired or request != self.request:
            return
        self.seen += 1
        if self.seen >= self.nth:
            self.fired = True
            self.action()


class DroppedConnection(Exception):
    """Raised mid-response so the server closes the connection: the client sees a dropped link."""


class Emulator:
    """Base class: counters, faults and control routes around an API's own routes."""

    default_rate_limit: dict[str, Any] | None = None

    def __init__(self, *, random_seed: int | None = None, clock: Callable[[], float] = time.time) -> None:
        # the API's own clock: record times and the `Date` of every answer; `advance_clock` (and `POST
        # /_emulator/clock`) moves it forward, so every part of the emulator must read this one object
        self.adjustable_clock = clock if isinstance(clock, AdjustableClock) else AdjustableClock(clock)
        self.clock: Callable[[], float] = self.adjustable_clock
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.faults = Faults(rate_limit=self.default_rate_limit)
        self.random = random.Random(random_seed)
        self.triggers: list[Trigger] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.in_flight_by: Counter[str] = Counter()
        self.peaks: Counter[str] = Counter()

    # --- to be supplied by each emulator -------------------------------------------------
    def api_routes(self) -> list[BaseRoute]:
        raise NotImplementedError

    def error_response(self, status: int) -> Response:
        """The API's own error body for an injected fault with this status."""
        raise NotImplementedError

    def reset_data(self) -> None:
        raise NotImplementedError

    def seed(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Load records (the emulator's own seed format); answer what was created. ValueError for a payload that
        is not one (`check_seed_keys`): `POST /_emulator/seed` answers it 400."""
        raise NotImplementedError

    def wrap_api(self, app: ASGIApp) -> ASGIApp:
        """Hook for API-wide middleware (auth, rate limits); the default adds none."""
        return app

    # --- shared behaviour ------------------------------------------------------------------
    def after_request(self, request: str, action: Callable[[], object], *, nth: int = 1) -> Trigger:
        """Run `action` once, right after the `nth` answer to a request counted as `request` (`GET /customers`, as
        in `requests`), before the next request is taken (see the module docstring); tests only."""
        trigger = Trigger(request, action, nth)
        self.triggers.append(trigger)
        return trigger

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator's clock forward by `seconds` (record times, `Date` headers, and what time decides:
        Invoiced's due dates, Keap's rate-limit windows and token expiry)."""
        self.adjustable_clock.advance(seconds)

    def reset(self) -> None:
        self.reset_data()
        self.requests.clear()
        self.statuses.clear()
        self.reset_peaks()
        self.faults = Faults(rate_limit=self.default_rate_limit)

    def reset_peaks(self) -> None:
        """Start `peak_in_flight` and `peaks` afresh (from the requests in flight now)."""
        self.peak_in_flight = self.in_flight
        self.peaks = Counter(+self.in_flight_by)

    def stats(self) -> dict[str, Any]:
        return {
            "total": sum(self.requests.values()),
            "requests": dict(self.requests),
            "status": dict(self.statuses),
            "peak_in_flight": self.peak_in_flight,
            "peak_in_flight_by_request": dict(self.peaks),
        }

    def asgi(self) -> Starlette:
        routes = self.api_routes()
        api = Starlette(routes=routes)
        control = Starlette(routes=self._control_routes())
        wrapped_api = self.wrap_api(api)
        return _Dispatcher(self, routes, control, wrapped_api)  # type: ignore[return-value]

    def _control_routes(self) -> list[BaseRoute]:
        async def stats(_: Request) -> Response:
            return JSONResponse(self.stats())

        async def reset(_: Request) -> Response:
            self.reset()
            return JSONResponse({"ok": True})

        async def faults(request: Request) -> Response:
            """GET: the faults in force; POST: change some of them, answer all of them."""
            if request.method == "GET":
                return JSONResponse(asdict(self.faults))
            try:
                self.faults.update(await request.json())
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse(asdict(self.faults))

        async def seed(request: Request) -> Response:
            try:
                return JSONResponse(self.seed(await request.json()))
            except ValueError as exc:  # not JSON, or a collection this emulator does not seed
                return JSONResponse({"error": str(exc)}, status_code=400)

        async def clock(request: Request) -> Response:
            """GET: the emulator's time (epoch seconds); POST `{"advance_seconds": N}`: move it forward N seconds
            (N >= 0: an API's clock never goes back), answer the time now."""
            if request.method == "POST":
                try:
                    body = await request.json()
                except ValueError:
                    body = None
                seconds = body.get("advance_seconds") if isinstance(body, dict) else None
                unknown = sorted(set(body) - {"advance_seconds"}) if isinstance(body, dict) else []
                if unknown or isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                    problem = (f"unknown clock settings: {unknown}" if unknown else
                               f"advance_seconds: expected a number of seconds >= 0, got {seconds!r}")
                    return JSONResponse({"error": problem}, status_code=400)
                self.advance_clock(float(seconds))
            return JSONResponse({"now": self.clock()})

        return [
            Route(f"{CONTROL_PREFIX}/stats", stats, methods=["GET"]),
            Route(f"{CONTROL_PREFIX}/reset", reset, methods=["POST"]),
            Route(f"{CONTROL_PREFIX}/faults", faults, methods=["GET", "POST"]),
            Route(f"{CONTROL_PREFIX}/seed", seed, methods=["POST"]),
            Route(f"{CONTROL_PREFIX}/clock", clock, methods=["GET", "POST"]),
        ]


def check_seed_keys(payload: object, collections: Sequence[str]) -> None:
    """ValueError unless `payload` is a JSON object whose keys are all among `collections` (what an emulator's
    `seed` loads), naming the keys it would otherwise ignore."""
    if not isinstance(payload, dict):
        raise ValueError(f"seed: expected a JSON object of {', '.join(collections)}, got {type(payload).__name__}")
    unknown = sorted(set(payload) - set(collections))
    if unknown:
        raise ValueError(f"seed: unknown key(s) {', '.join(map(repr, unknown))}; this emulator seeds "
                         f"{', '.join(collections)}")


def path_template(routes: list[BaseRoute], scope: Scope) -> str:
    """`/customers/{id}` for `/customers/12`: the route's own path, or the raw path if none matches."""
    for route in routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE and hasattr(route, "path"):
            return route.path  # type: ignore[no-any-return]
    return scope["path"]


def served_date(now: float) -> bytes:
    """The `Date` header a server sends (RFC 9110: whole seconds, from the server's own clock)."""
    return formatdate(now, usegmt=True).encode()


class _Dispatcher:
    """Outermost ASGI app: control routes pass through; API requests are counted and faulted."""

    def __init__(self, emulator: Emulator, routes: list[BaseRoute], control: ASGIApp, api: ASGIApp) -> None:
        self.emulator = emulator
        self.routes = routes
        self.control = control
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.control(scope, receive, send)
            return
        emulator = self.emulator
        request = f"{scope['method']} {path_template(self.routes, scope)}"
        emulator.requests[request] += 1
        emulator.in_flight += 1
        emulator.in_flight_by[request] += 1
        emulator.peak_in_flight = max(emulator.peak_in_flight, emulator.in_flight)
        emulator.peaks[request] = max(emulator.peaks[request], emulator.in_flight_by[request])
        try:
            await self._answer(scope, receive, send, request)
        finally:
            emulator.in_flight -= 1
            emulator.in_flight_by[request] -= 1

    async def _answer(self, scope: Scope, receive: Receive, send: Send, request: str) -> None:
        emulator = self.emulator

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                emulator.statuses[str(message["status"])] += 1
                message = {**message, "headers": [*message.get("headers", []), (b"date", served_date(emulator.clock()))]}
            await send(message)

        faults = emulator.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.drop_rate and emulator.random.random() < faults.drop_rate:
            emulator.statuses["dropped"] += 1
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
            raise DroppedConnection("fault injection: connection dropped")
        if faults.error_rate and emulator.random.random() < faults.error_rate:
            await emulator.error_response(faults.error_status)(scope, receive, counting_send)
            return
        await self.api(scope, receive, counting_send)
        for trigger in list(emulator.triggers):
            trigger.answered(request)

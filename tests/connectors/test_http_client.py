"""`ApiClient` over real HTTP against a small API built on the emulator kit, with the kit's faults."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from invoiced_keap.connectors.errors import (
    AuthenticationFailed,
    NotFound,
    QuotaExhausted,
    RecordRejected,
    TransientError,
)
from invoiced_keap.connectors.http import ApiClient, RetryPolicy
from invoiced_keap.connectors.pacing import BUDGET_PROBE_INTERVAL, RateLimits, Window
from invoiced_keap.connectors.redaction import SecretHeaders
from invoiced_keap.emulators.kit import Emulator
from invoiced_keap.emulators.serve import BackgroundServer

API_KEY = "sk-test-4f1c9a77e2b5d3"
FAST_RETRIES = RetryPolicy(attempts=30, timeout=20.0, wait_initial=0.01, wait_max=0.2, wait_jitter=0.05, max_wait=5.0)


class ThingsEmulator(Emulator):
    """A tiny API: things created by POST (honouring `Idempotency-Key`) and read by GET, Bearer auth,
    a server-enforced sliding-window limit (`rate_limit = {"windows": [[limit, seconds], ...]}`), and
    `/scripted` answering queued responses so tests can stage any status and headers."""

    def __init__(self, api_key: str) -> None:
        super().__init__(random_seed=1)
        self.api_key = api_key
        self.reset_data()

    def reset_data(self) -> None:
        self.things: dict[str, dict[str, Any]] = {}
        self.creations: Counter[str] = Counter()
        self.reads: Counter[str] = Counter()
        self.replies: dict[str, dict[str, Any]] = {}
        self.script: deque[tuple[int, dict[str, str]]] = deque()
        self.arrivals: list[float] = []

    def seed(self, payload: dict[str, Any]) -> dict[str, Any]:
        for name in payload.get("names", []):
            self.things[name] = {"id": name}
        return {"things": len(self.things)}

    def error_response(self, status: int) -> Response:
        return JSONResponse({"type": "api_error", "message": "injected failure"}, status_code=status)

    def api_routes(self) -> list[BaseRoute]:
        async def create(request: Request) -> Response:
            body = await request.json()
            if not body.get("name"):
                return JSONResponse({"type": "invalid_request", "message": "Name is required", "param": "name"}, 400)
            key = request.headers.get("idempotency-key")
            if key in self.replies:
                return JSONResponse(self.replies[key], status_code=201)
            self.creations[body["name"]] += 1
            thing = self.things[body["name"]] = {"id": body["name"]}
            if key:
                self.replies[key] = thing
            return JSONResponse(thing, status_code=201)

        async def read(request: Request) -> Response:
            thing_id = request.path_params["id"]
            self.reads[thing_id] += 1
            if thing_id not in self.things:
                return JSONResponse({"type": "invalid_request", "message": f"Thing was not found: {thing_id}"}, 404)
            return JSONResponse(self.things[thing_id])

        async def scripted(_: Request) -> Response:
            status, headers = self.script.popleft() if self.script else (200, {})
            return JSONResponse({"message": "scripted"}, status_code=status, headers=headers)

        return [
            Route("/things", create, methods=["POST"]),
            Route("/things/{id}", read, methods=["GET"]),
            Route("/scripted", scripted, methods=["GET"]),
        ]

    def wrap_api(self, app: ASGIApp) -> ASGIApp:
        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            headers = dict(scope["headers"])
            if headers.get(b"authorization") != f"Bearer {self.api_key}".encode():
                response: Response = JSONResponse({"type": "invalid_request", "message": "Bad key"}, 401)
            elif self._over_limit(time.monotonic()):
                response = JSONResponse({"type": "rate_limit_error", "message": "Too many requests"}, 429)
            else:
                await app(scope, receive, send)
                return
            await response(scope, receive, send)

        return guarded

    def _over_limit(self, now: float) -> bool:
        windows = (self.faults.rate_limit or {}).get("windows", [])
        if any(sum(1 for at in self.arrivals if now - at < seconds) >= limit for limit, seconds in windows):
            return True
        self.arrivals.append(now)
        return False


@pytest.fixture
def emulator() -> ThingsEmulator:
    return ThingsEmulator(API_KEY)


@pytest.fixture
def server(emulator: ThingsEmulator) -> Iterator[BackgroundServer]:
    with BackgroundServer(emulator.asgi()) as server:
        yield server


def client_for(server: BackgroundServer, key: str = API_KEY, **options: Any) -> ApiClient:
    options.setdefault("retry", FAST_RETRIES)
    return ApiClient(server.url, auth=SecretHeaders.bearer(key), **options)


@pytest.fixture
async def api(server: BackgroundServer) -> AsyncIterator[ApiClient]:
    async with client_for(server) as client:
        yield client


def set_faults(server: BackgroundServer, **faults: Any) -> None:
    httpx.post(f"{server.url}/_emulator/faults", json=faults).raise_for_status()


async def test_survives_injected_5xx_with_each_write_done_once(
    api: ApiClient, server: BackgroundServer, emulator: ThingsEmulator
) -> None:
    set_faults(server, error_rate=0.2, error_status=503)
    names = [f"thing-{n}" for n in range(30)]

    created = await asyncio.gather(
        *(api.request("POST", "/things", json={"name": name}, idempotency_key=f"create-{name}") for name in names)
    )
    read = await asyncio.gather(*(api.request("GET", "/things/{id}", path_params={"id": name}) for name in names))

    assert [response.json()["id"] for response in created] == names
    assert [response.json()["id"] for response in read] == names
    assert emulator.creations == Counter(names)
    assert emulator.reads == Counter(names)
    assert emulator.statuses["503"] > 0
    assert api.stats.statuses["503"] == emulator.statuses["503"]
    assert api.stats.retries["POST /things"] > 0
    assert api.stats.requests["GET /things/{id}"] == emulator.requests["GET /things/{id}"]


async def test_5xx_on_a_post_without_idempotency_key_is_not_repeated(
    api: ApiClient, server: BackgroundServer, emulator: ThingsEmulator
) -> None:
    set_faults(server, error_rate=1.0, error_status=500)

    with pytest.raises(TransientError) as raised:
        await api.request("POST", "/things", json={"name": "once"})

    assert raised.value.status == 500
    assert emulator.requests["POST /things"] == 1


async def test_gets_give_up_after_the_configured_attempts(server: BackgroundServer, emulator: ThingsEmulator) -> None:
    set_faults(server, error_rate=1.0, error_status=502)
    policy = RetryPolicy(attempts=4, wait_initial=0.01, wait_max=0.02, wait_jitter=0.0)

    async with client_for(server, retry=policy) as api:
        with pytest.raises(TransientError, match="502 injected failure"):
            await api.request("GET", "/things/{id}", path_params={"id": "x"})

    assert emulator.requests["GET /things/{id}"] == 4


async def test_429_storm_is_ridden_out_and_each_request_handled_once(
    api: ApiClient, server: BackgroundServer, emulator: ThingsEmulator
) -> None:
    emulator.seed({"names": [f"r{n}" for n in range(20)]})
    set_faults(server, rate_limit={"windows": [[5, 0.2]]})

    reads = [api.request("GET", "/things/{id}", path_params={"id": f"r{n}"}) for n in range(20)]
    # 429 means the server did not act, so even plain POSTs are retried.
    writes = [api.request("POST", "/things", json={"name": f"w{n}"}) for n in range(10)]
    responses = await asyncio.gather(*reads, *writes)

    assert {response.status_code for response in responses} == {200, 201}
    assert emulator.statuses["429"] > 10
    assert emulator.reads == Counter(f"r{n}" for n in range(20))
    assert emulator.creations == Counter(f"w{n}" for n in range(10))


async def test_dropped_connections_are_retried_for_gets(
    api: ApiClient, server: BackgroundServer, emulator: ThingsEmulator
) -> None:
    emulator.seed({"names": [f"d{n}" for n in range(20)]})
    set_faults(server, drop_rate=0.3)

    responses = await asyncio.gather(
        *(api.request("GET", "/things/{id}", path_params={"id": f"d{n}"}) for n in range(20))
    )

    assert all(response.status_code == 200 for response in responses)
    assert emulator.statuses["dropped"] > 0
    assert emulator.reads == Counter(f"d{n}" for n in range(20))


async def test_dropped_connection_on_a_plain_post_is_not_repeated(
    api: ApiClient, server: BackgroundServer, emulator: ThingsEmulator
) -> None:
    set_faults(server, drop_rate=1.0)

    with pytest.raises(TransientError) as raised:
        await api.request("POST", "/things", json={"name": "maybe"})

    assert raised.value.may_have_been_processed
    assert emulator.requests["POST /things"] == 1


async def test_timeouts_are_retried_for_gets(server: BackgroundServer, emulator: ThingsEmulator) -> None:
    set_faults(server, latency_ms=300)
    policy = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.01, wait_jitter=0.0)

    async with client_for(server, retry=policy, timeout=0.05) as api:
        with pytest.raises(TransientError, match="ReadTimeout"):
            await api.request("GET", "/things/{id}", path_params={"id": "slow"})

    assert api.stats.statuses == Counter({"ReadTimeout": 3})
    assert emulator.requests["GET /things/{id}"] == 3


async def test_connection_refused_is_retried_even_for_posts() -> None:
    with BackgroundServer(ThingsEmulator(API_KEY).asgi()) as stopped:
        url = stopped.url
    policy = RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.01, wait_jitter=0.0)

    async with ApiClient(url, retry=policy) as api:
        with pytest.raises(TransientError, match="ConnectError"):
            await api.request("POST", "/things", json={"name": "x"})

    assert api.stats.requests["POST /things"] == 3


async def test_retry_after_is_honoured(api: ApiClient, emulator: ThingsEmulator) -> None:
    emulator.script.extend([(429, {"Retry-After": "1"}), (503, {"Retry-After": "0"})])

    started = time.monotonic()
    response = await api.request("GET", "/scripted")
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert elapsed >= 1.0  # the backoff alone (0.01 s) would have retried at once (a lower bound: load only adds)
    assert emulator.statuses == Counter({"429": 1, "503": 1, "200": 1})


async def test_keap_throttle_headers_slow_calls_before_any_429(api: ApiClient, emulator: ThingsEmulator) -> None:
    emulator.script.append(
        (200, {"x-keap-product-throttle-available": "0", "x-keap-product-throttle-time-unit": "second"})
    )

    started = time.monotonic()
    await api.request("GET", "/scripted")
    await api.request("GET", "/scripted")

    assert time.monotonic() - started >= 1.0
    assert emulator.statuses == Counter({"200": 2})


async def test_pacer_stays_under_server_enforced_windows_at_full_speed(
    server: BackgroundServer, emulator: ThingsEmulator
) -> None:
    emulator.seed({"names": ["p"]})
    windows = [[5, 0.5], [15, 2.0]]  # a scaled-down "per second" and "per minute"
    set_faults(server, rate_limit={"windows": windows})
    limits = RateLimits(tuple(Window(limit, seconds) for limit, seconds in windows))

    async with client_for(server, limits=limits) as api:
        await asyncio.gather(*(api.request("GET", "/things/p") for _ in range(45)))

    assert emulator.statuses == Counter({"200": 45})
    # 45 calls: three 2-second windows of 15, each sent 5 per 0.5 s, so the last cannot go before 5.0 s.
    span = emulator.arrivals[-1] - emulator.arrivals[0]
    assert 5.0 <= span <= 5.0 / 0.95


async def test_bad_credentials_are_fatal_at_once(server: BackgroundServer, emulator: ThingsEmulator) -> None:
    async with client_for(server, key="sk-wrong-0000") as api:
        with pytest.raises(AuthenticationFailed, match="401 Bad key"):
            await api.request("GET", "/things/a")

    assert emulator.requests["GET /things/{id}"] == 1


async def test_day_quota_used_up_is_fatal_with_resume_time(api: ApiClient, emulator: ThingsEmulator) -> None:
    resets = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=5)
    emulator.script.append(
        (429, {"x-keap-product-quota-available": "0", "x-keap-product-quota-expiry-time": f"{resets.timestamp() * 1000:.0f}"})
    )

    with pytest.raises(QuotaExhausted) as raised:
        await api.request("GET", "/scripted")

    probe = datetime.now(UTC) + timedelta(seconds=BUDGET_PROBE_INTERVAL)  # sooner: Keap is asked again then
    assert raised.value.resume_at is not None
    assert abs(raised.value.resume_at - min(resets, probe)) < timedelta(seconds=1)
    assert emulator.requests["GET /scripted"] == 1


async def test_day_quota_in_pipe_form_resumes_at_utc_midnight_or_its_probe(
    api: ApiClient, emulator: ThingsEmulator
) -> None:
    emulator.script.append(
        (429, {"x-keap-tenant-throttle-available": "9000|0", "x-keap-tenant-throttle-time-unit": "minute|day"})
    )

    with pytest.raises(QuotaExhausted) as raised:
        await api.request("GET", "/scripted")

    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    midnight = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=UTC)
    probe = datetime.now(UTC) + timedelta(seconds=BUDGET_PROBE_INTERVAL)
    assert raised.value.resume_at is not None
    assert abs(raised.value.resume_at - min(midnight, probe)) < timedelta(seconds=1)


async def test_rejections_carry_the_apis_message_and_field(api: ApiClient, emulator: ThingsEmulator) -> None:
    with pytest.raises(RecordRejected) as rejected:
        await api.request("POST", "/things", json={"name": ""}, idempotency_key="create-empty")
    with pytest.raises(NotFound, match="Thing was not found: ghost"):
        await api.request("GET", "/things/ghost")

    assert (rejected.value.status, rejected.value.message, rejected.value.field) == (400, "Name is required", "name")
    assert emulator.statuses == Counter({"400": 1, "404": 1})


async def test_secrets_never_reach_logs_errors_or_reprs(
    server: BackgroundServer, emulator: ThingsEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_key = "sk-wrong-77c3e10b9a"
    emulator.seed({"names": ["s"]})
    set_faults(server, error_rate=0.3, drop_rate=0.2)
    errors: list[Exception] = []

    async with client_for(server) as api, client_for(server, key=wrong_key) as intruder:
        for _ in range(5):
            await api.request("GET", "/things/s", params={"access_token": API_KEY})
        for call in (
            api.request("GET", "/things/missing", params={"api_key": API_KEY}),
            api.request("POST", "/things", json={"name": "x"}),
            intruder.request("GET", "/things/s"),
        ):
            try:
                await call
            except Exception as error:  # noqa: BLE001 - any failure's text is under test
                errors.append(error)
        shown = [repr(api), repr(intruder), *(text for error in errors for text in (str(error), repr(error)))]

    assert {type(error) for error in errors} >= {NotFound, AuthenticationFailed}
    assert any(record.name == "httpx" for record in caplog.records)
    assert any(record.name.startswith("httpcore") for record in caplog.records)
    assert "access_token=***" in caplog.text
    for secret in (API_KEY, wrong_key):
        assert secret not in caplog.text
        assert all(secret not in record.getMessage() for record in caplog.records)
        assert all(secret not in text for text in shown)

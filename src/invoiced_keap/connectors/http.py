"""The shared async HTTP layer both connectors build on: one `ApiClient` per API.

It pools connections (httpx), paces calls under the API's limits (`pacing.Pacer`), retries transient
failures with exponential backoff and jitter (stamina), counts calls, and turns error responses into
the classes in `errors` that the engine acts on. Credentials never reach a log line, an exception or
a repr (`redaction`).

Retry rule, so a create is never made twice:
- 429 and connection failures (refused, connect timeout, no free pooled connection) are always
  retried: the server did not act on the request.
- 5xx, read timeouts and dropped connections are retried only when repeating the request is harmless:
  idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE), requests sent with an `Idempotency-Key`, or
  when the caller says so with `retry_safe=True` (e.g. a PATCH that sets absolute values).
- `Retry-After` (seconds or an HTTP date) replaces the backoff when present.

A 429 is never an error of the record: the server did not act, it only asked us to wait. The call is sent
again once the window that refused it has passed (`Pacer.refused`: every call of the client waits for it),
outside the attempts for other errors. When the wait is longer than `RetryPolicy.max_wait` (the day's quota),
or 429s go on past `RetryPolicy.attempts` answers or `RetryPolicy.timeout` seconds for one call,
`QuotaExhausted` is raised with the server's message and the time to resume: the pass stops cleanly and its
records stay pending, to be carried by the next pass.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx
import stamina
from stamina.instrumentation import RetryDetails

from invoiced_keap.connectors.errors import (
    ApiError,
    AuthenticationFailed,
    FatalError,
    NotFound,
    QuotaExhausted,
    RecordRejected,
    TransientError,
)
from invoiced_keap.connectors.pacing import Pacer, RateLimits, ServerBudget, read_keap_budgets
from invoiced_keap.connectors.redaction import safe_url, scrub
from invoiced_keap.logs import log_event

logger = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
NEVER_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)

ErrorParser = Callable[[httpx.Response], tuple[str, str | None]]
"""An API's error body -> (its message, the field it blames or None)."""


class AsyncClosing:
    """`async with` for a client: the block's end calls `aclose()`."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try within one run before handing a `TransientError` to the engine."""

    attempts: int = 6
    timeout: float = 120.0
    wait_initial: float = 0.5
    wait_max: float = 30.0
    wait_jitter: float = 1.0
    max_wait: float = 90.0


@dataclass(frozen=True)
class RequestEvent:
    """One attempt on the wire: `status` is None when no response came back (then `error` names why)."""

    host: str
    endpoint: str
    attempt: int
    status: int | None
    error: str | None
    elapsed: float


class RequestStats:
    """Calls per endpoint (`"GET /customers/{id}"`, path from the host root like the emulators' stats),
    statuses and retries; a `RequestEvent` listener, readable by benchmarks and metrics."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()

    def __call__(self, event: RequestEvent) -> None:
        self.requests[event.endpoint] += 1
        self.statuses[str(event.status) if event.status is not None else str(event.error)] += 1
        if event.attempt > 1:
            self.retries[event.endpoint] += 1

    @property
    def total(self) -> int:
        return sum(self.requests.values())


def parse_error_body(response: httpx.Response) -> tuple[str, str | None]:
    """Best effort for any of the shapes both APIs use: `{message, param}` (Invoiced), `{message, ...}`
    (Keap v1/v2) and `{fault: {faultstring, detail: {errorcode}}}` (Keap's gateway); else the reason phrase."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        fault = body.get("fault")
        if isinstance(fault, dict):
            code = (fault.get("detail") or {}).get("errorcode")
            return f"{fault.get('faultstring')}" + (f" ({code})" if code else ""), None
        if body.get("message"):
            field = body.get("param") or body.get("field")
            return str(body["message"]), str(field) if field else None
    return response.reason_phrase or f"HTTP {response.status_code}", None


def retry_after_seconds(headers: Mapping[str, str], wall_now: float) -> float | None:
    """`Retry-After` as seconds from now, in either of its forms (delta-seconds or HTTP date)."""
    value = headers.get("retry-after")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - wall_now)
    except (TypeError, ValueError):
        return None


def error_for_response(
    response: httpx.Response,
    message: str,
    field: str | None,
    budgets: Sequence[ServerBudget],
    *,
    max_wait: float,
    wall_now: float,
) -> ApiError:
    """The error class the engine acts on, for a response with status >= 400."""
    status = response.status_code
    context: dict[str, Any] = {
        "method": response.request.method,
        "url": safe_url(response.request.url),
        "status": status,
        "field": field,
    }
    message = scrub(message)
    retry_after = retry_after_seconds(response.headers, wall_now)
    if status == 401:
        return AuthenticationFailed(message, **context)
    if status == 402:
        return FatalError(message, **context)
    if status == 429:  # only once `ApiClient` stopped waiting for the window (see the module docstring)
        wait = max([budget.resets_in for budget in budgets if budget.available <= 0] + [retry_after or 0.0])
        return QuotaExhausted(message, resume_at=datetime.fromtimestamp(wall_now + wait, UTC), **context)
    if status == 408 or (status >= 500 and status != 501):
        return TransientError(message, retry_after=retry_after, **context)
    if status == 404:
        return NotFound(message, **context)
    return RecordRejected(message, **context)


def _should_retry(retry_safe: bool, max_wait: float, error: Exception) -> bool | float:
    """stamina backoff hook: False stops, True backs off exponentially, a number is the server's wait."""
    if not isinstance(error, TransientError):
        return False
    if error.may_have_been_processed and not retry_safe:
        return False
    if error.retry_after is None:
        return True
    return error.retry_after if error.retry_after <= max_wait else False


@dataclass(frozen=True)
class Page:
    """One page of a listing, the server's clock when it answered (`served_at`) and, where the API says it, how
    many records the whole listing holds at that moment (`total`: Invoiced's `X-Total-Count`)."""

    records: list[dict[str, Any]]
    served_at: datetime | None
    total: int | None = None


def served_at(response: httpx.Response) -> datetime | None:
    """The response's `Date` header (whole seconds, rounded down: never later than the server's clock)."""
    try:
        moment = parsedate_to_datetime(response.headers["date"])
    except (KeyError, TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def log_retry(details: RetryDetails) -> None:
    """A stamina retry hook: one `retry` event naming the call, why it failed, the attempt and the wait."""
    error = details.caused_by
    fields: dict[str, Any] = {"attempt": details.retry_num + 1, "wait": round(details.wait_for, 2)}
    if isinstance(error, ApiError):
        fields.update(method=error.method, url=error.url, status=error.status, error=error.message)
    else:
        fields["error"] = f"{type(error).__name__}: {error}"
    log_event(logger, "retry", logging.WARNING, **fields)


class ApiClient(AsyncClosing):
    """An API's base URL, credentials and limits, shared by every call a connector makes.

    Use as `async with ApiClient(...) as api:` (or call `aclose()`). `auth` should be a
    `redaction.SecretHeaders` so the credential is registered for redaction. `pacer` replaces the one
    built from `limits` (a test clock, or one pacer shared by clients using the same key). `system` names the
    API in what a `TransientError` says after the retries (`TransientError.outage`). `check_response`, when set, sees
    every response as it arrives, before its status is judged, and may raise an `ApiError` that ends the call (never
    retried unless it is a `TransientError`): the engine's check of which Keap account answers (`engine.keap_account`).
    """

    def __init__(
        self,
        base_url: str,
        *,
        system: str = "the API",
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
        limits: RateLimits = RateLimits(),
        retry: RetryPolicy = RetryPolicy(),
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        error_parser: ErrorParser = parse_error_body,
        listeners: Sequence[Callable[[RequestEvent], None]] = (),
        pacer: Pacer | None = None,
    ) -> None:
        self.system = system
        self.pacer = pacer or Pacer(limits, max_wait=retry.max_wait)
        connections = self.pacer.limits.max_in_flight or 100
        self._http = httpx.AsyncClient(
            base_url=base_url,
            auth=auth,
            headers=headers,
            timeout=timeout,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )
        self.retry = retry
        self.error_parser = error_parser
        self.stats = RequestStats()
        self.listeners = [self.stats, *listeners]
        self.check_response: Callable[[httpx.Response], None] | None = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        path_params: Mapping[str, object] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        retry_safe: bool | None = None,
    ) -> httpx.Response:
        """Send a request; return the response (status < 400) or raise an `errors.ApiError`.

        `path` is relative to the base URL; with `path_params` it is a template (`/customers/{id}`)
        whose values are URL-quoted, and the stats count calls per template.
        """
        method = method.upper()
        endpoint = f"{method} {self._http.base_url.raw_path.decode().rstrip('/')}{path}"
        if path_params:
            path = path.format_map({name: quote(str(value), safe="") for name, value in path_params.items()})
        send_headers = dict(headers or {})
        if idempotency_key is not None:
            send_headers["Idempotency-Key"] = idempotency_key
        if retry_safe is None:
            retry_safe = method in IDEMPOTENT_METHODS or idempotency_key is not None
        hook = partial(_should_retry, retry_safe, self.retry.max_wait)
        policy = self.retry
        response: httpx.Response | None = None
        tried = 0
        try:
            async for attempt in stamina.retry_context(
                on=hook,
                attempts=policy.attempts,
                timeout=policy.timeout,
                wait_initial=policy.wait_initial,
                wait_max=policy.wait_max,
                wait_jitter=policy.wait_jitter,
            ):
                with attempt:
                    tried = attempt.num
                    response = await self._attempt(
                        method, path, endpoint, attempt.num, params=params, json=json, headers=send_headers
                    )
        except TransientError as error:
            error.system, error.attempts = self.system, tried
            raise
        assert response is not None  # stamina either returned after a successful attempt or raised
        return response

    async def _attempt(
        self, method: str, path: str, endpoint: str, attempt: int, **send: Any
    ) -> httpx.Response:
        """One attempt: sent, and sent again after each 429 once its window passed (see the module docstring)."""
        refusals, first_refusal = 0, 0.0
        while True:
            async with self.pacer.turn() as call_number:
                started = time.monotonic()
                try:
                    response = await self._http.request(method, path, **send)
                except httpx.TransportError as exc:
                    self._emit(endpoint, attempt + refusals, None, type(exc).__name__, started)
                    raise TransientError(
                        f"{type(exc).__name__}: {scrub(str(exc))}",
                        method=method,
                        url=safe_url(exc.request.url),
                        may_have_been_processed=not isinstance(exc, NEVER_SENT_ERRORS),
                    ) from exc
                budgets = read_keap_budgets(response.headers, self.pacer.wall_clock())
                self.pacer.observe(call_number, budgets, counted=response.status_code != 429)
            self._emit(endpoint, attempt + refusals, response.status_code, None, started)
            if self.check_response is not None:
                self.check_response(response)
            if response.status_code < 400:
                return response
            message, field = self.error_parser(response)
            if response.status_code != 429:
                raise error_for_response(
                    response, message, field, budgets, max_wait=self.retry.max_wait, wall_now=self.pacer.wall_clock()
                )
            refusals += 1
            now = self.pacer.clock()
            first_refusal = first_refusal if refusals > 1 else now
            policy = self.retry
            backoff = min(policy.wait_max, policy.wait_initial * 2 ** (refusals - 1)) + random.uniform(0, policy.wait_jitter)
            retry_after = retry_after_seconds(response.headers, self.pacer.wall_clock())
            wait = self.pacer.refused(budgets, retry_after, backoff)
            given_up = wait > policy.max_wait or refusals >= policy.attempts or now + wait - first_refusal > policy.timeout
            fields = {"method": method, "url": safe_url(response.request.url), "status": 429, "error": scrub(message)}
            if given_up:
                times = f" ({refusals} times in a row)" if refusals > 1 else ""
                raise QuotaExhausted(
                    f"{scrub(message)}{times}", resume_at=datetime.fromtimestamp(self.pacer.wall_clock() + wait, UTC),
                    method=method, url=safe_url(response.request.url), status=429, field=field,
                )
            log_event(logger, "retry", logging.WARNING, **fields, attempt=attempt + refusals, wait=round(max(wait, 0.0), 2))

    def _emit(self, endpoint: str, attempt: int, status: int | None, error: str | None, started: float) -> None:
        elapsed = time.monotonic() - started
        logger.debug("%s -> %s in %.0f ms", endpoint, status or error, elapsed * 1000)
        event = RequestEvent(self._http.base_url.host, endpoint, attempt, status, error, elapsed)
        for listener in self.listeners:
            listener(event)

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"<ApiClient {safe_url(self._http.base_url)}>"

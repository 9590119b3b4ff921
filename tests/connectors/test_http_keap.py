"""`ApiClient` against the Keap emulator's own rate limiter (fixed windows, `x-keap-*` headers, 429 bodies)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from invoiced_keap.connectors.errors import QuotaExhausted
from invoiced_keap.connectors.http import ApiClient, RetryPolicy
from invoiced_keap.connectors.pacing import BUDGET_PROBE_INTERVAL, RateLimits
from invoiced_keap.connectors.redaction import SecretHeaders
from invoiced_keap.emulators.serve import BackgroundServer
from tests.support import API_KEY

CONTACTS = "/v2/contacts"
RETRIES = RetryPolicy(attempts=5, timeout=10.0, wait_initial=0.05, wait_max=0.2, wait_jitter=0.05)


def keap_client(server: BackgroundServer, limits: RateLimits) -> ApiClient:
    return ApiClient(
        f"{server.url}/crm/rest", auth=SecretHeaders.api_key("X-Keap-API-Key", API_KEY), limits=limits, retry=RETRIES
    )


def keap_stats(server: BackgroundServer) -> dict[str, Counter[str]]:
    stats = httpx.get(f"{server.url}/_emulator/stats").json()
    return {"requests": Counter(stats["requests"]), "status": Counter(stats["status"])}


def limit_keap(server: BackgroundServer, **rate_limit: int) -> None:
    httpx.post(f"{server.url}/_emulator/faults", json={"rate_limit": rate_limit}).raise_for_status()


async def test_paced_client_never_draws_a_429_from_keap(keap_server: BackgroundServer) -> None:
    limit_keap(keap_server, per_second=5, per_day=1000)

    async with keap_client(keap_server, RateLimits.of(per_second=5)) as keap:
        for _ in range(16):
            await keap.request("GET", CONTACTS)

    stats = keap_stats(keap_server)
    assert stats["status"] == Counter({"200": 16})
    assert keap.stats.requests == Counter({"GET /crm/rest/v2/contacts": 16})


async def test_keap_day_quota_stops_the_client_until_utc_midnight_or_its_probe(keap_server: BackgroundServer) -> None:
    limit_keap(keap_server, per_second=100, per_day=3)

    async with keap_client(keap_server, RateLimits()) as keap:
        for _ in range(3):
            await keap.request("GET", CONTACTS)
        # The third answer said 0 left today: the pacer stops before a call is wasted on a 429.
        with pytest.raises(QuotaExhausted) as raised:
            await keap.request("GET", CONTACTS)

    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    midnight = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=UTC)
    probe = datetime.now(UTC) + timedelta(seconds=BUDGET_PROBE_INTERVAL)  # when one call asks Keap again, if sooner
    assert raised.value.resume_at is not None
    assert abs(raised.value.resume_at - min(midnight, probe)) < timedelta(seconds=1)
    assert keap_stats(keap_server)["status"] == Counter({"200": 3})

"""Keap emulator rate limits over HTTP: PAT windows, headers, 429, per-credential counting, fault settings."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from tests.support import API_KEY, ManualClock

API_CALL = "/crm/rest/v1/hooks/event_keys"
QUOTA_EXCEEDED = {"code": "429", "message": "Quota Exceeded", "status": "Request Throttled", "details": None}
CLIENT_ID, CLIENT_SECRET = "client-1", "s3cret"


@pytest.fixture
def emulator(manual_clock: ManualClock) -> KeapEmulator:
    return KeapEmulator(api_key=API_KEY, random_seed=1, clock=manual_clock, oauth_clients={CLIENT_ID: CLIENT_SECRET})


@pytest.fixture
def keap(emulator: KeapEmulator) -> Iterator[httpx.Client]:
    with BackgroundServer(emulator.asgi()) as server, httpx.Client(base_url=server.url) as client:
        yield client


def call(keap: httpx.Client, headers: dict[str, str] | None = None) -> httpx.Response:
    return keap.get(API_CALL, headers=headers or {"X-Keap-API-Key": API_KEY})


def minute_used(response: httpx.Response) -> int:
    return int(response.headers["x-keap-product-throttle-used"])


def test_pat_limits_per_second_and_per_minute_are_distinct(keap: httpx.Client, manual_clock: ManualClock) -> None:
    first_second = [call(keap) for _ in range(10)]
    assert [r.status_code for r in first_second] == [200] * 10
    assert [minute_used(r) for r in first_second] == list(range(1, 11))
    assert [int(r.headers["x-keap-product-throttle-available"]) for r in first_second] == list(range(239, 229, -1))

    spike = call(keap)  # the 11th call in one second: the minute still has room
    assert spike.status_code == 429
    assert spike.json() == QUOTA_EXCEEDED
    assert spike.headers["x-keap-product-spike-limit"] == "10ps"
    assert spike.headers["x-keap-product-throttle-available"] == "230"

    for _ in range(23):  # seconds 1..23: ten calls each, 240 in the minute
        manual_clock.advance(1)
        responses = [call(keap) for _ in range(10)]
        assert {r.status_code for r in responses} == {200}
    assert responses[-1].headers["x-keap-product-throttle-available"] == "0"

    manual_clock.advance(1)  # second 24: a fresh second, but the minute is spent
    refused = call(keap)
    assert refused.status_code == 429
    assert refused.json() == QUOTA_EXCEEDED
    assert refused.headers["x-keap-product-throttle-available"] == "0"
    assert refused.headers["x-keap-product-throttle-used"] == "240"

    manual_clock.advance(36)  # the next minute
    fresh = call(keap)
    assert fresh.status_code == 200
    assert fresh.headers["x-keap-product-throttle-available"] == "239"
    assert fresh.headers["x-keap-product-quota-used"] == "241"
    assert fresh.headers["x-keap-product-quota-available"] == str(30000 - 241)


def test_headers_describe_the_windows(keap: httpx.Client, manual_clock: ManualClock) -> None:
    headers = call(keap).headers

    assert headers["x-keap-product-throttle-limit"] == "240"
    assert headers["x-keap-product-throttle-time-unit"] == "minute"
    assert headers["x-keap-product-throttle-interval"] == "1"
    assert headers["x-keap-product-quota-limit"] == "30000"
    assert headers["x-keap-product-quota-time-unit"] == "day"
    assert headers["x-keap-product-quota-available"] == "29999"
    next_utc_midnight = (int(manual_clock()) // 86400 + 1) * 86400
    assert headers["x-keap-product-quota-expiry-time"] == str(next_utc_midnight * 1000)
    assert headers["x-keap-tenant-id"]
    assert headers["x-keap-tenant-throttle-limit"] == "10000|250000"
    assert headers["x-keap-tenant-throttle-time-unit"] == "minute|day"
    assert headers["x-keap-tenant-throttle-available"] == "9999|249999"
    assert headers["x-keap-tenant-throttle-used"] == "1|1"


def test_limits_are_counted_per_credential_and_the_tenant_counts_all(keap: httpx.Client) -> None:
    code = httpx.URL(keap.get("/app/oauth/authorize", params={
        "client_id": CLIENT_ID, "redirect_uri": "https://app.example/cb"}).headers["location"]).params["code"]
    token = keap.post("/token", auth=(CLIENT_ID, CLIENT_SECRET), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": "https://app.example/cb"}).json()["access_token"]
    for _ in range(10):
        call(keap)
    assert call(keap).status_code == 429

    oauth = call(keap, {"Authorization": f"Bearer {token}"})

    assert oauth.status_code == 200
    assert minute_used(oauth) == 1
    assert oauth.headers["x-keap-tenant-throttle-used"] == "11|11"


def test_refused_and_unauthenticated_calls_are_not_counted(keap: httpx.Client) -> None:
    for _ in range(10):
        call(keap)
    assert call(keap).status_code == 429
    unauthenticated = call(keap, {"X-Keap-API-Key": "wrong"})
    assert unauthenticated.status_code == 401
    assert "x-keap-product-throttle-used" not in unauthenticated.headers

    assert call(keap).headers["x-keap-product-throttle-used"] == "10"


def test_rate_limit_is_set_and_lifted_through_faults(keap: httpx.Client) -> None:
    before = keap.get("/_emulator/faults")
    assert before.status_code == 200 and before.json()["rate_limit"] == {"per_second": 10, "per_minute": 240, "per_day": 30000}
    settings = keap.post("/_emulator/faults", json={"rate_limit": {"per_minute": 3}}).json()
    assert settings["rate_limit"] == {"per_minute": 3}
    assert keap.get("/_emulator/faults").json() == settings  # GET answers the faults in force
    assert [call(keap).status_code for _ in range(4)] == [200, 200, 200, 429]

    keap.post("/_emulator/faults", json={"rate_limit": None})
    lifted = [call(keap) for _ in range(15)]

    assert {r.status_code for r in lifted} == {200}
    assert not any(name.startswith("x-keap-") for name in lifted[0].headers)


def test_daily_quota_resets_at_utc_midnight(keap: httpx.Client, manual_clock: ManualClock) -> None:
    keap.post("/_emulator/faults", json={"rate_limit": {"per_day": 2}})
    assert call(keap).status_code == 200
    expiry_ms = int(call(keap).headers["x-keap-product-quota-expiry-time"])
    assert call(keap).status_code == 429

    manual_clock.now = expiry_ms / 1000

    assert call(keap).headers["x-keap-product-quota-available"] == "1"


def test_reset_clears_the_windows(keap: httpx.Client) -> None:
    for _ in range(10):
        call(keap)
    assert call(keap).status_code == 429

    keap.post("/_emulator/reset")

    assert minute_used(call(keap)) == 1


def test_oauth_endpoints_are_outside_the_limits(keap: httpx.Client) -> None:
    keap.post("/_emulator/faults", json={"rate_limit": {"per_second": 1}})
    assert call(keap).status_code == 200

    page = keap.get("/app/oauth/authorize", params={"client_id": CLIENT_ID, "redirect_uri": "https://app.example/cb"})

    assert page.status_code == 302
    assert "x-keap-product-spike-limit" not in page.headers


def test_two_emulators_of_other_tenant_ids_are_two_accounts(keap: httpx.Client) -> None:
    other = KeapEmulator(api_key=API_KEY, random_seed=1, tenant_id="zz123.infusionsoft.com", oauth_clients={CLIENT_ID: CLIENT_SECRET})
    with BackgroundServer(other.asgi()) as server, httpx.Client(base_url=server.url) as client:
        assert call(client).headers["x-keap-tenant-id"] == "zz123.infusionsoft.com"
        redirect = client.get("/app/oauth/authorize", params={"client_id": CLIENT_ID, "redirect_uri": "https://app.example/cb"})
        assert httpx.URL(redirect.headers["location"]).params["scope"] == "full|zz123.infusionsoft.com"
    assert call(keap).headers["x-keap-tenant-id"] == "emulator.infusionsoft.com"  # the default is unchanged

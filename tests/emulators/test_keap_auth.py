"""Keap emulator auth over HTTP: API key in both headers, the OAuth2 code flow, expiry, refresh rotation."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from keap_core_v2_client import ApiClient, CompanyApi, Configuration, CreateCompanyRequest
from keap_core_v2_client.exceptions import UnauthorizedException

from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from tests.support import API_KEY, ManualClock

API_CALL = "/crm/rest/v1/hooks/event_keys"
CLIENT_ID, CLIENT_SECRET = "client-1", "s3cret"
REDIRECT_URI = "https://app.example/callback"
ACCESS_TOKEN_TTL = 3600.0
INVALID_TOKEN = {
    "fault": {"faultstring": "Invalid Access Token", "detail": {"errorcode": "keymanagement.service.invalid_access_token"}}
}
EXPIRED_TOKEN = {
    "fault": {"faultstring": "Access Token expired", "detail": {"errorcode": "keymanagement.service.access_token_expired"}}
}


@pytest.fixture
def server(manual_clock: ManualClock) -> Iterator[BackgroundServer]:
    emulator = KeapEmulator(
        api_key=API_KEY, random_seed=1, clock=manual_clock,
        oauth_clients={CLIENT_ID: CLIENT_SECRET}, access_token_ttl=ACCESS_TOKEN_TTL,
    )
    with BackgroundServer(emulator.asgi()) as server:
        yield server


@pytest.fixture
def keap(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url) as client:
        yield client


def authorize(keap: httpx.Client, state: str = "xyz") -> str:
    """Walk the authorize page and answer the code it redirects back with."""
    response = keap.get("/app/oauth/authorize", params={
        "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "response_type": "code", "scope": "full", "state": state,
    })
    assert response.status_code == 302
    location = httpx.URL(response.headers["location"])
    assert str(location.copy_with(query=None)) == REDIRECT_URI
    assert location.params["state"] == state
    return location.params["code"]


def token_request(keap: httpx.Client, secret: str = CLIENT_SECRET, **form: str) -> httpx.Response:
    return keap.post("/token", data=form, auth=(CLIENT_ID, secret))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("headers", [
    {},
    {"X-Keap-API-Key": "wrong"},
    bearer("wrong"),
    {"Authorization": f"Basic {API_KEY}"},
], ids=["none", "wrong-key", "wrong-bearer", "not-bearer"])
def test_request_without_a_valid_credential_gets_the_gateway_401(keap: httpx.Client, headers: dict[str, str]) -> None:
    response = keap.get(API_CALL, headers=headers)

    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN


@pytest.mark.parametrize("headers", [{"X-Keap-API-Key": API_KEY}, bearer(API_KEY)], ids=["api-key-header", "bearer"])
def test_emulator_key_works_in_both_headers(keap: httpx.Client, headers: dict[str, str]) -> None:
    response = keap.get(API_CALL, headers=headers)

    assert response.status_code == 200
    assert "contact.add" in response.json()


def test_code_flow_issues_tokens_that_open_the_api(keap: httpx.Client) -> None:
    response = token_request(keap, grant_type="authorization_code", code=authorize(keap), redirect_uri=REDIRECT_URI)

    assert response.status_code == 200
    tokens = response.json()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == ACCESS_TOKEN_TTL
    assert tokens["scope"].startswith("full")
    assert keap.get(API_CALL, headers=bearer(tokens["access_token"])).status_code == 200


def test_code_flow_accepts_client_credentials_in_the_form(keap: httpx.Client) -> None:
    response = keap.post("/token", data={
        "grant_type": "authorization_code", "code": authorize(keap), "redirect_uri": REDIRECT_URI,
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
    })

    assert response.status_code == 200
    assert response.json()["access_token"]


def test_a_code_works_once(keap: httpx.Client) -> None:
    code = authorize(keap)
    token_request(keap, grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI)

    again = token_request(keap, grant_type="authorization_code", code=code, redirect_uri=REDIRECT_URI)

    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_code_is_bound_to_its_redirect_uri(keap: httpx.Client) -> None:
    response = token_request(
        keap, grant_type="authorization_code", code=authorize(keap), redirect_uri="https://evil.example/cb"
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_wrong_client_secret_is_refused(keap: httpx.Client) -> None:
    response = token_request(
        keap, secret="guess", grant_type="authorization_code", code=authorize(keap), redirect_uri=REDIRECT_URI
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_authorize_refuses_an_unknown_client(keap: httpx.Client) -> None:
    response = keap.get("/app/oauth/authorize", params={"client_id": "nobody", "redirect_uri": REDIRECT_URI})

    assert response.status_code == 400


def test_expired_access_token_gets_the_expired_body(keap: httpx.Client, manual_clock: ManualClock) -> None:
    tokens = token_request(keap, grant_type="authorization_code", code=authorize(keap), redirect_uri=REDIRECT_URI).json()
    manual_clock.advance(ACCESS_TOKEN_TTL - 1)
    assert keap.get(API_CALL, headers=bearer(tokens["access_token"])).status_code == 200

    manual_clock.advance(1)
    response = keap.get(API_CALL, headers=bearer(tokens["access_token"]))

    assert response.status_code == 401
    assert response.json() == EXPIRED_TOKEN


def test_refresh_rotates_the_refresh_token(keap: httpx.Client, manual_clock: ManualClock) -> None:
    first = token_request(keap, grant_type="authorization_code", code=authorize(keap), redirect_uri=REDIRECT_URI).json()
    manual_clock.advance(ACCESS_TOKEN_TTL)

    refreshed = token_request(keap, grant_type="refresh_token", refresh_token=first["refresh_token"])

    assert refreshed.status_code == 200
    second = refreshed.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert keap.get(API_CALL, headers=bearer(second["access_token"])).status_code == 200
    reused = token_request(keap, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    third = token_request(keap, grant_type="refresh_token", refresh_token=second["refresh_token"])
    assert third.status_code == 200


def test_refresh_with_wrong_client_secret_keeps_the_token_usable(keap: httpx.Client) -> None:
    tokens = token_request(keap, grant_type="authorization_code", code=authorize(keap), redirect_uri=REDIRECT_URI).json()

    refused = token_request(keap, secret="guess", grant_type="refresh_token", refresh_token=tokens["refresh_token"])

    assert refused.status_code == 401
    assert token_request(keap, grant_type="refresh_token", refresh_token=tokens["refresh_token"]).status_code == 200


def test_unknown_grant_type_is_refused(keap: httpx.Client) -> None:
    response = token_request(keap, grant_type="password", username="a", password="b")

    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_official_sdk_works_with_an_oauth_token_until_it_expires(
    server: BackgroundServer, keap: httpx.Client, manual_clock: ManualClock
) -> None:
    tokens = token_request(keap, grant_type="authorization_code", code=authorize(keap), redirect_uri=REDIRECT_URI).json()
    configuration = Configuration(host=f"{server.url}/crm", access_token=tokens["access_token"])

    with ApiClient(configuration) as client:
        created = CompanyApi(client).create_company(CreateCompanyRequest(company_name="Acme"))
        manual_clock.advance(ACCESS_TOKEN_TTL)
        with pytest.raises(UnauthorizedException) as refused:
            CompanyApi(client).get_company(created.id)

    assert created.company_name == "Acme"
    assert refused.value.status == 401

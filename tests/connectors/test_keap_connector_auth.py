"""Keap OAuth against the emulator's token endpoint: rotation is persisted before use, one refresh for many
requests, the file token store, and secrets kept out of logs and exception text."""

from __future__ import annotations

import asyncio
import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from invoiced_keap.connectors.errors import ApiError, AuthenticationFailed
from invoiced_keap.connectors.keap import COMPANIES, KeapConnector
from invoiced_keap.connectors.keap_auth import AccessToken, ApiKey, FileTokenStore, KeapOAuth, OAuthClient, Tokens
from invoiced_keap.connectors.pacing import RateLimits
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from tests.connectors.keap_support import FAST_RETRIES, api_url, company, emulator_stats, seed, set_faults
from tests.support import ManualClock

CLIENT_ID = "invoiced-keap-app"
CLIENT_SECRET = "cs-7d1e0b5a9c3f4e2d8b6a"
API_KEY = "KeapAK-5e8c2a7f1b9d4e3a6c0f"
TOKEN_TTL = 3600.0
REDIRECT = "http://127.0.0.1/callback"


class MemoryTokenStore:
    """Tokens in memory (a `TokenStore` for tests)."""

    def __init__(self, tokens: Tokens | None = None) -> None:
        self.tokens = tokens

    def load(self) -> Tokens | None:
        return self.tokens

    def save(self, tokens: Tokens) -> None:
        self.tokens = tokens


class RecordingStore(MemoryTokenStore):
    """A token store that writes each save into the shared event log, beside the emulator's log of tokens used."""

    def __init__(self, events: list[tuple[str, str]], tokens: Tokens | None = None) -> None:
        super().__init__(tokens)
        self.events = events

    def save(self, tokens: Tokens) -> None:
        self.events.append(("save", tokens.access_token))
        super().save(tokens)


def recording_bearer_tokens(app: ASGIApp, events: list[tuple[str, str]]) -> ASGIApp:
    """Log the access token of every API request the server receives, in arrival order."""

    async def app_with_log(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            authorization = dict(scope["headers"]).get(b"authorization", b"").decode()
            if authorization.startswith("Bearer "):
                events.append(("use", authorization.removeprefix("Bearer ")))
        await app(scope, receive, send)

    return app_with_log


@pytest.fixture
def emulator(manual_clock: ManualClock) -> KeapEmulator:
    return KeapEmulator(
        api_key=API_KEY, random_seed=1, clock=manual_clock, oauth_clients={CLIENT_ID: CLIENT_SECRET}, access_token_ttl=TOKEN_TTL
    )


@pytest.fixture
def events() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def server(emulator: KeapEmulator, events: list[tuple[str, str]]) -> Iterator[BackgroundServer]:
    with BackgroundServer(recording_bearer_tokens(emulator.asgi(), events)) as server:
        seed(server, companies=[company(1)])
        set_faults(server, rate_limit=None)  # its clock stands still: a per-second window would never reopen
        yield server


async def authorized(server: BackgroundServer, emulator: KeapEmulator, store: MemoryTokenStore, clock: ManualClock) -> OAuthClient:
    """The app after the account owner clicked "Allow": first tokens fetched with the code and stored."""
    client = OAuthClient(CLIENT_ID, CLIENT_SECRET, store, token_url=f"{server.url}/token")
    code = emulator.auth.authorize(CLIENT_ID, REDIRECT)
    await KeapOAuth(client, clock=clock).exchange_code(code, REDIRECT)
    return client


async def test_rotated_tokens_are_saved_before_use_and_many_requests_cause_one_refresh(
    server: BackgroundServer, emulator: KeapEmulator, manual_clock: ManualClock, events: list[tuple[str, str]]
) -> None:
    store = RecordingStore(events)
    client = await authorized(server, emulator, store, manual_clock)
    first = store.load()
    assert first is not None

    async with KeapConnector(client, api_url(server), clock=manual_clock, retry=FAST_RETRIES) as keap:
        await keap.get(COMPANIES, "1")
        manual_clock.advance(TOKEN_TTL)  # expired by the emulator's clock and the connector's alike
        await asyncio.gather(*(keap.get(COMPANIES, "1") for _ in range(20)))

    second = store.load()
    assert second is not None and second.refresh_token != first.refresh_token
    requests, statuses = emulator_stats(server)
    assert requests["POST /token"] == 2  # the code exchange, then exactly one refresh
    assert statuses["401"] == 0  # refreshed ahead of expiry
    assert events[0] == ("save", first.access_token)
    assert events[1:] == [("use", first.access_token), ("save", second.access_token)] + [("use", second.access_token)] * 20
    assert emulator.auth.refresh_tokens.keys() == {second.refresh_token}  # the old one is spent: only the saved one works


async def test_an_expired_token_401_causes_one_refresh_for_all_concurrent_requests(
    server: BackgroundServer, emulator: KeapEmulator, manual_clock: ManualClock, events: list[tuple[str, str]]
) -> None:
    store = RecordingStore(events)
    issued = (await authorized(server, emulator, store, manual_clock)).token_store.load()
    assert issued is not None
    store.tokens = Tokens(issued.access_token, issued.refresh_token, expires_at=None)  # expiry unknown to the client
    client = OAuthClient(CLIENT_ID, CLIENT_SECRET, store, token_url=f"{server.url}/token")
    manual_clock.advance(TOKEN_TTL + 1)

    async with KeapConnector(client, api_url(server), clock=manual_clock, retry=FAST_RETRIES) as keap:
        answers = await asyncio.gather(*(keap.get(COMPANIES, "1") for _ in range(20)))

    assert [answer["company_name"] for answer in answers] == ["Company 1"] * 20
    requests, statuses = emulator_stats(server)
    assert requests["POST /token"] == 2
    assert statuses["401"] == 20 and statuses["200"] >= 20
    renewed = store.load()
    assert renewed is not None and renewed.refresh_token != issued.refresh_token
    saved_at = events.index(("save", renewed.access_token))
    assert events.index(("use", renewed.access_token)) > saved_at


async def test_a_refused_refresh_stops_the_run_without_showing_secrets(
    server: BackgroundServer, emulator: KeapEmulator, manual_clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = MemoryTokenStore()
    client = await authorized(server, emulator, store, manual_clock)
    tokens = store.load()
    assert tokens is not None
    emulator.auth.refresh_tokens.clear()  # revoked, e.g. the owner disconnected the app
    manual_clock.advance(TOKEN_TTL)

    async with KeapConnector(client, api_url(server), clock=manual_clock, retry=FAST_RETRIES) as keap:
        with pytest.raises(AuthenticationFailed, match="invalid_grant") as refused:
            await keap.get(COMPANIES, "1")
        shown = [str(refused.value), repr(refused.value), repr(keap), repr(client), repr(tokens), repr(keap.auth)]
    async with KeapConnector(ApiKey(API_KEY), api_url(server), limits=RateLimits(), retry=FAST_RETRIES) as keyed:
        await keyed.get(COMPANIES, "1")
        shown += [repr(keyed), repr(ApiKey(API_KEY))]
    async with KeapConnector(ApiKey(API_KEY + "-wrong"), api_url(server), limits=RateLimits()) as wrong:
        with pytest.raises(ApiError) as rejected:
            await wrong.get(COMPANIES, "1")
        shown += [str(rejected.value)]

    assert any(record.name == "httpx" for record in caplog.records)  # the logs did capture the traffic
    for secret in (CLIENT_SECRET, tokens.access_token, tokens.refresh_token, API_KEY):
        assert secret not in caplog.text
        assert all(secret not in text for text in shown)


async def test_a_bare_access_token_works_until_it_expires_then_stops_the_run_with_advice(
    server: BackgroundServer, emulator: KeapEmulator, manual_clock: ManualClock
) -> None:
    store = MemoryTokenStore()
    await authorized(server, emulator, store, manual_clock)
    tokens = store.load()
    assert tokens is not None

    async with KeapConnector(AccessToken(tokens.access_token), api_url(server), retry=FAST_RETRIES) as keap:
        assert (await keap.get(COMPANIES, "1"))["company_name"] == "Company 1"
        manual_clock.advance(TOKEN_TTL + 1)
        with pytest.raises(AuthenticationFailed) as expired:
            await keap.get(COMPANIES, "1")
    async with KeapConnector(AccessToken("not-a-token"), api_url(server), retry=FAST_RETRIES) as wrong:
        with pytest.raises(AuthenticationFailed, match="Invalid Access Token"):
            await wrong.get(COMPANIES, "1")

    message = str(expired.value)
    assert "Access Token expired" in message and "expired or is wrong" in message and "KEAP_CLIENT_ID" in message
    assert tokens.access_token not in message + repr(AccessToken(tokens.access_token))
    requests, statuses = emulator_stats(server)
    assert requests["POST /token"] == 1 and statuses["401"] == 2  # the code exchange only: nothing to refresh with


def test_file_token_store_is_private_and_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "state" / "keap-tokens.json"
    store = FileTokenStore(path)
    assert store.load() is None

    store.save(Tokens("access-1", "refresh-1", 1_700_000_000.0))
    store.save(Tokens("access-2", "refresh-2", None))

    assert store.load() == Tokens("access-2", "refresh-2", None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [entry.name for entry in path.parent.iterdir()] == ["keap-tokens.json"]  # no temporary file left
    assert FileTokenStore(path).load() == Tokens("access-2", "refresh-2", None)  # durable across instances

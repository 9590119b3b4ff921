"""Keap credentials: an API key (PAT/SAK), a bare access token, or OAuth2 tokens that refresh themselves
and are stored safely.

A bare access token (`KEAP_ACCESS_TOKEN`, e.g. one minted by another tool) comes without its refresh
token, so nothing can renew it: a 401 ends the run with a message that says so and names the way out.

Keap rotates the refresh token on every refresh and the old one stops working at once, so a new pair is
saved to the `TokenStore` *before* its access token is used: a crash between the two can then only
lose an access token, never the one refresh token that still works. Refreshes happen shortly before
expiry, or on a 401 whose body says the token expired, under a lock so that many concurrent requests
seeing the same stale token cause one refresh.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

import httpx

from invoiced_keap.connectors.errors import AuthenticationFailed, TransientError
from invoiced_keap.connectors.redaction import SecretHeaders, register_secret, safe_url, scrub

DEFAULT_TOKEN_URL = "https://api.infusionsoft.com/token"
AUTHORIZE_URL = "https://accounts.infusionsoft.com/app/oauth/authorize"
EXPIRED_TOKEN_CODES = frozenset({"keymanagement.service.access_token_expired"})
REFRESH_MARGIN = 300.0  # refresh this many seconds before the access token expires


@dataclass(frozen=True)
class Tokens:
    """One OAuth grant; `expires_at` is epoch seconds (None when unknown: refresh only on a 401)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {"access_token": self.access_token, "refresh_token": self.refresh_token, "expires_at": self.expires_at}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Tokens":
        return cls(data["access_token"], data["refresh_token"], data.get("expires_at"))


class TokenStore(Protocol):
    """Where the current token pair lives between runs; `save` must be durable when it returns."""

    def load(self) -> Tokens | None: ...

    def save(self, tokens: Tokens) -> None: ...


class FileTokenStore:
    """Tokens as JSON in a file only its owner can read (mode 0600), replaced atomically on save."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> Tokens | None:
        try:
            return Tokens.from_json(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None

    def save(self, tokens: Tokens) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")  # mode 0600
        try:
            with os.fdopen(descriptor, "w") as file:
                json.dump(tokens.as_json(), file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def __repr__(self) -> str:
        return f"<FileTokenStore {self.path}>"


@dataclass(frozen=True)
class ApiKey:
    """A Personal Access Token or Service Account Key, sent as `X-Keap-API-Key`."""

    key: str = field(repr=False)

    def auth(self) -> httpx.Auth:
        return SecretHeaders.api_key("X-Keap-API-Key", self.key)


@dataclass(frozen=True)
class AccessToken:
    """An OAuth access token on its own, sent as `Authorization: Bearer`; it counts against OAuth quotas."""

    token: str = field(repr=False)

    def auth(self) -> httpx.Auth:
        return FixedBearer(self.token)


class FixedBearer(httpx.Auth):
    """A bearer token that cannot be refreshed: a 401 raises `AuthenticationFailed` saying what to do."""

    def __init__(self, token: str) -> None:
        register_secret(token)
        self._authorization = f"Bearer {token}"

    def sync_auth_flow(self, request: httpx.Request) -> Any:
        raise RuntimeError("FixedBearer works with httpx.AsyncClient only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = self._authorization
        response = yield request
        if response.status_code == 401:
            await response.aread()
            raise AuthenticationFailed(
                f"Keap refused KEAP_ACCESS_TOKEN ({_gateway_fault(response)}): the token has expired or is wrong, and an "
                "access token on its own cannot be renewed. Set a new one, or set KEAP_CLIENT_ID and KEAP_CLIENT_SECRET "
                "for an OAuth app and run `invoiced-keap auth keap`: its tokens renew themselves.",
                method=request.method, url=safe_url(request.url), status=401,
            )

    def __repr__(self) -> str:
        return "<FixedBearer token hidden>"


@dataclass(frozen=True)
class OAuthClient:
    """A Keap developer app's client credentials and where its tokens are kept."""

    client_id: str
    client_secret: str = field(repr=False)
    token_store: TokenStore
    token_url: str = DEFAULT_TOKEN_URL

    def auth(self, clock: Callable[[], float] = time.time) -> "KeapOAuth":
        return KeapOAuth(self, clock=clock)


def is_expired_token(response: httpx.Response) -> bool:
    """A gateway 401 saying the access token expired (rather than that it is wrong)."""
    if response.status_code != 401:
        return False
    try:
        fault = response.json().get("fault") or {}
    except (ValueError, AttributeError):
        return False
    return (fault.get("detail") or {}).get("errorcode") in EXPIRED_TOKEN_CODES


class KeapOAuth(httpx.Auth):
    """`Authorization: Bearer` with refresh; one instance per connector, shared by all its requests."""

    def __init__(
        self, client: OAuthClient, *, clock: Callable[[], float] = time.time, margin: float = REFRESH_MARGIN
    ) -> None:
        self.client = client
        self.clock = clock
        self.margin = margin
        self._tokens: Tokens | None = None
        self._lock = asyncio.Lock()
        register_secret(client.client_secret)

    def authorize_url(self, redirect_uri: str, state: str, base: str = AUTHORIZE_URL) -> str:
        """Where to send the account owner to grant access (Keap's only scope is `full`)."""
        query = {"client_id": self.client.client_id, "redirect_uri": redirect_uri, "response_type": "code", "scope": "full", "state": state}
        return f"{base}?{urlencode(query)}"

    async def exchange_code(self, code: str, redirect_uri: str) -> Tokens:
        """The first token pair, from the code Keap's consent page redirected back with; saved to the store."""
        async with self._lock:
            return await self._grant({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri})

    def sync_auth_flow(self, request: httpx.Request) -> Any:
        raise RuntimeError("KeapOAuth works with httpx.AsyncClient only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        tokens = await self._fresh_tokens()
        request.headers["Authorization"] = f"Bearer {tokens.access_token}"
        response = yield request
        if response.status_code == 401:
            await response.aread()
        if is_expired_token(response):
            tokens = await self._refresh(stale=tokens)
            request.headers["Authorization"] = f"Bearer {tokens.access_token}"
            yield request

    async def _fresh_tokens(self) -> Tokens:
        tokens = self._tokens or self._load()
        if tokens.expires_at is not None and self.clock() >= tokens.expires_at - self.margin:
            return await self._refresh(stale=tokens)
        return tokens

    def _load(self) -> Tokens:
        tokens = self.client.token_store.load()
        if tokens is None:
            raise AuthenticationFailed("no Keap OAuth tokens stored: authorize the app first")
        register_secret(tokens.access_token, tokens.refresh_token)
        self._tokens = tokens
        return tokens

    async def _refresh(self, stale: Tokens) -> Tokens:
        """Refresh once for everyone holding `stale`; whoever comes later gets the new pair."""
        async with self._lock:
            current = self._tokens or self._load()
            if current.access_token != stale.access_token:
                return current
            return await self._grant({"grant_type": "refresh_token", "refresh_token": current.refresh_token})

    async def _grant(self, form: dict[str, str]) -> Tokens:
        """POST to the token endpoint; save the new pair, then (only then) start using it. Hold `_lock`."""
        client = self.client
        basic = SecretHeaders.basic(client.client_id, client.client_secret)
        try:
            async with httpx.AsyncClient(auth=basic, timeout=30.0) as http:
                response = await http.post(client.token_url, data=form)
        except httpx.TransportError as exc:
            raise TransientError(f"token refresh failed: {type(exc).__name__}", url=safe_url(client.token_url)) from exc
        if response.status_code >= 500:
            raise TransientError("token endpoint unavailable", url=safe_url(client.token_url), status=response.status_code)
        if response.status_code != 200:
            raise AuthenticationFailed(
                scrub(_oauth_error(response)), method="POST", url=safe_url(client.token_url), status=response.status_code
            )
        body = response.json()
        expires_in = body.get("expires_in")
        tokens = Tokens(
            body["access_token"],
            body["refresh_token"],
            self.clock() + float(expires_in) if expires_in is not None else None,
        )
        register_secret(tokens.access_token, tokens.refresh_token)
        client.token_store.save(tokens)
        self._tokens = tokens
        return tokens

    def __repr__(self) -> str:
        return f"<KeapOAuth client {self.client.client_id}>"


def _gateway_fault(response: httpx.Response) -> str:
    """The gateway's `fault.faultstring` ("Access Token expired"), else the reason phrase."""
    try:
        return str(response.json()["fault"]["faultstring"])
    except (ValueError, KeyError, TypeError):
        return response.reason_phrase


def _oauth_error(response: httpx.Response) -> str:
    """RFC 6749 `{error, error_description}`, else the reason phrase."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    return f"{body.get('error', 'error')}: {body.get('error_description', '')}".strip(": ")

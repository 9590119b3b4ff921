"""Keap's front door: API keys (PAT/SAK), OAuth2 authorization-code clients, and the gateway's 401 bodies.

Keap's API gateway (Apigee) rejects bad credentials before the API sees them, so its 401 bodies are
Apigee `fault` objects, not the v2 `Error`. The OAuth endpoints (`/app/oauth/authorize`, `/token`)
sit at the root, outside `/crm/rest`, and need no API credential.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

API_PREFIX = "/crm/rest"
AUTHORIZE_PATH = "/app/oauth/authorize"
TOKEN_PATH = "/token"
TENANT_ID = "emulator.infusionsoft.com"
"""The account (application instance) an emulator is unless told otherwise: `x-keap-tenant-id`, the OAuth scope."""
AUTHORIZATION_CODE_TTL = 600.0
REFRESH_TOKEN_TTL = 45 * 86400.0  # Keap's refresh tokens last 45 days


def gateway_fault(faultstring: str, errorcode: str) -> dict[str, Any]:
    return {"fault": {"faultstring": faultstring, "detail": {"errorcode": errorcode}}}


INVALID_ACCESS_TOKEN = gateway_fault("Invalid Access Token", "keymanagement.service.invalid_access_token")
EXPIRED_ACCESS_TOKEN = gateway_fault("Access Token expired", "keymanagement.service.access_token_expired")


@dataclass(frozen=True)
class Credential:
    """Who is calling, as Keap counts quota: one API key, or one OAuth client (all of its tokens together)."""

    kind: Literal["api_key", "oauth"]
    name: str

    @property
    def subject(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class Grant:
    """A code or token: whose it is and until when it is good (epoch seconds)."""

    client_id: str
    expires_at: float
    redirect_uri: str = ""


class Unauthorized(Exception):
    """The gateway refuses the request; `body` is the Apigee fault to answer with."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body["fault"]["faultstring"])
        self.body = body


class OAuthError(Exception):
    """An RFC 6749 token-endpoint error (`{"error", "error_description"}`)."""

    def __init__(self, status_code: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status_code = status_code
        self.error = error
        self.description = description

    def response(self) -> JSONResponse:
        body = {"error": self.error, "error_description": self.description}
        return JSONResponse(body, status_code=self.status_code)


class KeapAuth:
    """Credentials of one emulated Keap account: its API key and the OAuth codes and tokens it has issued."""

    def __init__(
        self,
        *,
        api_key: str,
        oauth_clients: Mapping[str, str],
        access_token_ttl: float,
        clock: Callable[[], float],
        tenant_id: str = TENANT_ID,
    ) -> None:
        self.api_key = api_key
        self.scope = f"full|{tenant_id}"
        self.oauth_clients = dict(oauth_clients)
        self.access_token_ttl = access_token_ttl
        self.clock = clock
        self.codes: dict[str, Grant] = {}
        self.access_tokens: dict[str, Grant] = {}
        self.refresh_tokens: dict[str, Grant] = {}

    # --- API requests ----------------------------------------------------------------------
    def authenticate(self, headers: Headers) -> Credential:
        """The caller's credential, from `X-Keap-API-Key` or `Authorization: Bearer`; raises `Unauthorized`."""
        api_key = headers.get("x-keap-api-key")
        if api_key is not None:
            if api_key == self.api_key:
                return Credential("api_key", api_key)
            raise Unauthorized(INVALID_ACCESS_TOKEN)
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized(INVALID_ACCESS_TOKEN)
        if token == self.api_key:
            return Credential("api_key", token)
        grant = self.access_tokens.get(token)
        if grant is None:
            raise Unauthorized(INVALID_ACCESS_TOKEN)
        if self.clock() >= grant.expires_at:
            raise Unauthorized(EXPIRED_ACCESS_TOKEN)
        return Credential("oauth", grant.client_id)

    # --- OAuth2 ------------------------------------------------------------------------------
    def authorize(self, client_id: str, redirect_uri: str) -> str:
        """A one-time code for a known client, as if the account owner had clicked "Allow"."""
        if client_id not in self.oauth_clients:
            raise OAuthError(400, "invalid_client", "Unknown client_id")
        if not redirect_uri:
            raise OAuthError(400, "invalid_request", "redirect_uri is required")
        code = secrets.token_urlsafe(24)
        self.codes[code] = Grant(client_id, self.clock() + AUTHORIZATION_CODE_TTL, redirect_uri)
        return code

    def exchange_code(self, client_id: str, code: str, redirect_uri: str) -> dict[str, Any]:
        grant = self.codes.pop(code, None)
        if grant is None or grant.client_id != client_id or self.clock() >= grant.expires_at:
            raise OAuthError(400, "invalid_grant", "Invalid authorization code")
        if redirect_uri != grant.redirect_uri:
            raise OAuthError(400, "invalid_grant", "Redirect URI mismatch")
        return self._issue_tokens(client_id)

    def refresh(self, client_id: str, refresh_token: str) -> dict[str, Any]:
        """New access and refresh tokens; the refresh token used is spent (Keap rotates them on every use)."""
        grant = self.refresh_tokens.pop(refresh_token, None)
        if grant is None or grant.client_id != client_id or self.clock() >= grant.expires_at:
            raise OAuthError(400, "invalid_grant", "Invalid refresh token")
        return self._issue_tokens(client_id)

    def check_client(self, client_id: str, client_secret: str) -> None:
        if not client_id or not secrets.compare_digest(self.oauth_clients.get(client_id, ""), client_secret):
            raise OAuthError(401, "invalid_client", "Invalid client or Invalid client credentials")

    def _issue_tokens(self, client_id: str) -> dict[str, Any]:
        now = self.clock()
        access_token = secrets.token_urlsafe(24)
        refresh_token = secrets.token_urlsafe(24)
        self.access_tokens[access_token] = Grant(client_id, now + self.access_token_ttl)
        self.refresh_tokens[refresh_token] = Grant(client_id, now + REFRESH_TOKEN_TTL)
        return {
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": int(self.access_token_ttl),
            "refresh_token": refresh_token,
            "scope": self.scope,
        }

    # --- HTTP --------------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        return [
            Route(AUTHORIZE_PATH, self._authorize_page, methods=["GET"]),
            Route(TOKEN_PATH, self._token_endpoint, methods=["POST"]),
        ]

    async def _authorize_page(self, request: Request) -> Response:
        """Keap's consent page, already agreed to: redirect back at once with `code` and `state`."""
        query = request.query_params
        if query.get("response_type", "code") != "code":
            return PlainTextResponse("unsupported response_type", status_code=400)
        try:
            code = self.authorize(query.get("client_id", ""), query.get("redirect_uri", ""))
        except OAuthError as error:
            return PlainTextResponse(error.description, status_code=error.status_code)
        params = {"code": code, "scope": self.scope}
        if "state" in query:
            params["state"] = query["state"]
        target = httpx.URL(query["redirect_uri"]).copy_merge_params(params)
        return RedirectResponse(str(target), status_code=302)

    async def _token_endpoint(self, request: Request) -> Response:
        form = await request.form()
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        try:
            client_id, client_secret = client_credentials(request.headers, fields)
            self.check_client(client_id, client_secret)
            grant_type = fields.get("grant_type", "")
            if grant_type == "authorization_code":
                tokens = self.exchange_code(client_id, fields.get("code", ""), fields.get("redirect_uri", ""))
            elif grant_type == "refresh_token":
                tokens = self.refresh(client_id, fields.get("refresh_token", ""))
            else:
                raise OAuthError(400, "unsupported_grant_type", f"Unsupported grant_type {grant_type!r}")
        except OAuthError as error:
            return error.response()
        return JSONResponse(tokens, headers={"Cache-Control": "no-store"})


def client_credentials(headers: Headers, form: Mapping[str, str]) -> tuple[str, str]:
    """Client id and secret from HTTP Basic, else from the form (Keap's docs show both)."""
    scheme, _, encoded = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return form.get("client_id", ""), form.get("client_secret", "")
    try:
        client_id, _, client_secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError(401, "invalid_client", "Malformed Basic credentials") from None
    return client_id, client_secret


class AuthMiddleware:
    """Lets only authenticated requests into `/crm/rest`; leaves the credential in `scope["state"]["credential"]`."""

    def __init__(self, app: ASGIApp, auth: KeapAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(API_PREFIX):
            try:
                credential = self.auth.authenticate(Headers(scope=scope))
            except Unauthorized as refusal:
                await JSONResponse(refusal.body, status_code=401)(scope, receive, send)
                return
            scope.setdefault("state", {})["credential"] = credential
        await self.app(scope, receive, send)

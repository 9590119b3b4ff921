"""The status page and the explain page: the status view and a record's history (`state.views`, as the `status`
and `explain` commands) as server-rendered HTML (no build step).

Read-only; the status page reloads itself every `REFRESH_SECONDS`, heads with `/healthz`'s verdict when served by
`run`, names the records it lists and links each to `/explain/{reference}`. When the service is reachable beyond
loopback it is given a token, and both pages ask for it (a form that sets an HttpOnly cookie;
`Authorization: Bearer <token>` works too for scripts).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from invoiced_keap.state import Store
from invoiced_keap.state.views import OPEN_INTENTS, OPEN_INTENTS_NOTE, Explanation, RecordRef, StatusView, explain_view, status_view

COOKIE = "invoiced_keap_status"
REFRESH_SECONDS = 30
PUSH_NAMES = {"keap_hooks": "Keap hooks", "invoiced_webhook": "Invoiced webhook"}
"""The push paths (`Service.push`) as the status page names them."""


def explain_path(record: RecordRef) -> str:
    """A record's explain page, relative to `/explain/`: its reference, percent-encoded whole (`:` and `/` too)."""
    return quote(str(record), safe="")


templates = Environment(loader=PackageLoader("invoiced_keap.server", "templates"), autoescape=select_autoescape())
templates.filters["explain_path"] = explain_path
templates.globals.update(open_intents_label=OPEN_INTENTS, open_intents_note=OPEN_INTENTS_NOTE)


def render_status(view: StatusView, keap_quota_remaining: int | None, health: Mapping[str, Any] | None = None,
                  keap_calls: Mapping[str, int] | None = None, push: Mapping[str, Mapping[str, Any]] | None = None,
                  keap_day: Mapping[str, Any] | None = None) -> str:
    return templates.get_template("status.html").render(view=view, keap_quota_remaining=keap_quota_remaining,
                                                        health=health, keap_calls=keap_calls or {},
                                                        push=push or {}, push_names=PUSH_NAMES, keap_day=keap_day,
                                                        refresh_seconds=REFRESH_SECONDS)


def render_explanation(found: Explanation | None, problem: str | None = None) -> str:
    return templates.get_template("explain.html").render(found=found, problem=problem)


class StatusPage:
    """`GET /` and `/status`: the page; `GET /explain/{reference}`: a record's history (a bare id narrowed by
    `?flow=` and `?side=`); `POST /status` takes the token from the form when one is required."""

    def __init__(
        self,
        store: Store,
        flow_names: Sequence[str],
        *,
        token: str | None = None,
        keap_quota: Callable[[], int | None] = lambda: None,
        health: Callable[[], Mapping[str, Any]] | None = None,
        keap_calls: Callable[[], Mapping[str, int]] = dict,
        push: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None,
        keap_day: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self.health = health
        self.push = push
        self.keap_day = keap_day
        self.keap_calls = keap_calls
        self.store = store
        self.flow_names = list(flow_names)
        self.token = token
        self.keap_quota = keap_quota

    async def show(self, request: Request) -> Response:
        if not self._allowed(request.cookies.get(COOKIE) or _bearer(request)):
            return self._ask_for_token(wrong=False, action="status")
        page = render_status(status_view(self.store, self.flow_names), self.keap_quota(),
                             self.health() if self.health else None, self.keap_calls(),
                             self.push() if self.push else None, self.keap_day() if self.keap_day else None)
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def explain(self, request: Request) -> Response:
        """200 with the history; 404 when nothing is known, 300 with the references a bare id may mean, 400 for a
        malformed reference."""
        if not self._allowed(request.cookies.get(COOKIE) or _bearer(request)):
            return self._ask_for_token(wrong=False, action="../status")
        try:
            found = explain_view(self.store, request.path_params["reference"],
                                 flow=request.query_params.get("flow"), side=request.query_params.get("side"))
        except ValueError as error:
            return HTMLResponse(render_explanation(None, str(error)), status_code=400, headers={"Cache-Control": "no-store"})
        code = 300 if found.ambiguous else 200 if found.known else 404
        return HTMLResponse(render_explanation(found), status_code=code, headers={"Cache-Control": "no-store"})

    async def sign_in(self, request: Request) -> Response:
        form = await request.form()
        given = str(form.get("token") or "")
        if not self._allowed(given):
            return self._ask_for_token(wrong=True, action="status")
        response = RedirectResponse(request.url_for("status"), status_code=303)
        response.set_cookie(COOKIE, given, httponly=True, samesite="strict", path="/")
        return response

    def _allowed(self, given: str | None) -> bool:
        if self.token is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def _ask_for_token(self, *, wrong: bool, action: str) -> Response:
        """The token form; `action` is the sign-in's path relative to the page asked for."""
        page = templates.get_template("token.html").render(wrong=wrong, action=action)
        return HTMLResponse(page, status_code=401, headers={"Cache-Control": "no-store"})


def _bearer(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return credentials if scheme.lower() == "bearer" and credentials else None

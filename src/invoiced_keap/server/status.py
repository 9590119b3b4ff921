"""The status page: what the state database holds, per flow, as server-rendered HTML (no build step).

Read-only. When the service is reachable beyond loopback it is given a token, and the page asks for
it (a form that sets an HttpOnly cookie; `Authorization: Bearer <token>` works too for scripts).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from invoiced_keap.state import Store
from invoiced_keap.state.models import AuditEntry, Conflict, Failure, ReviewItem, Run, utcnow

COOKIE = "invoiced_keap_status"
RECENT = 10
RUNS_SCANNED = 50

templates = Environment(loader=PackageLoader("invoiced_keap.server", "templates"), autoescape=select_autoescape())


@dataclass(frozen=True)
class FlowStatus:
    name: str
    links: int
    open_failures: int
    open_review_items: int
    last_run: Run | None
    failures: list[Failure]
    review_items: list[ReviewItem]
    conflicts: list[Conflict]
    writes: list[AuditEntry]


@dataclass(frozen=True)
class StatusReport:
    generated_at: datetime
    flows: list[FlowStatus]
    conflicts: int
    open_intents: int
    keap_quota_remaining: int | None


def last_run_of(flow: str, runs: Sequence[Run]) -> Run | None:
    """The newest run (runs come newest first) that worked `flow`."""
    return next((run for run in runs if flow in run.flows), None)


def gather_status(store: Store, flow_names: Sequence[str], keap_quota_remaining: int | None) -> StatusReport:
    counts = store.status_counts()
    runs = store.runs(limit=RUNS_SCANNED)
    flows = [
        FlowStatus(
            name=flow,
            links=counts.active_links.get(flow, 0),
            open_failures=counts.open_failures.get(flow, 0),
            open_review_items=counts.open_review_items.get(flow, 0),
            last_run=last_run_of(flow, runs),
            failures=store.failures(flow)[:RECENT],
            review_items=store.review_items(flow)[:RECENT],
            conflicts=store.conflicts(flow, limit=RECENT),
            writes=store.audit_entries(flow=flow, limit=RECENT),
        )
        for flow in flow_names
    ]
    return StatusReport(utcnow(), flows, counts.conflicts, counts.open_intents, keap_quota_remaining)


def render_status(report: StatusReport) -> str:
    return templates.get_template("status.html").render(report=report)


class StatusPage:
    """`GET /` and `/status`: the page; `POST /status` takes the token from the form when one is required."""

    def __init__(
        self,
        store: Store,
        flow_names: Sequence[str],
        *,
        token: str | None = None,
        keap_quota: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.store = store
        self.flow_names = list(flow_names)
        self.token = token
        self.keap_quota = keap_quota

    async def show(self, request: Request) -> Response:
        if not self._allowed(request.cookies.get(COOKIE) or _bearer(request)):
            return self._ask_for_token(wrong=False)
        report = gather_status(self.store, self.flow_names, self.keap_quota())
        return HTMLResponse(render_status(report), headers={"Cache-Control": "no-store"})

    async def sign_in(self, request: Request) -> Response:
        form = await request.form()
        given = str(form.get("token") or "")
        if not self._allowed(given):
            return self._ask_for_token(wrong=True)
        response = RedirectResponse(request.url_for("status"), status_code=303)
        response.set_cookie(COOKIE, given, httponly=True, samesite="strict", path="/")
        return response

    def _allowed(self, given: str | None) -> bool:
        if self.token is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def _ask_for_token(self, *, wrong: bool) -> Response:
        page = templates.get_template("token.html").render(wrong=wrong)
        return HTMLResponse(page, status_code=401, headers={"Cache-Control": "no-store"})


def _bearer(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return credentials if scheme.lower() == "bearer" and credentials else None

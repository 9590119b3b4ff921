"""The service's one Starlette app: webhook receivers, status and explain pages, `/metrics` and `/healthz`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from invoiced_keap.flows import Flow
from invoiced_keap.server.debounce import DirtyQueue
from invoiced_keap.server.invoiced_webhooks import InvoicedWebhookReceiver, SeenEvents
from invoiced_keap.server.keap_hooks import RECEIVER_PATH, KeapHookReceiver
from invoiced_keap.server.metrics import Metrics
from invoiced_keap.server.status import StatusPage
from invoiced_keap.state import Store

INVOICED_WEBHOOK_PATH = "/webhooks/invoiced"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class ServerSettings:
    """What the app needs to know; secrets left None switch their receiver off."""

    invoiced_webhook_secret: str | None = None
    keap_hook_token: str | None = None
    status_token: str | None = None


def create_app(
    store: Store,
    flows: Mapping[str, Flow],
    queue: DirtyQueue,
    metrics: Metrics,
    settings: ServerSettings,
    *,
    health: Callable[[], dict[str, object]] | None = None,
    keap_quota: Callable[[], int | None] = lambda: None,
    push: Callable[[], Mapping[str, Mapping[str, object]]] | None = None,
    seen_events: SeenEvents | None = None,
    keap_day: Callable[[], Mapping[str, object]] | None = None,
) -> Starlette:
    """`health()` is what `/healthz` answers: 200 when its `status` is "ok", else 503; `push()` the push paths'
    states (`keap_hooks`, `invoiced_webhook`) and `keap_day()` the Keap calls of the day by kind with their share of the quota, for the status page;
    `seen_events` the Invoiced events delivered, kept by the receiver (`DeliveryWatch`)."""
    status = StatusPage(store, list(flows), token=settings.status_token, keap_quota=keap_quota, health=health,
                        keap_calls=lambda: metrics.calls_by_job("keap"), push=push, keap_day=keap_day)

    async def healthz(_: Request) -> Response:
        answer = {"status": "ok", **(health() if health else {})}
        return JSONResponse(answer, status_code=200 if answer["status"] == "ok" else 503,
                            headers={"Cache-Control": "no-store"})

    async def metrics_endpoint(_: Request) -> Response:
        return Response(metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    routes = [
        Route("/", status.show, methods=["GET"]),
        Route("/status", status.show, methods=["GET"], name="status"),
        Route("/status", status.sign_in, methods=["POST"]),
        Route("/explain/{reference:path}", status.explain, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    if settings.invoiced_webhook_secret:
        receiver = InvoicedWebhookReceiver(settings.invoiced_webhook_secret, queue, metrics, frozenset(flows), seen_events)
        routes.append(Route(INVOICED_WEBHOOK_PATH, receiver.handle, methods=["POST"]))
    if settings.keap_hook_token:
        keap_receiver = KeapHookReceiver(settings.keap_hook_token, queue, metrics, flows)
        routes.append(Route(f"{RECEIVER_PATH}/{{token}}", keap_receiver.handle, methods=["POST"]))
    return Starlette(routes=routes)

"""Webhook deliveries from the emulator to a small receiver served over real HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.invoiced.webhooks import signature
from invoiced_keap.emulators.serve import BackgroundServer

RETRY_DELAYS = (0.05, 0.1)


class Receiver:
    """Answers with the queued statuses (then 200) and keeps what it was sent."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[bytes, dict[str, str]]] = []

    async def hook(self, request: Request) -> Response:
        self.received.append((await request.body(), dict(request.headers)))
        return Response(status_code=self.statuses.pop(0) if self.statuses else 200)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def emulator() -> InvoicedEmulator:
    return InvoicedEmulator(api_key="test", random_seed=1, webhook_retry_delays=RETRY_DELAYS)


@pytest.fixture
def api(emulator: InvoicedEmulator) -> Iterator[httpx.Client]:
    with BackgroundServer(emulator.asgi()) as server, httpx.Client(base_url=server.url, auth=("test", "")) as client:
        yield client


def serve_receiver(statuses: list[int]) -> tuple[Receiver, BackgroundServer]:
    receiver = Receiver(statuses)
    return receiver, BackgroundServer(Starlette(routes=[Route("/hook", receiver.hook, methods=["POST"])]))


def test_signature_matches_the_reference_vector() -> None:
    assert signature("4b37d5776dad4059ab4c80fa072e3fce", b'{"test":true}') == (
        "341cb5ca9555e923c908c2eb5d36189ea11d90c0dfd559377c5edb669f9cf240"
    )


def test_webhook_crud_exposes_the_secret(api: httpx.Client) -> None:
    created = api.post("/webhooks", json={"url": "https://example.com/hook"})
    assert created.status_code == 201
    webhook = created.json()
    assert (webhook["enabled"], webhook["events"], len(webhook["secret"])) == (True, ["*"], 32)
    assert api.get(f"/webhooks/{webhook['id']}").json()["secret"] == webhook["secret"]
    assert api.patch(f"/webhooks/{webhook['id']}", json={"enabled": False}).json()["enabled"] is False
    assert api.post("/webhooks", json={}).json() == {"type": "invalid_request", "message": "Url is missing", "param": "url"}
    assert api.delete(f"/webhooks/{webhook['id']}").status_code == 204
    assert api.get("/webhooks").json() == []


def test_delivery_is_signed_with_the_webhook_secret(api: httpx.Client) -> None:
    receiver, server = serve_receiver([])
    with server:
        webhook = api.post("/webhooks", json={"url": f"{server.url}/hook"}).json()
        customer = api.post("/customers", json={"name": "Hooked"}).json()
        wait_for(lambda: len(receiver.received) == 1)
    body, headers = receiver.received[0]
    assert headers["x-invoiced-signature"] == signature(webhook["secret"], body)
    assert headers["user-agent"] == "Invoiced/1.0"
    event = json.loads(body)
    assert event == api.get("/events").json()[0]
    assert (event["type"], event["data"]["object"]["id"]) == ("customer.created", customer["id"])


def test_event_subscription_list_is_honoured(api: httpx.Client) -> None:
    receiver, server = serve_receiver([])
    with server:
        api.post("/webhooks", json={"url": f"{server.url}/hook", "events": ["customer.deleted"]})
        customer = api.post("/customers", json={"name": "Quiet"}).json()
        api.delete(f"/customers/{customer['id']}")
        wait_for(lambda: len(receiver.received) == 1)
        time.sleep(0.2)
    assert [json.loads(body)["type"] for body, _ in receiver.received] == ["customer.deleted"]


def test_failed_delivery_is_retried(api: httpx.Client, emulator: InvoicedEmulator) -> None:
    receiver, server = serve_receiver([500])
    with server:
        api.post("/webhooks", json={"url": f"{server.url}/hook"})
        api.post("/customers", json={"name": "Retry me"})
        wait_for(lambda: len(receiver.received) == 2)
    assert receiver.received[0][0] == receiver.received[1][0]
    assert [(d.attempt, d.status) for d in emulator.deliveries] == [(1, 500), (2, 200)]


def test_gone_disables_the_webhook(api: httpx.Client, emulator: InvoicedEmulator) -> None:
    receiver, server = serve_receiver([410])
    with server:
        webhook = api.post("/webhooks", json={"url": f"{server.url}/hook"}).json()
        api.post("/customers", json={"name": "Gone"})
        wait_for(lambda: not api.get(f"/webhooks/{webhook['id']}").json()["enabled"])
        api.post("/customers", json={"name": "Not delivered"})
        time.sleep(sum(RETRY_DELAYS) + 0.2)
    assert len(receiver.received) == 1
    assert [d.status for d in emulator.deliveries] == [410]


def test_unreachable_receiver_is_retried_then_dropped(api: httpx.Client, emulator: InvoicedEmulator) -> None:
    _, server = serve_receiver([])
    dead_url = f"{server.url}/hook"  # never started: connections are refused
    server.sock.close()
    api.post("/webhooks", json={"url": dead_url})
    api.post("/customers", json={"name": "Nobody home"})
    wait_for(lambda: len(emulator.deliveries) == 1 + len(RETRY_DELAYS))
    assert all(d.status is None and d.error for d in emulator.deliveries)
    assert api.get("/webhooks").json()[0]["enabled"] is True


def test_events_made_from_python_are_delivered_on_the_server_loop(api: httpx.Client, emulator: InvoicedEmulator) -> None:
    receiver, server = serve_receiver([])
    with server:
        api.post("/webhooks", json={"url": f"{server.url}/hook"})
        emulator.create_customer({"name": "From a test thread"})
        wait_for(lambda: len(receiver.received) == 1)

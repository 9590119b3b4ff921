"""Keap emulator REST hooks over HTTP: handshake, batched deliveries, retries, Inactive, re-verification.

The receiver is a real Starlette app on its own loopback server; the emulator's timings are shortened.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from tests.support import API_KEY

BATCH_DELAY = 0.2
RETRY_DELAYS = (0.05, 0.05, 0.05)
KEAP_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@dataclass
class Receiver:
    """A hook endpoint: whether it echoes the handshake secret, and the statuses successive deliveries get."""

    url: str = ""
    echo_secret: bool = True
    statuses: list[int] = field(default_factory=list)  # 200 once these are used up
    secrets: list[str] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        secret = request.headers.get("X-Hook-Secret")
        if secret is not None:
            self.secrets.append(secret)
            return Response(headers={"X-Hook-Secret": secret} if self.echo_secret else {})
        self.deliveries.append(await request.json())
        return Response(status_code=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    with BackgroundServer(Starlette(routes=[Route("/hook", receiver.endpoint, methods=["POST"])])) as server:
        receiver.url = f"{server.url}/hook"
        yield receiver


@pytest.fixture
def emulator() -> KeapEmulator:
    emulator = KeapEmulator(api_key=API_KEY, random_seed=1, hook_batch_delay=BATCH_DELAY, hook_retry_delays=RETRY_DELAYS)
    emulator.faults.update({"rate_limit": None})
    return emulator


@pytest.fixture
def server(emulator: KeapEmulator) -> Iterator[BackgroundServer]:
    with BackgroundServer(emulator.asgi()) as server:
        yield server


@pytest.fixture
def keap(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/crm/rest", headers={"X-Keap-API-Key": API_KEY}) as client:
        yield client


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def quiet_period() -> None:
    """Long enough for a batch and all its retries to have gone out if any were due."""
    time.sleep(BATCH_DELAY + sum(RETRY_DELAYS) + 0.3)


def subscribe(keap: httpx.Client, receiver: Receiver, event_key: str) -> dict[str, Any]:
    response = keap.post("/v1/hooks", json={"eventKey": event_key, "hookUrl": receiver.url})
    assert response.status_code == 200
    return response.json()


def create_company(keap: httpx.Client, name: str) -> dict[str, Any]:
    response = keap.post("/v2/companies", json={"company_name": name})
    assert response.status_code == 201
    return response.json()


def delivered_ids(receiver: Receiver) -> list[int]:
    return [key["id"] for payload in receiver.deliveries for key in payload["object_keys"]]


def test_event_keys_cover_the_synced_records(keap: httpx.Client) -> None:
    keys = keap.get("/v1/hooks/event_keys").json()

    assert {f"{o}.{a}" for o in ("company", "contact", "product") for a in ("add", "edit", "delete")} <= set(keys)


def test_create_runs_the_handshake_and_verifies(keap: httpx.Client, receiver: Receiver) -> None:
    hook = subscribe(keap, receiver, "contact.add")

    assert len(receiver.secrets) == 1 and len(receiver.secrets[0]) >= 32
    assert hook == {"key": hook["key"], "eventKey": "contact.add", "hookUrl": receiver.url, "status": "Verified"}
    assert keap.get("/v1/hooks").json() == [hook]
    assert keap.get(f"/v1/hooks/{hook['key']}").json() == hook


def test_hook_without_echo_stays_unverified_and_gets_nothing(keap: httpx.Client, receiver: Receiver) -> None:
    receiver.echo_secret = False
    hook = subscribe(keap, receiver, "company.add")
    create_company(keap, "Acme")
    quiet_period()

    assert hook["status"] == "Unverified"
    assert receiver.deliveries == []


def test_delayed_verify_with_the_secret_verifies(keap: httpx.Client, receiver: Receiver) -> None:
    receiver.echo_secret = False
    hook = subscribe(keap, receiver, "company.add")

    wrong = keap.post(f"/v1/hooks/{hook['key']}/delayedVerify", headers={"X-Hook-Secret": "guess"}).json()
    right = keap.post(f"/v1/hooks/{hook['key']}/delayedVerify", headers={"X-Hook-Secret": receiver.secrets[0]}).json()
    company = create_company(keap, "Acme")

    assert wrong["status"] == "Unverified"
    assert right["status"] == "Verified"
    wait_until(lambda: delivered_ids(receiver) == [int(company["id"])])


def test_changes_arrive_batched_in_the_documented_shape(keap: httpx.Client, receiver: Receiver) -> None:
    for event_key in ("company.add", "company.edit", "company.delete"):
        subscribe(keap, receiver, event_key)
    companies = [create_company(keap, name) for name in ("Acme", "Globex", "Initech")]
    keap.patch(f"/v2/companies/{companies[0]['id']}", json={"company_name": "Acme Inc"})
    keap.delete(f"/v2/companies/{companies[2]['id']}")

    wait_until(lambda: len(receiver.deliveries) == 3)
    by_event = {payload["event_key"]: payload for payload in receiver.deliveries}
    ids = [int(company["id"]) for company in companies]
    assert [key["id"] for key in by_event["company.add"]["object_keys"]] == ids
    assert [key["id"] for key in by_event["company.edit"]["object_keys"]] == [ids[0]]
    assert [key["id"] for key in by_event["company.delete"]["object_keys"]] == [ids[2]]
    edit = by_event["company.edit"]
    assert set(edit) == {"event_key", "object_type", "object_keys"}
    assert edit["object_type"] == "company"
    object_key = edit["object_keys"][0]
    assert set(object_key) == {"id", "apiUrl", "timestamp"}
    assert KEAP_TIME.match(object_key["timestamp"])
    record = httpx.get(object_key["apiUrl"], headers={"X-Keap-API-Key": API_KEY}).json()
    assert record["company_name"] == "Acme Inc"


def test_a_payload_holds_at_most_1000_keys(server: BackgroundServer, keap: httpx.Client, receiver: Receiver) -> None:
    subscribe(keap, receiver, "company.add")
    seeded = httpx.post(f"{server.url}/_emulator/seed", json={"companies": [{"company_name": f"C{i}"} for i in range(1001)]})
    assert len(seeded.json()["companies"]) == 1001

    wait_until(lambda: len(delivered_ids(receiver)) == 1001)

    assert [len(payload["object_keys"]) for payload in receiver.deliveries] == [1000, 1]
    assert delivered_ids(receiver) == list(range(1, 1002))


def test_failed_delivery_is_retried(keap: httpx.Client, receiver: Receiver) -> None:
    receiver.statuses = [503, 500]
    hook = subscribe(keap, receiver, "company.add")
    create_company(keap, "Acme")

    wait_until(lambda: len(receiver.deliveries) == 3)
    quiet_period()

    assert len(receiver.deliveries) == 3
    assert receiver.deliveries[0] == receiver.deliveries[2]
    assert keap.get(f"/v1/hooks/{hook['key']}").json()["status"] == "Verified"


def test_four_failures_make_the_hook_inactive_until_verify(keap: httpx.Client, receiver: Receiver) -> None:
    receiver.statuses = [500, 500, 500, 500]
    hook = subscribe(keap, receiver, "company.add")
    create_company(keap, "Acme")
    wait_until(lambda: keap.get(f"/v1/hooks/{hook['key']}").json()["status"] == "Inactive")
    create_company(keap, "Ignored while inactive")
    quiet_period()
    assert len(receiver.deliveries) == 4

    verified = keap.post(f"/v1/hooks/{hook['key']}/verify").json()
    later = create_company(keap, "After verify")

    assert verified["status"] == "Verified"
    assert len(receiver.secrets) == 2
    wait_until(lambda: len(receiver.deliveries) == 5)
    assert delivered_ids(receiver)[-1] == int(later["id"])


def test_410_makes_the_hook_inactive_at_once(keap: httpx.Client, receiver: Receiver) -> None:
    receiver.statuses = [410]
    hook = subscribe(keap, receiver, "company.add")
    create_company(keap, "Acme")

    wait_until(lambda: keap.get(f"/v1/hooks/{hook['key']}").json()["status"] == "Inactive")
    quiet_period()

    assert len(receiver.deliveries) == 1


def test_put_changes_the_subscription_and_verifies_again(keap: httpx.Client, receiver: Receiver) -> None:
    hook = subscribe(keap, receiver, "company.add")

    updated = keap.put(f"/v1/hooks/{hook['key']}", json={"eventKey": "company.edit", "hookUrl": receiver.url}).json()
    company = create_company(keap, "Acme")
    keap.patch(f"/v2/companies/{company['id']}", json={"company_name": "Acme Inc"})

    assert updated == {**hook, "eventKey": "company.edit", "status": "Verified"}
    assert len(receiver.secrets) == 2
    wait_until(lambda: len(receiver.deliveries) == 1)
    quiet_period()
    assert [payload["event_key"] for payload in receiver.deliveries] == ["company.edit"]


def test_deleted_hook_is_gone_and_gets_nothing(keap: httpx.Client, receiver: Receiver) -> None:
    hook = subscribe(keap, receiver, "company.add")

    assert keap.delete(f"/v1/hooks/{hook['key']}").status_code == 204
    create_company(keap, "Acme")
    quiet_period()

    missing = keap.get(f"/v1/hooks/{hook['key']}")
    assert missing.status_code == 404
    assert "message" in missing.json()
    assert receiver.deliveries == []


@pytest.mark.parametrize("body", [
    {"eventKey": "contact.explode", "hookUrl": "https://example.com/h"},
    {"eventKey": "contact.add", "hookUrl": "not a url"},
    {"eventKey": "contact.add"},
], ids=["unknown-event", "bad-url", "no-url"])
def test_invalid_subscription_is_refused(keap: httpx.Client, body: dict[str, str]) -> None:
    response = keap.post("/v1/hooks", json=body)

    assert response.status_code == 400
    assert response.json()["message"]
    assert keap.get("/v1/hooks").json() == []


def test_reset_removes_hooks(server: BackgroundServer, keap: httpx.Client, receiver: Receiver) -> None:
    subscribe(keap, receiver, "company.add")

    httpx.post(f"{server.url}/_emulator/reset")

    assert keap.get("/v1/hooks").json() == []

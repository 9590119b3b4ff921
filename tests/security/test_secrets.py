"""Security checks: after a chaos run and a full demo, no API key, token or webhook secret appears in the logs,
the command output, any row of the state database or the service's pages; forged webhooks are rejected.

Every secret is distinctive (no "test"), so that not finding it means something; each search also checks that
the place searched is not empty (a log with nothing in it would hide nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx

from invoiced_keap.demo import INVOICED_KEY as DEMO_INVOICED_KEY, KEAP_KEY as DEMO_KEAP_KEY
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.flows import CATALOGUE
from invoiced_keap.server.app import INVOICED_WEBHOOK_PATH, ServerSettings, create_app
from invoiced_keap.server.debounce import DirtyQueue
from invoiced_keap.server.keap_hooks import RECEIVER_PATH, SECRET_HEADER
from invoiced_keap.server.metrics import Metrics
from invoiced_keap.state import Store
from tests.chaos.scenario import chaos_world, converge, run_chaos

INVOICED_KEY = "inv-key-Q7mZ2xW9pL4k"
KEAP_KEY = "keap-key-R8nT3vB6cJ1h"
WEBHOOK_SECRET = "whsec-K2fP9sD4gH7q"
HOOK_TOKEN = "hooktok-M5wE8rY1uI3o"
STATUS_TOKEN = "status-N6aS9dF2gH4j"
SECRETS = (INVOICED_KEY, KEAP_KEY, WEBHOOK_SECRET, HOOK_TOKEN, STATUS_TOKEN)
ROOT = Path(__file__).resolve().parents[2]


def leaks(text: str, secrets: tuple[str, ...] = SECRETS) -> list[str]:
    return [secret for secret in secrets if secret in text]


def database_dump(database_url: str) -> str:
    """Every table, every row (SQLite's own dump of the file)."""
    with sqlite3.connect(database_url.removeprefix("sqlite:///")) as connection:
        return "\n".join(connection.iterdump())


def signed(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_a_chaos_run_leaves_no_secret_in_logs_state_or_pages_and_forged_webhooks_are_rejected(tmp_path: Path) -> None:
    with chaos_world(tmp_path, seed=3, invoiced_key=INVOICED_KEY, keap_key=KEAP_KEY,
                     env={"SYNC_DRIVER_LOG_LEVEL": "DEBUG"}) as world:
        figures = run_chaos(world, edits=20)
        assert converge(world, figures) == []
        logs = "\n".join(world.outputs())
    dump = database_dump(world.database_url)

    assert "HTTP Request" in logs and len(logs) > 10_000, "the passes logged too little for the search to mean anything"
    assert 'INSERT INTO "links"' in dump and 'INSERT INTO "audit_log"' in dump
    assert leaks(logs) == [] and leaks(dump) == []

    event = json.dumps({"id": 1, "type": "customer.updated", "data": {"object": {"id": 1, "type": "company"}}}).encode()
    with Store(world.database_url) as store:
        settings = ServerSettings(invoiced_webhook_secret=WEBHOOK_SECRET, keap_hook_token=HOOK_TOKEN, status_token=STATUS_TOKEN)
        app = create_app(store, CATALOGUE, DirtyQueue(delay=0.05), Metrics(store), settings)
        with BackgroundServer(app) as server, httpx.Client(base_url=server.url) as client:
            forged = {
                "no signature": client.post(INVOICED_WEBHOOK_PATH, content=event),
                "wrong secret": client.post(INVOICED_WEBHOOK_PATH, content=event,
                                            headers={"X-Invoiced-Signature": signed(event, "whsec-guess")}),
                "body changed after signing": client.post(INVOICED_WEBHOOK_PATH, content=event + b" ",
                                                          headers={"X-Invoiced-Signature": signed(event, WEBHOOK_SECRET)}),
                "wrong hook token": client.post(f"{RECEIVER_PATH}/hooktok-guess", json=[{"id": 1}]),
                "hook handshake with a wrong token": client.post(f"{RECEIVER_PATH}/hooktok-guess", headers={SECRET_HEADER: "x"}),
            }
            genuine = client.post(INVOICED_WEBHOOK_PATH, content=event, headers={"X-Invoiced-Signature": signed(event, WEBHOOK_SECRET)})
            pages = [client.post("/status", data={"token": STATUS_TOKEN}, follow_redirects=True),
                     client.get("/metrics"), client.get("/healthz")]

    assert {name: answer.status_code for name, answer in forged.items()} == {
        "no signature": 401, "wrong secret": 401, "body changed after signing": 401,
        "wrong hook token": 404, "hook handshake with a wrong token": 404}
    assert SECRET_HEADER not in forged["hook handshake with a wrong token"].headers
    assert genuine.status_code < 300
    assert pages[0].status_code == 200 and "Flows" in pages[0].text
    assert leaks("\n".join(page.text + str(page.headers) for page in [*forged.values(), genuine, *pages])) == []


def test_the_demo_prints_and_logs_no_secret() -> None:
    demo = subprocess.run([sys.executable, "-m", "invoiced_keap", "--log-level", "DEBUG", "demo"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)

    assert demo.returncode == 0, demo.stderr[-2000:]
    assert "conflict" in demo.stdout.lower() and "HTTP Request" in demo.stderr
    assert leaks(demo.stdout + demo.stderr, (DEMO_INVOICED_KEY, DEMO_KEAP_KEY)) == []

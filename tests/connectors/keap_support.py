"""Helpers for the Keap connector tests: emulator control over HTTP, sample bodies, fast retries."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

from invoiced_keap.connectors.http import RetryPolicy
from invoiced_keap.emulators.serve import BackgroundServer

FAST_RETRIES = RetryPolicy(attempts=12, timeout=30.0, wait_initial=0.02, wait_max=0.3, wait_jitter=0.02)
CONTACTS_ENDPOINT = "GET /crm/rest/v2/contacts"


def api_url(server: BackgroundServer) -> str:
    return f"{server.url}/crm/rest"


def seed(server: BackgroundServer, **collections: list[dict[str, Any]]) -> dict[str, list[str]]:
    answer = httpx.post(f"{server.url}/_emulator/seed", json=collections, timeout=60).json()
    assert answer["errors"] == []
    return answer


def set_faults(server: BackgroundServer, **faults: Any) -> None:
    httpx.post(f"{server.url}/_emulator/faults", json=faults).raise_for_status()


def emulator_stats(server: BackgroundServer) -> tuple[Counter[str], Counter[str]]:
    """(calls per endpoint, responses per status) as the emulator counted them."""
    stats = httpx.get(f"{server.url}/_emulator/stats").json()
    return Counter(stats["requests"]), Counter(stats["status"])


def company(number: int) -> dict[str, Any]:
    return {"company_name": f"Company {number}", "email_address": {"email": f"c{number}@example.com", "field": "EMAIL1"}}


def contact(number: int) -> dict[str, Any]:
    return {"given_name": f"Given{number}", "family_name": "Family", "email_addresses": [{"email": f"p{number}@example.com", "field": "EMAIL1"}]}


def product(number: int) -> dict[str, Any]:
    return {"name": f"Product {number}", "price": 100 + number, "short_description": f"Product {number}"}

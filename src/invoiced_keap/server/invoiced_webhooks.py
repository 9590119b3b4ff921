"""The Invoiced webhook receiver: signed events in, dirty customer ids out.

Invoiced signs each delivery with `X-Invoiced-Signature`, the lower-case hex HMAC-SHA256 of the raw
body keyed with the webhook's secret. Anything without a valid signature is answered 401 and changes
nothing. Deliveries can repeat (Invoiced retries hourly), so event ids already handled are answered
200 and skipped. Items have no events in Invoiced, so customers and their people (contacts, as `customer/id`) are
marked here; polling covers items.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import OrderedDict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from invoiced_keap.connectors.invoiced import CONTACT, CUSTOMER
from invoiced_keap.flows import CATALOGUE, flow_of
from invoiced_keap.server.debounce import DirtyQueue
from invoiced_keap.server.metrics import Metrics


SIGNATURE_HEADER = "X-Invoiced-Signature"
CHANGE_EVENTS = frozenset({"customer.created", "customer.updated"})
SEEN_EVENTS_KEPT = 10_000
SOURCE = "invoiced"


def expected_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_is_valid(secret: str, body: bytes, signature: str | None) -> bool:
    """Constant-time comparison, so the answer's timing tells a forger nothing."""
    if not secret or not signature:
        return False
    return hmac.compare_digest(expected_signature(secret, body), signature.strip())


class SeenEvents:
    """The most recent event ids handled, oldest forgotten first (retries come within two days)."""

    def __init__(self, capacity: int = SEEN_EVENTS_KEPT) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, event_id: str) -> bool:
        """True if the id is new."""
        if event_id in self._ids:
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True


class InvoicedWebhookReceiver:
    """`POST /webhooks/invoiced`: verify, dedupe, mark the customer dirty in the flow of its type."""

    def __init__(self, secret: str, queue: DirtyQueue, metrics: Metrics, flows: frozenset[str]) -> None:
        self.secret = secret
        self.queue = queue
        self.metrics = metrics
        self.flows = flows
        self.seen = SeenEvents()

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        if not signature_is_valid(self.secret, body, request.headers.get(SIGNATURE_HEADER)):
            return self._answer("rejected", 401, "invalid signature")
        try:
            event = json.loads(body)
            event_id, event_type = str(event["id"]), str(event["type"])
        except (ValueError, KeyError, TypeError):
            return self._answer("rejected", 400, "not an Invoiced event")
        about = {"event_id": event_id, "type": event_type}
        if not self.seen.add(event_id):
            return self._answer("duplicate", 200, "already handled", **about)
        customer = event.get("data", {}).get("object") or {}
        if not self._mark(event_type, customer):
            return self._answer("ignored", 200, "not an event this sync follows", **about)
        return self._answer("accepted", 200, "queued", **about, record_id=customer.get("id"))

    def _mark(self, event_type: str, customer: dict[str, Any]) -> bool:
        """Mark what the event names; False when it concerns no flow in use."""
        marked = False
        if event_type in CHANGE_EVENTS or event_type == "customer.merged":  # the survivor changed too
            marked |= self._mark_customer(customer, removed=False)
        if event_type == "customer.deleted":
            marked |= self._mark_customer(customer, removed=True)
        if event_type == "customer.merged":
            marked |= self._mark_customer(customer.get("original_customer") or {}, removed=True)
        if event_type.startswith("contact."):
            marked |= self._mark_contact(event_type, customer)
        return marked

    def _mark_contact(self, event_type: str, contact: dict[str, Any]) -> bool:
        """A company customer's person: marked in the flows of Invoiced contacts, by its `customer/id`."""
        parent = contact.get("customer")
        parent_id = parent.get("id") if isinstance(parent, dict) else parent
        if "id" not in contact or parent_id is None:
            return False
        marked = False
        for flow in (name for name, flow in CATALOGUE.items() if flow.invoiced == CONTACT and name in self.flows):
            self.queue.mark(flow, "invoiced", [f"{parent_id}/{contact['id']}"], removed=event_type == "contact.deleted")
            marked = True
        return marked

    def _mark_customer(self, customer: dict[str, Any], *, removed: bool) -> bool:
        if "id" not in customer:
            return False
        flow = flow_of(CUSTOMER, customer)
        if flow not in self.flows:
            return False
        self.queue.mark(flow, "invoiced", [str(customer["id"])], removed=removed)
        return True

    def _answer(self, outcome: str, status: int, message: str, **about: Any) -> Response:
        self.metrics.delivered(SOURCE, outcome, message=message, **about)
        return JSONResponse({"result": outcome, "message": message}, status_code=status)

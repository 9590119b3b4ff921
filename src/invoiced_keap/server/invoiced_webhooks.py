"""The Invoiced webhook receiver: signed events in, dirty customer ids out.

Invoiced signs each delivery with `X-Invoiced-Signature`, the lower-case hex HMAC-SHA256 of the raw
body keyed with the webhook's secret. Anything without a valid signature is answered 401 and changes
nothing. Deliveries can repeat (Invoiced retries hourly), so event ids already handled are answered
200 and skipped. Items have no events in Invoiced, so customers and their people (contacts, as `customer/id`) are
marked here; polling covers items.

`webhook_problem` checks in Invoiced's list of webhooks that ours can deliver (`invoiced_webhook_upkeep`): while it
can, `run` lists Invoiced's customers only every `invoiced_poll_interval`. Between checks `DeliveryWatch` compares
the customer events each poll lists with those delivered, so a webhook that stops delivering is noticed at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from invoiced_keap.connectors.invoiced import CONTACT, CUSTOMER, Event, InvoicedConnector
from invoiced_keap.flows import CATALOGUE, flow_of
from invoiced_keap.server.debounce import DirtyQueue
from invoiced_keap.server.metrics import Metrics
from invoiced_keap.server.upkeep import PushUpkeep


SIGNATURE_HEADER = "X-Invoiced-Signature"
CHANGE_EVENTS = frozenset({"customer.created", "customer.updated"})
SEEN_EVENTS_KEPT = 10_000
DELIVERED_EVENTS = ("customer.created", "customer.updated", "customer.deleted")
"""The events a webhook must send for the customers' poll to slow down (a webhook's `events` default: `*`, all)."""
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

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

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

    def __init__(self, secret: str, queue: DirtyQueue, metrics: Metrics, flows: frozenset[str],
                 seen: SeenEvents | None = None) -> None:
        self.secret = secret
        self.queue = queue
        self.metrics = metrics
        self.flows = flows
        self.seen = SeenEvents() if seen is None else seen  # shared with the service's `DeliveryWatch`

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
        self.metrics.delivered(SOURCE, outcome, reason=message, **about)
        return JSONResponse({"result": outcome, "message": message}, status_code=status)


def invoiced_webhook_upkeep(*, secret: str | None, public_url: str | None) -> PushUpkeep:
    """The upkeep of Invoiced's webhook to us (`PushUpkeep`): off without a secret (the receiver is off) or without
    `public_url` (the address the webhook must name is not known)."""
    off_reason = None
    if not secret:
        off_reason = ("no invoiced_webhook_secret is configured: the Invoiced receiver is off, and Invoiced's customers "
                      "are read by a poll every poll_interval")
    elif not public_url:
        off_reason = ("no public_url is configured: whether Invoiced's webhook reaches this service cannot be checked, "
                      "so Invoiced's customers are read by a poll every poll_interval; set public_url "
                      "(INVOICED_KEAP_PUBLIC_URL) to the address Invoiced reaches this service at")
    return PushUpkeep("Invoiced webhook", "Invoiced's customers are read by a poll every {interval}",
                      off_reason=off_reason, slow_poll="invoiced_poll_interval")


async def webhook_problem(invoiced: InvoicedConnector, url: str, secret: str) -> str | None:
    """What keeps Invoiced's webhooks from delivering the customers' changes to `url`, or None when one of them
    does: one listing (API.md section 7). Each webhook to `url` must be enabled (Invoiced disables one after two
    days of failed deliveries, or at once when the receiver answers 410), send `DELIVERED_EVENTS` and, where
    Invoiced shows its secret, sign with `secret` (else the receiver refuses every delivery, 401)."""
    problems = [_problem(webhook, secret) async for webhook in invoiced.webhooks()
                if str(webhook.get("url", "")).rstrip("/") == url.rstrip("/")]
    if not problems:
        return (f"Invoiced has no webhook to {url}: add one in Invoiced (Settings, Developers, Webhooks) and put its "
                "secret in invoiced_webhook_secret")
    return None if None in problems else "; ".join(sorted(set(filter(None, problems))))


def _problem(webhook: dict[str, Any], secret: str) -> str | None:
    url = webhook.get("url")
    if not webhook.get("enabled", True):
        return (f"Invoiced's webhook to {url} is disabled (Invoiced disables one after two days of failed deliveries, "
                "or when it is answered 410): enable it in Invoiced")
    events = webhook.get("events") or ["*"]
    missing = [event for event in DELIVERED_EVENTS if "*" not in events and event not in events]
    if missing:
        return f"Invoiced's webhook to {url} does not send {', '.join(missing)}"
    if "secret" in webhook and not hmac.compare_digest(str(webhook["secret"]), secret):
        return (f"Invoiced's webhook to {url} signs with another secret than invoiced_webhook_secret: this service "
                "refuses its deliveries (401)")
    return None


class DeliveryWatch:
    """Whether Invoiced's webhook delivers, from what the polls list: an event of `DELIVERED_EVENTS` a poll lists that
    the receiver has not `seen` by the next poll was not delivered (Invoiced delivers at once, and retries only an hour
    later). The events up to the newest the first poll lists are not judged: they may predate this process."""

    def __init__(self, seen: SeenEvents) -> None:
        self.seen = seen
        self.floor: int | None = None
        self.waiting: set[int] = set()  # listed by the last poll, not delivered then

    def missed(self, events: Iterable[Event], newest: int | None) -> list[int]:
        """The ids of the events the last poll listed that are still not delivered; `events` (listed by this poll,
        `newest` the newest id of the account's) are judged at the next."""
        if self.floor is None:
            self.floor = newest or 0
            return []
        missed = sorted(event_id for event_id in self.waiting if str(event_id) not in self.seen)
        self.waiting = {event.id for event in events
                        if event.id > self.floor and event.type in DELIVERED_EVENTS and str(event.id) not in self.seen}
        return missed

"""The webhook resource's rules and hooks, and delivery: the event JSON POSTed with a hex HMAC-SHA256
signature, retried on failure."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from invoiced_keap.emulators.invoiced import fields
from invoiced_keap.emulators.invoiced.errors import ApiError
from invoiced_keap.emulators.invoiced.store import Account
from invoiced_keap.mapping import Record


SECRET_LENGTH = 32
DELIVERY_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def signature(secret: str, body: bytes) -> str:
    """`X-Invoiced-Signature`: lower-case hex HMAC-SHA256 of the raw body, keyed with the webhook's secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def generated_secret(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(SECRET_LENGTH))


def _webhook_fields(body: Record) -> Record:
    values: Record = {}
    if "url" in body:
        url = fields.required("url", body["url"])
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ApiError(400, "Url only allows valid URLs", "url")
        values["url"] = url
    if "enabled" in body:
        values["enabled"] = fields.boolean("enabled", body["enabled"])
    if "events" in body:
        events = body["events"]
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise ApiError(400, "Events is invalid", "events")
        values["events"] = events or ["*"]
    return values


def new_webhook(body: Record, *, webhook_id: int, secret: str, now: int) -> Record:
    fields.required("url", body.get("url"))
    values = {"enabled": True, "events": ["*"], **_webhook_fields(body)}
    return {"id": webhook_id, "object": "webhook", **values, "secret": secret, "created_at": now, "updated_at": now}


def updated_webhook(record: Record, body: Record, *, now: int) -> Record:
    return {**record, **_webhook_fields(body), "updated_at": now}


def create(account: Account, body: Record) -> Record:
    """The id and secret are drawn before the body is checked, so a refused create uses one up."""
    return new_webhook(
        body, webhook_id=account.next_id("webhooks"), secret=generated_secret(account.random), now=account.now()
    )


def update(account: Account, record: Record, body: Record) -> tuple[Record, Record]:
    """Every PATCH is a change (`updated_at` moves); webhooks make no events, so no `previous` is kept."""
    return updated_webhook(record, body, now=account.now()), {}


def disable(account: Account, webhook_id: int) -> None:
    """What a 410 from the receiver does: the webhook stays, disabled, its `updated_at` untouched."""
    table = account.tables["webhooks"]
    if webhook_id in table:
        table[webhook_id]["enabled"] = False
        table.touch()


def subscribes(webhook: Record, event_type: str) -> bool:
    return bool(webhook["enabled"]) and ("*" in webhook["events"] or event_type in webhook["events"])


@dataclass(frozen=True)
class Delivery:
    """One delivery attempt, kept for tests and the demo: `status` is None when the request itself failed."""

    webhook_id: int
    event_id: int
    attempt: int
    status: int | None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


async def deliver(
    event: Record,
    webhook_id: int,
    lookup: Callable[[int], Record | None],
    retry_delays: Sequence[float],
    record: Callable[[Delivery], None],
    disable: Callable[[int], None],
) -> None:
    """POST `event` until a 2xx; retry after each delay; a 410 disables the webhook at once.

    The webhook is looked up before every attempt, so a deleted or disabled one stops the retries.
    Exhausting the delays drops this delivery (the real service retries hourly for two days, then disables).
    """
    body = json.dumps(event, separators=(",", ":")).encode()
    async with httpx.AsyncClient(timeout=DELIVERY_TIMEOUT, follow_redirects=False) as client:
        for attempt, delay in enumerate((0.0, *retry_delays), start=1):
            await asyncio.sleep(delay)
            webhook = lookup(webhook_id)
            if webhook is None or not webhook["enabled"]:
                return
            headers = {
                "User-Agent": "Invoiced/1.0",
                "Content-Type": "application/json",
                "X-Invoiced-Signature": signature(webhook["secret"], body),
            }
            try:
                response = await client.post(webhook["url"], content=body, headers=headers)
            except httpx.HTTPError as exc:
                record(Delivery(webhook_id, event["id"], attempt, None, repr(exc)))
                continue
            outcome = Delivery(webhook_id, event["id"], attempt, response.status_code)
            record(outcome)
            if response.status_code == 410:
                disable(webhook_id)
                return
            if outcome.succeeded:
                return

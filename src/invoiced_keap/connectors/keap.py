"""Keap API: REST v2 companies, contacts and products (bulk and incremental reads, writes) and v1 REST hooks.

Calls are Keap's scarce resource (a key gets 240 a minute), so listings ask for 1000 records a page
and only the fields the flows use, incremental reads ask only for what changed since a watermark,
and an update sends exactly the fields that differ (`update_mask`), or nothing at all.

Incremental reads, per stream (`Stream`):
- companies: `filter=since_time==<watermark - overlap>`, `order_by=id`;
- contacts: `filter=start_update_time==<watermark - overlap>`, `order_by=id`;
- products: no time filter exists, so `order_by=last_updated_time desc`, paging stops at the watermark.
The order is chosen so that a record edited while pages are read can only push records *forward*
(read twice), never back past the cursor (skipped) if page tokens are offsets: in `update_time asc`
order an edited record jumps to the end and the record after it would be skipped, so contacts are
read in id order, not by update time as first designed. Records seen twice are deduplicated, keeping
the newest version. The returned watermark, for the engine to store once it has committed the changes,
is the newest `update_time` seen, but no later than the server's clock (`Date`) when the read began:
a record edited after its page was read is then still caught by the next read.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from invoiced_keap.connectors.errors import NotFound
from invoiced_keap.connectors.http import ApiClient, AsyncClosing, RequestEvent, RequestStats, RetryPolicy
from invoiced_keap.connectors.keap_auth import AccessToken, ApiKey, KeapOAuth, OAuthClient
from invoiced_keap.connectors.pacing import KEAP_OAUTH_LIMITS, KEAP_PAT_LIMITS, Pacer, RateLimits
from invoiced_keap.connectors.redaction import SecretHeaders
from invoiced_keap.mapping import KeapPlace

Record = dict[str, Any]
Credentials = ApiKey | AccessToken | OAuthClient

DEFAULT_BASE_URL = "https://api.infusionsoft.com/crm/rest"
API_KEY_HEADER = "X-Keap-API-Key"
PAGE_SIZE = 1000
DEFAULT_OVERLAP = timedelta(seconds=5)
HOOKS_PATH = "/v1/hooks"


@dataclass(frozen=True)
class Stream:
    """One v2 record type. `fields` is what a listing asks for (None: Keap's default set; v2 products
    take no `fields`); `since_filter` / `change_order` say how to read only what changed."""

    name: str
    fields: tuple[str, ...] | None
    since_filter: str | None = None
    change_order: str | None = None

    @property
    def path(self) -> str:
        return f"/v2/{self.name}"

    @property
    def record_path(self) -> str:
        return f"/v2/{self.name}/{{id}}"

    @property
    def newest_first(self) -> bool:
        return bool(self.change_order and self.change_order.endswith(" desc"))


COMPANIES = Stream(
    "companies",
    fields=("company_name", "email_address", "phone_number", "address", "update_time"),
    since_filter="since_time",
    change_order="id",
)
CONTACTS = Stream(
    "contacts",
    fields=("given_name", "family_name", "email_addresses", "phone_numbers", "addresses", "update_time"),
    since_filter="start_update_time",
    change_order="id",
)
PRODUCTS = Stream("products", fields=None, change_order="last_updated_time desc")
STREAMS = {stream.name: stream for stream in (COMPANIES, CONTACTS, PRODUCTS)}


@dataclass(frozen=True)
class Page:
    """One page of a listing, and the server's clock when it answered (its `Date` header, if any)."""

    records: list[Record]
    served_at: datetime | None


@dataclass(frozen=True)
class Changes:
    """Records updated at or after the watermark (less the overlap), and the watermark to store next."""

    records: list[Record]
    watermark: datetime | None


@dataclass(frozen=True)
class RestHook:
    """A v1 REST hook subscription; `status` is Unverified, Verified or Inactive."""

    key: str
    event_key: str
    hook_url: str
    status: str

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> "RestHook":
        return cls(str(body["key"]), body["eventKey"], body["hookUrl"], body["status"])


def keap_time(moment: datetime) -> str:
    """`2025-04-16T20:33:02.321Z`, the form Keap's time filters take."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def updated_at(record: Mapping[str, Any]) -> datetime | None:
    value = record.get("update_time")
    return datetime.fromisoformat(value) if value else None


def served_at(response: httpx.Response) -> datetime | None:
    """The response's `Date` header (whole seconds, rounded down: never later than the server's clock)."""
    try:
        moment = parsedate_to_datetime(response.headers["date"])
    except (KeyError, TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def page_token_of(next_page: str | None) -> str | None:
    """Keap's `next_page_token`: an opaque token, or (seen in 2024) a full URL carrying `page_token`.
    None means the last page was read."""
    if not next_page:
        return None
    if "://" in next_page:
        return httpx.URL(next_page).params.get("page_token") or None
    return next_page


def same_value(left: Any, right: Any) -> bool:
    """Equal as Keap means it: a contact's slot array (`[{field: EMAIL1, ...}]`) in any order."""
    if isinstance(left, list) and isinstance(right, list):
        return sorted(json.dumps(item, sort_keys=True) for item in left) == sorted(json.dumps(item, sort_keys=True) for item in right)
    return bool(left == right)


def changed_fields(body: Mapping[str, Any], current: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fields of `body` that differ from `current` (all of them when there is no current record)."""
    if current is None:
        return dict(body)
    return {name: value for name, value in body.items() if not same_value(value, current.get(name))}


class KeapConnector(AsyncClosing):
    """Keap over REST; use as `async with KeapConnector(ApiKey(key)) as keap:`.

    Pacing defaults to Keap's published limits for the credential type (PAT/SAK 10/s, 240/min,
    30,000/day; OAuth 1,500/min, 150,000/day), tightened further by the `x-keap-*` headers.
    `clock` (epoch seconds) decides when an OAuth token counts as expired.
    """

    def __init__(
        self,
        credentials: Credentials,
        base_url: str = DEFAULT_BASE_URL,
        *,
        limits: RateLimits | None = None,
        retry: RetryPolicy = RetryPolicy(),
        overlap: timedelta = DEFAULT_OVERLAP,
        page_size: int = PAGE_SIZE,
        clock: Callable[[], float] = time.time,
        pacer: Pacer | None = None,
        listeners: Sequence[Callable[[RequestEvent], None]] = (),
    ) -> None:
        self.auth: httpx.Auth
        if isinstance(credentials, ApiKey):
            self.auth, default_limits = SecretHeaders.api_key(API_KEY_HEADER, credentials.key), KEAP_PAT_LIMITS
        elif isinstance(credentials, AccessToken):
            self.auth, default_limits = credentials.auth(), KEAP_OAUTH_LIMITS
        else:
            self.auth, default_limits = KeapOAuth(credentials, clock=clock), KEAP_OAUTH_LIMITS
        self.overlap = overlap
        self.page_size = page_size
        self.api = ApiClient(
            base_url, auth=self.auth, limits=default_limits if limits is None else limits, retry=retry, listeners=listeners, pacer=pacer
        )

    @property
    def stats(self) -> RequestStats:
        """Calls made, per endpoint and status (for benchmarks and metrics)."""
        return self.api.stats

    # --- reading ---------------------------------------------------------------------------------
    async def pages(self, stream: Stream, params: Mapping[str, str] | None = None) -> AsyncIterator[Page]:
        """Every page of a listing (1000 records a page unless configured), each page requested once."""
        query = {"page_size": str(self.page_size), **(params or {})}
        token: str | None = None
        while True:
            response = await self.api.request("GET", stream.path, params={**query, **({"page_token": token} if token else {})})
            body = response.json()
            yield Page(body.get(stream.name) or [], served_at(response))
            token = page_token_of(body.get("next_page_token"))
            if token is None:
                return

    async def list_all(self, stream: Stream, *, fields: Sequence[str] | None = None) -> AsyncIterator[Record]:
        """Every record of a stream (for the match index, id scans and `verify`)."""
        async for page in self.pages(stream, self._fields_param(stream, fields)):
            for record in page.records:
                yield record

    async def changes(
        self, stream: Stream, watermark: datetime | None, *, fields: Sequence[str] | None = None
    ) -> Changes:
        """Records updated at or after `watermark - overlap` (all records when there is no watermark).

        Records at the watermark's millisecond come back again on the next read: never lossy, and the
        engine's shadows make them no-ops."""
        if fields is not None and "update_time" not in fields:
            fields = [*fields, "update_time"]  # the watermark is made of it
        params = self._fields_param(stream, fields)
        start = watermark - self.overlap if watermark is not None else None
        if start is not None and stream.since_filter:
            params["filter"] = f"{stream.since_filter}=={keap_time(start)}"
        if stream.change_order:
            params["order_by"] = stream.change_order
        newest: dict[str, Record] = {}
        began: datetime | None = None
        async with aclosing(self.pages(stream, params)) as pages:
            async for page in pages:
                began = began or page.served_at
                fresh = [record for record in page.records if start is None or not _older(record, start)]
                for record in fresh:
                    if _newer(record, newest.get(record["id"])):
                        newest[record["id"]] = record
                if stream.newest_first and len(fresh) < len(page.records):
                    break  # newest first: the rest is older than the watermark
        times = [moment for record in newest.values() if (moment := updated_at(record)) is not None]
        reached = max(times, default=None)
        if reached is not None and began is not None:
            reached = min(reached, began)  # an edit made after its page was read is caught next time
        return Changes(list(newest.values()), max(filter(None, (reached, watermark)), default=None))

    async def get(self, stream: Stream, record_id: str, *, fields: Sequence[str] | None = None) -> Record:
        params = {"fields": ",".join(fields)} if fields else None
        response = await self.api.request("GET", stream.record_path, path_params={"id": record_id}, params=params)
        return dict(response.json())

    # --- writing ---------------------------------------------------------------------------------
    async def create(self, stream: Stream, body: Mapping[str, Any]) -> Record:
        """POST; not repeated after a 5xx (it may have been made): the engine's intents handle that."""
        response = await self.api.request("POST", stream.path, json=dict(body))
        return dict(response.json())

    async def update(
        self,
        stream: Stream,
        record_id: str,
        changes: Mapping[str, Any],
        *,
        current: Mapping[str, Any] | None = None,
        slots: Mapping[KeapPlace, Mapping[str, Any]] | None = None,
    ) -> Record:
        """PATCH with an `update_mask` naming exactly the fields that differ from `current`.

        `slots` gives values for the slots we own (`EMAIL1`, `PHONE1`, `BILLING`): Keap replaces a
        contact's arrays wholesale, so each is merged into `current`'s array, keeping the other slots.
        With nothing to change, no call is made and `current` is returned.
        """
        body = dict(changes)
        for place, values in (slots or {}).items():
            if current is None:
                raise ValueError("updating a slot needs the current record to merge into")
            body.update(place.write(current, values))
        body = changed_fields(body, current)
        if not body:
            if current is None:
                raise ValueError("nothing to update")
            return dict(current)
        response = await self.api.request(
            "PATCH",
            stream.record_path,
            path_params={"id": record_id},
            params={"update_mask": list(body)},
            json=body,
            retry_safe=True,  # absolute values: sending them twice does no harm
        )
        return dict(response.json())

    async def delete(self, stream: Stream, record_id: str) -> bool:
        """True if deleted now, False if it was already gone (e.g. a retried delete that had gone through)."""
        try:
            await self.api.request("DELETE", stream.record_path, path_params={"id": record_id})
        except NotFound:
            return False
        return True

    # --- v1 REST hooks ---------------------------------------------------------------------------
    async def hook_event_keys(self) -> list[str]:
        response = await self.api.request("GET", f"{HOOKS_PATH}/event_keys")
        return list(response.json())

    async def list_hooks(self) -> list[RestHook]:
        response = await self.api.request("GET", HOOKS_PATH)
        return [RestHook.from_json(hook) for hook in response.json()]

    async def create_hook(self, event_key: str, hook_url: str) -> RestHook:
        """Subscribe; Keap verifies at once by POSTing an `X-Hook-Secret` the receiver must echo."""
        response = await self.api.request("POST", HOOKS_PATH, json={"eventKey": event_key, "hookUrl": hook_url})
        return RestHook.from_json(response.json())

    async def verify_hook(self, key: str) -> RestHook:
        """Re-run the handshake: how an Unverified or Inactive subscription comes back."""
        response = await self.api.request("POST", f"{HOOKS_PATH}/{{key}}/verify", path_params={"key": key}, retry_safe=True)
        return RestHook.from_json(response.json())

    async def delete_hook(self, key: str) -> None:
        await self.api.request("DELETE", f"{HOOKS_PATH}/{{key}}", path_params={"key": key})

    # --- plumbing --------------------------------------------------------------------------------
    @staticmethod
    def _fields_param(stream: Stream, fields: Sequence[str] | None) -> dict[str, str]:
        chosen = fields if fields is not None else stream.fields
        return {"fields": ",".join(chosen)} if chosen else {}

    async def aclose(self) -> None:
        await self.api.aclose()

    def __repr__(self) -> str:
        return f"<KeapConnector {self.api!r}>"


def _older(record: Mapping[str, Any], start: datetime) -> bool:
    moment = updated_at(record)
    return moment is not None and moment < start


def _newer(record: Mapping[str, Any], seen: Mapping[str, Any] | None) -> bool:
    """Keep the later of two copies of one record (ties: the first seen)."""
    if seen is None:
        return True
    mine, theirs = updated_at(record), updated_at(seen)
    return mine is not None and (theirs is None or mine > theirs)

"""Keap API: REST v2 companies, contacts and products (bulk and incremental reads, writes), their custom field
models and tags, and v1 REST hooks.

Calls are Keap's scarce resource (a key gets 240 a minute), so listings ask for 1000 records a page
and only the fields the flows use, incremental reads ask only for what changed since a watermark,
and an update sends exactly the fields that differ (`update_mask`), or nothing at all.

Incremental reads, per object (`KeapObject`):
- companies: `filter=since_time==<watermark>`, `order_by=id`;
- contacts: `filter=start_update_time==<watermark>`, `order_by=id`;
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
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from invoiced_keap.connectors.errors import NotFound, RecordRejected
from invoiced_keap.connectors.http import ApiClient, AsyncClosing, Page, RequestEvent, RequestStats, RetryPolicy, served_at
from invoiced_keap.connectors.keap_auth import AccessToken, ApiKey, KeapOAuth, OAuthClient
from invoiced_keap.connectors.pacing import KEAP_OAUTH_LIMITS, KEAP_PAT_LIMITS, Pacer, RateLimits
from invoiced_keap.connectors.redaction import SecretHeaders
from invoiced_keap.mapping import Record

Credentials = ApiKey | AccessToken | OAuthClient

DEFAULT_BASE_URL = "https://api.infusionsoft.com/crm/rest"
API_KEY_HEADER = "X-Keap-API-Key"
PAGE_SIZE = 1000
PAGE_CHARS = 2_000_000
"""Characters of records (JSON text) a page of a change read asks for at most, when their length is known
(`page_size_for`): records up to 2,000 characters keep 1,000 a page; 20,000-character descriptions come 100 a page."""
ONE_MILLISECOND = timedelta(milliseconds=1)  # the resolution of Keap's `update_time`
HOOKS_PATH = "/v1/hooks"
IDS_PER_CALL = 100
"""Ids per `by_ids` listing: keeps the query string well under common URL length limits."""


@dataclass(frozen=True)
class KeapObject:
    """One v2 record type, declared: `name` is its path segment and listing key, `hook_object` its v1 REST
    hook event prefix (`company.edit`), `properties` the v2 schema's top-level fields (what a field rule may
    name), `text_properties` those of them a create or update takes as free text (a plain string, not an id,
    date, enum, object or array: what a configured `add` rule may map), `since_filter` / `change_order` how to
    read only what changed, `ids_filter` the filter that takes a comma-separated id list (None: read one by
    one), `id_filter` the filter that compares ids (`company_id>=5`: `near_ids`), `takes_fields` whether
    listings take `fields`."""

    name: str
    hook_object: str
    properties: frozenset[str]
    text_properties: frozenset[str]
    since_filter: str | None = None
    change_order: str | None = None
    ids_filter: str | None = None
    id_filter: str | None = None
    takes_fields: bool = True

    @property
    def path(self) -> str:
        return f"/v2/{self.name}"

    @property
    def record_path(self) -> str:
        return f"/v2/{self.name}/{{id}}"

    @property
    def newest_first(self) -> bool:
        return bool(self.change_order and self.change_order.endswith(" desc"))


# Properties: the v2 OpenAPI schemas `Company`, `Contact`, `RestV2Product_List` (keap/specs, 2024); text properties:
# the string properties of `CreateCompanyRequest`, `CreateUpdateContactRequest` and `CreateProductRequest_Detail`.
COMPANIES = KeapObject(
    "companies", "company",
    frozenset({
        "account_id", "address", "anniversary_date", "assistant_name", "assistant_phone", "billing_information",
        "birth_date", "company_name", "contact_type", "create_time", "created_by", "custom_fields", "email_address",
        "fax_number", "first_name", "groups", "id", "job_title", "last_name", "last_updated_by", "middle_name",
        "notes", "owner_id", "phone_number", "preferred_name", "referral_code", "spouse_name", "suffix", "title",
        "update_time", "website",
    }),
    frozenset({
        "assistant_name", "assistant_phone", "billing_information", "company_name", "first_name", "job_title",
        "last_name", "middle_name", "notes", "preferred_name", "referral_code", "spouse_name", "suffix", "title",
        "website",
    }),
    since_filter="since_time",
    change_order="id",
    id_filter="company_id",  # listCompanies: "(Number) `company_id` - supports comparison operators"
)
CONTACTS = KeapObject(
    "contacts", "contact",
    frozenset({
        "account_id", "addresses", "anniversary_date", "assistant_name", "assistant_phone", "billing_information",
        "birth_date", "company", "contact_type", "create_time", "created_by", "custom_fields", "email_addresses",
        "family_name", "fax_numbers", "given_name", "groups", "id", "job_title", "last_updated_by", "leadsource_id",
        "links", "middle_name", "origin", "owner_id", "phone_numbers", "preferred_locale", "preferred_name", "prefix",
        "referral_code", "score_value", "social_accounts", "source_type", "spouse_name", "suffix", "tag_ids",
        "time_zone", "update_time", "utm_parameters", "website",
    }),
    frozenset({
        "assistant_name", "assistant_phone", "billing_information", "family_name", "given_name", "job_title",
        "middle_name", "preferred_name", "prefix", "referral_code", "spouse_name", "suffix", "website",
    }),
    since_filter="start_update_time",
    change_order="id",
    ids_filter="ids",
)
PRODUCTS = KeapObject(
    "products", "product",
    frozenset({
        "active", "bottom_html", "categories", "city_taxable", "country_taxable", "create_time",
        "delivery_description", "description", "has_legacy_image", "id", "inventory", "is_package", "name",
        "needs_digital_delivery", "options", "price", "shippable", "short_description", "sku", "state_taxable",
        "storefront_hidden", "subscription_only", "subscription_plans", "taxable", "top_html", "update_time", "weight",
    }),
    frozenset({"bottom_html", "description", "name", "short_description", "sku", "top_html"}),
    change_order="last_updated_time desc",
    ids_filter="product_ids",
    takes_fields=False,
)
OBJECTS = {keap_object.name: keap_object for keap_object in (COMPANIES, CONTACTS, PRODUCTS)}
# Tags are listed like the records (`list_all(TAGS)`); v1 hooks call them contact groups. No flow syncs them.
TAGS = KeapObject("tags", "contactGroup", frozenset({"category", "create_time", "description", "id", "name", "update_time"}),
                  frozenset({"description", "name"}), takes_fields=False)


@dataclass(frozen=True)
class Changes:
    """Records updated at or after the watermark, by id (text), and the watermark to store next: where the next
    read starts."""

    records: Mapping[str, Record]
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


def page_size_for(longest: int, page_size: int = PAGE_SIZE) -> int:
    """A page size for records of up to `longest` characters: `PAGE_CHARS` of them, at most `page_size`, at least 10
    (0: not known, `page_size`). Keap's page tokens are opaque, so a listing keeps its first page's size throughout."""
    return page_size if longest <= 0 else max(10, min(page_size, PAGE_CHARS // longest))


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
        self.page_size = page_size
        self.api = ApiClient(
            base_url, system="Keap", auth=self.auth, limits=default_limits if limits is None else limits, retry=retry, listeners=listeners, pacer=pacer
        )

    @property
    def stats(self) -> RequestStats:
        """Calls made, per endpoint and status (for benchmarks and metrics)."""
        return self.api.stats

    # --- reading ---------------------------------------------------------------------------------
    async def pages(self, keap_object: KeapObject, params: Mapping[str, str] | None = None, *,
                    page_size: int | None = None) -> AsyncIterator[Page]:
        """Every page of a listing (`page_size` records a page, else the connector's: 1000 unless configured), each
        page requested once. The page size stays the same from page to page: a page token is opaque (Keap documents
        no other meaning), so a listing is never re-sized midway. A page's response is let go once parsed, and the
        page once the caller is done with it."""
        query = {"page_size": str(page_size or self.page_size), **(params or {})}
        token: str | None = None
        while True:
            response = await self.api.request("GET", keap_object.path, params={**query, **({"page_token": token} if token else {})})
            body, served = response.json(), served_at(response)
            del response  # its body is parsed: not held beside the records
            records = body.get(keap_object.name) or []
            token = page_token_of(body.get("next_page_token"))
            del body
            yield Page(records, served)
            del records  # the caller is done with the page: not held while the next is read
            if token is None:
                return

    async def list_all(self, keap_object: KeapObject, *, fields: Sequence[str] | None = None,
                       page_size: int | None = None) -> AsyncIterator[Record]:
        """Every record of an object with `fields` (None: Keap's default set) for the match index, id scans, `verify`;
        `page_size` records a page (`page_size_for`), else the connector's."""
        async for page in self.pages(keap_object, _fields_param(keap_object, fields), page_size=page_size):
            for record in page.records:
                yield record
            del page  # not held while the next page is read

    async def changes(self, keap_object: KeapObject, watermark: datetime | None, *, fields: Sequence[str],
                      into: MutableMapping[str, Record] | None = None, page_size: int | None = None) -> Changes:
        """Records updated at or after `watermark` (all records when there is no watermark), with `fields` and
        `update_time`, put `into` a mapping by id (a new dict by default; the engine passes a disk spool), and where
        the next read starts: just after the newest `update_time` read when that instant was over before the read
        began (by the server's `Date`), else at that instant, so that only records of an instant still open are
        read twice (the engine's shadows make them no-ops). A record on two pages (edited during the read) is kept
        in its newer version. `page_size`: records a page (`page_size_for`), else the connector's."""
        if "update_time" not in fields:
            fields = [*fields, "update_time"]  # the watermark is made of it
        params = _fields_param(keap_object, fields)
        if watermark is not None and keap_object.since_filter:
            params["filter"] = f"{keap_object.since_filter}=={keap_time(watermark)}"
        if keap_object.change_order:
            params["order_by"] = keap_object.change_order
        records: MutableMapping[str, Record] = {} if into is None else into
        reached: datetime | None = None
        began: datetime | None = None
        async with aclosing(self.pages(keap_object, params, page_size=page_size)) as pages:
            async for page in pages:
                began = began or page.served_at
                fresh = [record for record in page.records if watermark is None or not _older(record, watermark)]
                for record in fresh:
                    record_id = str(record["id"])
                    if record_id not in records or _newer(record, records[record_id]):
                        records[record_id] = record
                    moment = updated_at(record)
                    if moment is not None and (reached is None or moment > reached):
                        reached = moment
                if keap_object.newest_first and len(fresh) < len(page.records):
                    break  # newest first: the rest is older than the watermark
                del page, fresh  # not held while the next page is read
        if reached is not None and began is not None:
            # an instant over before the read began was read whole; one still open (or edited after its page was
            # read, past `began`) is read again
            reached = reached + ONE_MILLISECOND if reached < began else began
        return Changes(records, max(filter(None, (reached, watermark)), default=None))

    async def by_ids(self, keap_object: KeapObject, ids: Sequence[str], *, fields: Sequence[str] | None = None) -> dict[str, Record]:
        """The records of `ids` that exist, by id, in listings of `IDS_PER_CALL` ids (the object's `ids_filter`);
        an object without one by id windows where it has an id comparison (`near_ids`, as many listings at most:
        a burst of edits to companies is one listing, not a GET each). An id missing from the answer may still
        exist (an id alone in its window is not read, nor those of the windows left out or of a window Keap will
        not list): `get` it, and confirm a delete so, before believing it."""
        found: dict[str, Record] = {}
        if keap_object.ids_filter is None:
            try:
                return await self.near_ids(keap_object, ids, fields=fields, max_windows=-(-len(ids) // IDS_PER_CALL))
            except RecordRejected:
                return found
        for start in range(0, len(ids), IDS_PER_CALL):
            params = {**_fields_param(keap_object, fields), "filter": f"{keap_object.ids_filter}=={','.join(ids[start : start + IDS_PER_CALL])}"}
            async for page in self.pages(keap_object, params):
                found.update((str(record["id"]), record) for record in page.records)
        return found

    async def near_ids(self, keap_object: KeapObject, ids: Sequence[str], *, fields: Sequence[str] | None,
                       max_windows: int | None = None) -> dict[str, Record]:
        """The records of `ids` that share an id window with another of them, by id, for an object listed by no id
        list but by an id comparison (`id_filter`; companies): ids less than a page apart share one listing,
        `filter=company_id>=FIRST`, `order_by=id`, `page_size` the window's span (so its first page reaches
        the window's last id whatever lies between), first page only; at most `max_windows` listings, the windows
        of most ids first. An id alone in its window is not read (a GET costs the same call and carries less); an
        id missing from its window's answer may be gone: confirm with `get`. Without an `id_filter`, nothing is
        read."""
        found: dict[str, Record] = {}
        numbers = sorted({int(record_id) for record_id in ids if record_id.isdigit()})
        if keap_object.id_filter is None or not numbers:
            return found
        windows: list[list[int]] = []
        for number in numbers:
            if windows and number - windows[-1][0] < self.page_size:
                windows[-1].append(number)
            else:
                windows.append([number])
        shared = sorted((window for window in windows if len(window) > 1), key=len, reverse=True)
        params = _fields_param(keap_object, fields)
        for window in shared[:max_windows]:
            query = {**params, "filter": f"{keap_object.id_filter}>={window[0]}", "order_by": "id",
                     "page_size": str(window[-1] - window[0] + 1)}
            response = await self.api.request("GET", keap_object.path, params=query)
            wanted = {str(number) for number in window}
            found.update((str(record["id"]), record) for record in response.json().get(keap_object.name) or []
                         if str(record["id"]) in wanted)
        return found

    async def get(self, keap_object: KeapObject, record_id: str, *, fields: Sequence[str] | None = None) -> Record:
        params = _fields_param(keap_object, fields) or None
        response = await self.api.request("GET", keap_object.record_path, path_params={"id": record_id}, params=params)
        return dict(response.json())

    # --- writing ---------------------------------------------------------------------------------
    async def create(self, keap_object: KeapObject, body: Mapping[str, Any]) -> Record:
        """POST; not repeated after a 5xx (it may have been made): the engine's intents handle that."""
        response = await self.api.request("POST", keap_object.path, json=dict(body))
        return dict(response.json())

    async def update(
        self, keap_object: KeapObject, record_id: str, changes: Mapping[str, Any], *, current: Mapping[str, Any] | None = None
    ) -> Record:
        """PATCH with an `update_mask` naming exactly the fields of `changes` that differ from `current`.

        Keap replaces a contact's arrays wholesale: `changes` carries whole arrays, merged by the caller
        (`mapping.KeapPlace.write`). With nothing to change, no call is made and `current` is returned.
        """
        body = changed_fields(changes, current)
        if not body:
            if current is None:
                raise ValueError("nothing to update")
            return dict(current)
        response = await self.api.request(
            "PATCH",
            keap_object.record_path,
            path_params={"id": record_id},
            params={"update_mask": list(body)},
            json=body,
            retry_safe=True,  # absolute values: sending them twice does no harm
        )
        return dict(response.json())

    async def delete(self, keap_object: KeapObject, record_id: str) -> bool:
        """True if deleted now, False if it was already gone (e.g. a retried delete that had gone through)."""
        try:
            await self.api.request("DELETE", keap_object.record_path, path_params={"id": record_id})
        except NotFound:
            return False
        return True

    # --- custom fields and tags ------------------------------------------------------------------
    async def custom_fields(self, keap_object: KeapObject) -> list[Record]:
        """The object's custom field definitions (`GET /v2/{object}/model`: id, label, field_type, ...)."""
        response = await self.api.request("GET", f"{keap_object.path}/model")
        return list(response.json().get("custom_fields") or [])

    async def create_custom_field(self, keap_object: KeapObject, label: str, field_type: str) -> Record:
        """A new custom field on the object's default tab; not repeated after a 5xx (the caller finds it by label)."""
        response = await self.api.request("POST", f"{keap_object.path}/model/customFields",
                                          json={"label": label, "field_type": field_type})
        return dict(response.json())

    async def create_tag(self, name: str, description: str) -> Record:
        response = await self.api.request("POST", TAGS.path, json={"name": name, "description": description})
        return dict(response.json())

    async def tag_contacts(self, tag_id: str, contact_ids: Sequence[str], *, applied: bool) -> None:
        """Apply the tag to (or remove it from) contacts, `IDS_PER_CALL` a call (applying it again is harmless)."""
        action = "applyTags" if applied else "removeTags"
        for start in range(0, len(contact_ids), IDS_PER_CALL):
            await self.api.request("POST", f"{TAGS.path}/{{tag_id}}/contacts:{action}", path_params={"tag_id": tag_id},
                                   json={"contact_ids": list(contact_ids[start : start + IDS_PER_CALL])}, retry_safe=True)

    async def tag_company(self, company_id: str, tag_id: str, *, applied: bool) -> None:
        """Apply the tag to (POST) or remove it from (DELETE) one company: v2 has no call for several."""
        await self.api.request("POST" if applied else "DELETE", "/v2/companies/{id}/tags/{tag_id}",
                               path_params={"id": company_id, "tag_id": tag_id}, retry_safe=True)

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
    async def aclose(self) -> None:
        await self.api.aclose()

    def __repr__(self) -> str:
        return f"<KeapConnector {self.api!r}>"


def _fields_param(keap_object: KeapObject, fields: Sequence[str] | None) -> dict[str, str]:
    """`fields=a,b` where the object takes it (v2 products take none)."""
    return {"fields": ",".join(fields)} if fields and keap_object.takes_fields else {}


def _older(record: Mapping[str, Any], start: datetime) -> bool:
    moment = updated_at(record)
    return moment is not None and moment < start


def _newer(record: Mapping[str, Any], seen: Mapping[str, Any] | None) -> bool:
    """Keep the later of two copies of one record (ties: the first seen)."""
    if seen is None:
        return True
    mine, theirs = updated_at(record), updated_at(seen)
    return mine is not None and (theirs is None or mine > theirs)

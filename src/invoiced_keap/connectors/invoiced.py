"""The Invoiced connector: customers, items, the account's event listing, and what a customer owes (its open
invoices, its latest payment) over Invoiced's REST API.

Reads return the API's own JSON dicts, one async iterator per stream, each stream declared in a few
attributes (`Stream`). Writes carry an `Idempotency-Key`, so the HTTP layer may repeat them after a lost
response without making a second record. Every call goes through `http.ApiClient` (20 requests in flight,
retries with backoff, the error classes in `errors`, secret redaction); `calls` counts them.
"""

from __future__ import annotations

import json
import sys
import uuid
from array import array
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, overload
from urllib.parse import quote

import httpx

from invoiced_keap.connectors.errors import NotFound, RecordRejected
from invoiced_keap.connectors.http import DEFAULT_TIMEOUT, ApiClient, AsyncClosing, Page, RequestEvent, RequestStats, RetryPolicy, served_at
from invoiced_keap.connectors.pacing import INVOICED_LIMITS, RateLimits
from invoiced_keap.connectors.redaction import SecretHeaders
from invoiced_keap.mapping import Record

INVOICED_API_URL = "https://api.invoiced.com"
PER_PAGE = 100
METADATA_KEY_LIMIT = 10
USER_AGENT = "invoiced-keap"

Query = Mapping[str, Any]


class Paginator(Protocol):
    """How a list endpoint hands out pages: the query for the next one, or None after the last."""

    def next_query(self, response: httpx.Response) -> Query | None: ...


class LinkHeaderPaginator:
    """Follows `Link: <...>; rel="next"`. The link is opaque, so its query is sent back unchanged; only the
    query is taken, to the same endpoint of our base URL, so credentials never follow a link to another host."""

    def next_query(self, response: httpx.Response) -> Query | None:
        link = response.links.get("next")
        return httpx.URL(link["url"]).params if link else None


@dataclass(frozen=True)
class Stream:
    """A list endpoint and the query that reads it in a known order (declared, not coded)."""

    path: str
    query: Query = field(default_factory=dict)
    paginator: Paginator = field(default_factory=LinkHeaderPaginator)


@dataclass(frozen=True)
class Resource:
    """A record type, declared: its endpoint (`/customers/{id}`), the listing of every live record (by id:
    records created mid-read land on later pages, so offset paging skips none), the incremental listing
    (`updated_after` filterable, or else `newest_first` with paging stopped at the watermark), how a
    delete shows: `removed_by` (the record id an event of the shared event listing says is gone) or an
    `archived` listing, `parent`: the field naming the record a nested resource lives under (its path has
    `{parent}`; `record_path`, `as_read`), and
    `text_fields`: the writable fields it takes as free text (no format, enum, reference or object: what a
    configured `add` rule may map; API.md sections 2 and 3)."""

    name: str
    path: str
    listing: Stream
    changes: Stream
    text_fields: frozenset[str]
    newest_first: bool = False
    removed_by: Callable[[Event], str | None] | None = None
    archived: Stream | None = None
    parent: str | None = None

    @property
    def pushed(self) -> bool:
        """Invoiced makes events of its changes, so its webhook delivers them (items make none: API.md section 6)."""
        return self.removed_by is not None

    def record_path(self, record_id: int | str) -> tuple[str, dict[str, str]]:
        """The path template of one record and its values. A nested resource's record ids are `parent/id`."""
        if self.parent is None:
            return f"{self.path}/{{id}}", {"id": str(record_id)}
        parent, _, own = str(record_id).partition("/")
        return f"{self.path}/{{id}}", {"parent": parent, "id": own}

    def as_read(self, record: Record) -> Record:
        """A record as the engine takes it: a nested one's id made `parent/id` (its own id is unique only under
        its parent in the API's paths)."""
        if self.parent is None:
            return record
        return {**record, "id": f"{record[self.parent]}/{record['id']}"}


# Pages are numbered (offsets), so listings go in id order: a record edited while its listing is read keeps its
# place (in `updated_at` order it would move to the end and the record after it would slip back past the page
# read, never to be read), one that starts to match pushes the rest forward (read twice, counted once).
CUSTOMER = Resource(
    "customer", "/customers",
    listing=Stream("/customers", {"sort": "id asc"}),
    changes=Stream("/customers", {"sort": "id asc"}),
    text_fields=frozenset({"name", "attention_to", "address1", "address2", "city", "state", "postal_code", "phone", "notes",
                           "tax_id", "avalara_entity_use_code", "avalara_exemption_number"}),
    removed_by=lambda event: removed_customer_id(event),
)
# The API ignores `updated_after` for items; archiving leaves `updated_at` alone and makes no event.
ITEM = Resource(
    "item", "/items",
    listing=Stream("/items", {"sort": "id asc"}),
    changes=Stream("/items", {"sort": "updated_at desc,id desc"}),
    text_fields=frozenset({"name", "description"}),
    newest_first=True,
    archived=Stream("/items", {"archived": 1, "sort": "id asc"}),
)


# A customer's people. The API lists them per customer only; `customer` is set on create and never changes (the
# server's Contact model), so `customer/id` names a contact for its life. They carry no metadata.
CONTACT = Resource(
    "contact", "/customers/{parent}/contacts",
    listing=Stream("/customers/{parent}/contacts", {"sort": "id asc"}),
    changes=Stream("/customers/{parent}/contacts", {"sort": "id asc"}),
    text_fields=frozenset({"name", "title", "phone", "department", "address1", "address2", "city", "state", "postal_code"}),
    removed_by=lambda event: f"{event.customer}/{event.object_id}" if event.type == "contact.deleted" else None,
    parent="customer",
)
EVENTS = Stream("/events")  # newest first (id desc), API.md section 6
WEBHOOKS = Stream("/webhooks", {"sort": "id asc"})  # API.md section 7
# Open: issued (no draft), unpaid and not closed (a paid invoice is closed too); `filter[...]` takes 1/0 for booleans
OPEN_INVOICES = Stream("/invoices", {"filter[draft]": 0, "filter[paid]": 0, "filter[closed]": 0, "sort": "id asc"})
LATEST_PAYMENT = Stream("/payments", {"filter[voided]": 0, "sort": "date desc,id desc", "per_page": 1})


def contact_parent(event: Event) -> str | None:
    """The customer a contact event is about."""
    return event.customer if event.kind == "contact" else None


@dataclass(frozen=True)
class UpdatedWatermark:
    """How far a stream has been read: the newest `updated_at` (epoch seconds) and the ids read at that second.

    Timestamps have 1-second resolution, so the next read starts *at* that second and skips only the
    (id, updated_at) pairs already read; records changed later in the same second are still returned.
    A record edited again within the second it was read keeps its `updated_at`, so `ChangedRecords` keeps ids
    only for seconds that were over when its read began. `to_text`/`from_text` fit the state store's opaque text.
    """

    updated_at: int
    ids: frozenset[str] = frozenset()

    @property
    def complete(self) -> bool:
        """Every record of the mark's second was read, and the second was over when the read began: the next
        read can start after it (a record changed later gets a later second)."""
        return bool(self.ids)

    def before(self, record: Record) -> bool:
        """The record is older than what is left to read: from an earlier second, or from a complete one."""
        second = record["updated_at"]
        return second < self.updated_at or (second == self.updated_at and self.complete)

    def covers(self, record: Record) -> bool:
        """Read already (or older than what was read): a record with an earlier second, or this second and id."""
        second = record["updated_at"]
        return second < self.updated_at or (second == self.updated_at and str(record["id"]) in self.ids)

    @staticmethod
    def after(mark: UpdatedWatermark | None, record: Record) -> UpdatedWatermark:
        """The mark once `record` has been read too."""
        second, record_id = record["updated_at"], str(record["id"])
        if mark is None or second > mark.updated_at:
            return UpdatedWatermark(second, frozenset({record_id}))
        if second == mark.updated_at:
            return UpdatedWatermark(second, mark.ids | {record_id})
        return mark

    def to_text(self) -> str:
        return json.dumps({"updated_at": self.updated_at, "ids": sorted(self.ids)})

    @classmethod
    def from_text(cls, text: str) -> UpdatedWatermark:
        value = json.loads(text)
        return cls(int(value["updated_at"]), frozenset(map(str, value["ids"])))


class ChangedRecords:
    """Records changed since a watermark, each (id, updated_at) once, as an async iterator.

    `watermark` is what to commit after the records are processed. It moves only when the read is complete, and
    not when the listing shrank while it was read (a page's `X-Total-Count` below the first's: a record deleted
    before the page cursor slips one record back past it, unread): the next read starts from the same mark again.
    """

    def __init__(self, pages: AsyncGenerator[Page, None], since: UpdatedWatermark | None, *, newest_first: bool) -> None:
        self._pages = pages
        self.since = since
        self.newest_first = newest_first
        self.complete = False
        self._reached = since
        self._began: int | None = None
        self._totals: list[int] = []

    @property
    def shrank(self) -> bool:
        """The listing lost records while it was read (deleted ones), so one may have slipped past a page unread."""
        return any(total < self._totals[0] for total in self._totals[1:])

    @property
    def watermark(self) -> UpdatedWatermark | None:
        """The mark to commit: no later than the second the read began (the server's `Date`), with no ids there.
        A record edited once the read began may have been read before the edit, on an earlier page, while later
        pages held records edited later still; and a record read in the second it changed may change again within
        it, keeping its `updated_at`. So the next read returns every record of that second and after again (the
        engine's shadows make them no-ops)."""
        if not self.complete or self.shrank:
            return self.since
        mark = self._reached
        if mark is not None and mark is not self.since and self._began is not None and mark.updated_at >= self._began:
            return UpdatedWatermark(self._began)
        return mark

    async def __aiter__(self) -> AsyncIterator[Record]:
        seen: set[tuple[str, int]] = set()
        async with aclosing(self._pages) as pages:
            async for page in pages:
                self._began = _second(page.served_at) if self._began is None else self._began
                if page.total is not None:
                    self._totals.append(page.total)
                for record in page.records:
                    if self.newest_first and self.since is not None and self.since.before(record):
                        self.complete = True
                        return  # the rest is older still (or read already): stop paging
                    key = (str(record["id"]), record["updated_at"])
                    if key in seen or (self.since is not None and self.since.covers(record)):
                        continue
                    seen.add(key)
                    self._reached = UpdatedWatermark.after(self._reached, record)
                    yield record
        self.complete = True


def total_count(response: httpx.Response) -> int | None:
    """`X-Total-Count`: how many records the listing holds (API.md section 1), None when absent or not a number."""
    try:
        return int(response.headers["x-total-count"])
    except (KeyError, ValueError):
        return None


def _second(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


@dataclass(frozen=True)
class EventBatch:
    """Events after a cursor, oldest first, and the cursor to commit once they are handled (the newest id)."""

    events: Sequence[Event]
    cursor: int | None


@dataclass(frozen=True, slots=True)
class Event:
    """One Invoiced event as the sync keeps it: its id, type (`customer.merged`), the id of its object (text), the
    customer the object belongs to (text; an invoice's, payment's or contact's `customer`, an id or the customer
    embedded; None on a customer event) and a merge's `original_customer` id. About 200 bytes, where the event
    itself carries its whole object: the pass after a first sync reads one event per stamped customer."""

    id: int
    type: str
    object_id: str | None = None
    customer: str | None = None
    original_customer: str | None = None

    @classmethod
    def of(cls, event: Record) -> Event:
        """From an event as the API lists it (`{id, type, data: {object}}`, API.md section 6)."""
        obj = (event.get("data") or {}).get("object") or {}
        return cls(int(event["id"]), sys.intern(str(event["type"])), _text_id(obj.get("id")), _text_id(obj.get("customer")),
                   _text_id(obj.get("original_customer")))

    @property
    def kind(self) -> str:
        """The object type the event is about: `customer`, `contact`, `invoice`, ..."""
        return self.type.partition(".")[0]


class EventLog(Sequence["Event"]):
    """Events in a row, kept as columns: an id and three id texts as 64-bit integers (a text that is not a plain
    number aside, by position), the type as a number: about 30 bytes an event, where an `Event` with its texts takes
    about 160 (the pass after a first sync of 100,000 records reads one event per stamped customer). Indexing and
    iterating make each `Event` afresh."""

    _NONE, _ASIDE = -1, -2
    _TEXTS = ("object_id", "customer", "original_customer")

    def __init__(self, events: Iterable[Event] = ()) -> None:
        self._ids = array("q")
        self._types = array("H")
        self._type_names: list[str] = []
        self._texts = {name: array("q") for name in self._TEXTS}
        self._aside: dict[tuple[str, int], str] = {}  # (column, position) -> a text that is not a plain number
        for event in events:
            self.append(event)

    def append(self, event: Event) -> None:
        if event.type not in self._type_names:
            self._type_names.append(event.type)
        self._types.append(self._type_names.index(event.type))
        for name, column in self._texts.items():
            column.append(self._number(name, getattr(event, name)))
        self._ids.append(event.id)

    def _number(self, column: str, text: str | None) -> int:
        """How the column keeps `text` at the next position: a plain number as itself, anything else set aside."""
        if text is None:
            return self._NONE
        if text.isascii() and text.isdigit() and len(text) < 19 and (text == "0" or not text.startswith("0")):
            return int(text)
        self._aside[(column, len(self._ids))] = text
        return self._ASIDE

    def reverse(self) -> None:
        """In place: the last event first."""
        last = len(self._ids) - 1
        for column in (self._ids, self._types, *self._texts.values()):
            column.reverse()
        self._aside = {(name, last - position): text for (name, position), text in self._aside.items()}

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        if isinstance(index, slice):
            return [self[position] for position in range(*index.indices(len(self)))]
        position = range(len(self))[index]  # IndexError past the end; a negative index counts from it
        texts = []
        for name, column in self._texts.items():
            number = column[position]
            texts.append(None if number == self._NONE else self._aside[(name, position)] if number == self._ASIDE else str(number))
        return Event(self._ids[position], self._type_names[self._types[position]], *texts)

    def __iter__(self) -> Iterator[Event]:
        return (self[position] for position in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, (list, EventLog)) else NotImplemented

    def __repr__(self) -> str:
        return f"EventLog({list(self)!r})"


def _text_id(value: Any) -> str | None:
    """An id as text, from an id or an embedded record (`{id, ...}`)."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return None if value is None else str(value)


def removed_customer_id(event: Event) -> str | None:
    """The customer an event says is gone: the deleted one, or for `customer.merged` the customer merged into the
    survivor (a merge deletes it without a `customer.deleted` event: API.md section 6); None for other events."""
    if event.type == "customer.merged":
        return event.original_customer
    return event.object_id if event.type == "customer.deleted" else None


def merged_metadata(existing: Mapping[str, Any], updates: Mapping[str, Any]) -> Record:
    """`existing` with `updates` applied; a None value removes the key."""
    merged = {**existing, **updates}
    return {key: value for key, value in merged.items() if value is not None}


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


class InvoicedConnector(AsyncClosing):
    """Invoiced's API for one account. Use as `async with InvoicedConnector(key, url) as invoiced:`."""

    def __init__(
        self,
        api_key: str,
        base_url: str = INVOICED_API_URL,
        *,
        limits: RateLimits = INVOICED_LIMITS,
        retry: RetryPolicy = RetryPolicy(),
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        listeners: Sequence[Callable[[RequestEvent], None]] = (),
    ) -> None:
        self.api = ApiClient(
            base_url,
            system="Invoiced",
            auth=SecretHeaders.basic(api_key),
            headers={"User-Agent": USER_AGENT},
            limits=limits,
            retry=retry,
            timeout=timeout,
            listeners=listeners,
        )

    @property
    def max_in_flight(self) -> int:
        """Calls this connector lets be in flight at once (its pacer's limit: Invoiced's 20): how many reads a caller
        may usefully run side by side (`changes.children_of`)."""
        return self.api.pacer.limits.max_in_flight or INVOICED_LIMITS.max_in_flight or 1

    @property
    def calls(self) -> RequestStats:
        """Calls made so far, per endpoint and status (`calls.total`, `calls.requests["GET /customers"]`)."""
        return self.api.stats

    # --- reads ----------------------------------------------------------------------------------
    async def read(self, stream: Stream, query: Query | None = None) -> AsyncGenerator[Record, None]:
        """Every record of `stream` in its order, fetching each page once, the next only when needed."""
        async with aclosing(self.pages(stream, query)) as pages:
            async for page in pages:
                for record in page.records:
                    yield record

    async def pages(self, stream: Stream, query: Query | None = None) -> AsyncGenerator[Page, None]:
        params: Query | None = {"per_page": PER_PAGE, **stream.query, **(query or {})}
        while params is not None:
            response = await self.api.request("GET", stream.path, params=params)
            yield Page(response.json(), served_at(response), total_count(response))
            params = stream.paginator.next_query(response)

    def all(self, resource: Resource) -> AsyncIterator[Record]:
        """Every live record; deleted items are archived and listed by `archived`."""
        return self.read(resource.listing)

    def archived(self, resource: Resource) -> AsyncIterator[Record]:
        """Deleted (archived) records of a resource that archives instead of deleting."""
        if resource.archived is None:
            raise ValueError(f"{resource.name}s are not archived")
        return self.read(resource.archived)

    def changed(self, resource: Resource, since: UpdatedWatermark | None) -> ChangedRecords:
        """Records updated at or after `since` (all when None). Oldest first where `updated_after` works: the
        filter is strict `>` at 1-second resolution, so it asks from after the mark's second when that second is
        complete, else from the second itself, dropping what was read already. Newest first otherwise: paging
        stops at the first record before what is left to read (`UpdatedWatermark.before`)."""
        if resource.newest_first:
            return ChangedRecords(self.pages(resource.changes), since, newest_first=True)
        query = {} if since is None else {"updated_after": since.updated_at if since.complete else since.updated_at - 1}
        return ChangedRecords(self.pages(resource.changes, query), since, newest_first=False)

    async def events(self, after_event_id: int | None) -> EventBatch:
        """Every event with an id above the cursor, oldest first: one listing of all types, newest first, paged
        until the cursor (an idle account costs one call). Without a cursor, where the account's events stand
        now: the newest id and no events (a first read lists every record, so no older event adds anything).
        The events are kept as an `EventLog`: a pass of stamps makes one event per customer, each carrying the
        whole customer."""
        found = EventLog()
        async with aclosing(self.read(EVENTS, {"per_page": 1} if after_event_id is None else None)) as events:
            async for event in events:
                if after_event_id is None:
                    return EventBatch(found, int(event["id"]))
                if event["id"] <= after_event_id:
                    break
                found.append(Event.of(event))
        found.reverse()
        return EventBatch(found, found[-1].id if found else after_event_id)

    def webhooks(self) -> AsyncGenerator[Record, None]:
        """The account's webhooks: `url`, `enabled`, `events` (`["*"]`: all) and, where the API shows it, `secret`."""
        return self.read(WEBHOOKS)

    def children(self, resource: Resource, parent_id: str) -> AsyncGenerator[Record, None]:
        """Every record of a nested resource under one parent (a customer's contacts), ids made `parent/id`."""
        assert resource.parent is not None, f"{resource.name}s are not nested"
        stream = Stream(resource.listing.path.format(parent=quote(parent_id, safe="")), resource.listing.query)
        return (resource.as_read(record) async for record in self.read(stream))

    async def get(self, resource: Resource, record_id: int | str) -> Record:
        path, values = resource.record_path(record_id)
        response = await self.api.request("GET", path, path_params=values)
        return resource.as_read(dict(response.json()))

    def open_invoices(self, customer_id: int | str | None = None) -> AsyncGenerator[Page, None]:
        """The pages of open invoices of one customer (100 a page), or of the whole account (None); each page's
        `served_at` is Invoiced's clock, which says what is past due."""
        return self.pages(OPEN_INVOICES, None if customer_id is None else {"filter[customer]": customer_id})

    async def latest_payment(self, customer_id: int | str) -> Record | None:
        """A customer's payment of the latest `date` that is not voided (one call), or None."""
        async with aclosing(self.pages(LATEST_PAYMENT, {"filter[customer]": customer_id})) as pages:
            async for page in pages:
                return page.records[0] if page.records else None
        return None

    # --- writes ---------------------------------------------------------------------------------
    async def create(self, resource: Resource, body: Record, *, idempotency_key: str | None = None) -> Record:
        """Create a record. Pass a key derived from the persisted intent so a retry after a crash is replayed
        by Invoiced (for 24 h) instead of making a twin; without one, a fresh key still covers in-call retries."""
        path, values = resource.path, {}
        if resource.parent is not None:
            values = {"parent": str(body[resource.parent])}
        response = await self.api.request(
            "POST", path, path_params=values or None, json=body, idempotency_key=idempotency_key or new_idempotency_key()
        )
        return resource.as_read(dict(response.json()))

    async def update(
        self, resource: Resource, record_id: int | str, changes: Record, *, idempotency_key: str | None = None
    ) -> Record:
        """PATCH the given fields (a partial update, except `metadata`, which is replaced whole)."""
        path, values = resource.record_path(record_id)
        response = await self.api.request(
            "PATCH", path, path_params=values, json=changes, idempotency_key=idempotency_key or new_idempotency_key()
        )
        return resource.as_read(dict(response.json()))

    async def delete(self, resource: Resource, record_id: int | str) -> bool:
        """True when this call deleted the record, False when it was already gone (e.g. the first attempt of a
        retried DELETE went through). Invoiced refuses idempotency keys on DELETE; none is needed."""
        try:
            path, values = resource.record_path(record_id)
            await self.api.request("DELETE", path, path_params=values)
        except NotFound:
            return False
        return True

    async def merge_metadata(
        self,
        resource: Resource,
        record: Record | int | str,
        updates: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> Record:
        """Set `updates` in a record's metadata and keep its other keys (None removes a key).

        A PATCH replaces the whole map, so the merged map is sent. Pass the record you already have to save
        a GET. Nothing is sent when nothing changes; `RecordRejected` is raised, before sending, when the
        merged map would exceed Invoiced's 10 keys.
        """
        current = record if isinstance(record, dict) else await self.get(resource, record)
        existing = current.get("metadata") or {}
        merged = merged_metadata(existing, updates)
        if merged == existing:
            return current
        if len(merged) > METADATA_KEY_LIMIT:
            raise RecordRejected(
                f"{resource.name} {current['id']}: metadata would have {len(merged)} keys "
                f"({', '.join(sorted(merged))}); Invoiced allows {METADATA_KEY_LIMIT}",
                field="metadata",
            )
        return await self.update(resource, current["id"], {"metadata": merged}, idempotency_key=idempotency_key)

    # --- lifecycle ------------------------------------------------------------------------------
    async def aclose(self) -> None:
        await self.api.aclose()

    def __repr__(self) -> str:
        return f"<InvoicedConnector via {self.api!r}>"

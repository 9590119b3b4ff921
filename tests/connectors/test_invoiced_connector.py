"""`InvoicedConnector` over real HTTP against the Invoiced emulator, on a clock the tests move by hand:
paged and incremental reads, events, faults, writes with idempotency keys, metadata merges, secret hygiene."""

from __future__ import annotations

import asyncio
import base64
import logging
import math
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from invoiced_keap.connectors.errors import AuthenticationFailed, NotFound, RecordRejected, TransientError
from invoiced_keap.connectors.http import RetryPolicy
from invoiced_keap.connectors.invoiced import (
    CUSTOMER,
    ITEM,
    Event,
    InvoicedConnector,
    UpdatedWatermark,
    removed_customer_id,
)
from invoiced_keap.connectors.pacing import RateLimits
from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.kit import DroppedConnection
from invoiced_keap.emulators.serve import BackgroundServer
from tests.support import API_KEY, ManualClock

FAST_RETRIES = RetryPolicy(attempts=40, timeout=30.0, wait_initial=0.005, wait_max=0.05, wait_jitter=0.01, max_wait=5.0)
FOREIGN_METADATA = {f"other_app_{n}": f"value {n}" for n in range(8)}
SECRET_KEY = "sk_live_Q7x2Rb9vLmN4pZt8"


@pytest.fixture
def invoiced_emulator(manual_clock: ManualClock) -> InvoicedEmulator:
    """Overrides the shared fixture: record timestamps come from the manual clock."""
    return InvoicedEmulator(api_key=API_KEY, random_seed=1, clock=manual_clock)


@pytest.fixture
async def invoiced(invoiced_server: BackgroundServer) -> AsyncIterator[InvoicedConnector]:
    async with InvoicedConnector(API_KEY, invoiced_server.url, retry=FAST_RETRIES) as connector:
        yield connector


def set_faults(server: BackgroundServer, **faults: Any) -> None:
    httpx.post(f"{server.url}/_emulator/faults", json=faults).raise_for_status()


def add_customers(emulator: InvoicedEmulator, count: int, prefix: str = "Customer") -> list[int]:
    return [emulator.create_customer({"name": f"{prefix} {n}"})["id"] for n in range(count)]


async def collect(records: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [record async for record in records]


def ids(records: list[dict[str, Any]]) -> list[Any]:
    return [record["id"] for record in records]


def losing_first_response(app: ASGIApp, method: str, path: str) -> ASGIApp:
    """The server acts on the first matching request, then the connection drops before the answer arrives."""
    lost = False

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal lost
        if lost or scope["type"] != "http" or (scope["method"], scope["path"]) != (method, path):
            await app(scope, receive, send)
            return
        lost = True

        async def discard(_: Message) -> None:
            return None

        await app(scope, receive, discard)
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"1000")]})
        raise DroppedConnection("test: the response was lost after the customer was created")

    return wrapped


@pytest.fixture
def lossy_server(invoiced_emulator: InvoicedEmulator) -> Iterator[BackgroundServer]:
    with BackgroundServer(losing_first_response(invoiced_emulator.asgi(), "POST", "/customers")) as server:
        yield server


async def test_full_listings_read_every_page_exactly_once(
    invoiced: InvoicedConnector, invoiced_emulator: InvoicedEmulator
) -> None:
    customer_ids = add_customers(invoiced_emulator, 250)
    item_ids = [invoiced_emulator.create_item({"name": f"Item {n}"})["id"] for n in range(101)]

    customers = await collect(invoiced.all(CUSTOMER))
    items = await collect(invoiced.all(ITEM))

    assert ids(customers) == customer_ids
    assert sorted(ids(items)) == sorted(item_ids)
    assert invoiced_emulator.requests["GET /customers"] == math.ceil(250 / 100)
    assert invoiced_emulator.requests["GET /items"] == math.ceil(101 / 100)
    assert invoiced.calls.requests["GET /customers"] == 3
    assert invoiced.calls.total == 5


async def test_incremental_customers_read_a_complete_second_once(
    invoiced: InvoicedConnector, invoiced_emulator: InvoicedEmulator, manual_clock: ManualClock
) -> None:
    old = add_customers(invoiced_emulator, 150, "Old")
    manual_clock.advance(60)
    first, second = add_customers(invoiced_emulator, 2, "New")
    watermark_second = int(manual_clock())
    manual_clock.advance(1)  # the read begins after that second is over

    first_read = invoiced.changed(CUSTOMER, None)
    assert ids(await collect(first_read)) == [*old, first, second]
    assert first_read.watermark == UpdatedWatermark(watermark_second, frozenset({str(first), str(second)}))
    assert first_read.watermark.complete

    invoiced_emulator.update_customer(first, {"email": "first@example.com"})
    invoiced_emulator.update_customer(old[0], {"email": "old@example.com"})
    manual_clock.advance(1)
    calls_before = invoiced_emulator.requests["GET /customers"]

    second_read = invoiced.changed(CUSTOMER, UpdatedWatermark.from_text(first_read.watermark.to_text()))
    changed = await collect(second_read)

    assert ids(changed) == [old[0], first]  # the complete second is not read again
    assert [record["email"] for record in changed] == ["old@example.com", "first@example.com"]
    assert invoiced_emulator.requests["GET /customers"] - calls_before == 1  # the server filters: one page
    assert second_read.watermark == UpdatedWatermark(watermark_second + 1, frozenset({str(old[0]), str(first)}))

    idle_read = invoiced.changed(CUSTOMER, second_read.watermark)
    assert await collect(idle_read) == []
    assert idle_read.watermark == second_read.watermark


async def test_incremental_customers_read_a_second_still_open_again(
    invoiced: InvoicedConnector, invoiced_emulator: InvoicedEmulator, manual_clock: ManualClock
) -> None:
    first, second = add_customers(invoiced_emulator, 2, "New")
    open_second = int(manual_clock())

    first_read = invoiced.changed(CUSTOMER, None)  # in the very second the records changed
    assert ids(await collect(first_read)) == [first, second]
    assert first_read.watermark == UpdatedWatermark(open_second) and not first_read.watermark.complete

    # later in that same second: a new customer, and an edit that keeps the record's `updated_at`
    (same_second,) = add_customers(invoiced_emulator, 1, "Same second")
    invoiced_emulator.update_customer(first, {"email": "first@example.com"})
    manual_clock.advance(1)

    second_read = invoiced.changed(CUSTOMER, first_read.watermark)
    changed = await collect(second_read)

    assert ids(changed) == [first, second, same_second]
    assert changed[0]["email"] == "first@example.com"
    assert second_read.watermark == UpdatedWatermark(open_second, frozenset({str(first), str(second), str(same_second)}))


async def test_incremental_customer_watermark_moves_only_once_the_read_is_complete(
    invoiced: InvoicedConnector, invoiced_emulator: InvoicedEmulator, manual_clock: ManualClock
) -> None:
    for _ in range(3):
        add_customers(invoiced_emulator, 1)
        manual_clock.advance(1)
    read = invoiced.changed(CUSTOMER, None)

    records = read.__aiter__()
    await anext(records)
    assert read.watermark is None  # in id order, what is left may be older or newer
    rest = [record async for record in records]

    assert read.watermark == UpdatedWatermark(rest[-1]["updated_at"], frozenset({str(rest[-1]["id"])}))


async def test_an_edit_made_while_customers_are_paged_slips_no_record_past_a_page(
    invoiced: InvoicedConnector, invoiced_emulator: InvoicedEmulator, manual_clock: ManualClock
) -> None:
    """Found by a tester: in `updated_at` order an edit of a record already read moved it to the end, and the
    record at the next page's edge slipped back onto the page read, never to be read."""
    changed = add_customers(invoiced_emulator, 150, "Changed")
    manual_clock.advance(1)
    invoiced_emulator.after_request("GET /customers", lambda: invoiced_emulator.update_customer(changed[0], {"email": "edited@example.com"}))

    read = invoiced.changed(CUSTOMER, None)
    first = await collect(read)

    assert set(ids(first)) == set(changed)
    manual_clock.advance(1)
    again = await collect(invoiced.changed(CUSTOMER, read.watermark))  # the edit came after its page was read
    assert [(record["id"], record["email"]) for record in again] == [(changed[0], "edited@example.com")]


async def test_a_record_edited_after_the_read_began_is_read_again_though_a_later_page_is_newer(
    invoiced: InvoicedConnector, invoiced_emulator: InvoicedEmulator, manual_clock: ManualClock
) -> None:
    """The mark stops at the second the read began: a record read on page 1 and edited after, while a record of
    page 2 was edited later still, is not left behind the mark."""
    first, *_, last = add_customers(invoiced_emulator, 150)
    manual_clock.advance(10)

    def edits() -> None:
        invoiced_emulator.update_customer(first, {"email": "first@example.com"})
        manual_clock.advance(5)
        invoiced_emulator.update_customer(last, {"email": "last@example.com"})

    invoiced_emulator.after_request("GET /customers", edits)
    read = invoiced.changed(CUSTOMER, None)
    assert len(await collect(read)) == 150
    manual_clock.advance(1)

    again = await collect(invoiced.changed(CUSTOMER, read.watermark))
    assert {record["id"]: record["email"] for record in again} == {first: "first@example.com", last: "last@example.com"}


async def test_a_customer_deleted_while_customers_are_paged_keeps_the_mark_where_it_was(
    invoiced: InvoicedConnector, invoiced_emulator: InvoicedEmulator, manual_clock: ManualClock
) -> None:
    """A delete before the page cursor slips the record at the next page's edge back past it: the listing's
    `X-Total-Count` shrank, so the mark stays and the next read returns that record."""
    changed = add_customers(invoiced_emulator, 150)
    manual_clock.advance(1)
    invoiced_emulator.after_request("GET /customers", lambda: invoiced_emulator.delete_customer(changed[0]))

    read = invoiced.changed(CUSTOMER, None)
    first = ids(await collect(read))

    assert changed[100] not in first  # slipped back onto the page already read
    assert read.watermark is None
    assert changed[100] in ids(await collect(invoiced.changed(CUSTOMER, read.watermark)))


async def test_incremental_items_stop_paging_at_the_watermark(
    invoiced: InvoicedConnector, invoiced_emulator: InvoicedEmulator, manual_clock: ManualClock
) -> None:
    for n in range(250):
        invoiced_emulator.create_item({"id": f"item-{n:03d}", "name": f"Item {n}"})
    manual_clock.advance(30)
    invoiced_emulator.create_item({"id": "late", "name": "Late"})
    first_read = invoiced.changed(ITEM, None)  # in the second of the last change: it stays open
    assert len(await collect(first_read)) == 251
    assert first_read.watermark == UpdatedWatermark(int(manual_clock()))

    invoiced_emulator.create_item({"id": "same-second", "name": "Same second"})
    manual_clock.advance(5)
    invoiced_emulator.update_item("item-007", {"description": "edited"})
    manual_clock.advance(1)
    calls_before = invoiced_emulator.requests["GET /items"]

    second_read = invoiced.changed(ITEM, first_read.watermark)
    partial = second_read.__aiter__()
    assert (await anext(partial))["id"] == "item-007"
    assert second_read.watermark == first_read.watermark  # newest first: not yet safe to move
    rest = [record async for record in partial]

    assert ids(rest) == ["same-second", "late"]  # the open second is read again
    assert invoiced_emulator.requests["GET /items"] - calls_before == 1  # page 1 reaches older records: stop
    assert second_read.watermark == UpdatedWatermark(int(manual_clock()) - 1, frozenset({"item-007"}))

    manual_clock.advance(60)
    idle_read = invoiced.changed(ITEM, second_read.watermark)  # a complete second: nothing is read again
    assert await collect(idle_read) == []
    assert invoiced_emulator.requests["GET /items"] - calls_before == 2


async def test_archived_items_are_listed_apart_from_live_ones(
    invoiced: InvoicedConnector, invoiced_emulator: InvoicedEmulator
) -> None:
    for item_id in ("keep", "gone-1", "gone-2"):
        invoiced_emulator.create_item({"id": item_id, "name": item_id})
    invoiced_emulator.archived_item_ids.update({"gone-1", "gone-2"})

    assert ids(await collect(invoiced.all(ITEM))) == ["keep"]
    assert ids(await collect(invoiced.archived(ITEM))) == ["gone-1", "gone-2"]


async def test_events_since_a_cursor_one_listing_of_every_type(
    invoiced: InvoicedConnector, invoiced_emulator: InvoicedEmulator
) -> None:
    a, b, c, d, e = add_customers(invoiced_emulator, 5)
    start = await invoiced.events(None)  # no cursor: where the events stand, none of them
    assert start.events == [] and start.cursor == max(event["id"] for event in invoiced_emulator.events)

    invoiced_emulator.delete_customer(a)
    invoiced_emulator.merge_customers(b, c)
    invoiced_emulator.update_customer(d, {"email": "d@example.com"})
    since_start = await invoiced.events(start.cursor)
    assert [(event.type, removed_customer_id(event)) for event in since_start.events] == [
        ("customer.deleted", str(a)), ("customer.merged", str(c)), ("customer.updated", None)]
    assert since_start.cursor == since_start.events[-1].id
    # kept small: a pass of id stamps makes an event per customer, each with the whole customer
    assert since_start.events[1] == Event(since_start.events[1].id, "customer.merged", str(b), None, str(c))
    assert since_start.events[2] == Event(since_start.events[2].id, "customer.updated", str(d))

    for _ in range(120):  # more than a page of events behind the cursor
        invoiced_emulator.delete_customer(add_customers(invoiced_emulator, 1)[0])
    middle = await invoiced.events(None)
    invoiced_emulator.delete_customer(e)
    invoiced_emulator.merge_customers(b, d)
    calls_before = invoiced_emulator.requests["GET /events"]

    since_middle = await invoiced.events(middle.cursor)

    assert [removed_customer_id(event) for event in since_middle.events] == [str(e), str(d)]
    assert since_middle.cursor == max(event["id"] for event in invoiced_emulator.events)
    assert invoiced_emulator.requests["GET /events"] - calls_before == 1  # one page of every type
    idle = await invoiced.events(since_middle.cursor)
    assert idle.events == [] and idle.cursor == since_middle.cursor


async def test_full_listing_survives_5xx_then_a_429_storm(
    invoiced: InvoicedConnector, invoiced_emulator: InvoicedEmulator, invoiced_server: BackgroundServer
) -> None:
    customer_ids = add_customers(invoiced_emulator, 450)

    set_faults(invoiced_server, error_rate=0.2, error_status=503)
    under_5xx = await collect(invoiced.all(CUSTOMER))
    set_faults(invoiced_server, error_rate=0.6, error_status=429)
    under_429 = await collect(invoiced.all(CUSTOMER))

    assert ids(under_5xx) == customer_ids
    assert ids(under_429) == customer_ids
    assert invoiced_emulator.statuses["503"] > 0
    assert invoiced_emulator.statuses["429"] > 0
    assert invoiced.calls.retries["GET /customers"] > 0
    assert invoiced_emulator.statuses["200"] == 10  # five pages, twice


async def test_requests_in_flight_stay_within_the_limit(
    invoiced_emulator: InvoicedEmulator, invoiced_server: BackgroundServer
) -> None:
    customer_ids = add_customers(invoiced_emulator, 12)
    set_faults(invoiced_server, latency_ms=30, rate_limit={"max_in_flight": 3})

    async with InvoicedConnector(
        API_KEY, invoiced_server.url, limits=RateLimits(max_in_flight=3), retry=FAST_RETRIES
    ) as invoiced:
        records = await asyncio.gather(*(invoiced.get(CUSTOMER, customer_id) for customer_id in customer_ids))

    assert ids(list(records)) == customer_ids
    assert Counter(invoiced_emulator.statuses) == Counter({"200": 12})


async def test_customer_and_item_lifecycle(invoiced: InvoicedConnector, invoiced_emulator: InvoicedEmulator) -> None:
    customer = await invoiced.create(CUSTOMER, {"name": "Acme", "type": "company"})
    item = await invoiced.create(ITEM, {"id": "widget", "name": "Widget", "unit_cost": 5})

    updated = await invoiced.update(CUSTOMER, customer["id"], {"email": "billing@acme.example"})
    assert (await invoiced.get(CUSTOMER, customer["id"])) == updated
    assert invoiced_emulator.customers[customer["id"]]["email"] == "billing@acme.example"
    assert (await invoiced.update(ITEM, "widget", {"description": "Blue"}))["description"] == "Blue"

    assert await invoiced.delete(CUSTOMER, customer["id"]) is True
    assert await invoiced.delete(CUSTOMER, customer["id"]) is False
    assert await invoiced.delete(ITEM, item["id"]) is True
    with pytest.raises(NotFound):
        await invoiced.get(CUSTOMER, customer["id"])
    assert invoiced_emulator.archived_item_ids == {"widget"}


async def test_rejected_write_carries_the_apis_message_and_field(invoiced: InvoicedConnector) -> None:
    with pytest.raises(RecordRejected) as rejected:
        await invoiced.create(CUSTOMER, {"email": "nobody@example.com"})

    assert rejected.value.status == 400
    assert rejected.value.field == "name"
    assert "Name is missing" in str(rejected.value)


async def test_create_whose_response_was_lost_is_retried_without_a_duplicate(
    lossy_server: BackgroundServer, invoiced_emulator: InvoicedEmulator
) -> None:
    async with InvoicedConnector(API_KEY, lossy_server.url, retry=FAST_RETRIES) as invoiced:
        created = await invoiced.create(CUSTOMER, {"name": "Only once"})

    assert invoiced_emulator.requests["POST /customers"] == 2
    assert [record["name"] for record in invoiced_emulator.customers.values()] == ["Only once"]
    assert created == invoiced_emulator.customers[created["id"]]


async def test_creates_under_dropped_connections_make_each_record_once(
    invoiced: InvoicedConnector, invoiced_emulator: InvoicedEmulator, invoiced_server: BackgroundServer
) -> None:
    set_faults(invoiced_server, drop_rate=0.3)
    names = [f"Customer {n}" for n in range(15)]

    for name in names:
        await invoiced.create(CUSTOMER, {"name": name})

    assert invoiced_emulator.statuses["dropped"] > 0
    assert sorted(record["name"] for record in invoiced_emulator.customers.values()) == sorted(names)


async def test_a_key_from_the_caller_replays_the_first_create(
    invoiced: InvoicedConnector, invoiced_emulator: InvoicedEmulator
) -> None:
    first = await invoiced.create(CUSTOMER, {"name": "Acme"}, idempotency_key="intent-42-create")
    again = await invoiced.create(CUSTOMER, {"name": "Acme"}, idempotency_key="intent-42-create")

    assert again == first
    assert len(invoiced_emulator.customers) == 1


async def test_metadata_merge_keeps_other_keys_without_reading_first(
    invoiced: InvoicedConnector, invoiced_emulator: InvoicedEmulator
) -> None:
    customer = invoiced_emulator.create_customer({"name": "Acme", "metadata": FOREIGN_METADATA})

    merged = await invoiced.merge_metadata(CUSTOMER, customer, {"keap_company_id": "77"})
    cleared = await invoiced.merge_metadata(CUSTOMER, merged, {"other_app_0": None})
    unchanged = await invoiced.merge_metadata(CUSTOMER, cleared, {"keap_company_id": "77"})

    assert merged["metadata"] == {**FOREIGN_METADATA, "keap_company_id": "77"}
    expected = {key: value for key, value in merged["metadata"].items() if key != "other_app_0"}
    assert invoiced_emulator.customers[customer["id"]]["metadata"] == expected
    assert unchanged == cleared
    assert invoiced_emulator.requests["PATCH /customers/{id}"] == 2
    assert invoiced_emulator.requests["GET /customers/{id}"] == 0


async def test_metadata_merge_by_id_reads_the_record_once(
    invoiced: InvoicedConnector, invoiced_emulator: InvoicedEmulator
) -> None:
    invoiced_emulator.create_item({"id": "widget", "name": "Widget", "metadata": {"erp_sku": "W-1"}})

    merged = await invoiced.merge_metadata(ITEM, "widget", {"keap_product_id": 12})

    assert merged["metadata"] == {"erp_sku": "W-1", "keap_product_id": 12}
    assert invoiced_emulator.requests["GET /items/{id}"] == 1
    assert invoiced_emulator.requests["PATCH /items/{id}"] == 1


async def test_metadata_merge_refuses_an_eleventh_key_before_sending(
    invoiced: InvoicedConnector, invoiced_emulator: InvoicedEmulator
) -> None:
    full = {**FOREIGN_METADATA, "other_app_8": "x", "other_app_9": "y"}
    customer = invoiced_emulator.create_customer({"name": "Acme", "metadata": full})

    with pytest.raises(RecordRejected, match="11 keys") as rejected:
        await invoiced.merge_metadata(CUSTOMER, customer, {"keap_company_id": "77"})
    replaced = await invoiced.merge_metadata(CUSTOMER, customer, {"other_app_9": None, "keap_company_id": "77"})

    assert rejected.value.field == "metadata"
    assert len(replaced["metadata"]) == 10
    assert invoiced_emulator.requests["PATCH /customers/{id}"] == 1


async def test_the_api_key_never_reaches_logs_or_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "invoiced_keap", "stamina"):
        caplog.set_level(logging.DEBUG, logger=name)
    emulator = InvoicedEmulator(api_key=SECRET_KEY, random_seed=1)
    header_value = base64.b64encode(f"{SECRET_KEY}:".encode()).decode()
    errors: list[Exception] = []

    with BackgroundServer(emulator.asgi()) as server:
        set_faults(server, error_rate=0.3, error_status=502)
        async with InvoicedConnector(SECRET_KEY, server.url, retry=FAST_RETRIES) as invoiced:
            customer = await invoiced.create(CUSTOMER, {"name": "Acme"})
            await invoiced.merge_metadata(CUSTOMER, customer, {"keap_company_id": "1"})
            assert [record async for record in invoiced.all(CUSTOMER)] != []
            repr_text = repr(invoiced)
            for failing in (invoiced.get(CUSTOMER, 999_999), invoiced.create(CUSTOMER, {})):
                with pytest.raises(RecordRejected) as raised:
                    await failing
                errors.append(raised.value)
        async with InvoicedConnector(SECRET_KEY[::-1], server.url, retry=FAST_RETRIES) as wrong_key:
            with pytest.raises(AuthenticationFailed) as refused:
                await wrong_key.get(CUSTOMER, 1)
            errors.append(refused.value)
    async with InvoicedConnector(SECRET_KEY, server.url, retry=RetryPolicy(attempts=1)) as unreachable:
        with pytest.raises(TransientError) as unreachable_error:
            await unreachable.get(CUSTOMER, 1)
        errors.append(unreachable_error.value)

    assert emulator.statuses["502"] > 0
    assert any("GET /customers" in record.getMessage() for record in caplog.records)
    texts = [caplog.text, repr_text, *map(str, errors), *map(repr, errors)]
    for text in texts:
        assert SECRET_KEY not in text
        assert SECRET_KEY[::-1] not in text
        assert header_value not in text

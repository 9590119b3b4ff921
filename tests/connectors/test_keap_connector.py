"""The Keap connector over real HTTP against the Keap emulator: listings, incremental reads, writes, hooks, errors."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from invoiced_keap.connectors.errors import AuthenticationFailed, NotFound, RecordRejected
from invoiced_keap.connectors.keap import COMPANIES, CONTACTS, PRODUCTS, KeapConnector, page_token_of, updated_at
from invoiced_keap.connectors.http import RequestEvent
from invoiced_keap.connectors.keap_auth import ApiKey
from invoiced_keap.connectors.pacing import RateLimits
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.keap.resources import RESOURCES
from invoiced_keap.emulators.serve import BackgroundServer
from invoiced_keap.flows import CATALOGUE as FLOWS
from invoiced_keap.flows import CONTACT_ADDRESS, CONTACT_EMAIL
from tests.connectors.keap_support import (
    CONTACTS_ENDPOINT,
    FAST_RETRIES,
    api_url,
    company,
    contact,
    emulator_stats,
    product,
    seed,
)
from tests.support import API_KEY, ManualClock

UNPACED = RateLimits()


@pytest.fixture
def clocked_server(manual_clock: ManualClock) -> Iterator[BackgroundServer]:
    """A Keap emulator whose record times come from `manual_clock`, so tests can make same-millisecond edits."""
    emulator = KeapEmulator(api_key=API_KEY, random_seed=1, clock=manual_clock)
    with BackgroundServer(emulator.asgi()) as server:
        yield server


@pytest.fixture
async def keap(keap_server: BackgroundServer) -> AsyncIterator[KeapConnector]:
    async with KeapConnector(ApiKey(API_KEY), api_url(keap_server), limits=UNPACED, retry=FAST_RETRIES) as connector:
        yield connector


async def test_listing_reads_every_page_once_with_only_the_fields_asked_for(keap_server: BackgroundServer, keap: KeapConnector) -> None:
    seed(keap_server, contacts=[contact(number) for number in range(2_500)])

    fields = ("given_name", "family_name", "email_addresses", "update_time")
    records = [record async for record in keap.list_all(CONTACTS, fields=fields)]

    assert len(records) == 2_500
    assert len({record["id"] for record in records}) == 2_500
    requests, _ = emulator_stats(keap_server)
    assert requests[CONTACTS_ENDPOINT] == 3  # 1000 + 1000 + 500
    # empty fields are left out by Keap; nothing beyond the fields asked for comes back (no create_time, ...)
    assert {"id", "given_name", "email_addresses", "update_time"} <= set(records[0]) <= {"id", *fields}
    assert keap.stats.requests[CONTACTS_ENDPOINT] == 3


async def test_companies_incremental_read_includes_same_millisecond_edits(
    clocked_server: BackgroundServer, manual_clock: ManualClock
) -> None:
    ids = seed(clocked_server, companies=[company(number) for number in range(5)])["companies"]
    async with KeapConnector(ApiKey(API_KEY), api_url(clocked_server), limits=UNPACED) as keap:
        first = await keap.changes(COMPANIES, None, fields=FLOWS["companies"].keap_fields)
        assert len(first.records) == 5
        watermark = first.watermark
        assert watermark == datetime.fromtimestamp(manual_clock.now, UTC)

        # edited in the very millisecond the watermark names: at/after it, so it must come back
        await keap.update(COMPANIES, ids[2], {"company_name": "Renamed"})
        manual_clock.advance(1.5)
        await keap.update(COMPANIES, ids[4], {"company_name": "Later"})
        second = await keap.changes(COMPANIES, watermark, fields=FLOWS["companies"].keap_fields)

    # every record is at the watermark's millisecond or later, so all five come back, with the edits
    by_id = {record["id"]: record for record in second.records.values()}
    assert by_id[ids[2]]["company_name"] == "Renamed"
    assert by_id[ids[4]]["company_name"] == "Later"
    assert second.watermark == datetime.fromtimestamp(int(manual_clock.now), UTC)  # that second is still open


async def test_contacts_incremental_read_skips_older_records_and_moves_the_watermark(
    clocked_server: BackgroundServer, manual_clock: ManualClock
) -> None:
    old = seed(clocked_server, contacts=[contact(number) for number in range(30)])["contacts"]
    manual_clock.advance(3600)
    async with KeapConnector(ApiKey(API_KEY), api_url(clocked_server), limits=UNPACED, page_size=10) as keap:
        at_watermark = await keap.update(CONTACTS, old[3], {"given_name": "Boundary"})
        baseline = await keap.changes(CONTACTS, None, fields=FLOWS["contacts"].keap_fields)
        assert len(baseline.records) == 30 and baseline.watermark == updated_at(at_watermark)
        manual_clock.advance(60)
        edited = await keap.update(CONTACTS, old[7], {"given_name": "Edited"})
        new = seed(clocked_server, contacts=[contact(100), contact(101)])["contacts"]  # same millisecond as the edit

        changes = await keap.changes(CONTACTS, baseline.watermark, fields=FLOWS["contacts"].keap_fields)

    # the record updated at the watermark's very millisecond comes back too (at/after, never strictly after)
    assert sorted(record["id"] for record in changes.records.values()) == sorted([old[3], old[7], *new])
    assert changes.watermark == updated_at(edited)
    assert [record["given_name"] for record in changes.records.values() if record["id"] == old[7]] == ["Edited"]


async def test_an_edit_between_pages_of_an_incremental_read_loses_nothing(
    keap_emulator: KeapEmulator, keap_server: BackgroundServer
) -> None:
    """Page tokens may be offsets: a record edited mid-read must not shift an unread record past the cursor."""
    ids = seed(keap_server, contacts=[contact(number) for number in range(30)])["contacts"]
    before = datetime(2000, 1, 1, tzinfo=UTC)

    def edit_after_first_page(event: RequestEvent) -> None:
        if event.endpoint == CONTACTS_ENDPOINT and event.attempt == 1 and not edited:
            edited.append(RESOURCES["contacts"].update(keap_emulator.store, ids[1], {"given_name": "Moved"}, ["given_name"]))

    edited: list[dict[str, object]] = []
    async with KeapConnector(
        ApiKey(API_KEY), api_url(keap_server), limits=UNPACED, page_size=10, listeners=[edit_after_first_page]
    ) as keap:
        changes = await keap.changes(CONTACTS, before, fields=FLOWS["contacts"].keap_fields)

    assert edited
    assert sorted(record["id"] for record in changes.records.values()) == sorted(ids)


async def test_a_record_edited_after_its_page_was_read_is_caught_by_the_next_read(
    keap_emulator: KeapEmulator, keap_server: BackgroundServer
) -> None:
    ids = seed(keap_server, companies=[company(number) for number in range(30)])["companies"]
    companies = RESOURCES["companies"]
    edits = {1: ids[1], 2: ids[25]}  # after page 1: a record already read; after page 2: one not read yet
    pages_answered = 0

    def edit_between_pages(event: RequestEvent) -> None:
        nonlocal pages_answered
        if event.endpoint == "GET /crm/rest/v2/companies":
            pages_answered += 1
            if pages_answered in edits:
                time.sleep(0.01)  # distinct milliseconds
                companies.update(keap_emulator.store, edits[pages_answered], {"notes": "edited"}, ["notes"])

    async with KeapConnector(
        ApiKey(API_KEY), api_url(keap_server), limits=UNPACED, page_size=10, listeners=[edit_between_pages]
    ) as keap:
        first = await keap.changes(COMPANIES, datetime(2000, 1, 1, tzinfo=UTC), fields=FLOWS["companies"].keap_fields)
        assert pages_answered == 3
        second = await keap.changes(COMPANIES, first.watermark, fields=FLOWS["companies"].keap_fields)

    # the first read saw ids[1] before its edit; the watermark must not have jumped past that edit
    assert ids[1] in {record["id"] for record in second.records.values()}


async def test_products_newest_first_stop_paging_at_the_watermark(
    clocked_server: BackgroundServer, manual_clock: ManualClock
) -> None:
    ids = seed(clocked_server, products=[product(number) for number in range(50)])["products"]
    manual_clock.advance(3600)
    async with KeapConnector(ApiKey(API_KEY), api_url(clocked_server), limits=UNPACED, page_size=10) as keap:
        await keap.update(PRODUCTS, ids[10], {"description": "at the watermark"})
        baseline = await keap.changes(PRODUCTS, None, fields=FLOWS["products"].keap_fields)
        assert len(baseline.records) == 50 and keap.stats.requests["GET /crm/rest/v2/products"] == 5
        manual_clock.advance(60)
        for product_id in ids[:3]:
            await keap.update(PRODUCTS, product_id, {"description": "new"})

        changes = await keap.changes(PRODUCTS, baseline.watermark, fields=FLOWS["products"].keap_fields)
        manual_clock.advance(3600)
        idle = await keap.changes(PRODUCTS, datetime.fromtimestamp(manual_clock.now, UTC), fields=FLOWS["products"].keap_fields)

    assert sorted(record["id"] for record in changes.records.values()) == sorted([*ids[:3], ids[10]])
    assert changes.watermark == datetime.fromtimestamp(manual_clock.now - 3600, UTC)
    assert keap.stats.requests["GET /crm/rest/v2/products"] == 5 + 1 + 1  # one page each: it already held older ones
    assert idle.records == {} and idle.watermark == datetime.fromtimestamp(manual_clock.now, UTC)


async def test_update_sends_only_changed_fields_and_merges_owned_slots(keap_server: BackgroundServer, keap: KeapConnector) -> None:
    body = {
        "given_name": "Ada",
        "family_name": "Lovelace",
        "email_addresses": [
            {"email": "ada@example.com", "field": "EMAIL1"},
            {"email": "ada.private@example.com", "field": "EMAIL2"},
        ],
        "addresses": [{"field": "SHIPPING", "line1": "1 Ship St", "locality": "Portsmouth", "country_code": "GBR"}],
    }
    created = await keap.create(CONTACTS, body)
    current = await keap.get(CONTACTS, created["id"])

    updated = await keap.update(
        CONTACTS,
        created["id"],
        {"given_name": "Ada", "family_name": "King",  # given_name unchanged: not in the mask
         **CONTACT_EMAIL.write(current, {"email": "countess@example.com"}),
         **CONTACT_ADDRESS.write(current, {"line1": "12 St James's Sq", "locality": "London", "country_code": "GBR"})},
        current=current,
    )

    emails = {entry["field"]: entry["email"] for entry in updated["email_addresses"]}
    assert emails == {"EMAIL1": "countess@example.com", "EMAIL2": "ada.private@example.com"}
    addresses = {entry["field"]: entry["line1"] for entry in updated["addresses"]}
    assert addresses == {"SHIPPING": "1 Ship St", "BILLING": "12 St James's Sq"}
    assert updated["family_name"] == "King" and updated["given_name"] == "Ada"

    unchanged = await keap.update(CONTACTS, created["id"], {"family_name": "King", **CONTACT_EMAIL.write(updated, {"email": "countess@example.com"})},
                                  current=updated)
    assert unchanged == updated
    assert keap.stats.requests["PATCH /crm/rest/v2/contacts/{id}"] == 1  # the no-op update made no call


async def test_update_mask_names_exactly_the_changed_fields(keap_server: BackgroundServer, keap: KeapConnector) -> None:
    created = await keap.create(COMPANIES, {"company_name": "Acme", "website": "https://acme.example", "notes": "keep"})

    # a mask naming `notes` with no value would clear it; the connector names only company_name
    updated = await keap.update(COMPANIES, created["id"], {"company_name": "Acme Ltd", "website": "https://acme.example"}, current=created)

    assert updated["company_name"] == "Acme Ltd"
    assert updated["notes"] == "keep" and updated["website"] == "https://acme.example"


async def test_create_get_delete_and_not_found(keap: KeapConnector) -> None:
    created = await keap.create(PRODUCTS, product(1))
    assert (await keap.get(PRODUCTS, created["id"]))["name"] == "Product 1"

    assert await keap.delete(PRODUCTS, created["id"]) is True
    assert await keap.delete(PRODUCTS, created["id"]) is False
    with pytest.raises(NotFound, match="not found"):
        await keap.get(PRODUCTS, created["id"])


async def test_keap_error_bodies_become_the_engine_error_classes(keap_server: BackgroundServer, keap: KeapConnector) -> None:
    with pytest.raises(RecordRejected, match="company_name is required") as v2:  # v2 {code, message, status, details}
        await keap.create(COMPANIES, {"website": "https://x.example"})
    assert v2.value.status == 400
    with pytest.raises(NotFound, match="Hook subscription 99 not found"):  # v1 {message}
        await keap.verify_hook("99")
    async with KeapConnector(ApiKey("wrong-key-123"), api_url(keap_server), limits=UNPACED) as stranger:
        with pytest.raises(AuthenticationFailed, match="invalid_access_token"):  # gateway {fault: ...}
            await stranger.get(COMPANIES, "1")


def test_next_page_token_may_be_opaque_or_a_full_url() -> None:
    assert page_token_of("b2Zmc2V0OjEwMDA") == "b2Zmc2V0OjEwMDA"
    assert page_token_of("https://api.infusionsoft.com/crm/rest/v2/tags/?page_size=1&page_token=91") == "91"
    assert page_token_of("") is None and page_token_of(None) is None


def echoing_receiver() -> Starlette:
    """A hook receiver that passes Keap's handshake: it answers 200 echoing `X-Hook-Secret`."""

    async def receive(request: Request) -> Response:
        return Response(headers={"X-Hook-Secret": request.headers.get("X-Hook-Secret", "")})

    return Starlette(routes=[Route("/hooks/keap", receive, methods=["POST"])])


async def test_rest_hooks_lifecycle(keap: KeapConnector) -> None:
    assert "contact.edit" in await keap.hook_event_keys()

    # nothing listens at this URL, so the handshake fails and the hook stays Unverified
    unheard = await keap.create_hook("contact.edit", "http://127.0.0.1:9/hooks/keap")
    assert unheard.status == "Unverified" and unheard.event_key == "contact.edit"
    assert (await keap.verify_hook(unheard.key)).status == "Unverified"
    with BackgroundServer(echoing_receiver()) as receiver:
        heard = await keap.create_hook("company.delete", f"{receiver.url}/hooks/keap")
    assert heard.status == "Verified"
    assert await keap.list_hooks() == [unheard, heard]

    await keap.delete_hook(unheard.key)
    assert await keap.list_hooks() == [heard]


async def test_companies_near_each_other_are_read_by_one_listing_per_id_window(
        keap_server: BackgroundServer, keap: KeapConnector) -> None:
    """v2 lists companies by no id list, but `company_id` takes comparisons: ids less than a page apart share one
    listing, each record with the fields asked for; an id alone in its window is left to its own GET."""
    ids = seed(keap_server, companies=[company(number) for number in range(2_200)])["companies"]
    alone = ids[1_100]
    before, _ = emulator_stats(keap_server)

    found = await keap.near_ids(COMPANIES, [ids[5], ids[0], alone, ids[2_150], ids[2_199]],
                                fields=["company_name", "custom_fields"])

    after, _ = emulator_stats(keap_server)
    assert sorted(found, key=int) == [ids[0], ids[5], ids[2_150], ids[2_199]]
    assert found[ids[2_150]]["company_name"] == "Company 2150"
    assert after["GET /crm/rest/v2/companies"] - before["GET /crm/rest/v2/companies"] == 2
    assert await keap.near_ids(CONTACTS, [ids[0], ids[1]], fields=["custom_fields"]) == {}  # contacts: `by_ids`

    before, _ = emulator_stats(keap_server)
    dense = await keap.by_ids(COMPANIES, [ids[0], ids[5], ids[9], ids[2_150], ids[2_199], alone])  # 6 ids: one listing
    after, _ = emulator_stats(keap_server)
    assert sorted(dense, key=int) == [ids[0], ids[5], ids[9]]  # the window of most ids; the rest to their GETs
    assert after["GET /crm/rest/v2/companies"] - before["GET /crm/rest/v2/companies"] == 1

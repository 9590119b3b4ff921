"""The official Keap SDK (keap-core-v2-sdk, unchanged) drives the emulator's v2 records over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from keap_core_v2_client import (
    ApiClient,
    CompanyApi,
    Configuration,
    ContactApi,
    CreateCompanyRequest,
    CreateProductRequestDetail,
    CreateUpdateContactRequest,
    EmailAddress,
    EmailAddressRequest,
    ProductsApi,
    UpdateCompanyRequest,
    UpdateProductRequestDetail,
)
from keap_core_v2_client.exceptions import BadRequestException, NotFoundException

from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from tests.support import API_KEY, ManualClock


@pytest.fixture
def keap_emulator(manual_clock: ManualClock) -> KeapEmulator:
    """Times move only when a test says so: "updated since the edit" then means exactly the records edited."""
    return KeapEmulator(api_key=API_KEY, random_seed=1, clock=manual_clock)


@pytest.fixture
def sdk(keap_server: BackgroundServer) -> Iterator[ApiClient]:
    httpx.post(f"{keap_server.url}/_emulator/faults", json={"rate_limit": None}).raise_for_status()
    # the SDK's paths start at /rest/v2, under its default host https://api.keap.com/crm
    with ApiClient(Configuration(host=keap_server.url + "/crm")) as client:
        client.set_default_header("X-Keap-API-Key", "test")
        yield client


def test_companies_through_the_sdk(sdk: ApiClient, manual_clock: ManualClock) -> None:
    api = CompanyApi(sdk)
    created = [
        api.create_company(CreateCompanyRequest(company_name=f"Firm {n}", email_address=EmailAddress(email=f"f{n}@x.example", field="EMAIL1")))
        for n in range(5)
    ]
    assert [company.id for company in created] == ["1", "2", "3", "4", "5"]
    assert created[0].create_time and created[0].create_time.endswith("Z")

    manual_clock.advance(1)
    updated = api.update_company("2", UpdateCompanyRequest(company_name="Renamed", notes="not masked"), update_mask=["company_name"])
    assert updated.company_name == "Renamed" and updated.notes is None
    fetched = api.get_company("2", fields=["company_name", "email_address"])
    assert fetched.company_name == "Renamed" and fetched.email_address.email == "f1@x.example"

    seen, token = [], None
    while True:
        page = api.list_companies(page_size=2, page_token=token, fields=["company_name", "update_time"])
        seen += [(company.id, company.company_name) for company in page.companies]
        token = page.next_page_token
        if not token:
            break
    assert [company_id for company_id, _ in seen] == ["1", "2", "3", "4", "5"]
    assert api.list_companies(filter="name==Firm*;company_id>3").companies[0].id == "4"
    assert [c.id for c in api.list_companies(filter=f"since_time=={updated.update_time}").companies] == ["2"]

    api.delete_company("2")
    with pytest.raises(NotFoundException):
        api.get_company("2")


def test_contacts_through_the_sdk(sdk: ApiClient, manual_clock: ManualClock) -> None:
    api = ContactApi(sdk)
    for n in range(4):
        api.create_contact(CreateUpdateContactRequest(given_name=f"Person{n}", email_addresses=[EmailAddressRequest(email=f"p{n}@x.example", field="EMAIL1")]))
    with pytest.raises(BadRequestException) as rejected:
        api.create_contact(CreateUpdateContactRequest(given_name="No channels"))
    assert "email address" in str(rejected.value.body)

    manual_clock.advance(1)
    patched = api.update_contact("3", CreateUpdateContactRequest(family_name="Smith", given_name="Ignored"), update_mask=["family_name"])
    assert (patched.given_name, patched.family_name) == ("Person2", "Smith")
    assert api.get_contact("3").family_name == "Smith"

    changed = api.list_contacts(filter=f"start_update_time=={patched.update_time}", order_by="update_time")
    assert [contact.id for contact in changed.contacts] == ["3"]
    assert [c.id for c in api.list_contacts(filter="email==p1@x.example").contacts] == ["2"]
    pages = [api.list_contacts(page_size=3), None]
    pages[1] = api.list_contacts(page_size=3, page_token=pages[0].next_page_token)
    assert [len(page.contacts) for page in pages] == [3, 1] and pages[1].next_page_token == ""

    api.delete_contact("1")
    with pytest.raises(NotFoundException):
        api.get_contact("1")


def test_products_through_the_sdk(sdk: ApiClient) -> None:
    api = ProductsApi(sdk)
    for n in range(3):
        api.create_product(CreateProductRequestDetail(name=f"Item {n}", price=100 * (n + 1), short_description=f"Item {n}", sku=f"inv-{n}"))
    product = api.get_product("2")
    assert product.price.amount == 200 and product.price.currency_code == "USD" and product.sku == "inv-1"

    updated = api.update_product("1", UpdateProductRequestDetail(name="Item zero", description="long text"), update_mask=["name", "description"])
    assert (updated.name, updated.description) == ("Item zero", "long text")

    newest_first = api.list_products(order_by="last_updated_time desc", page_size=2)
    assert newest_first.products[0].id == "1" and newest_first.next_page_token
    rest = api.list_products(order_by="last_updated_time desc", page_size=2, page_token=newest_first.next_page_token)
    assert len(rest.products) == 1 and not rest.next_page_token
    assert [p.id for p in api.list_products(filter="sku==inv-2").products] == ["3"]

    api.delete_product("3")
    with pytest.raises(NotFoundException):
        api.get_product("3")

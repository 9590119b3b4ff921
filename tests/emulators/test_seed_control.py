"""`POST /_emulator/seed` on both emulators: Invoiced seeds a customer's contacts (each naming its customer by
position in the same seed), and a key neither emulator seeds is answered 400 naming it (a tester's `contacts` key
was ignored without a word: customers created, contacts left empty)."""

from __future__ import annotations

import httpx

from invoiced_keap.emulators.invoiced import InvoicedEmulator
from invoiced_keap.emulators.keap import KeapEmulator
from invoiced_keap.emulators.serve import BackgroundServer
from tests.support import API_KEY


def seed(url: str, body: object) -> httpx.Response:
    return httpx.post(f"{url}/_emulator/seed", json=body)


def test_invoiced_seeds_contacts_under_the_customers_they_name_by_position() -> None:
    with BackgroundServer(InvoicedEmulator(api_key=API_KEY).asgi()) as server, \
            httpx.Client(base_url=server.url, auth=(API_KEY, "")) as api:
        answer = seed(server.url, {
            "customers": [{"name": "Acme", "type": "company"}, {"name": "Globex", "type": "company"}],
            "contacts": [{"customer": 1, "name": "Hank Scorpio", "email": "hank@globex.example"},
                         {"customer": 0, "name": "Wile Coyote"}, {"customer": 0, "name": "Road Runner"}],
        })

        assert answer.status_code == 200
        body = answer.json()
        assert body["errors"] == [] and len(body["customers"]) == 2 and len(body["contacts"]) == 3
        acme, globex = body["customers"]
        acme_people = api.get(f"/customers/{acme}/contacts").json()
        globex_people = api.get(f"/customers/{globex}/contacts").json()
        assert sorted(person["name"] for person in acme_people) == ["Road Runner", "Wile Coyote"]
        assert [(person["name"], person["email"]) for person in globex_people] == [("Hank Scorpio", "hank@globex.example")]
        assert {person["id"] for person in acme_people + globex_people} == set(body["contacts"])


def test_invoiced_lists_a_contact_naming_no_seeded_customer_as_an_error() -> None:
    with BackgroundServer(InvoicedEmulator(api_key=API_KEY).asgi()) as server:
        body = seed(server.url, {"customers": [{"name": "Acme"}],
                                 "contacts": [{"customer": 3, "name": "Nobody's"}, {"name": "No customer"}]}).json()

    assert body["contacts"] == []
    assert [(error["collection"], error["index"], error["param"]) for error in body["errors"]] == [
        ("contacts", 0, "customer"), ("contacts", 1, "customer")]
    assert "got 3" in body["errors"][0]["message"] and "got None" in body["errors"][1]["message"]


def test_a_key_an_emulator_does_not_seed_is_answered_400_naming_it_and_nothing_is_made() -> None:
    invoiced, keap = InvoicedEmulator(api_key=API_KEY), KeapEmulator(api_key=API_KEY)
    with BackgroundServer(invoiced.asgi()) as invoiced_server, BackgroundServer(keap.asgi()) as keap_server:
        refused = seed(invoiced_server.url, {"customers": [{"name": "Acme"}], "people": [{"name": "Jane"}]})
        refused_by_keap = seed(keap_server.url, {"companies": [{"company_name": "Acme"}], "customers": [{"name": "Jane"}]})
        not_an_object = seed(keap_server.url, [{"company_name": "Acme"}])

    assert refused.status_code == 400 and "'people'" in refused.json()["error"]
    assert refused_by_keap.status_code == 400 and "'customers'" in refused_by_keap.json()["error"]
    assert not_an_object.status_code == 400 and "list" in not_an_object.json()["error"]
    assert invoiced.customers == {} and list(keap.store.records("companies")) == []

"""What `verify` costs in Invoiced calls for the people of companies (issue 13: one listing after another, 4 minutes
at 10,000 customers with 30 ms of latency): exactly one listing of a customer's contacts per company customer linked
to a Keap company (a customer has at most 100 contacts: one page), none for an unlinked one, plus the customer pages; the listings
overlap (up to the connector's in-flight limit), and what verify reports is what one listing after another gives."""

from __future__ import annotations

import json

import httpx
import pytest

from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.pacing import INVOICED_LIMITS

NESTED = "GET /customers/{parent_id}/contacts"
COMPANIES = 30
CROWDED = 100
"""People of the first company: as many as Invoiced lets a customer have, a page of its listing (so one call)."""


def seed(invoiced, keap, cli) -> None:
    """COMPANIES linked company customers, the first with CROWDED people, the others one each (every fifth person has
    no Keap twin: verify lists it), and one company customer with a person but no Keap company (not read)."""
    emulator = invoiced[0]
    customers = emulator.seed({"customers": [{"name": f"Company {n}", "type": "company"} for n in range(COMPANIES + 1)]})["customers"]
    keap_companies = keap[0].seed({"companies": [{"company_name": f"Company {n}"} for n in range(COMPANIES)]})["companies"]
    people = []
    for n, customer in enumerate(customers):
        for m in range(CROWDED if n == 0 else 1):
            person = emulator.create_contact(customer, {"name": f"Person {n} {m}", "email": f"p{n}.{m}@example.com"})
            people.append((f"{customer}/{person['id']}", n, m))
    twins = [(invoiced_id, n, m) for invoiced_id, n, m in people if n < COMPANIES and (n + m) % 5]
    keap_people = keap[0].seed({"contacts": [
        {"given_name": "Person", "family_name": f"{n} {m}", "email_addresses": [{"email": f"p{n}.{m}@example.com", "field": "EMAIL1"}],
         "company": {"id": keap_companies[n]}} for _, n, m in twins]})["contacts"]
    with cli.store() as store:
        for customer, keap_id in zip(customers, keap_companies, strict=False):
            store.upsert_link("companies", str(customer), str(keap_id))
        for (invoiced_id, _, _), keap_id in zip(twins, keap_people, strict=True):
            store.upsert_link("company_contacts", invoiced_id, str(keap_id))


def verify_json(connected, invoiced) -> tuple[dict, dict]:
    """`verify --json` of the companies and their people, and the Invoiced emulator's stats of it."""
    emulator = invoiced[0]
    emulator.requests.clear()
    emulator.reset_peaks()
    result = connected("verify", "--json", "--flow", "companies", "--flow", "company_contacts")
    assert result.exit_code == 2, result.output  # the people with no Keap twin
    return json.loads(result.stdout), httpx.get(f"{invoiced[1].url}/_emulator/stats").json()


def test_verify_reads_one_listing_per_linked_company_side_by_side_and_reports_as_one_after_another(
        connected, invoiced, keap, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(invoiced, keap, connected)
    invoiced[0].faults.latency_ms = 20  # each call takes a while, so overlapping ones show

    report, stats = verify_json(connected, invoiced)

    assert stats["requests"] == {"GET /customers": 2, NESTED: COMPANIES}  # the credential check, one page, one listing each
    assert 1 < stats["peak_in_flight_by_request"][NESTED] <= INVOICED_LIMITS.max_in_flight == 20
    companies, people = report["flows"]
    assert companies["linked_pairs"] == COMPANIES and companies["invoiced_without_twin"] == [str(COMPANIES + 1)]
    # the crowded company's 100 people, 20 without a twin; one each of the 29 others, 5 without (the 31st's not read)
    assert (people["linked_pairs"], len(people["invoiced_without_twin"])) == (80 + 24, 20 + 5)

    monkeypatch.setattr(InvoicedConnector, "max_in_flight", property(lambda _: 1))  # one listing after another
    one_by_one, stats = verify_json(connected, invoiced)

    assert one_by_one == report
    assert stats["requests"] == {"GET /customers": 2, NESTED: COMPANIES}
    assert stats["peak_in_flight_by_request"][NESTED] == 1


def test_verify_of_every_flow_says_what_the_people_of_companies_cost_and_how_to_leave_them_out(connected, invoiced, keap) -> None:
    seed(invoiced, keap, connected)

    everything = connected("verify")
    chosen = connected("verify", "--flow", "companies", "--flow", "company_contacts")

    assert everything.exit_code == chosen.exit_code == 2
    assert (f"verify: company_contacts: the people of {COMPANIES} linked companies were read, one Invoiced call each "
            "(20 at a time); `verify --flow companies --flow contacts --flow products` leaves them out.") in " ".join(everything.stdout.split())
    assert "the people of" not in chosen.stdout  # flows picked by name: no advice
    assert "one Invoiced call per company linked in Keap: --flow without company_contacts leaves them out" in " ".join(connected("verify", "--help").stdout.split())

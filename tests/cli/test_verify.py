"""`verify` against both emulators: per-rule agreement, drift with both values, records without a twin,
links to records that are gone, Keap records linked to nothing; read in bulk, exit 0 only when all agree."""

from __future__ import annotations

import json

import httpx

from invoiced_keap.emulators.keap.resources import RESOURCES
from invoiced_keap.flows import Shadow


def seed(invoiced, keap) -> tuple[dict, dict]:
    invoiced_ids = invoiced[0].seed({
        "customers": [
            {"name": "Acme Corporation", "type": "company", "email": "billing@acme.example", "country": "US"},
            {"name": "Globex Ltd", "type": "company"},
            {"name": "Initech", "type": "company"},
            {"name": "Jane Cooper", "type": "person", "email": "jane@example.com"},
        ],
        "items": [{"id": "setup-fee", "name": "Setup fee", "description": "One-time", "unit_cost": 10, "currency": "usd"}],
    })
    keap_ids = keap[0].seed({
        "companies": [
            {"company_name": "Acme Corporation", "email_address": {"email": "billing@acme.example", "field": "EMAIL1"},
             "address": {"country_code": "USA"}},
            {"company_name": "Globex Limited", "address": {"country_code": "USA"}},
            {"company_name": "Stark Industries"},
        ],
        "contacts": [{"given_name": "Jane", "family_name": "Cooper",
                      "email_addresses": [{"email": "jane@example.com", "field": "EMAIL1"}],
                      "addresses": [{"field": "BILLING", "country_code": "USA"}]}],
        "products": [{"name": "Setup fee", "description": "One-time", "price": 1000, "short_description": "Setup fee"}],
    })
    assert not invoiced_ids["errors"] and not keap_ids["errors"]
    return invoiced_ids, keap_ids


def link_all(cli, invoiced_ids, keap_ids) -> None:
    acme, globex, _initech, jane = map(str, invoiced_ids["customers"])
    keap_acme, keap_globex, _stark = map(str, keap_ids["companies"])
    with cli.store() as store:
        store.upsert_link("companies", acme, keap_acme, invoiced=Shadow({"name": "Acme Corporation"}))
        store.upsert_link("companies", globex, keap_globex)
        store.upsert_link("companies", "999999", "888888")  # both records gone
        store.upsert_link("contacts", jane, str(keap_ids["contacts"][0]))
        store.upsert_link("products", "setup-fee", str(keap_ids["products"][0]))


def test_verify_reports_drift_orphans_and_gone_links(connected, invoiced, keap) -> None:
    invoiced_ids, keap_ids = seed(invoiced, keap)
    link_all(connected, invoiced_ids, keap_ids)

    result = connected("verify", "--json")

    assert result.exit_code == 2, result.stderr
    report = json.loads(result.stdout)
    assert report["agrees"] is False
    companies, contacts, products, people_of_companies = report["flows"]
    assert companies["linked_pairs"] == 2
    assert companies["agreeing_pairs_by_rule"] == {"name": 1, "email": 2, "phone": 2, "address": 2}
    assert companies["drifted"] == [{
        "invoiced_id": str(invoiced_ids["customers"][1]), "keap_id": str(keap_ids["companies"][1]),
        "rule": "name", "invoiced_value": "Globex Ltd", "keap_value": "Globex Limited",
    }]
    assert companies["invoiced_without_twin"] == [str(invoiced_ids["customers"][2])]
    assert companies["links_to_missing_records"] == [{"invoiced_id": "999999", "keap_id": "888888", "missing": "both"}]
    assert companies["keap_unlinked"] == [str(keap_ids["companies"][2])]
    assert contacts["agrees"] is True and contacts["linked_pairs"] == 1
    assert products["agrees"] is True and products["agreeing_pairs_by_rule"] == {"name": 1, "description": 1}
    assert people_of_companies["agrees"] is True and people_of_companies["linked_pairs"] == 0


def test_verify_reads_in_bulk_and_exits_0_when_the_chosen_flows_agree(connected, invoiced, keap) -> None:
    invoiced_ids, keap_ids = seed(invoiced, keap)
    link_all(connected, invoiced_ids, keap_ids)

    result = connected("verify", "--flow", "contacts", "--flow", "products")

    assert result.exit_code == 0, result.stdout + result.stderr
    assert "verify: everything agrees" in result.stdout
    assert "Drifted pairs: none" in result.stdout
    invoiced_calls = httpx.get(f"{invoiced[1].url}/_emulator/stats").json()["requests"]
    keap_calls = httpx.get(f"{keap[1].url}/_emulator/stats").json()["requests"]
    assert invoiced_calls == {"GET /customers": 2, "GET /items": 1}  # the credential check, then one page each
    assert keap_calls == {"GET /crm/rest/v2/companies": 1, "GET /crm/rest/v2/contacts": 1, "GET /crm/rest/v2/products": 1}


def test_verify_table_shows_both_values_of_a_drifted_pair(connected, invoiced, keap) -> None:
    invoiced_ids, keap_ids = seed(invoiced, keap)
    link_all(connected, invoiced_ids, keap_ids)

    result = connected("verify", "--flow", "companies")

    assert result.exit_code == 2
    assert "Globex Ltd" in result.stdout and "Globex Limited" in result.stdout
    assert "verify: differences found" in result.stdout


def test_keap_records_linked_to_nothing_count_only_when_the_flow_creates_in_invoiced(connected, invoiced, keap) -> None:
    invoiced_ids, keap_ids = seed(invoiced, keap)
    link_all(connected, invoiced_ids, keap_ids)
    keap[0].seed({"products": [{"name": "Gift card", "price": 2500, "short_description": "Gift card"}]})

    assert connected("verify", "--flow", "products").exit_code == 0
    (connected.directory / "invoiced-keap.toml").write_text('create_in_invoiced = ["products"]\n')
    result = connected("verify", "--flow", "products")
    assert result.exit_code == 2
    assert "Gift card" not in result.stdout and "Keap records linked to nothing" in result.stdout


def test_a_company_s_person_detached_in_keap_is_not_listed_as_linked_to_nothing_by_the_contacts_flow(
        connected, invoiced, keap) -> None:
    acme = invoiced[0].create_customer({"name": "Acme", "type": "company"})
    invoiced[0].create_contact(acme["id"], {"name": "Ann Acme", "email": "ann@acme.example"})
    assert connected("sync").exit_code == 0
    [person] = list(keap[0].store.records("contacts"))
    RESOURCES["contacts"].update(keap[0].store, str(person["id"]), {"company": None}, None)  # a Keap user detaches it

    checked = json.loads(connected("verify", "--json").stdout)

    _, contacts, _, people_of_companies = checked["flows"]
    assert contacts["keap_unlinked"] == []  # still linked in company_contacts: that flow's
    assert people_of_companies["linked_pairs"] == 1


def test_an_invoiced_record_with_no_keap_twin_shows_why_when_a_failure_says_so(connected, invoiced, keap) -> None:
    invoiced[0].create_customer({"name": "Bob Nobody", "type": "person"})  # Keap refuses a bare contact
    assert connected("sync").exit_code == 2

    shown = connected("verify", "--flow", "contacts")

    assert shown.exit_code == 2
    without_twin = shown.stdout.split("Invoiced records with no Keap twin")[1].split("Links to a record")[0]
    [row] = [line for line in without_twin.splitlines() if "│ contacts" in line]
    assert "keap (not sent): Contact must contain at least one" in row  # its failure: why it has no twin

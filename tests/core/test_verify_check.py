"""`verify.check_flow` over plain data: the stored pairs streamed in any order, the records as mappings by id (the
spools `verify` reads into) or as lists; each list of the result in id order, the same either way."""

from __future__ import annotations

from invoiced_keap.engine.plan import LinkShadows
from invoiced_keap.engine.spool import RecordSpool
from invoiced_keap.flows import CATALOGUE, Shadow
from invoiced_keap.verify import GoneLink, Listings, Stored, StoredPair, check_flow

COMPANIES = CATALOGUE["companies"]

INVOICED = [
    {"id": 10, "name": "Acme", "type": "company"},
    {"id": 2, "name": "Globex", "type": "company"},
    {"id": 9, "name": "Initech", "type": "company"},
    {"id": 3, "name": "Jane Cooper", "type": "person"},  # now the contacts flow's: its link is that flow's to relink
    {"id": 1, "name": "Hooli", "type": "company"},
    {"id": 11, "name": "Umbrella", "type": "company"},
    {"id": 4, "name": "Soylent", "type": "company"},
    {"id": 5, "name": "Tyrell", "type": "company"},
]
KEAP = [
    {"id": 100, "company_name": "Acme Corporation"},
    {"id": 20, "company_name": "Globex Ltd"},
    {"id": 90, "company_name": "Initech"},
    {"id": 30, "company_name": "Jane Cooper"},
    {"id": 200, "company_name": "Stark Industries"},
    {"id": 31, "company_name": "Wayne Enterprises"},
]
GLOBEX = Shadow({"name": "Globex"})
PAIRS = [  # in the database's order, not the ids'
    StoredPair("10", "100"),
    StoredPair("7", "70"),
    StoredPair("2", "20", LinkShadows(GLOBEX, GLOBEX)),
    StoredPair("9", "90"),
    StoredPair("3", "30"),
    StoredPair("1", "99"),
]


def test_check_flow_streams_the_pairs_and_lists_what_differs_in_id_order() -> None:
    check = check_flow(COMPANIES, [r for r in INVOICED if COMPANIES.belongs(r)], KEAP, Stored(iter(PAIRS), {"5": None}),
                       invoiced_ids_anywhere={str(r["id"]) for r in INVOICED})

    assert check.pairs == 3
    assert [(d.invoiced_id, d.rule, d.invoiced_value, d.keap_value) for d in check.drifted] == [
        ("10", "name", "Acme", "Acme Corporation")]
    assert [(d.invoiced_id, d.rule, d.keap_value) for d in check.pending] == [("2", "name", "Globex Ltd")]
    assert check.gone == [GoneLink("1", "99", "keap"), GoneLink("7", "70", "both")]
    assert check.without_twin == ["4", "11"] and check.dismissed == {"5": None}
    assert check.keap_unlinked == ["31", "200"]
    assert check.agreeing["name"] == 1


def test_records_as_spooled_mappings_check_as_lists_do() -> None:
    as_lists = check_flow(COMPANIES, [r for r in INVOICED if COMPANIES.belongs(r)], KEAP, Stored(PAIRS, {"5": None}),
                          invoiced_ids_anywhere={str(r["id"]) for r in INVOICED})
    with Listings({COMPANIES.invoiced.name: RecordSpool()}, {"companies": RecordSpool()}) as listings:
        for record in INVOICED:
            listings.invoiced[COMPANIES.invoiced.name][str(record["id"])] = record
        for record in KEAP:
            listings.keap["companies"][str(record["id"])] = record
        spooled = check_flow(COMPANIES, listings.invoiced_records(COMPANIES), listings.keap["companies"],
                             Stored(reversed(PAIRS), {"5": None}), invoiced_ids_anywhere=listings.invoiced_ids(COMPANIES))
        assert len(listings.invoiced_records(COMPANIES)) == 7 and "3" not in listings.invoiced_records(COMPANIES)

    assert spooled == as_lists

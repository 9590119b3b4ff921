"""Matching unlinked Invoiced records against an index of one bulk Keap listing."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from invoiced_keap.engine.match import build_index, decide, match_all, match_key_of
from invoiced_keap.engine.plan import plan_create
from invoiced_keap.engine.planner import keys_of_create
from invoiced_keap.flows import CATALOGUE as FLOWS
from invoiced_keap.keys import normalise_name


def test_normalise_name() -> None:
    assert normalise_name("ACME,  Inc.") == normalise_name("Acme Inc") == "acme inc"
    assert normalise_name("Ｆｕｌｌｗｉｄｔｈ") == "fullwidth"
    assert normalise_name("Acme Ltd") != normalise_name("Acme Inc")
    assert normalise_name("...") is None


COMPANIES = [{"id": "1", "company_name": "Globex Ltd"}, {"id": "2", "company_name": "Stark Industries"},
             {"id": "3", "company_name": "stark industries."}, {"id": "4", "company_name": "Initech"}]


def test_link_review_create() -> None:
    index = build_index(FLOWS["companies"], COMPANIES, linked_keap_ids=["4"])
    assert decide(index, {"id": 10, "name": "GLOBEX LTD"}).action == "link"
    assert decide(index, {"id": 10, "name": "GLOBEX LTD"}).keap_id == "1"
    review = decide(index, {"id": 11, "name": "Stark Industries"})
    assert (review.action, review.candidates, review.key) == ("review", ("2", "3"), ("company_name", "stark industries"))
    linked_elsewhere = decide(index, {"id": 12, "name": "Initech"})
    assert (linked_elsewhere.action, linked_elsewhere.key) == ("create", ("company_name", "initech"))


def test_contacts_match_on_any_email_casefolded_and_never_without_one() -> None:
    contacts = [{"id": "5", "given_name": "Jane", "email_addresses": [{"email": "Main@Example.com", "field": "EMAIL1"},
                                                                       {"email": "Work@Example.com", "field": "EMAIL2"}]}]
    index = build_index(FLOWS["contacts"], contacts)
    assert decide(index, {"id": 1, "name": "J", "email": " main@example.COM"}).keap_id == "5"
    # found by its EMAIL2 only: a candidate for a person to pick, as linking writes over its EMAIL1
    by_second = decide(index, {"id": 1, "name": "J", "email": "work@example.com"})
    assert (by_second.action, by_second.candidates) == ("review", ("5",))
    assert decide(index, {"id": 2, "name": "Jane"}).action == "create"
    assert match_key_of(FLOWS["contacts"], {"id": 2, "name": "Jane"}) is None


def test_products_match_by_sku_before_name() -> None:
    products = [{"id": "p1", "name": "Widget", "sku": "widget-1"}, {"id": "p2", "name": "Widget", "sku": "other"}]
    index = build_index(FLOWS["products"], products)
    assert decide(index, {"id": "widget-1", "name": "Widget"}).keap_id == "p1"
    by_name = decide(index, {"id": "abc", "name": "widget"})
    assert (by_name.action, by_name.candidates) == ("review", ("p1", "p2"))


def test_two_records_claiming_one_keap_record_both_go_to_review() -> None:
    index = build_index(FLOWS["companies"], COMPANIES)
    decisions = match_all(index, [{"id": 1, "name": "Globex Ltd"}, {"id": 2, "name": "globex ltd"},
                                  {"id": 3, "name": "Initech"}])
    assert [(d.action, d.keap_id) for d in decisions] == [("review", None), ("review", None), ("link", "4")]


def test_creates_of_one_batch_with_one_key_make_one_record_and_the_others_wait_for_review() -> None:
    index = build_index(FLOWS["contacts"], [])
    twins = [{"id": 1, "email": "twin@example.com"}, {"id": 2, "email": "TWIN@example.com "},
             {"id": 3, "email": "other@example.com"}, {"id": 4}, {"id": 5}]
    decisions = match_all(index, twins)
    assert [(d.action, d.shares_with) for d in decisions] == [("create", None), ("review", "1"), ("create", None),
                                                              ("create", None), ("create", None)]
    assert decisions[1].key == ("email", "twin@example.com") and decisions[1].candidates == ()
    chosen = match_all(index, twins[:2], rejected={"2": []})  # a person chose to create it: it is
    assert [d.action for d in chosen] == ["create", "create"]


def test_a_create_shares_only_the_keys_of_the_keap_record_it_would_make() -> None:
    """A create Keap refuses makes nothing to share; an email too long for Keap is not in what it makes."""
    flow = FLOWS["contacts"]
    long_email = "m" * 64 + "@" + "d" * 20 + ".example.com"
    people = [{"id": 1, "name": "Walk In", "email": long_email}, {"id": 2, "name": "Long Mail", "email": long_email,
                                                                  "phone": "+1 555 0101"},
              {"id": 3, "name": "Bare", "email": "bare@example.com"}, {"id": 4, "name": "Bare", "email": "bare@example.com"}]
    made = match_all(build_index(flow, []), people,
                     made_with=lambda record: keys_of_create(flow, plan_create(flow, "invoiced", record)))
    assert [(d.action, d.shares_with) for d in made] == [("create", None), ("create", None), ("create", None),
                                                         ("review", "3")]


def test_a_pick_links_its_candidate_alone_while_it_is_unlinked() -> None:
    index = build_index(FLOWS["companies"], COMPANIES, linked_keap_ids=["4"])
    stark = {"id": 11, "name": "Stark Industries"}
    assert (decide(index, stark, picked="3").action, decide(index, stark, picked="3").keap_id) == ("link", "3")
    assert decide(index, stark, picked="4").action == "review"  # linked meanwhile: matched as before
    rival = {"id": 12, "name": "Globex Ltd"}  # matches "1" on its own
    decisions = match_all(index, [{"id": 10, "name": "Stark Industries"}, rival], picked={"10": "1"})
    assert [(d.action, d.keap_id) for d in decisions] == [("link", "1"), ("review", None)]
    twice = match_all(index, [{"id": 10, "name": "x"}, {"id": 13, "name": "y"}], picked={"10": "1", "13": "1"})
    assert [d.action for d in twice] == ["review", "review"]


names = st.sampled_from(["Acme", "acme", "Acme Inc", "Globex", "Initech", ""])


@given(st.lists(st.tuples(st.integers(1, 8), names), max_size=8),
       st.lists(names, max_size=8), st.sets(st.integers(1, 8)))
def test_decisions_agree_with_brute_force(keap: list[tuple[int, str]], invoiced: list[str], linked: set[int]) -> None:
    keap_records: list[dict[str, Any]] = [{"id": str(i), "company_name": n} for i, n in dict(keap).items()]
    invoiced_records = [{"id": n, "name": name} for n, name in enumerate(invoiced)]
    decisions = match_all(build_index(FLOWS["companies"], keap_records, [str(i) for i in linked]), invoiced_records)
    linked_now = [d.keap_id for d in decisions if d.action == "link"]
    assert len(linked_now) == len(set(linked_now))
    created: set[str] = set()
    for record, decision in zip(invoiced_records, decisions):
        key = normalise_name(record["name"])
        expected = [k["id"] for k in keap_records
                    if key and normalise_name(k["company_name"]) == key and int(k["id"]) not in linked]
        assert list(decision.candidates) == expected
        if not expected:  # one create per name: the others of the batch wait for review
            assert decision.action == ("review" if key in created else "create")
            created |= {key} if key else set()
        elif len(expected) > 1:
            assert decision.action == "review"
        else:
            assert decision.action in ("link", "review") and int(expected[0]) not in linked

"""Property: with long and odd values Keap cannot hold and random edits on either side, a pass changes a field on a
side only when the user changed its group on the other side; what the user did not touch stays byte-identical on
its own side, and a name part the user did not edit is never replaced by the other side's cut copy of it."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from invoiced_keap import mapping
from invoiced_keap.engine.plan import LinkShadows, Policy, disagreements, plan_create, plan_pair, shadow_of
from invoiced_keap.flows import CATALOGUE

CONTACTS = CATALOGUE["contacts"]
GROUPS = {"name": ("name",), "email": ("email",), "phone": ("phone",),
          "address": ("address1", "address2", "city", "state", "postal_code", "country")}
KEAP_GROUPS = {"name": ("given_name", "family_name"), "email": ("email_addresses",), "phone": ("phone_numbers",),
               "address": ("addresses",)}

word = st.from_regex(r"X[a-z]{1,24}", fullmatch=True)  # "X..." is no title, suffix or particle to nameparser
long_word = st.from_regex(r"X[a-z]{14,24}", fullmatch=True)
long_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=90)
phones = st.one_of(st.none(), st.from_regex(r"\+1 555 0[0-9]{3}", fullmatch=True), st.from_regex(r"[0-9 ]{41,60}", fullmatch=True))
emails = st.one_of(st.none(), st.from_regex(r"[a-z]{1,80}@example\.com", fullmatch=True))
regions = st.sampled_from([None, "AZ", "Arizona", "Cook County", "ON", "Bayern", "free text"])
countries = st.sampled_from([None, "US", "CA", "DE"])


@st.composite
def customers(draw: st.DrawFn) -> dict[str, Any]:
    given_name = " ".join(draw(st.one_of(st.lists(word, min_size=1, max_size=2), st.lists(long_word, min_size=3, max_size=4))))
    return {"id": 1, "type": "person", "name": f"{given_name} {draw(word)}", "email": draw(emails),
            "phone": draw(phones), "address1": draw(st.one_of(st.none(), long_text)), "city": draw(st.one_of(st.none(), long_text)),
            "state": draw(regions), "country": draw(countries), "updated_at": 100}


@st.composite
def invoiced_edits(draw: st.DrawFn) -> dict[str, Any]:
    fields = {"name": st.builds(lambda g, f: f"{g} {f}", word, word), "email": emails, "phone": phones,
              "city": st.one_of(st.none(), long_text), "state": regions}
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=3))
    return {name: draw(fields[name]) for name in chosen}


@st.composite
def keap_edits(draw: st.DrawFn) -> dict[str, Any]:
    fields = {"given_name": word, "family_name": word,
              "email_addresses": emails.map(lambda e: [{"email": e, "field": "EMAIL1"}] if e else []),
              "phone_numbers": phones.filter(lambda p: p is None or len(p) <= 40).map(
                  lambda p: [{"number": p, "field": "PHONE1"}] if p else [])}
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=2))
    return {name: draw(fields[name]) for name in chosen}


def group_of(side: str, field: str) -> str | None:
    return next((group for group, fields in (GROUPS if side == "invoiced" else KEAP_GROUPS).items() if field in fields), None)


@given(customers(), invoiced_edits(), keap_edits())
def test_fields_no_user_touched_stay_byte_identical_on_their_own_side(customer: dict[str, Any], on_invoiced: dict[str, Any],
                                                                       on_keap: dict[str, Any]) -> None:
    created = plan_create(CONTACTS, "invoiced", customer)
    keap = {**created.fields, "id": "k1", "update_time": "2025-01-01T00:00:00+00:00"}
    shadows = LinkShadows(created.shadows.invoiced, created.shadows.keap)
    before = {"invoiced": {**customer, **on_invoiced, "updated_at": 200},
              "keap": {**keap, **on_keap, "update_time": "2025-01-01T00:00:05+00:00"}}

    plan = plan_pair(CONTACTS, shadows, before["invoiced"], before["keap"])
    after = {"invoiced": {**before["invoiced"], **plan.invoiced_writes}, "keap": {**before["keap"], **plan.keap_writes}}

    edited = {"invoiced": {group_of("invoiced", f) for f in on_invoiced}, "keap": {group_of("keap", f) for f in on_keap}}
    for side, other in (("invoiced", "keap"), ("keap", "invoiced")):
        for field, value in before[side].items():
            if field in (on_invoiced if side == "invoiced" else on_keap) or field in ("id", "updated_at", "update_time"):
                continue
            if group_of(side, field) in edited[other]:
                continue
            assert after[side].get(field) == value, f"{side} {field} changed though no one edited its group"

    if set(on_keap) == {"family_name"} and "name" not in on_invoiced:  # the cut given name must not flow back
        assert mapping.split_name(after["invoiced"]["name"])[0] == mapping.split_name(customer["name"])[0]


@st.composite
def name_edits(draw: st.DrawFn) -> tuple[set[str], set[str]]:
    """The name parts edited in Invoiced and in Keap: at least one on each side, so the name group conflicts."""
    parts = st.sets(st.sampled_from(["given", "family"]), min_size=1)
    return draw(parts), draw(parts)


@given(st.lists(long_word, min_size=1, max_size=4), st.lists(long_word, min_size=1, max_size=3).map("-".join),
       name_edits(), word, word, st.sampled_from(["invoiced", "keap"]))
def test_a_name_conflict_merges_part_by_part(given_words: list[str], family: str, edits: tuple[set[str], set[str]],
                                             new_in_invoiced: str, new_in_keap: str, later: str) -> None:
    """Both sides edit the name: a part changed on one side takes that side's value, on both the winner's, on
    neither each side keeps its own (Invoiced its full part, never Keap's cut copy of it)."""
    customer = {"id": 1, "type": "person", "name": f"{' '.join(given_words)} {family}", "email": "a@example.com",
                "updated_at": 200 if later == "invoiced" else 100}
    keap = {**plan_create(CONTACTS, "invoiced", customer).fields, "id": "k1",
            "update_time": "1970-01-01T00:02:30+00:00"}  # 150: between the two Invoiced times
    shadows = plan_create(CONTACTS, "invoiced", customer).shadows
    on_invoiced, on_keap = edits
    original = dict(zip(("given", "family"), mapping.split_name(customer["name"]), strict=True))
    invoiced_parts = {part: f"Y{new_in_invoiced}" if part in on_invoiced else original[part] for part in original}
    edited_invoiced = {**customer, "name": mapping.join_name(invoiced_parts["given"], invoiced_parts["family"])}
    keap_fields = {"given": "given_name", "family": "family_name"}
    edited_keap = {**keap, **{keap_fields[part]: f"Z{new_in_keap}" for part in on_keap}}

    plan = plan_pair(CONTACTS, shadows, edited_invoiced, edited_keap)

    assert [conflict.winner for conflict in plan.conflicts] == [later]
    after_invoiced = dict(zip(("given", "family"), mapping.split_name(plan.invoiced_writes.get("name", edited_invoiced["name"])),
                              strict=True))
    after_keap = {**edited_keap, **plan.keap_writes}
    for part in ("given", "family"):
        edited_by = {side for side, parts in (("invoiced", on_invoiced), ("keap", on_keap)) if part in parts}
        expected = {"invoiced": invoiced_parts[part], "keap": f"Z{new_in_keap}"}
        if not edited_by:
            assert after_invoiced[part] == original[part], f"Invoiced {part} replaced though no one edited it"
            assert after_keap[keap_fields[part]] == keap[keap_fields[part]], f"Keap {part} replaced though no one edited it"
        else:
            source = later if len(edited_by) == 2 else edited_by.pop()
            assert after_invoiced[part] == expected[source]
            assert after_keap[keap_fields[part]] == expected[source][:40]


def test_the_reported_name_conflict_keeps_the_family_name_nobody_edited() -> None:
    full = "Bartholomew-Maximilian-Christopher-Alexander Wolfeschlegelsteinhausenbergerdorff-Smithson"
    customer = {"id": 1, "type": "person", "name": full, "email": "b@example.com", "updated_at": 100}
    created = plan_create(CONTACTS, "invoiced", customer)
    keap = {**created.fields, "id": "k1", "given_name": "Bartholomew", "update_time": "1970-01-01T00:05:00+00:00"}

    plan = plan_pair(CONTACTS, created.shadows, {**customer, "name": "Barty Wolfeschlegelsteinhausenbergerdorff-Smithson",
                                                 "updated_at": 200}, keap)

    assert plan.invoiced_writes == {"name": "Bartholomew Wolfeschlegelsteinhausenbergerdorff-Smithson"}
    assert plan.keap_writes == {}
    assert [(note.side, note.field) for note in plan.lossy] == [("keap", "family_name")]


@given(st.lists(long_word, min_size=10, max_size=12), st.integers(215, 235),
       st.lists(long_word, min_size=3, max_size=3).map("-".join), st.sampled_from(["invoiced", "keap", "newest"]))
def test_sides_each_holding_a_cut_part_of_the_other_agree_and_a_repair_writes_nothing(
        given_words: list[str], given_length: int, family: str, policy: str) -> None:
    """Keap holds the given name cut to 40, Invoiced the family name cut at its 255-character name: no drift."""
    given_name = " ".join(given_words)[:given_length].rstrip()
    invoiced = {"id": 1, "type": "person", "name": f"{given_name} {family}"[:255].rstrip(), "updated_at": 100}
    keap = {"id": "k1", "given_name": given_name[:40].rstrip(), "family_name": family[:40], "update_time": "1970-01-01T00:05:00+00:00"}
    shadows = LinkShadows(shadow_of(CONTACTS, "invoiced", invoiced), shadow_of(CONTACTS, "keap", keap))

    assert disagreements(CONTACTS, invoiced, keap) == []
    plan = plan_pair(CONTACTS, shadows, invoiced, keap, Policy(policy), repair=True)  # type: ignore[arg-type]
    assert (plan.invoiced_writes, plan.keap_writes) == ({}, {})


COMPANIES = CATALOGUE["companies"]


def test_a_create_notes_trimmed_whitespace_a_blank_name_and_an_address_of_only_a_country() -> None:
    trimmed = plan_create(COMPANIES, "invoiced", {"id": 1, "name": "Line\nBreak\tCo  ", "state": "AZ", "country": "US"})
    assert trimmed.fields["company_name"] == "Line\nBreak\tCo"
    assert [(n.field, n.source, n.sent, n.reason) for n in trimmed.lossy] == [
        ("name", "Line\nBreak\tCo  ", "Line\nBreak\tCo", "surrounding whitespace trimmed"),
        ("address", {"line1": None, "line2": None, "city": None, "region": "US-AZ", "postal_code": None, "country": "US"},
         None, "left out: no street, city or postal code")]
    assert plan_create(COMPANIES, "invoiced", {"id": 1, "name": "Co", "country": "US"}).lossy == ()  # the account's country

    blank = plan_create(COMPANIES, "invoiced", {"id": 2, "name": "   "})
    assert blank.refusal == "company_name is required" and "company_name" not in blank.fields
    assert [note.describe() for note in blank.lossy] == ["keap name: '   ' sent as None (left out: only whitespace)"]


@given(st.text(st.sampled_from(" \t\n"), min_size=1, max_size=3), st.text(st.sampled_from(" \t\n"), max_size=3),
       word, st.sampled_from(["invoiced", "keap"]))
def test_whatever_a_create_trims_is_noted(before: str, after: str, name: str, source: str) -> None:
    record = ({"id": 1, "name": f"{before}{name}{after}"} if source == "invoiced"
              else {"id": "7", "company_name": f"{before}{name}{after}"})
    created = plan_create(COMPANIES, source, record)  # type: ignore[arg-type]
    [note] = created.lossy
    assert (note.source, note.sent) == (f"{before}{name}{after}", name)


def test_a_keap_family_name_edit_keeps_a_family_first_invoiced_name_family_first() -> None:
    customer = {"id": 1, "type": "person", "name": "Smith, John", "email": "a@example.com", "updated_at": 100}
    created = plan_create(CONTACTS, "invoiced", customer)
    keap = {**created.fields, "id": "k1", "family_name": "Smyth", "update_time": "1970-01-01T00:02:30+00:00"}

    plan = plan_pair(CONTACTS, created.shadows, customer, keap)

    assert plan.invoiced_writes == {"name": "Smyth, John"} and plan.keap_writes == {}

"""Round trips and edge cases of the pure field transforms."""

from __future__ import annotations

from decimal import Decimal

import pycountry
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from invoiced_keap import mapping
from invoiced_keap.mapping import KeapPlace

words = st.text(alphabet=st.characters(categories=["L"]), min_size=1, max_size=8)


@given(st.lists(words, min_size=1, max_size=5).map(" ".join))
@example("Dr. Anne-Marie O'Neil Jr.")
@example("John and Jane Smith")
@example("محمد الأحمد")
@example("Madonna")
def test_name_split_then_join_gives_the_name_back(name: str) -> None:
    assert mapping.join_name(*mapping.split_name(name)) == name


@pytest.mark.parametrize(("name", "given", "family"), [
    ("Jane Cooper", "Jane", "Cooper"),
    ("Dr. Anne-Marie O'Neil Jr.", "Dr. Anne-Marie", "O'Neil Jr."),
    ("Smith, John", "John", "Smith"),
    ("Madonna", "Madonna", None),
    ("Prof. Dr. Hans-Peter Müller, PhD", "Prof. Dr. Hans-Peter", "Müller, PhD"),  # found by break-it: given "... Müller,"
    ("de la Cruz", "de la Cruz", None),  # a family name alone is not split in two
    ("Mr. Bob", "Mr. Bob", None),  # nor a title from its name
    ("  Jane   Cooper ", "Jane", "Cooper"),
    ("", None, None),
    (None, None, None),
])
def test_split_name(name: str | None, given: str | None, family: str | None) -> None:
    assert mapping.split_name(name) == (given, family)


@pytest.mark.parametrize(("name", "current", "written"), [
    ("John Smyth", "Smith, John", "Smyth, John"),  # found by break-it: a Keap family name edit turned it around
    ("John Smyth", "John Smith", "John Smyth"),
    ("Cher", "Smith, John", "Cher"),
    ("John Smyth", None, "John Smyth"),
])
def test_a_name_is_written_in_the_order_it_was_written_in(name: str, current: str | None, written: str) -> None:
    assert mapping.name_as_written(name, current) == written
    assert mapping.join_name(*mapping.split_name(written)) == name


def test_join_name_skips_empty_parts() -> None:
    assert mapping.join_name("Jane", None) == "Jane"
    assert mapping.join_name(None, " Cooper ") == "Cooper"
    assert mapping.join_name("", "") is None


@pytest.mark.parametrize("country", list(pycountry.countries), ids=lambda country: country.alpha_2)
def test_country_codes_round_trip(country: object) -> None:
    alpha3 = mapping.country_alpha3(country.alpha_2)  # type: ignore[attr-defined]
    assert alpha3 == country.alpha_3  # type: ignore[attr-defined]
    assert mapping.country_alpha2(alpha3) == country.alpha_2  # type: ignore[attr-defined]


def test_unknown_country_is_kept_not_lost() -> None:
    assert mapping.country_alpha3("zz") == "ZZ"
    assert mapping.country_alpha2(" usa ") == "US"
    assert mapping.country_alpha2(None) is None


@pytest.mark.parametrize("spelling", ["AZ", "az", "US-AZ", "Arizona", " arizona "])
def test_every_spelling_of_a_region_has_one_key(spelling: str) -> None:
    assert mapping.region_key(spelling, "US") == "US-AZ"
    assert mapping.region_key(spelling, "USA") == "US-AZ"


def test_region_without_country_or_unknown_stays_text() -> None:
    assert mapping.region_key("AZ", None) == "AZ"
    assert mapping.region_key("Atlantis", "US") == "Atlantis"



@pytest.mark.parametrize(("region", "country"), [("Atlantis", "US"), ("Cook County", "US"), ("US-AZ", "DE"), ("AZ", None)])
def test_a_region_keap_would_refuse_is_left_out_and_noted(region: str, country: str | None) -> None:
    fields, lossy = mapping.region_for_keap(mapping.region_key(region, country), country, "address.region")
    assert fields == {"region": None, "region_code": None}
    assert [(note.side, note.field, note.source, note.sent) for note in lossy] == [("keap", "address.region", region, None)]
    assert (country or "only with a country") in lossy[0].reason


def test_region_is_written_as_each_side_spells_it() -> None:
    assert mapping.region_for_keap("US-AZ", "US", "r") == ({"region": "Arizona", "region_code": "US-AZ"}, ())
    assert mapping.region_for_invoiced("US-AZ", "US") == "AZ"
    assert mapping.region_for_invoiced("CA-ON", "CA") == "ON"
    assert mapping.region_for_invoiced("DE-BY", "DE") == "Bayern"
    assert mapping.region_for_invoiced("US-AZ", None) == "US-AZ"


addresses = st.fixed_dictionaries({
    "line1": st.sampled_from([None, "1 Main Street", "Flat 2, 10 Downing St"]),
    "line2": st.sampled_from([None, "Suite 5"]),
    "city": st.sampled_from([None, "Springfield", "München"]),
    "region": st.sampled_from([None, "US-AZ", "DE-BY", "Somewhere"]),
    "postal_code": st.sampled_from([None, "62701", "SW1A 2AA"]),
    "country": st.sampled_from([None, "US", "DE", "GB", "JP"]),
})


@given(addresses)
def test_address_round_trips_through_both_sides(address: mapping.Address) -> None:
    keap_fields, lossy = mapping.keap_address_fields(address, "address")
    region_holds = address["region"] is None or address["region"].startswith(f"{address['country']}-")
    assert mapping.keap_address(keap_fields) == (address if region_holds else {**address, "region": None})
    assert [note.field for note in lossy] == ([] if region_holds else ["address.region"])
    assert mapping.invoiced_address(mapping.invoiced_address_fields(address)) == address


def test_postal_code_goes_to_zip_code_only_in_the_us() -> None:
    us = mapping.keap_address_fields({**dict.fromkeys(mapping.ADDRESS_PARTS), "postal_code": "62701",
                                      "country": "US"}, "a").fields
    gb = mapping.keap_address_fields({**dict.fromkeys(mapping.ADDRESS_PARTS), "postal_code": "SW1A 2AA",
                                      "country": "GB"}, "a").fields
    assert (us["zip_code"], us["postal_code"]) == ("62701", None)
    assert (gb["zip_code"], gb["postal_code"]) == (None, "SW1A 2AA")


def test_billing_limits_cut_with_lossy_notes() -> None:
    address = {**dict.fromkeys(mapping.ADDRESS_PARTS), "line1": "x" * 80, "city": "y" * 60, "country": "US"}
    fields, lossy = mapping.keap_address_fields(address, "addresses[BILLING]")
    assert len(fields["line1"]) == 75 and len(fields["locality"]) == 50
    assert [(note.field, note.source, note.sent) for note in lossy] == [
        ("addresses[BILLING].line1", "x" * 80, "x" * 75), ("addresses[BILLING].locality", "y" * 60, "y" * 50)]


def test_truncate_notes_only_when_it_cuts() -> None:
    assert mapping.truncate("short", 40, "keap", "x") == ("short", ())
    cut, lossy = mapping.truncate("a" * 41, 40, "keap", "given_name")
    assert cut == "a" * 40 and lossy == (mapping.LossyCarry("keap", "given_name", "a" * 41, "a" * 40,
                                                            "keap holds at most 40 characters (was 41)"),)


def test_a_value_that_a_cut_would_make_wrong_is_left_out() -> None:
    assert mapping.leave_out("+1 555 0100", 40, "keap", "phone") == ("+1 555 0100", ())
    kept, lossy = mapping.leave_out("9" * 41, 40, "keap", "phone_numbers[PHONE1].number")
    assert kept is None and [(n.source, n.sent) for n in lossy] == [("9" * 41, None)]


@pytest.mark.parametrize(("cost", "currency", "price", "reason"), [
    (12.5, "usd", 1250, None),
    (1200, "jpy", 0, "no price: Keap prices every product in USD, the item is in JPY"),
    (1.234, "kwd", 0, "the item is in KWD"),
    (1.234, "usd", 123, "rounded to the smallest unit of USD"),
    (-5, "usd", 0, "Keap prices are 0 or more"),
])
def test_a_price_is_in_keaps_one_currency_or_none(cost: float, currency: str, price: int, reason: str | None) -> None:
    sent, lossy = mapping.keap_price(cost, currency, "USD")
    assert sent == price
    assert (reason is None and lossy == ()) or (reason in lossy[0].reason and lossy[0].source == f"{cost} {currency.upper()}")


def test_a_yen_cost_is_priced_in_whole_yen() -> None:
    assert mapping.keap_price(1200, "jpy", "JPY") == (1200, ())


@pytest.mark.parametrize("code", ["XYZ", "XAU", "XXX", "JPY", "dollars"])
def test_a_keap_account_prices_only_in_its_billing_currencies(code: str) -> None:
    assert [mapping.currency_code(c.lower()) for c in mapping.KEAP_CURRENCIES] == list(mapping.KEAP_CURRENCIES)
    assert mapping.currency_code(" eur ") == "EUR"
    with pytest.raises(ValueError, match=f"{code!r} is not a currency a Keap account prices in; expected one of USD, EUR"):
        mapping.currency_code(code)


def test_blank_address_ignores_a_lone_country() -> None:
    assert mapping.is_blank_address({**dict.fromkeys(mapping.ADDRESS_PARTS), "country": "US", "region": "US-AZ"})
    assert not mapping.is_blank_address({**dict.fromkeys(mapping.ADDRESS_PARTS), "city": "Austin"})


slots = st.lists(st.fixed_dictionaries({"field": st.sampled_from(["EMAIL1", "EMAIL2", "EMAIL3"]),
                                        "email": st.emails()}),
                 max_size=3, unique_by=lambda entry: entry["field"])


@given(slots, st.one_of(st.none(), st.emails()))
def test_writing_a_slot_leaves_other_slots_untouched(entries: list[dict[str, str]], email: str | None) -> None:
    place = KeapPlace("email_addresses", "EMAIL1", in_array=True)
    record = {"email_addresses": entries}
    written = place.write(record, {"email": email})
    assert list(written) == ["email_addresses"]
    others = [entry for entry in entries if entry["field"] != "EMAIL1"]
    assert [entry for entry in written["email_addresses"] if entry["field"] != "EMAIL1"] == others
    read_back = place.read(written)
    assert (read_back or {}).get("email") == email
    assert entries == record["email_addresses"]  # the input is not mutated


def test_writing_an_object_keeps_its_other_keys() -> None:
    place = KeapPlace("email_address", "EMAIL1")
    record = {"email_address": {"email": "old@x.example", "field": "EMAIL1", "is_opt_in": True}}
    assert place.write(record, {"email": "new@x.example"}) == {
        "email_address": {"email": "new@x.example", "field": "EMAIL1", "is_opt_in": True}}
    assert place.write(record, {"email": None}) == {"email_address": None}
    assert KeapPlace("address").write({}, {"locality": "Austin"}) == {"address": {"locality": "Austin"}}


@pytest.mark.parametrize(("amount", "currency", "minor"), [
    (12.5, "usd", 1250), (499.5, "USD", 49950), (1200, "jpy", 1200), (1.2345, "kwd", 1235), (0.005, "usd", 1),
])
def test_minor_units_follow_the_currency(amount: float, currency: str, minor: int) -> None:
    assert mapping.minor_units(amount, currency) == minor


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(["usd", "jpy", "kwd", "eur"]))
def test_minor_units_round_trip(minor: int, currency: str) -> None:
    assert mapping.minor_units(Decimal(str(mapping.major_units(minor, currency))), currency) == minor


def test_epoch_seconds_reads_both_sides_formats() -> None:
    assert mapping.epoch_seconds(1700000000) == 1700000000.0
    assert mapping.epoch_seconds("2023-11-14T22:13:20Z") == 1700000000.0
    assert mapping.epoch_seconds("2023-11-14T22:13:20.000+0000") == 1700000000.0
    assert mapping.epoch_seconds(None) is None

"""Pure field transforms between Invoiced and Keap record shapes. No I/O.

Every group of fields has a *neutral value*: the form in which both sides' values are compared
(see `flows.FieldRule`). This module turns raw fields into neutral values and back:

- text: `text(v)` strips it; an empty string and a missing field are both `None`.
- person names: Invoiced `name` <-> Keap `given_name` + `family_name` (`split_name` / `join_name`).
- countries: Invoiced ISO 3166-1 alpha-2 <-> Keap alpha-3 (`country_alpha2` / `country_alpha3`).
- regions: neutral is the ISO 3166-2 code (`"US-AZ"`) when the country is known and the text names
  one of its subdivisions (by code or by name), so Keap's habit of storing `"AZ"` as `"Arizona"`
  changes nothing; otherwise the text itself.
- addresses: `Address` (a dict `{line1, line2, city, region, postal_code, country}`, all `str | None`).
- Keap sub-objects: `KeapPlace` reads and merges a company's `email_address` / `phone_number` /
  `address` object or a contact's `email_addresses[field=EMAIL1]` / ... slot, leaving other slots alone.
- money: Invoiced `unit_cost` (major units) <-> Keap `price` (integer minor units of the one currency a
  Keap account prices in, `keap_price`).
- limits: `truncate` cuts a value to a Keap limit; `leave_out` drops one Keap would refuse or that a cut
  would make wrong (a phone number, an email address, a region that is no subdivision of the country).

Whatever is not carried exactly is said in a `LossyCarry` (field, source value, value sent, reason); transforms
that can lose return `Mapped(fields, lossy)`. Nothing is cut or dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import cache, lru_cache
from typing import Any, Literal, Mapping, NamedTuple

import pycountry
from babel.numbers import get_currency_precision
from nameparser import HumanName

Record = dict[str, Any]
"""A record as the APIs return it: a JSON object."""
Side = Literal["invoiced", "keap"]
Address = dict[str, str | None]

ADDRESS_PARTS = ("line1", "line2", "city", "region", "postal_code", "country")

# Keap v2 limits (SDK 2.0.26 models): the text properties of a contact (CreateUpdateContactRequest's maxLength; the
# company and product requests set none), and the EMAIL1 / PHONE1 / BILLING slots.
KEAP_TEXT_LIMITS: dict[str, dict[str, int]] = {
    "contacts": {"given_name": 40, "family_name": 40, "middle_name": 100, "preferred_name": 100, "spouse_name": 100,
                 "billing_information": 100, "job_title": 255, "website": 100, "assistant_name": 20,
                 "assistant_phone": 15},
}
GIVEN_NAME_LIMIT = KEAP_TEXT_LIMITS["contacts"]["given_name"]
FAMILY_NAME_LIMIT = KEAP_TEXT_LIMITS["contacts"]["family_name"]
EMAIL1_LIMIT = 75
PHONE1_LIMIT = 40
BILLING_ADDRESS_LIMITS = {"line1": 75, "line2": 75, "locality": 50, "region": 50, "zip_code": 15, "postal_code": 15}
# Invoiced customer names are 1-255 characters.
INVOICED_NAME_LIMIT = 255

# Countries whose postal addresses write the region as its short code ("AZ", "ON") rather than its name.
SHORT_REGION_COUNTRIES = frozenset({"US", "CA", "AU"})


@dataclass(frozen=True)
class LossyCarry:
    """A value carried with loss: `side`'s `field` was sent `sent` for the source value `source`, because `reason`.
    `rule` names the field group (set by the planner, `engine.plan`)."""

    side: Side
    field: str
    source: Any
    sent: Any
    reason: str
    rule: str = ""

    def describe(self) -> str:
        return f"{self.side} {self.field}: {self.source!r} sent as {self.sent!r} ({self.reason})"


class Mapped(NamedTuple):
    """Fields to write to one side, and what of the source they could not carry exactly."""

    fields: dict[str, Any]
    lossy: tuple[LossyCarry, ...] = ()


def text(value: Any) -> str | None:
    """The comparable form of a text field: stripped, with empty and missing both `None`."""
    if value is None:
        return None
    stripped = str(value).strip()
    return stripped or None


def trimmed(record: Mapping[str, Any], fields: tuple[str, ...], side: Side) -> tuple[LossyCarry, ...]:
    """Notes for the text `fields` of a source `record` whose value `text` changes on its way to `side`: surrounding
    whitespace trimmed, or a value of only whitespace left out."""
    notes = []
    for field in fields:
        value = record.get(field)
        if isinstance(value, str) and value != value.strip():
            sent = text(value)
            reason = "surrounding whitespace trimmed" if sent else "left out: only whitespace"
            notes.append(LossyCarry(side, field, value, sent, reason))
    return tuple(notes)


def truncate(value: str | None, limit: int, side: Side, field: str) -> tuple[str | None, tuple[LossyCarry, ...]]:
    """Cut `value` to `limit` characters, noting it when it had to be cut."""
    if value is None or len(value) <= limit:
        return value, ()
    cut = value[:limit].rstrip()
    return cut, (LossyCarry(side, field, value, cut, f"{side} holds at most {limit} characters (was {len(value)})"),)


def leave_out(value: str | None, limit: int, side: Side, field: str) -> tuple[str | None, tuple[LossyCarry, ...]]:
    """`value`, or nothing (noted) when it is longer than `limit`: a cut phone number or email address is a wrong one."""
    if value is None or len(value) <= limit:
        return value, ()
    return None, (LossyCarry(side, field, value, None, f"left out: {side} holds at most {limit} characters (was {len(value)})"),)


# --- person names ------------------------------------------------------------------------------------

def split_name(name: str | None) -> tuple[str | None, str | None]:
    """Split a full name into (given, family) so that `join_name` gives it back.

    nameparser finds the family name (with any suffix, e.g. "O'Neil Jr."); when the name ends with it,
    the given part is everything before it, titles and middle names included, so nothing is lost.
    Names in another order ("Smith, John") fall back to nameparser's own first/last split.
    """
    full = text(name)
    if full is None:
        return None, None
    return _split_full_name(" ".join(full.split()))


@lru_cache(maxsize=8192)
def _split_full_name(full: str) -> tuple[str | None, str | None]:
    """Cached: a pass splits each name up to three times (value, write, shadow), and nameparser takes
    about 0.1 ms a name, most of the time a contact pair's plan costs."""
    parsed = HumanName(full)
    start = full.rfind(parsed.last) if parsed.last else -1
    if start >= 0 and _words(full[start:]) == _words(f"{parsed.last} {parsed.suffix}"):  # "Müller, PhD" ends it
        given = full[:start].rstrip(" ,")
        if not given or given == parsed.title:  # "de la Cruz", "Mr. Bob": no given name to split off
            return full, None
        return given, full[start:]
    given = " ".join(part for part in (parsed.title, parsed.first, parsed.middle) if part)
    if given and parsed.last and join_name(given, parsed.last) in _reordered(full):
        return given, parsed.last
    given, _, family = full.rpartition(" ")  # nameparser dropped a part ("A né B"): keep every word
    return (given, family) if given else (full, None)


def _words(name: str) -> list[str]:
    return name.replace(",", " ").split()


def _reordered(full: str) -> set[str | None]:
    """The name, and its "Family, Given" form read as "Given Family"."""
    family, comma, given = full.partition(",")
    return {full, text(f"{given} {family}") if comma else full}


def join_name(given: str | None, family: str | None) -> str | None:
    """The full name shown in Invoiced for a Keap contact's given and family names."""
    return text(" ".join(part for part in (text(given), text(family)) if part))


def name_as_written(name: str | None, current: str | None) -> str | None:
    """`name` (given name first) in the order `current` is written in: "Smyth, John" for a "Smith, John"."""
    given, family = split_name(name)
    written = text(current)
    family_first = written is not None and "," in written and join_name(*split_name(written)) != " ".join(written.split())
    return f"{family}, {given}" if family_first and given and family else name


# --- countries and regions -----------------------------------------------------------------------------

def country_alpha2(code: str | None) -> str | None:
    """ISO 3166-1 alpha-2 for an alpha-2 or alpha-3 code; an unknown code is kept (upper-cased), never lost."""
    code = text(code)
    if code is None:
        return None
    country = pycountry.countries.get(alpha_3=code.upper()) or pycountry.countries.get(alpha_2=code.upper())
    return country.alpha_2 if country else code.upper()


def country_alpha3(code: str | None) -> str | None:
    """ISO 3166-1 alpha-3 (what Keap stores) for an alpha-2 or alpha-3 code; an unknown code is kept."""
    code = text(code)
    if code is None:
        return None
    country = pycountry.countries.get(alpha_2=code.upper()) or pycountry.countries.get(alpha_3=code.upper())
    return country.alpha_3 if country else code.upper()


@cache
def _subdivisions(alpha2: str) -> dict[str, str]:
    """Lookup from a casefolded subdivision code, short code or name to its ISO 3166-2 code."""
    lookup: dict[str, str] = {}
    for subdivision in pycountry.subdivisions.get(country_code=alpha2) or ():
        short = subdivision.code.split("-", 1)[1]
        for alias in (subdivision.code, short, subdivision.name):
            lookup.setdefault(alias.casefold(), subdivision.code)
    return lookup


def region_key(region: str | None, country: str | None) -> str | None:
    """The neutral region: its ISO 3166-2 code when `country` has a subdivision by that code or name."""
    region = text(region)
    alpha2 = country_alpha2(country)
    if region is None or alpha2 is None:
        return region
    return _subdivisions(alpha2).get(region.casefold(), region)


def _subdivision(key: str | None) -> Any:
    return pycountry.subdivisions.get(code=key) if key and "-" in key else None


def region_for_keap(key: str | None, country: str | None, field: str) -> tuple[dict[str, str | None], tuple[LossyCarry, ...]]:
    """Keap address fields for a neutral region: the full name (what Keap stores) plus `region_code`.

    Keap refuses a region that is not an ISO 3166-2 subdivision of the address's country ("Region is
    invalid"), and any region without a country; such a region is left out (noted), the rest of the address goes.
    """
    subdivision = _subdivision(key)
    if key is None:
        return {"region": None, "region_code": None}, ()
    if subdivision is None or subdivision.country_code != country:
        reason = (f"left out: Keap takes only an ISO 3166-2 subdivision of {country} as a region" if country
                  else "left out: Keap takes a region only with a country")
        return {"region": None, "region_code": None}, (LossyCarry("keap", field, key, None, reason),)
    return {"region": subdivision.name, "region_code": subdivision.code}, ()


def region_for_invoiced(key: str | None, country: str | None) -> str | None:
    """Invoiced `state` for a neutral region: the short code in countries that write it so, else the name.

    Only a subdivision of the address's own country is spelled out; anything else is kept as it is.
    """
    subdivision = _subdivision(key)
    if subdivision is None or subdivision.country_code != country:
        return key
    if subdivision.country_code in SHORT_REGION_COUNTRIES:
        return subdivision.code.split("-", 1)[1]
    return subdivision.name


# --- addresses -----------------------------------------------------------------------------------------

def _address(line1: Any, line2: Any, city: Any, region: Any, postal_code: Any, country: Any) -> Address:
    alpha2 = country_alpha2(country)
    return {
        "line1": text(line1),
        "line2": text(line2),
        "city": text(city),
        "region": region_key(region, alpha2),
        "postal_code": text(postal_code),
        "country": alpha2,
    }


def invoiced_address(customer: Record) -> Address:
    """The neutral address of an Invoiced customer."""
    return _address(customer.get("address1"), customer.get("address2"), customer.get("city"),
                    customer.get("state"), customer.get("postal_code"), customer.get("country"))


def keap_address(entry: Record | None) -> Address:
    """The neutral address of a Keap address object (`region_code` preferred; `zip_code` or `postal_code`)."""
    entry = entry or {}
    return _address(entry.get("line1"), entry.get("line2"), entry.get("locality"),
                    entry.get("region_code") or entry.get("region"),
                    entry.get("zip_code") or entry.get("postal_code"), entry.get("country_code"))


def invoiced_address_fields(address: Address, customer: Record | None = None) -> dict[str, Any]:
    """Invoiced customer fields for a neutral address; `customer`'s own `state` stays as typed ("Arizona" or
    "AZ") while it names the address's region."""
    state = (customer or {}).get("state")
    same_region = state is not None and region_key(state, address["country"]) == address["region"]
    return {
        "address1": address["line1"],
        "address2": address["line2"],
        "city": address["city"],
        "state": state if same_region else region_for_invoiced(address["region"], address["country"]),
        "postal_code": address["postal_code"],
        "country": address["country"],
    }


def keap_address_fields(address: Address, label: str) -> Mapped:
    """Keap address object fields for a neutral address, cut to the BILLING limits, without a region Keap refuses.

    The postal code goes in `zip_code` for US addresses (and ones without a country), else in
    `postal_code`; the other key is set to `None` so that a stale value cannot shadow it on read.
    """
    country = address["country"]
    zip_key, other_key = ("zip_code", "postal_code") if country in (None, "US") else ("postal_code", "zip_code")
    region, lossy = region_for_keap(address["region"], country, f"{label}.region")
    raw: dict[str, Any] = {
        "line1": address["line1"],
        "line2": address["line2"],
        "locality": address["city"],
        **region,
        zip_key: address["postal_code"],
        other_key: None,
        "country_code": country_alpha3(country),
    }
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        limit = BILLING_ADDRESS_LIMITS.get(key)
        fields[key], cut = truncate(value, limit, "keap", f"{label}.{key}") if limit else (value, ())
        lossy += cut
    return Mapped(fields, lossy)


def address_parts(address: Address) -> dict[str, Any]:
    """An address's parts as a user edits them: each line, the city, region, postal code and country."""
    return {part: address[part] for part in ADDRESS_PARTS}


def address_from_parts(parts: Mapping[str, Any]) -> Address:
    """The address of parts merged from both sides, its region read in the merged country: a subdivision of another
    country is dropped (a region means something only in its country), a text is looked up there."""
    region, country = parts["region"], parts["country"]
    subdivision = _subdivision(region)
    if subdivision is None:
        region = region_key(region, country)
    elif subdivision.country_code != country:
        region = None
    return {**{part: parts[part] for part in ADDRESS_PARTS}, "region": region}


def is_blank_address(address: Address | None) -> bool:
    """True when an address has no street, city or postal code: a country or region alone is no address.

    (Invoiced fills in the account's country on every customer, so a country alone says nothing.)
    """
    return not address or not any(address[part] for part in ("line1", "line2", "city", "postal_code"))


# --- Keap sub-objects and slots ----------------------------------------------------------------------

@dataclass(frozen=True)
class KeapPlace:
    """Where a Keap sub-object lives: a plain object (`company.email_address`), or, when `in_array`,
    the element with `field == slot` of an array (`contact.email_addresses[field=EMAIL1]`).

    Keap replaces arrays wholesale on PATCH, so writing a slot sends the whole array with only the
    owned slot changed; other slots (EMAIL2, SHIPPING, ...) pass through untouched. With `swaps`, a slot that
    holds the value written (in any case) takes the owned slot's former value instead, so nothing is lost or held
    twice: an email linked by its EMAIL2 becomes EMAIL1, the former EMAIL1 becomes EMAIL2 (a billing address may
    well be the shipping one too: addresses do not swap).
    """

    key: str
    slot: str | None = None
    in_array: bool = False
    swaps: bool = False

    def read(self, record: Record) -> Mapping[str, Any] | None:
        value = record.get(self.key)
        if not self.in_array:
            return value or None
        return next((entry for entry in value or () if entry.get("field") == self.slot), None)

    def write(self, record: Record, values: Mapping[str, Any]) -> dict[str, Any]:
        """The top-level Keap field (for the body and the update_mask) with `values` merged into the place.

        When every value is `None` the object is cleared (`None`) or the slot removed from its array.
        """
        clear = all(value is None for value in values.values())
        entry = None if clear else {**(self.read(record) or {}), **values}
        if entry is not None and self.slot:
            entry["field"] = self.slot
        if not self.in_array:
            return {self.key: entry}
        former, others = self.read(record), []
        for item in record.get(self.key) or ():
            if item.get("field") == self.slot:
                continue
            if entry is not None and self.swaps and _same_entry(item, entry):
                if former is None:
                    continue
                item = {**former, "field": item.get("field")}
            others.append(item)
        return {self.key: others if entry is None else [*others, entry]}


def _same_entry(one: Mapping[str, Any], other: Mapping[str, Any]) -> bool:
    """Two entries of a Keap array that hold the same value in another slot (emails compared casefolded)."""
    def value(entry: Mapping[str, Any]) -> dict[str, Any]:
        return {key: item.strip().casefold() if isinstance(item, str) else item for key, item in entry.items() if key != "field"}
    return value(one) == value(other)


# --- money -----------------------------------------------------------------------------------------------

def minor_units(amount: float | int | str | Decimal, currency: str) -> int:
    """An amount in major units (Invoiced `unit_cost`) as Keap's integer minor units for `currency`.

    The number of decimals comes from CLDR via babel (JPY 0, USD 2, KWD 3); rounding is half-up.
    """
    exponent = get_currency_precision(currency.upper())
    scaled = Decimal(str(amount)).scaleb(exponent)
    return int(scaled.quantize(Decimal(1), rounding=ROUND_HALF_UP))


# The currencies a Keap account can price in: its e-commerce currency locale offers only these (Keap help "Billing
# Settings"; /work/shared/reference/real-world-cases.md, case 1). Their minor units still come from CLDR (`minor_units`).
KEAP_CURRENCIES = ("USD", "EUR", "GBP", "ZAR", "AUD", "CAD", "NZD")


def currency_code(code: str) -> str:
    """The currency of a Keap account (`keap_currency`), upper-cased; ValueError naming it when no Keap account can
    price in it."""
    upper = code.strip().upper()
    if upper not in KEAP_CURRENCIES:
        raise ValueError(f"{code!r} is not a currency a Keap account prices in; expected one of {', '.join(KEAP_CURRENCIES)}")
    return upper


def keap_price(unit_cost: Any, currency: str, keap_currency: str) -> tuple[int, tuple[LossyCarry, ...]]:
    """Keap's `price` (minor units of `keap_currency`, the one currency a Keap account prices in) for an item.

    An item in another currency gets 0, Keap's minimum (its create requires a price and has no currency field),
    rather than an amount in the wrong unit; a negative cost gets 0 too (Keap prices are >= 0), and a cost finer
    than the currency's smallest unit is rounded. Each of these is noted.
    """
    amount = Decimal(str(unit_cost or 0))
    currency = currency.upper()
    source = f"{amount} {currency}"
    if currency != keap_currency:
        return 0, (LossyCarry("keap", "price", source, 0, f"no price: Keap prices every product in {keap_currency}, "
                                                         f"the item is in {currency}"),)
    if amount < 0:
        return 0, (LossyCarry("keap", "price", source, 0, "no price: Keap prices are 0 or more"),)
    price = minor_units(amount, currency)
    if Decimal(price).scaleb(-get_currency_precision(currency)) != amount:
        return price, (LossyCarry("keap", "price", source, price, f"rounded to the smallest unit of {currency}"),)
    return price, ()


def major_units(amount: int, currency: str) -> float:
    """Keap's integer minor units as a major-unit amount for Invoiced `unit_cost`."""
    return float(Decimal(amount).scaleb(-get_currency_precision(currency.upper())))


# --- timestamps ------------------------------------------------------------------------------------------

def epoch_seconds(value: Any) -> float | None:
    """An update timestamp as epoch seconds: Invoiced sends unix seconds, Keap ISO-8601 strings."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(str(value)).timestamp()

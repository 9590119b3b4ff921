"""Match keys: how a record on one side is recognised on the other, as normalised strings. No I/O.

A `MatchKey` turns a record of each side into zero or more key strings; records of the two sides with a
key in common are candidates for one another (`engine.match`). Each flow declares its keys (`flows.Flow`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from invoiced_keap.mapping import KeapPlace, Record

if TYPE_CHECKING:
    from invoiced_keap.flows import FieldRule


# Turkish writes i/İ and ı/I: casefold turns İ into "i" + a combining dot above, and I into "i", so the dotted and the
# dotless i both fold to a plain "i" ("ÇİFTÇİ" == "Çiftçi", "HALI" == "Halı"). Other marks stay ("Çiftçi" != "Ciftci").
DOTLESS_I = str.maketrans({"\u0131": "i"})
DOT_ABOVE = "\u0307"


def normalise_name(name: object) -> str | None:
    """A company or product name as compared for matching: NFKC, casefolded (the Turkish i's folded to one),
    punctuation removed, whitespace collapsed ("ACME,  Inc." == "Acme Inc"). Legal suffixes stay: "Acme Ltd" (UK) is
    not "Acme Inc" (US)."""
    if not isinstance(name, str):
        return None
    folded = unicodedata.normalize("NFKC", name).casefold().replace("i" + DOT_ABOVE, "i").translate(DOTLESS_I)
    kept = "".join(char for char in folded if not unicodedata.category(char).startswith("P"))
    return " ".join(kept.split()) or None


def normalise_email(email: object) -> str | None:
    if not isinstance(email, str):
        return None
    return email.strip().casefold() or None


@dataclass(frozen=True)
class MatchKey:
    """One kind of key (`kind`, e.g. "email"): its values for an Invoiced record and for a Keap record, and the
    top-level Keap fields it reads (so that a pass asks for them). `keap_main_keys`, where a Keap record holds
    several values of the kind (a contact's emails), gives those of its main place (EMAIL1): a record found only
    by another (its EMAIL2) is a candidate, never linked unasked, as linking writes over the main value."""

    kind: str
    invoiced_keys: Callable[[Record], list[str]]
    keap_keys: Callable[[Record], list[str]]
    keap_fields: tuple[str, ...]
    keap_main_keys: Callable[[Record], list[str]] | None = None


def _present(*values: str | None) -> list[str]:
    return [value for value in values if value]


def name_key(kind: str, invoiced_field: str, keap_field: str) -> MatchKey:
    """Normalised names equal."""
    return MatchKey(kind, lambda record: _present(normalise_name(record.get(invoiced_field))),
                    lambda record: _present(normalise_name(record.get(keap_field))), (keap_field,))


def email_key(kind: str, invoiced_field: str, place: KeapPlace) -> MatchKey:
    """Casefolded email equal to the one in a Keap sub-object or slot."""
    return MatchKey(kind, lambda record: _present(normalise_email(record.get(invoiced_field))),
                    lambda record: _present(normalise_email((place.read(record) or {}).get("email"))), (place.key,))


def emails_key(kind: str, invoiced_field: str, keap_array: str, main_slot: str = "EMAIL1") -> MatchKey:
    """Casefolded email equal to any of a Keap contact's email addresses (any slot); `main_slot` is its main one."""

    def emails(record: Record, *, main: bool = False) -> list[str]:
        return _present(*(normalise_email(entry.get("email")) for entry in record.get(keap_array) or ()
                          if not main or entry.get("field") == main_slot))

    return MatchKey(kind, lambda record: _present(normalise_email(record.get(invoiced_field))), emails, (keap_array,),
                    lambda record: emails(record, main=True))


def sku_key() -> MatchKey:
    """The Invoiced item id equal to the Keap product's `sku` (our creates set it so)."""
    return MatchKey("sku", lambda item: _present(str(item["id"]).strip() if item.get("id") is not None else None),
                    lambda product: _present((product.get("sku") or "").strip()), ("sku",))


def contact_identity(kind: str, name: FieldRule, detail: FieldRule) -> MatchKey:
    """A person's normalised name with the digits of their phone, or with their street (line 1 and postal
    code), as read through the flow's own rules; for adoption only (a name is too weak to match by)."""

    def keys(side: Any) -> Callable[[Record], list[str]]:
        def of(record: Record) -> list[str]:
            person = normalise_name(name.value(side, record))
            value = detail.value(side, record)
            if isinstance(value, Mapping):
                found = normalise_name(" ".join(part for part in (value.get("line1"), value.get("postal_code")) if part))
            else:
                found = "".join(char for char in str(value or "") if char.isdigit()) or None
            return [f"{person} | {found}"] if person and found else []

        return of

    return MatchKey(kind, keys("invoiced"), keys("keap"), (*name.keap_fields, *detail.keap_fields))

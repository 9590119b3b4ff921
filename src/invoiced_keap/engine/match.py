"""Pure matching of unlinked Invoiced records to existing Keap records. No I/O.

The Keap side is indexed once from a bulk listing (`build_index`), never searched per record.
Match keys, tried in order per flow (`MATCH_KEYS`):

    companies  company_name: normalised Invoiced `name`  == normalised Keap `company_name`
    contacts   email:        casefolded Invoiced `email` == any casefolded Keap `email_addresses[].email`
    products   sku:          Invoiced item `id`          == Keap `sku` (we set it so on create)
               name:         normalised Invoiced `name`  == normalised Keap `name`

The first key kind that yields candidates decides: exactly one candidate -> `link`; several ->
`review` (with the candidate ids; nothing is linked or created); none under any key -> `create`.
Keap records already linked are not candidates, and when two Invoiced records of one batch would
link to the same Keap record, both go to review instead.

`normalise_name` casefolds (after NFKC), removes punctuation and collapses whitespace: "ACME,  Inc."
and "Acme Inc" match. Legal suffixes ("Ltd", "Inc", "GmbH") are kept on purpose: dropping them
would link "Acme Ltd" (UK) with "Acme Inc" (US), and a wrong link merges two customers' data,
while a missed match only costs a duplicate that the review and links lists show.

`MatchDecision.key` is the `(kind, normalised value)` that decided, or for a create the first key
available: run.py stores it with the create intent to adopt a twin found after a crash.

Adoption (`decide(..., adopting=True)`, for records with an open create intent) also tries
`ADOPTION_KEYS` after the match keys: a contact with no email still gets a Keap contact when it has a
phone or an address, and after a crash mid-create it is found again by its name plus phone (digits) or
name plus street (line 1 and postal code), as our create wrote them. Keap v2 has no contact field of
ours to carry the Invoiced id (`referral_code`, `utm_parameters`, `source_type` all mean something to
the user; custom fields need a setup step), so the residual risk is that a Keap contact with the same
name and phone that existed before, and had no email, is adopted instead of a new one created: it is
then linked (a match a person would likely make too), never duplicated. These keys are not match keys
(DESIGN: contacts match by email, else not at all): a name is too weak to link records by on its own.
A company is adopted by its email too: a Keap user may rename the company our cut-short create made
before the next pass adopts it (found by chaos), and its email is still the one we wrote.

`rejected` holds Keap ids a person ruled out (`review ID --create`): they are never candidates for
that record, so it is created, or adopted as the twin its own create made before a crash.
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable, Collection, Iterable, Literal, Mapping

from invoiced_keap.flows import CATALOGUE, Side
from invoiced_keap.mapping import Record

Key = tuple[str, str]


def normalise_name(name: object) -> str | None:
    """A company or product name as compared for matching (see the module docstring)."""
    if not isinstance(name, str):
        return None
    folded = unicodedata.normalize("NFKC", name).casefold()
    kept = "".join(char for char in folded if not unicodedata.category(char).startswith("P"))
    return " ".join(kept.split()) or None


def normalise_email(email: object) -> str | None:
    if not isinstance(email, str):
        return None
    return email.strip().casefold() or None


@dataclass(frozen=True)
class MatchKey:
    kind: str
    invoiced_keys: Callable[[Record], list[str]]
    keap_keys: Callable[[Record], list[str]]


def _present(*values: str | None) -> list[str]:
    return [value for value in values if value]


MATCH_KEYS: dict[str, tuple[MatchKey, ...]] = {
    "companies": (
        MatchKey("company_name", lambda customer: _present(normalise_name(customer.get("name"))),
                 lambda company: _present(normalise_name(company.get("company_name")))),
    ),
    "contacts": (
        MatchKey("email", lambda customer: _present(normalise_email(customer.get("email"))),
                 lambda contact: _present(*(normalise_email(entry.get("email"))
                                            for entry in contact.get("email_addresses") or ()))),
    ),
    "products": (
        MatchKey("sku", lambda item: _present(str(item["id"]).strip() if item.get("id") is not None else None),
                 lambda product: _present((product.get("sku") or "").strip())),
        MatchKey("name", lambda item: _present(normalise_name(item.get("name"))),
                 lambda product: _present(normalise_name(product.get("name")))),
    ),
}


def _contact_identity(side: Side, detail: Literal["phone", "address"]) -> Callable[[Record], list[str]]:
    """A contact's normalised name with its phone digits, or with its street (line 1 and postal code)."""
    rules = CATALOGUE["contacts"]

    def keys(record: Record) -> list[str]:
        name = normalise_name(rules.rule("name").value(side, record))
        value = rules.rule(detail).value(side, record)
        if detail == "phone":
            found = "".join(char for char in str(value or "") if char.isdigit()) or None
        else:
            street = value if isinstance(value, Mapping) else {}
            found = normalise_name(" ".join(part for part in (street.get("line1"), street.get("postal_code")) if part))
        return [f"{name} | {found}"] if name and found else []

    return keys


ADOPTION_KEYS: dict[str, tuple[MatchKey, ...]] = {
    "companies": (
        MatchKey("email", lambda customer: _present(normalise_email(customer.get("email"))),
                 lambda company: _present(normalise_email((company.get("email_address") or {}).get("email")))),
    ),
    "contacts": (
        MatchKey("name+phone", _contact_identity("invoiced", "phone"), _contact_identity("keap", "phone")),
        MatchKey("name+street", _contact_identity("invoiced", "address"), _contact_identity("keap", "address")),
    ),
}


def _keys(flow: str, adopting: bool = True) -> tuple[MatchKey, ...]:
    return MATCH_KEYS[flow] + (ADOPTION_KEYS.get(flow, ()) if adopting else ())


@dataclass(frozen=True)
class KeapIndex:
    """Unlinked Keap record ids by match key: `{(kind, normalised value): (keap_id, ...)}`."""

    flow: str
    ids_by_key: Mapping[Key, tuple[str, ...]]

    def candidates(self, key: Key) -> tuple[str, ...]:
        return self.ids_by_key.get(key, ())


def build_index(flow: str, keap_records: Iterable[Record], linked_keap_ids: Iterable[str] = ()) -> KeapIndex:
    """Index one bulk listing of a flow's Keap records, leaving out those already linked."""
    linked = {str(keap_id) for keap_id in linked_keap_ids}
    ids_by_key: dict[Key, list[str]] = defaultdict(list)
    for record in keap_records:
        keap_id = str(record["id"])
        if keap_id in linked:
            continue
        for match_key in _keys(flow):
            for value in dict.fromkeys(match_key.keap_keys(record)):
                ids_by_key[(match_key.kind, value)].append(keap_id)
    return KeapIndex(flow, {key: tuple(dict.fromkeys(ids)) for key, ids in ids_by_key.items()})


@dataclass(frozen=True)
class MatchDecision:
    invoiced_id: str
    action: Literal["link", "review", "create"]
    keap_id: str | None = None
    candidates: tuple[str, ...] = ()
    key: Key | None = None


def match_key_of(flow: str, invoiced_record: Record) -> Key | None:
    """The first match key an Invoiced record has: what a create intent records."""
    for match_key in MATCH_KEYS[flow]:
        for value in match_key.invoiced_keys(invoiced_record):
            return (match_key.kind, value)
    return None


def decide(index: KeapIndex, invoiced_record: Record, *, adopting: bool = False,
           rejected: Collection[str] = ()) -> MatchDecision:
    """Link, review or create for one unlinked Invoiced record (see the module docstring for
    `adopting` and `rejected`)."""
    invoiced_id = str(invoiced_record["id"])
    for match_key in _keys(index.flow, adopting):
        for value in match_key.invoiced_keys(invoiced_record):
            key = (match_key.kind, value)
            candidates = tuple(keap_id for keap_id in index.candidates(key) if keap_id not in rejected)
            if len(candidates) == 1:
                return MatchDecision(invoiced_id, "link", candidates[0], candidates, key)
            if candidates:
                return MatchDecision(invoiced_id, "review", None, candidates, key)
    return MatchDecision(invoiced_id, "create", key=match_key_of(index.flow, invoiced_record))


def match_all(index: KeapIndex, invoiced_records: Iterable[Record], *, adopting: Collection[str] = (),
              rejected: Mapping[str, Collection[str]] | None = None) -> list[MatchDecision]:
    """Decide for a batch; a Keap record claimed by several Invoiced records links none of them.
    `adopting`: ids with an open create intent; `rejected`: Keap ids ruled out per Invoiced id."""
    rejected = rejected or {}
    decisions = [decide(index, record, adopting=str(record["id"]) in adopting, rejected=rejected.get(str(record["id"]), ()))
                 for record in invoiced_records]
    claims = Counter(decision.keap_id for decision in decisions if decision.action == "link")
    return [
        MatchDecision(decision.invoiced_id, "review", None, decision.candidates, decision.key)
        if decision.action == "link" and claims[decision.keap_id] > 1 else decision
        for decision in decisions
    ]

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
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable, Literal, Mapping

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
        for match_key in MATCH_KEYS[flow]:
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


def decide(index: KeapIndex, invoiced_record: Record) -> MatchDecision:
    """Link, review or create for one unlinked Invoiced record."""
    invoiced_id = str(invoiced_record["id"])
    for match_key in MATCH_KEYS[index.flow]:
        for value in match_key.invoiced_keys(invoiced_record):
            key = (match_key.kind, value)
            candidates = index.candidates(key)
            if len(candidates) == 1:
                return MatchDecision(invoiced_id, "link", candidates[0], candidates, key)
            if candidates:
                return MatchDecision(invoiced_id, "review", None, candidates, key)
    return MatchDecision(invoiced_id, "create", key=match_key_of(index.flow, invoiced_record))


def match_all(index: KeapIndex, invoiced_records: Iterable[Record]) -> list[MatchDecision]:
    """Decide for a batch; a Keap record claimed by several Invoiced records links none of them."""
    decisions = [decide(index, record) for record in invoiced_records]
    claims = Counter(decision.keap_id for decision in decisions if decision.action == "link")
    return [
        MatchDecision(decision.invoiced_id, "review", None, decision.candidates, decision.key)
        if decision.action == "link" and claims[decision.keap_id] > 1 else decision
        for decision in decisions
    ]

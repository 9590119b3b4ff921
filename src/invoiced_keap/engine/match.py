"""Pure matching of unlinked Invoiced records to existing Keap records. No I/O.

The Keap side is indexed once from a bulk listing (`build_index`), never searched per record, by the
flow's match keys (`flows.Flow.match_keys`, tried in order): companies by normalised name, contacts by
email, products by sku (the item id our creates set) then normalised name. The first key kind that
yields candidates decides: exactly one candidate -> `link`; several -> `review` (with the candidate ids;
nothing is linked or created); none under any key -> `create`. Keap records already linked are not
candidates, and when two Invoiced records of one batch would link to the same Keap record, both go to
review instead. A Keap record linked in another flow on the same object (`taken`: a contact linked to a
person customer, met by a company's person with its email) goes to review, never a second link, and so does
one candidate found only by a value outside its main place (`KeapIndex.secondary`: a contact's EMAIL2; linking
writes the Invoiced value over its EMAIL1). Records of one batch whose creates would carry the same key (two
people with one email, in any case) make one Keap record: the first in the batch is created, the others go to
review naming it (`MatchDecision.shares_with`), unless a person chose to create them (`rejected`). What a create
carries is the keys of the Keap record it would make (`made_with`: a create Keap refuses makes none, an email too
long for Keap is not in it), else the record's first key.

`MatchDecision.key` is the `(kind, normalised value)` that decided, or for a create the first key
available: the pass stores it with the create intent to adopt a twin found after a crash.

Adoption (`decide(..., adopting=True)`, for records with an open create intent) also tries the flow's
`adoption_keys`: a contact with no email is found again after a crash mid-create by its name plus phone
or street as our create wrote them, a company by its email. Rationale and residual risks:
docs/ARCHITECTURE.md.

`rejected` holds Keap ids a person ruled out (`review ID --create`): they are never candidates for
that record, so it is created, or adopted as the twin its own create made before a crash. `picked` holds the
candidate a person chose (`review ID --pick`): the record links to it while it is unlinked (key `("picked", id)`),
and no other record of the batch does.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable, Collection, Iterable, Literal, Mapping

from invoiced_keap.flows import Flow
from invoiced_keap.keys import MatchKey
from invoiced_keap.mapping import Record

Key = tuple[str, str]


def _keys(flow: Flow, adopting: bool = True) -> tuple[MatchKey, ...]:
    return flow.match_keys + (flow.adoption_keys if adopting else ())


@dataclass(frozen=True)
class KeapIndex:
    """Unlinked Keap record ids by match key: `{(kind, normalised value): (keap_id, ...)}`; `ids`: all of them;
    `taken`: those linked in another flow on the same Keap object (a match on one goes to review, never links);
    `secondary`: the (key, id) found only outside the record's main place (`MatchKey.keap_main_keys`), likewise."""

    flow: Flow
    ids_by_key: Mapping[Key, tuple[str, ...]]
    ids: frozenset[str] = frozenset()
    taken: frozenset[str] = frozenset()
    secondary: frozenset[tuple[Key, str]] = frozenset()

    def candidates(self, key: Key) -> tuple[str, ...]:
        return self.ids_by_key.get(key, ())


def build_index(flow: Flow, keap_records: Iterable[Record], linked_keap_ids: Iterable[str] = (),
                taken: Collection[str] = ()) -> KeapIndex:
    """Index one bulk listing of a flow's Keap records, leaving out those already linked (in the flow); `taken`
    are linked in another flow on the object."""
    linked = {str(keap_id) for keap_id in linked_keap_ids}
    ids_by_key: dict[Key, list[str]] = defaultdict(list)
    unlinked: set[str] = set()
    secondary: set[tuple[Key, str]] = set()
    for record in keap_records:
        keap_id = str(record["id"])
        if keap_id in linked:
            continue
        unlinked.add(keap_id)
        for match_key in _keys(flow):
            main = None if match_key.keap_main_keys is None else set(match_key.keap_main_keys(record))
            for value in dict.fromkeys(match_key.keap_keys(record)):
                ids_by_key[(match_key.kind, value)].append(keap_id)
                if main is not None and value not in main:
                    secondary.add(((match_key.kind, value), keap_id))
    return KeapIndex(flow, {key: tuple(dict.fromkeys(ids)) for key, ids in ids_by_key.items()}, frozenset(unlinked),
                     frozenset(taken) & frozenset(unlinked), frozenset(secondary))


@dataclass(frozen=True)
class MatchDecision:
    invoiced_id: str
    action: Literal["link", "review", "create"]
    keap_id: str | None = None
    candidates: tuple[str, ...] = ()
    key: Key | None = None
    shares_with: str | None = None  # for a review: the record of the batch created with the same key


def match_key_of(flow: Flow, invoiced_record: Record) -> Key | None:
    """The first match key an Invoiced record has: what a create intent records."""
    for match_key in flow.match_keys:
        for value in match_key.invoiced_keys(invoiced_record):
            return (match_key.kind, value)
    return None


def decide(index: KeapIndex, invoiced_record: Record, *, adopting: bool = False,
           rejected: Collection[str] = (), picked: str | None = None) -> MatchDecision:
    """Link, review or create for one unlinked Invoiced record (see the module docstring for
    `adopting`, `rejected` and `picked`)."""
    invoiced_id = str(invoiced_record["id"])
    if picked is not None and picked in index.ids and picked not in index.taken:
        return MatchDecision(invoiced_id, "link", picked, (picked,), ("picked", picked))
    for match_key in _keys(index.flow, adopting):
        for value in match_key.invoiced_keys(invoiced_record):
            key = (match_key.kind, value)
            candidates = tuple(keap_id for keap_id in index.candidates(key) if keap_id not in rejected)
            if len(candidates) == 1 and candidates[0] not in index.taken and (key, candidates[0]) not in index.secondary:
                return MatchDecision(invoiced_id, "link", candidates[0], candidates, key)
            if candidates:
                return MatchDecision(invoiced_id, "review", None, candidates, key)
    return MatchDecision(invoiced_id, "create", key=match_key_of(index.flow, invoiced_record))


def match_all(index: KeapIndex, invoiced_records: Iterable[Record], *, adopting: Collection[str] = (),
              rejected: Mapping[str, Collection[str]] | None = None,
              picked: Mapping[str, str] | None = None,
              made_with: Callable[[Record], Iterable[Key]] | None = None) -> list[MatchDecision]:
    """Decide for a batch; a Keap record claimed by several Invoiced records links none of them, unless one
    claim is a person's pick, which then links alone; of creates with one key, the first is made (see the module
    docstring). `adopting`: ids with an open create intent; `rejected`: Keap ids ruled out per Invoiced id (a
    person's choice to create); `picked`: the Keap id picked per Invoiced id; `made_with`: the keys the Keap
    record a create of an Invoiced record would make is found by (default: the decision's key)."""
    rejected, picked = rejected or {}, picked or {}
    decisions: list[MatchDecision] = []
    makers: dict[Key, str] = {}  # each key a create carries -> the first record of the batch whose create carries it
    shared: dict[str, str] = {}  # a create carrying a key an earlier one carries -> that one (records stay unheld)
    for record in invoiced_records:
        record_id = str(record["id"])
        decision = decide(index, record, adopting=record_id in adopting, rejected=rejected.get(record_id, ()),
                          picked=picked.get(record_id))
        decisions.append(decision)
        if decision.action == "create" and record_id not in rejected:
            keys = [key for key in (made_with(record) if made_with is not None else [decision.key]) if key is not None]
            maker = next((makers[key] for key in keys if key in makers), None)
            if maker is None:
                makers.update(dict.fromkeys(keys, record_id))
            else:
                shared[record_id] = maker
    claims = Counter(decision.keap_id for decision in decisions if decision.action == "link")
    picks = Counter(decision.keap_id for decision in decisions if decision.key == ("picked", decision.keap_id))

    def contested(decision: MatchDecision) -> bool:
        if decision.action != "link" or claims[decision.keap_id] == 1:
            return False
        return not (decision.key == ("picked", decision.keap_id) and picks[decision.keap_id] == 1)

    def settled(decision: MatchDecision) -> MatchDecision:
        if contested(decision):
            return MatchDecision(decision.invoiced_id, "review", None, decision.candidates, decision.key)
        if decision.invoiced_id not in shared:
            return decision
        return MatchDecision(decision.invoiced_id, "review", key=decision.key, shares_with=shared[decision.invoiced_id])

    return [settled(decision) for decision in decisions]


def relink_pairs(flow: Flow, invoiced_records: Iterable[Record], keap_records: Mapping[str, Record],
                 linked_keap_ids: Collection[str] = ()) -> list[tuple[str, str]]:
    """Pairs (Invoiced id, Keap id) to link again after the state was lost: by the Keap id stamped in the Invoiced
    record's metadata, or, for a flow without a stamp, by its first match key when exactly one Keap record has it
    (a product by its sku, which our creates set to the item id; a person of a company by email, else by name and
    phone or street, among the contacts of its company). `keap_records` is every Keap record of the flow's object
    by id (the shell's is on disk: only the index of key values and the pairs are held). Keap records already
    linked (in any flow on the object) are left out, and so is a Keap record two Invoiced records claim."""
    def free(keap_id: str) -> bool:
        return keap_id in keap_records and keap_id not in linked_keap_ids

    pairs: list[tuple[str, str]] = []
    if flow.metadata_key is not None:
        for record in invoiced_records:
            keap_id = str((record.get("metadata") or {}).get(flow.metadata_key) or "")
            if keap_id and free(keap_id):
                pairs.append((str(record["id"]), keap_id))
    else:
        keys = (flow.match_keys[0], *(flow.adoption_keys if flow.parent is not None else ()))
        indexes: list[dict[str, list[str]]] = [defaultdict(list) for _ in keys]
        for keap_id, record in keap_records.items():
            if keap_id not in linked_keap_ids:
                for key, index in zip(keys, indexes, strict=True):
                    for value in key.keap_keys(record):
                        index[value].append(keap_id)
        for record in invoiced_records:
            for key, index in zip(keys, indexes, strict=True):
                twins = [twin for value in key.invoiced_keys(record) for twin in index.get(value, ())
                         if _same_parent(flow, record, keap_records[twin])]
                if twins:
                    pairs += [(str(record["id"]), twins[0])] if len(twins) == 1 else []
                    break
    claims = Counter(keap_id for _, keap_id in pairs)
    return [(invoiced_id, keap_id) for invoiced_id, keap_id in pairs if claims[keap_id] == 1]


def _same_parent(flow: Flow, invoiced: Record, keap: Record) -> bool:
    """For a nested flow, whether the Keap record hangs under the Keap twin of the Invoiced record's parent."""
    parent = flow.parent
    if parent is None:
        return True
    return bool(invoiced.get(parent.keap_twin)) and str((keap.get(parent.keap_parent) or {}).get("id")) == invoiced[parent.keap_twin]

"""One webhook batch's Keap reads by id, shared by the flows on the same Keap object (issue 13).

A Keap hook names ids of one object, and the receiver marks them for every flow on it (contacts: `contacts` and
`company_contacts`); the service then syncs each flow by id in a pass of its own (`Syncer.sync_ids`). Read alone,
each pass would list the same ids again: twenty listings for a 1,000-id contact hook instead of ten. `BatchReads`
reads the union of the batch's ids of an object once (`KeapConnector.by_ids`: `IDS_PER_CALL` ids a listing), with
the fields of every flow on it, in the first pass that asks, and hands each pass its share.

Never stale across a write. A pass writes only Keap records its flow links (at its read, or by the end of the
pass): the updates of its pairs, its twins' deletes and unlinks, what a customer owes on its twins, the records
it matches and links; and a Keap record is linked in at most one flow on its object. So for each pass:

- an id linked now in another flow on the object is left out: the pass leaves that record alone anyway (it is
  neither one of its pairs nor a record to create from: the planner checks every sharing flow's links);
- an id linked in another flow when it was read, and no longer (that flow unlinked it, or deleted its twin,
  perhaps writing to it first), is read again;
- any other id (linked nowhere else then nor now, or linked in this flow, which no other flow writes to) no pass
  of the batch has written to since the read: it is served as read.

An id no listing of the batch asked for (not in the batch's ids) is read for the pass that names it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.flows import Flow, sharing_keap_object
from invoiced_keap.mapping import Record
from invoiced_keap.state import Store


@dataclass(frozen=True)
class _Read:
    """One object's listing by id: the ids asked for, the records found, and the flow each id was linked in then."""

    asked: frozenset[str]
    records: Mapping[str, Record]
    linked_in: Mapping[str, str]


class BatchReads:
    """The Keap records of one batch of `sync_ids` passes, read by id once per Keap object (see the module
    docstring). `flows`: every configured flow (those sharing an object are told apart by `Flow.keap`); `keap_ids`:
    the Keap ids the batch names, by flow."""

    def __init__(self, flows: Mapping[str, Flow], keap_ids: Mapping[str, Iterable[str]]) -> None:
        self.flows = dict(flows)
        self.wanted: dict[str, set[str]] = {}  # Keap object -> every id the batch names on it
        for name, ids in keap_ids.items():
            self.wanted.setdefault(self.flows[name].keap.name, set()).update(str(record_id) for record_id in ids)
        self._reads: dict[str, _Read] = {}

    async def records(self, store: Store, keap: KeapConnector, flow: Flow, ids: Iterable[str]) -> dict[str, Record]:
        """The records of `ids` that exist, by id, for `flow`'s pass, as `KeapConnector.by_ids` answers them (an id
        missing may still exist: the caller checks its own linked ones), less those linked in another flow on the
        object now."""
        ids = {str(record_id) for record_id in ids}
        others = [other.name for other in sharing_keap_object(flow, self.flows) if other.name != flow.name]
        read = await self._read(store, keap, flow, ids)
        elsewhere = set(store.link_ids_of(others, "keap", ids)) if others else set()
        served = {record_id for record_id in (ids & read.asked) - elsewhere
                  if read.linked_in.get(record_id, flow.name) == flow.name}
        again = sorted(ids - elsewhere - served)  # linked elsewhere at the read and not now; or never asked for
        found = {record_id: read.records[record_id] for record_id in served if record_id in read.records}
        if again:
            found.update(await keap.by_ids(flow.keap, again, fields=flow.keap_fields))
        return found

    async def _read(self, store: Store, keap: KeapConnector, flow: Flow, ids: set[str]) -> _Read:
        """The object's listing, made now if no pass of the batch made it yet: every id the batch names on the
        object, with the fields of every flow on it, and the flow each id is linked in."""
        name = flow.keap.name
        if name not in self._reads:
            asked = sorted(self.wanted.get(name, set()) | ids, key=lambda record_id: (len(record_id), record_id))
            sharing = sharing_keap_object(flow, self.flows)
            fields = sorted({field for other in sharing for field in other.keap_fields})
            records = await keap.by_ids(flow.keap, asked, fields=fields) if asked else {}
            linked_in = {record_id: other.name for other in sharing for record_id in store.link_ids_of(other.name, "keap", asked)}
            self._reads[name] = _Read(frozenset(asked), records, linked_in)
        return self._reads[name]

"""A flow's plan for one pass (`FlowPlan`), built from what the pass read before anything is written.

`plan_flow` adds the few reads a plan needs (source records of due failures and open create intents, a
stored record that is missing or holds no value of a rule, one bulk Keap listing to match against, and once after
the flow's rules changed the linked records that hold none: `Planner._add_unsettled`) and writes nothing, to the
APIs or to the state. The plan lists, per flow: pair plans of linked pairs, links closed by a type change (and the
last sync of their old pairs: `carried`), believed removals, matched pairs to link, creates, review items,
intents and failures to close, and the watermarks to commit; `counts()` and `actions()` print it. The
breaker judges it (`deletes.check_breaker`), `sync --dry-run` prints it, `apply.Applier` consumes it.

A plan streams: its pairs, new pairs and creates are kept as ids (`Batches`), and each batch of records and pair
plans is built from the pass's spooled reads when it is reached, so a pass holds one batch at a time whatever
its size. The planner sweeps the pairs once up front for what the breaker counts (`updates`) and for the writes
that wait for their retry (`waiting`); building a batch again gives the same plans (a record fetched for a pair
is kept for the pass).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from invoiced_keap.connectors.errors import NotFound
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.engine.changes import FlowChanges, get_record, read_linked
from invoiced_keap.engine.match import Key, KeapIndex, MatchDecision, build_index, match_all
from invoiced_keap.engine.options import DeletesPolicy, FlowOptions
from invoiced_keap.engine.plan import CreatePlan, PairPlan, Policy, plan_create, plan_pair
from invoiced_keap.engine.receivables import OPERATION
from invoiced_keap.engine.report import Action, Progress, ProgressHook, no_progress
from invoiced_keap.engine.shadows import covers, link_shadows, stored_record
from invoiced_keap.engine.spool import RecordSpool
from invoiced_keap.flows import SIDES, Flow, Side, flow_of, other_side, sharing_keap_object
from invoiced_keap.mapping import LossyCarry, Record
from invoiced_keap.state import Store
from invoiced_keap.state.models import Link


K = TypeVar("K")
T = TypeVar("T")
LINKED_ELSEWHERE = "is linked in flow"
"""How a review item's reason says a candidate is linked already (the item comes back once it is not)."""
PLAN_BATCH = 500
"""Pairs planned at a time by the planner's counting sweep and by `FlowPlan.actions`."""
BATCH_CHARS = 1_000_000
"""At most this many characters of stored JSON (the records and shadows a batch is built from, as `Batches.weigh`
tells) go into one batch, whatever its count: a batch holds each record several times over (read, shadow, plan,
lossy notes, the state rows it writes), and a character of a text with an emoji takes 4 bytes in a Python string, so
200 records of 20,000-character descriptions held some 150 MB at once. Batches of ordinary records (a few hundred
characters each) stay count-bound."""


@dataclass(frozen=True)
class Batches(Generic[K, T]):
    """Work of a plan kept as keys; the items of a batch of keys are built (`build`) when the batch is reached.
    `weigh` tells the stored characters each key's items are built from (same order as the keys); with it a batch
    ends before it passes `BATCH_CHARS` (a key heavier than that alone is a batch of one)."""

    keys: Sequence[K] = ()
    build: Callable[[Sequence[K]], Awaitable[list[T]]] | None = None
    weigh: Callable[[Sequence[K]], Sequence[int]] | None = None

    def __len__(self) -> int:
        return len(self.keys)

    async def batches(self, size: int) -> AsyncIterator[tuple[int, list[T]]]:
        """(keys taken, items built) a batch at a time: at most `size` keys and `BATCH_CHARS` characters each."""
        assert self.build is not None or not self.keys, "keys without a build"
        for start in range(0, len(self.keys), size):
            for keys in self._by_weight(self.keys[start : start + size]):
                assert self.build is not None
                yield len(keys), await self.build(keys)

    def _by_weight(self, keys: Sequence[K]) -> Iterator[Sequence[K]]:
        if self.weigh is None:
            yield keys
            return
        first, total = 0, 0
        for end, weight in enumerate(self.weigh(keys)):
            if end > first and total + weight > BATCH_CHARS:
                yield keys[first:end]
                first, total = end, 0
            total += weight
        yield keys[first:]

    async def items(self, size: int = PLAN_BATCH) -> AsyncIterator[T]:
        async for _, batch in self.batches(size):
            for item in batch:
                yield item


def record_sizes(records: Mapping[str, Record]) -> Callable[[Sequence[str]], list[int]] | None:
    """A `Batches.weigh` of record ids: their characters in `records`; None when `records` is not a `RecordSpool`
    (records read by id are kept in a dict, and are few)."""
    return records.sizes if isinstance(records, RecordSpool) else None


@dataclass(frozen=True)
class PairWork:
    """A linked pair with both sides' current records and its plan; `policy` and `repair` are what it was planned
    with, `only` the one side it may write (the last sync of a moved link writes Invoiced only)."""

    link: Link
    invoiced: Record
    keap: Record
    plan: PairPlan
    policy: Policy = Policy()
    repair: bool = False
    only: Side | None = None

    def record(self, side: Side) -> Record:
        return self.invoiced if side == "invoiced" else self.keap

    def record_id(self, side: Side) -> str:
        return self.link.invoiced_id if side == "invoiced" else self.link.keap_id

    def replanned(self, flow: Flow, fresh: Mapping[Side, Record]) -> PairWork:
        """The pair planned again, as the planner would, with `fresh` records for some sides (read again before
        its writes: `apply.Applier.refreshed`)."""
        records = {side: fresh.get(side, self.record(side)) for side in SIDES}
        plan = plan_pair(flow, link_shadows(self.link), records["invoiced"], records["keap"], self.policy, repair=self.repair)
        if self.only is not None:
            plan = replace(plan, **{f"{other_side(self.only)}_writes": {}})
        return replace(self, invoiced=records["invoiced"], keap=records["keap"], plan=plan)


@dataclass(frozen=True)
class NewPair:
    """A matched (or adopted) pair to link, merged by `plan` (planned without shadows, by `policy`)."""

    invoiced: Record
    keap: Record
    plan: PairPlan
    policy: Policy = Policy()

    def record(self, side: Side) -> Record:
        return self.invoiced if side == "invoiced" else self.keap

    def record_id(self, side: Side) -> str:
        return str(self.record(side)["id"])

    def replanned(self, flow: Flow, fresh: Mapping[Side, Record]) -> NewPair:
        """The pair merged again with `fresh` records for some sides (see `PairWork.replanned`)."""
        records = {side: fresh.get(side, self.record(side)) for side in SIDES}
        return replace(self, invoiced=records["invoiced"], keap=records["keap"],
                       plan=plan_pair(flow, None, records["invoiced"], records["keap"], self.policy))


@dataclass(frozen=True, slots=True)
class CreateKey:
    """What a plan keeps of a create until its batch is built: the source record and its intent's match key."""

    source: Side
    record_id: str
    intent_key: str | None


@dataclass(frozen=True)
class Create:
    """A record whose twin is created on the other side; `intent_key` is what its create intent records."""

    source: Side
    record: Record
    plan: CreatePlan
    intent_key: str | None


@dataclass(frozen=True)
class Removal:
    """A believed delete on `gone`'s side of a link."""

    link: Link
    gone: Side
    reason: str


@dataclass(frozen=True)
class Review:
    invoiced_id: str
    candidates: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class MovedTwin:
    """A create cut short whose source then moved to another flow: its twin, if found, is kept as a closed link."""

    record: Record
    twin: Record | None
    reason: str


@dataclass
class FlowPlan:
    """One flow's pass, planned (see the module docstring). `links` is the flow's active links when planned;
    `moved_from` / `moved_from_links` the flow the `moves` leave and its links (for the breaker); `refused` the
    payloads of the flow's open failures whose retry is not due, by (side, record id, operation), and `waiting`
    the records whose write would send one of them again unchanged (left out of the plan until due). `pairs`,
    `new_pairs` and `creates` (by source side) are `Batches`; `updates` is counted when planned."""

    flow: Flow
    deletes: DeletesPolicy
    links: int
    read: dict[Side, int] = field(default_factory=dict)
    pairs: Batches[int, PairWork] = field(default_factory=Batches)
    updates: int = 0
    carried_flow: Flow | None = None
    carried: list[PairWork] = field(default_factory=list)
    moves: list[Link] = field(default_factory=list)
    moved_from_links: int = 0
    removals: list[Removal] = field(default_factory=list)
    moved_twins: list[MovedTwin] = field(default_factory=list)
    new_pairs: Batches[tuple[str, str], NewPair] = field(default_factory=Batches)
    creates: dict[Side, Batches[CreateKey, Create]] = field(default_factory=dict)
    reviews: list[Review] = field(default_factory=list)
    settled_reviews: list[tuple[str, str]] = field(default_factory=list)
    closed_intents: list[tuple[Side, str]] = field(default_factory=list)
    resolved_failures: list[tuple[Side, str]] = field(default_factory=list)
    open_failures: set[tuple[str, str]] = field(default_factory=set)
    unstamped: set[str] = field(default_factory=set)
    refused: dict[tuple[str, str, str], object] = field(default_factory=dict)
    waiting: list[tuple[Side, str]] = field(default_factory=list)
    keap_unlinked: int = 0
    watermarks: dict[str, str] = field(default_factory=dict)

    @property
    def deletes_counted(self) -> int:
        """Believed removals the breaker's delete limit counts (none when the policy ignores them)."""
        return 0 if self.deletes == "ignore" else len(self.removals)

    async def actions(self) -> AsyncIterator[Action]:
        """The plan as printable actions (`Action.line()`), in the order they are applied, built a batch at a time:
        a plan of 100,000 creates is never held whole."""
        name = self.flow.name
        if self.carried_flow is not None:
            for work in self.carried:
                for action in pair_actions(self.carried_flow.name, work):
                    yield action
        for link in self.moves:
            yield Action(link.flow, "unlink", "invoiced", link.invoiced_id, {"keap_id": link.keap_id, "reason": moved_reason(link, name)})
        for removal in self.removals:
            for action in removal_actions(name, self.deletes, removal):
                yield action
        for moved in self.moved_twins:
            if moved.twin is not None:
                yield Action(name, "unlink", "invoiced", str(moved.record["id"]), {"keap_id": str(moved.twin["id"]), "reason": moved.reason})
        async for work in self.pairs.items():
            for action in pair_actions(name, work) + lossy_actions(name, work.link.invoiced_id, work.link.keap_id, work.plan.lossy):
                yield action
            if work.link.invoiced_id in self.unstamped:
                for action in stamp_actions(self.flow, work.invoiced, work.link.keap_id):
                    yield action
        for review in self.reviews:
            yield Action(name, "review", "invoiced", review.invoiced_id, {"candidates": list(review.candidates)})
        async for pair in self.new_pairs.items():
            invoiced_id, keap_id = str(pair.invoiced["id"]), str(pair.keap["id"])
            yield Action(name, "link", "keap", keap_id, {"invoiced_id": invoiced_id})
            for action in [*plan_actions(name, invoiced_id, keap_id, pair.plan), *lossy_actions(name, invoiced_id, keap_id, pair.plan.lossy),
                           *stamp_actions(self.flow, pair.invoiced, keap_id)]:
                yield action
        for creates in self.creates.values():
            async for create in creates.items():
                for action in self._create_actions(create):
                    yield action

    def _create_actions(self, create: Create) -> list[Action]:
        name, source_id = self.flow.name, str(create.record["id"])
        if create.plan.refusal:
            return [refusal_action(name, create)]
        return [Action(name, "create", other_side(create.source), None, create_body(self.flow, create)),
                *lossy_actions(name, source_id if create.source == "invoiced" else None,
                               source_id if create.source == "keap" else None, create.plan.lossy),
                *(stamp_actions(self.flow, create.record, None) if create.source == "invoiced" else [])]

    def uncounted(self) -> Counter[str]:
        """What the report counts besides the actions: records read, ignored deletes, unlinked Keap records, waiting
        refusals."""
        counts: Counter[str] = Counter({f"read.{side}": n for side, n in self.read.items()})
        if self.deletes == "ignore":
            counts["deletes_ignored"] += len(self.removals)
        if self.keap_unlinked:
            counts["unlinked.keap"] += self.keap_unlinked
        if self.waiting:
            counts["waiting"] += len(self.waiting)
        return counts


def moved_reason(link: Link, to: str) -> str:
    return f"type changed: customer {link.invoiced_id} moved to {to}"


def conflict_actions(flow: str, invoiced_id: str, keap_id: str, plan: PairPlan) -> list[Action]:
    """A pair's conflicts, named by the pair's Invoiced record (the Keap id and the winner in the fields)."""
    return [Action(flow, "conflict", "invoiced", invoiced_id, {"keap_id": keap_id, "group": c.group, "winner": c.winner,
                                                                "invoiced": c.invoiced_value, "keap": c.keap_value,
                                                                "reason": c.reason})
            for c in plan.conflicts]


def lossy_actions(flow: str, invoiced_id: str | None, keap_id: str | None, lossy: Iterable[LossyCarry]) -> list[Action]:
    """A pair's lossy carries (a record to be created has no id yet)."""
    ids = {"invoiced": invoiced_id, "keap": keap_id}
    return [Action(flow, "lossy", note.side, ids[note.side], {"field": note.field, "source": note.source, "sent": note.sent,
                                                             "reason": note.reason}) for note in lossy]


def refusal_action(flow: str, create: Create) -> Action:
    """A create Keap's documented rules refuse, and the lossy carries that left it without what Keap needs."""
    reason = " ".join([create.plan.refusal or "", *(f"({note.describe()})" for note in create.plan.lossy)])
    return Action(flow, "refuse", create.source, str(create.record["id"]), {"operation": "create", "reason": reason})


def plan_actions(flow: str, invoiced_id: str, keap_id: str, plan: PairPlan) -> list[Action]:
    """A pair plan's conflicts, then its writes."""
    ids = {"invoiced": invoiced_id, "keap": keap_id}
    return conflict_actions(flow, invoiced_id, keap_id, plan) + [
        Action(flow, "update", side, ids[side], plan.writes(side)) for side in ("invoiced", "keap") if plan.writes(side)]


def pair_actions(flow: str, work: PairWork) -> list[Action]:
    """A linked pair's conflicts, then its writes."""
    return plan_actions(flow, work.link.invoiced_id, work.link.keap_id, work.plan)


def removal_actions(flow: str, policy: DeletesPolicy, removal: Removal) -> list[Action]:
    if policy == "ignore":
        return []
    link = removal.link
    actions = []
    if policy == "propagate":
        twin = other_side(removal.gone)
        actions.append(Action(flow, "delete", twin, link.invoiced_id if twin == "invoiced" else link.keap_id, {"reason": removal.reason}))
    return [*actions, Action(flow, "unlink", "invoiced", link.invoiced_id, {"keap_id": link.keap_id, "reason": removal.reason})]


def stamp_actions(flow: Flow, invoiced_record: Record, keap_id: str | None) -> list[Action]:
    """The id stamp of a pair, unless the Invoiced record carries it already (None: the id of a twin to be created)."""
    if flow.metadata_key is None or (keap_id is not None and (invoiced_record.get("metadata") or {}).get(flow.metadata_key) == keap_id):
        return []
    return [Action(flow.name, "stamp", "invoiced", str(invoiced_record["id"]), {flow.metadata_key: keap_id})]


def create_body(flow: Flow, create: Create) -> Record:
    """What a create sends: the mapped fields, and for an Invoiced twin the Keap id in its metadata."""
    body = dict(create.plan.fields)
    if create.plan.target == "invoiced" and flow.metadata_key is not None:
        body["metadata"] = {flow.metadata_key: str(create.record["id"])}
    return body


def refused_again(refused: Mapping[tuple[str, str, str], object], work: PairWork) -> tuple[Side, str] | None:
    """The source record of a write the other system refused, planned again unchanged before its retry is due
    (`FlowPlan.refused`): it waits (a record read again without a change of its own must not send a refused
    write again; `retry` makes it due). None when the pair's writes are not such a write."""
    ids = {"invoiced": work.link.invoiced_id, "keap": work.link.keap_id}
    for side in SIDES:
        source = other_side(side)
        writes = work.plan.writes(side)
        if writes and refused.get((source, ids[source], "update")) == writes:
            return source, ids[source]
    return None


def review_reason(flow: Flow, index: KeapIndex, decision: MatchDecision, taken: Mapping[str, str]) -> str:
    """Why a record waits for a person's decision (`match.decide`, `match.match_all`), naming the Keap records."""
    if decision.key is None:
        return "ambiguous"
    kind, value = decision.key
    if decision.shares_with is not None:
        return (f"{flow.invoiced.name} {decision.shares_with}, new in the same pass, has the same {kind} {value!r}: its "
                f"Keap {flow.keap.hook_object} is made, and one {kind} makes one Keap record")
    keap = f"Keap {flow.keap.hook_object}"
    return f"{len(decision.candidates)} Keap records match {kind} {value!r}" + "".join(
        f"; {keap} {keap_id} {LINKED_ELSEWHERE} {taken[keap_id]}" if keap_id in taken else
        f"; {keap} {keap_id} has it besides its main {kind}, which linking would replace" for keap_id in decision.candidates
        if keap_id in taken or (decision.key, keap_id) in index.secondary)


def keys_of_create(flow: Flow, create: CreatePlan) -> list[Key]:
    """The match keys the Keap record a create would make is found by: none when Keap refuses the create, and only
    what it carries (an email too long for Keap is left out of it)."""
    if create.refusal is not None:
        return []
    return [(key.kind, value) for key in flow.match_keys for value in key.keap_keys(create.fields)]


@dataclass
class Planner:
    """Builds `FlowPlan`s: the state and connectors to read from, the flows and their options."""

    store: Store
    invoiced: InvoicedConnector
    keap: KeapConnector
    flows: dict[str, Flow]
    options: dict[str, FlowOptions]
    progress: ProgressHook = no_progress

    async def plan(self, flow: Flow, read: dict[str, FlowChanges], *, repair: bool = False) -> FlowPlan:
        """The flow's plan for the changes `read` (of every flow of the pass); `repair` also settles linked pairs
        that drifted (`plan.plan_pair`)."""
        store, name = self.store, flow.name
        changes = read[name]
        options = self.options[name]
        plan = FlowPlan(flow, options.deletes, links=store.count_links(name), watermarks=dict(changes.watermarks))
        failures = [failure for failure in store.failures(name) if failure.operation != OPERATION]  # not the flow's
        plan.open_failures = {(failure.side, failure.record_id) for failure in failures}
        plan.unstamped = {failure.record_id for failure in failures if failure.operation == "stamp"}
        now = store.clock()
        plan.refused = {(failure.side, failure.record_id, failure.operation): failure.payload
                        for failure in failures if failure.next_retry_at > now}
        await self._add_due_failures(flow, changes, plan)
        await self._add_unsettled(flow, changes, plan)
        owner_now = self._owner_now(flow, read)
        plan.resolved_failures += [  # a type change: the record is another flow's now, whose pass syncs it
            ("invoiced", failure.record_id) for failure in failures
            if failure.side == "invoiced" and ("invoiced", failure.record_id) not in plan.resolved_failures
            and owner_now(failure.record_id)]
        moved_sources = await self._add_intent_sources(flow, changes, plan)
        plan.read = {"invoiced": len(changes.invoiced), "keap": len(changes.keap)}

        plan.moves, old_flow = self._moved_links(flow, changes)
        if old_flow is not None:
            plan.moved_from_links = store.count_links(old_flow.name)
        removed: dict[int, Removal] = {
            link.id: Removal(link, "invoiced", changes.removal_reasons.get(link.invoiced_id, "deleted or merged in Invoiced"))
            for link in store.find_links(name, "invoiced", changes.removed_invoiced).values()}
        for link in store.find_links(name, "keap", changes.removed_keap).values():
            removed.setdefault(link.id, Removal(link, "keap", "not found in Keap (404)"))
        plan.removals = list(removed.values())
        freed = {removal.link.keap_id for removal in plan.removals} if options.deletes == "unlink" else set()
        sharing = [other.name for other in sharing_keap_object(flow, self.flows) if other.name != name]
        plan.settled_reviews = self._gone_reviews(flow, read, owner_now)
        await self._add_freed_reviews(flow, changes, freed, sharing)
        by_invoiced = store.link_ids_of(name, "invoiced", [i for i in changes.invoiced if i not in changes.removed_invoiced])
        by_keap = store.link_ids_of(name, "keap", changes.keap)
        if old_flow is not None:
            await self._carry_over(flow, old_flow, plan, read)
        gone_elsewhere = set(store.link_ids_of(name, "invoiced", changes.elsewhere).values())  # synced by their new flow
        pair_ids = [link_id for link_id in dict.fromkeys([*by_invoiced.values(), *by_keap.values()])
                    if link_id not in removed and link_id not in gone_elsewhere]
        plan.pairs = await self._pairs(flow, changes, pair_ids, plan, repair)

        unlinked = [record_id for record_id in changes.invoiced
                    if record_id not in by_invoiced and record_id not in changes.removed_invoiced]
        claimed = set(by_keap)
        if unlinked or moved_sources:
            linked = set(store.active_link_ids(name).values()) - freed  # a twin unlinked first may be matched again
            taken = {keap_id: other for other in sharing for keap_id in store.active_link_ids(other).values()}
            # the pass's own full read is the listing, unless a flow on the same object has made records since
            fresh = changes.keap_full and all(keap_id in changes.keap for keap_id in taken)
            listing = changes.keap if fresh else await self._listing(flow, changes)
            if flow.parent is not None:  # a person moved between parents: its delete may not be seen yet
                taken.update(dict.fromkeys(linked, name))
                linked = set()
            if moved_sources:
                plan.moved_twins = self._moved_twins(flow, listing, linked, moved_sources)
            if unlinked:  # a record whose key a linked Keap record has waits for review, as in one pass: no second one
                claimed |= self._match(flow, changes, listing, set(), {**taken, **dict.fromkeys(linked, name)}, unlinked, plan)
        unlinked_keap = [record_id for record_id, record in changes.keap.items()
                         if record_id not in claimed and flow.keap_belongs(record)]
        still = store.link_ids_of([name, *sharing], "keap", unlinked_keap)
        unlinked_keap = [record_id for record_id in unlinked_keap if record_id not in still]
        if options.create_in_invoiced:
            plan.creates["keap"] = self._creates(flow, changes.keap, [CreateKey("keap", record_id, None) for record_id in unlinked_keap])
        else:
            plan.keap_unlinked = len(unlinked_keap)
        return plan

    # --- linked pairs --------------------------------------------------------------------------------
    async def _pairs(self, flow: Flow, changes: FlowChanges, link_ids: list[int], plan: FlowPlan, repair: bool) -> Batches[int, PairWork]:
        """The linked pairs to plan, as batches; swept once here for `plan.updates` and `plan.waiting`."""
        fetched: dict[tuple[Side, str], Record] = {}

        async def planned(ids: Sequence[int]) -> list[PairWork]:
            links = self.store.links_by_id(ids)
            return [await self._plan_pair(flow, links[link_id], changes, repair, fetched) for link_id in ids]

        async def build(ids: Sequence[int]) -> list[PairWork]:
            return [work for work in await planned(ids) if refused_again(plan.refused, work) is None]

        async for work in Batches(link_ids, planned, self.store.shadow_sizes).items():
            waiting = refused_again(plan.refused, work)
            if waiting is not None:
                plan.waiting.append(waiting)
            elif work.plan.write_count:
                plan.updates += 1
        return Batches(link_ids, build, self.store.shadow_sizes)

    async def _plan_pair(self, flow: Flow, link: Link, changes: FlowChanges, repair: bool = False,
                         fetched: MutableMapping[tuple[Side, str], Record] | None = None) -> PairWork:
        """The pair's plan: changed records as read, the other side from its stored record where it `covers` the
        flow's rules (else a GET, kept in `fetched` for the pass)."""
        fetched = {} if fetched is None else fetched
        current: dict[Side, Record] = {}
        for side, changed, record_id in (("invoiced", changes.invoiced, link.invoiced_id), ("keap", changes.keap, link.keap_id)):
            record = changed.get(record_id) or (stored_record(link, side) if covers(flow, link, side) else None)
            if record is None:
                if (side, record_id) not in fetched:
                    try:
                        fetched[(side, record_id)] = await get_record(flow, self.invoiced, self.keap, side, record_id,
                                                                      changes.parents)
                    except NotFound:  # gone: planned on what the state holds; a write to it finds it gone (`apply`)
                        stored = stored_record(link, side)
                        if stored is None:
                            raise
                        fetched[(side, record_id)] = stored
                record = fetched[(side, record_id)]
            current[side] = record
        policy = self.options[flow.name].policy
        pair = plan_pair(flow, link_shadows(link), current["invoiced"], current["keap"], policy, repair=repair)
        return PairWork(link, current["invoiced"], current["keap"], pair, policy, repair)

    def _moved_links(self, flow: Flow, changes: FlowChanges) -> tuple[list[Link], Flow | None]:
        """Links in another flow of the same Invoiced resource of records this flow owns now (a type change)."""
        for other in self.flows.values():
            if other.name != flow.name and other.invoiced == flow.invoiced:
                moved = list(self.store.find_links(other.name, "invoiced", changes.invoiced).values())
                if moved:
                    return moved, other
        return [], None

    async def _carry_over(self, flow: Flow, old: Flow, plan: FlowPlan, read: dict[str, FlowChanges]) -> None:
        """Plan the moved links' old pairs one last time where this pass read their Keap twin changed: the edit
        was made while they were linked. Planned as any pair, but only Invoiced is written (the old twin is left
        alone); the records this flow then matches or creates are taken as they will be after those writes."""
        twins = read[old.name].keap if old.name in read else {}
        customers = read[flow.name].invoiced
        plan.carried_flow = old
        for link in (link for link in plan.moves if link.keap_id in twins):
            pair = FlowChanges(old.name, keap={link.keap_id: twins[link.keap_id]})
            if link.invoiced_id in customers:
                pair.invoiced[link.invoiced_id] = customers[link.invoiced_id]
            work = await self._plan_pair(old, link, pair)
            work = replace(work, plan=replace(work.plan, keap_writes={}), only="invoiced")
            plan.carried.append(work)
            if work.plan.invoiced_writes and link.invoiced_id in customers:
                customers[link.invoiced_id] = {**customers[link.invoiced_id], **work.plan.invoiced_writes}

    # --- failures, intents and review ---------------------------------------------------------------
    def _gone_reviews(self, flow: Flow, read: Mapping[str, FlowChanges],
                      owner_now: Callable[[str], str | None]) -> list[tuple[str, str]]:
        """The flow's open review items whose record this pass learns is gone, each closed with why: deleted or
        merged away (a believed removal), under a customer with no Keap company any more (a nested flow: deleted,
        merged, a person now), or read as another flow's (a type change, `owner_now`: matched there)."""
        changes = read[flow.name]
        parents = changes.parents if flow.parent is not None else None
        gone = []
        for item in self.store.review_items(flow.name):
            if item.invoiced_id in changes.removed_invoiced:
                why = changes.removal_reasons.get(item.invoiced_id, "deleted or merged in Invoiced")
            elif parents is not None and (parent := item.invoiced_id.partition("/")[0]) not in parents.keap_of:
                why = f"its customer {parent} has no Keap company any more"
            elif (owner := owner_now(item.invoiced_id)):
                why = f"type changed: it is flow {owner}'s now"
            else:
                continue
            gone.append((item.invoiced_id, f"closed: {why}"))
        return gone

    def _owner_now(self, flow: Flow, read: Mapping[str, FlowChanges]) -> Callable[[str], str | None]:
        """Which other flow on the flow's Invoiced resource this pass read an Invoiced record as (a type change),
        by its id; None: none did."""
        others = [other.name for other in self.flows.values()
                  if other.name != flow.name and other.invoiced == flow.invoiced and other.name in read]
        return lambda record_id: next((other for other in others if record_id in read[other].invoiced), None)

    async def _add_freed_reviews(self, flow: Flow, changes: FlowChanges, freed: set[str], sharing: list[str]) -> None:
        """Bring into the pass, to be matched again, the records of review items that wait for a Keap record to be
        unlinked: by this plan (a person whose move was seen before its delete), or since (linked in another flow,
        whose link has closed: a company turned into a person)."""
        for item in self.store.review_items(flow.name):
            if item.invoiced_id in changes.invoiced:
                continue
            released = LINKED_ELSEWHERE in item.reason and not self.store.link_ids_of([flow.name, *sharing], "keap", item.candidate_ids)
            if freed.isdisjoint(item.candidate_ids) and not released:
                continue
            try:
                record = await get_record(flow, self.invoiced, self.keap, "invoiced", item.invoiced_id, changes.parents)
            except NotFound:
                continue
            if flow.belongs(record):
                changes.invoiced[item.invoiced_id] = record

    # --- rules changed --------------------------------------------------------------------------------
    async def _add_unsettled(self, flow: Flow, changes: FlowChanges, plan: FlowPlan) -> None:
        """On the first pass after the flow's rules changed (its mark `<flow>.rules` names other rules: a rule added,
        or dropped and added back), bring into the pass the records of the linked pairs whose shadows hold no value of
        one of the rules (a side read or written while the rule was not there), each read once (`read_linked`), so
        each such pair is merged on that rule as on a first link (`plan.plan_pair`). A rule dropped reads nothing and
        wipes nothing. The mark moves with the flow's other marks, once the plan is applied."""
        rules = json.dumps(sorted(rule.name for rule in flow.rules))
        if self.store.get_watermark(flow.mark("rules")) == rules:
            return
        plan.watermarks[flow.mark("rules")] = rules
        read = {"invoiced": changes.invoiced, "keap": changes.keap}
        gone = {"invoiced": changes.removed_invoiced, "keap": changes.removed_keap}
        wanted: dict[Side, list[str]] = {side: [] for side in SIDES}
        for link in self.store.iter_links(flow.name):
            for side in SIDES:
                record_id = link.record_id(side)
                if not covers(flow, link, side) and record_id not in read[side] and record_id not in gone[side]:
                    wanted[side].append(record_id)
        if any(wanted.values()):
            await read_linked(flow, self.invoiced, self.keap, wanted, plan.links, changes)

    # --- failures and intents ------------------------------------------------------------------------
    async def _add_due_failures(self, flow: Flow, changes: FlowChanges, plan: FlowPlan) -> None:
        """Bring the source records of the flow's failures due for a retry into the pass; a source that is gone,
        or that another flow owns now (whose pass syncs it), resolves its failure. A `delete` whose source is still
        gone and still linked (the twin's system was unavailable) is believed again: its removal is planned, and
        `apply.Applier.remove` resolves the failure once the link closes."""
        for failure in self.store.failures_due(flow.name):
            if failure.operation == OPERATION:
                continue  # what a customer owes is written by its own step (`engine.owed`)
            side: Side = "keap" if failure.side == "keap" else "invoiced"
            records = changes.invoiced if side == "invoiced" else changes.keap
            if failure.record_id in records:
                continue
            try:
                record: Record | None = await get_record(flow, self.invoiced, self.keap, side, failure.record_id,
                                                         changes.parents)
            except NotFound:
                record = None
            if record is None and failure.operation == "delete" and self.store.find_link(flow.name, side, failure.record_id):
                (changes.removed_invoiced if side == "invoiced" else changes.removed_keap).add(failure.record_id)
                continue
            if record is None or (side == "invoiced" and not flow.belongs(record)):
                plan.resolved_failures.append((side, failure.record_id))
                continue
            records[failure.record_id] = record

    async def _add_intent_sources(self, flow: Flow, changes: FlowChanges, plan: FlowPlan) -> list[Record]:
        """Bring the source records of open intents (a create cut short) into the pass to finish or adopt;
        answers the sources another flow owns now (see `_moved_twins`)."""
        moved: list[Record] = []
        for intent in self.store.intents(flow.name):
            source: Side = "keap" if intent.source_side == "keap" else "invoiced"
            records = changes.invoiced if source == "invoiced" else changes.keap
            if intent.source_id in records:
                continue
            if self.store.find_link(flow.name, source, intent.source_id) is not None:
                plan.closed_intents.append((source, intent.source_id))
                continue
            try:
                record: Record | None = await get_record(flow, self.invoiced, self.keap, source, intent.source_id,
                                                         changes.parents)
            except NotFound:
                record = None
            if record is None or (source == "keap" and not flow.keap_belongs(record)):
                plan.closed_intents.append((source, intent.source_id))
            elif source == "invoiced" and not flow.belongs(record):
                moved.append(record)
            else:
                records[intent.source_id] = record
        return moved

    def _moved_twins(self, flow: Flow, listing: Mapping[str, Record], linked: Iterable[str], moved: list[Record]) -> list[MovedTwin]:
        """Creates cut short whose source then moved to another flow: the twin one may have made is found as an
        adoption would find it, and kept as a link the type change closed (known, not a duplicate, and left
        alone, like the twin of a linked customer that moved); the intents close either way."""
        index = build_index(flow, listing.values(), linked)
        found = []
        for record, decision in zip(moved, match_all(index, moved, adopting={str(r["id"]) for r in moved}), strict=True):
            twin = listing[decision.keap_id] if decision.action == "link" and decision.keap_id else None
            found.append(MovedTwin(record, twin, f"type changed: customer {record['id']} moved to {flow_of(flow.invoiced, record, self.flows)}"))
        return found

    # --- matching and creates ------------------------------------------------------------------------
    async def _listing(self, flow: Flow, changes: FlowChanges) -> Mapping[str, Record]:
        """Every Keap record of the flow (one bulk listing, spooled with the pass's reads): what matching indexes."""
        listing = changes.spool_listing()
        async for record in self.keap.list_all(flow.keap, fields=flow.keap_fields):
            listing[str(record["id"])] = record
        return listing

    def _match(self, flow: Flow, changes: FlowChanges, listing: Mapping[str, Record], linked: Iterable[str],
               taken: Mapping[str, str], unlinked: list[str], plan: FlowPlan) -> set[str]:
        """Link, review or create each unlinked Invoiced record (by id); answers the Keap ids they claim. A Keap
        record linked in another flow on its object (`taken`: Keap id -> flow) is never linked again: a record
        that would match it goes to review."""
        name = flow.name
        index = build_index(flow, listing.values(), linked, taken)
        intents = self.store.intents(name)
        adopting = {intent.source_id for intent in intents if intent.source_side == "invoiced"}
        cut_short = [changes.keap[intent.source_id] for intent in intents
                     if intent.source_side == "keap" and intent.source_id in changes.keap]
        moved = [listing[removal.link.keap_id] for removal in plan.removals if flow.parent is not None and removal.gone == "invoiced"
                 and removal.link.keap_id not in taken and removal.link.keap_id in listing]
        picked = {**self._former_twins(flow, unlinked, taken, plan.removals),
                  **self._adopted_twins(flow, changes, unlinked, [*cut_short, *moved]), **self.store.pick_decisions(name)}
        decisions = match_all(index, (changes.invoiced[record_id] for record_id in unlinked), adopting=adopting,
                              rejected=self.store.create_decisions(name), picked=picked,
                              made_with=lambda record: keys_of_create(flow, plan_create(flow, "invoiced", record)))
        self.progress(Progress(name, "matched", len(decisions), len(unlinked)))
        in_review = {item.invoiced_id: item for item in self.store.review_items(name)}
        held = self._still_shared(flow, listing, [changes.invoiced[decision.invoiced_id] for decision in decisions
                                                  if decision.action == "create" and decision.invoiced_id in in_review
                                                  and not in_review[decision.invoiced_id].candidate_ids])
        policy = self.options[name].policy
        claimed: set[str] = set()
        pairs: list[tuple[str, str]] = []
        creates: list[CreateKey] = []
        for decision in decisions:
            if decision.action == "review":
                claimed.update(decision.candidates)
                plan.reviews.append(Review(decision.invoiced_id, decision.candidates, review_reason(flow, index, decision, taken)))
                continue
            if decision.invoiced_id in held:
                continue  # its item stays open: only a person's `review ID --create` makes a second record of one key
            if decision.invoiced_id in in_review:
                plan.settled_reviews.append((decision.invoiced_id, decision.action))
            if decision.action == "link":
                assert decision.keap_id is not None
                claimed.add(decision.keap_id)
                pairs.append((decision.invoiced_id, decision.keap_id))
                continue
            key = CreateKey("invoiced", decision.invoiced_id, f"{decision.key[0]}:{decision.key[1]}" if decision.key else None)
            refused = plan.refused.get(("invoiced", key.record_id, "create"))
            if refused is not None and refused == create_body(flow, self._create(flow, changes.invoiced, key)):
                plan.waiting.append(("invoiced", key.record_id))
            else:
                creates.append(key)

        async def new_pairs(keys: Sequence[tuple[str, str]]) -> list[NewPair]:
            built = [(changes.invoiced[invoiced_id], listing[keap_id]) for invoiced_id, keap_id in keys]
            return [NewPair(invoiced, keap, plan_pair(flow, None, invoiced, keap, policy), policy) for invoiced, keap in built]

        invoiced_sizes, keap_sizes = record_sizes(changes.invoiced), record_sizes(listing)

        def weigh(keys: Sequence[tuple[str, str]]) -> list[int]:
            assert invoiced_sizes is not None and keap_sizes is not None
            return [one + other for one, other in zip(invoiced_sizes([invoiced_id for invoiced_id, _ in keys]),
                                                      keap_sizes([keap_id for _, keap_id in keys]), strict=True)]

        plan.new_pairs = Batches(pairs, new_pairs, weigh if invoiced_sizes is not None and keap_sizes is not None else None)
        plan.creates["invoiced"] = self._creates(flow, changes.invoiced, creates)
        return claimed

    @staticmethod
    def _still_shared(flow: Flow, listing: Mapping[str, Record], waiting: Sequence[Record]) -> set[str]:
        """The ids of `waiting` (records in review for sharing a match key with a record of their pass whose Keap
        twin was made: an item with no candidates, `match.match_all`) whose create would still carry a key a Keap
        record has (that twin, linked since, so no candidate): one listing walk, only when some wait."""
        wanted: dict[Key, list[str]] = {}
        for record in waiting:
            for key in keys_of_create(flow, plan_create(flow, "invoiced", record)):
                wanted.setdefault(key, []).append(str(record["id"]))
        found: set[str] = set()
        for keap_record in listing.values() if wanted else ():
            for match_key in flow.match_keys:
                for value in match_key.keap_keys(keap_record):
                    found.update(wanted.get((match_key.kind, value), ()))
        return found

    def _former_twins(self, flow: Flow, unlinked: list[str], taken: Mapping[str, str], removals: Iterable[Removal]) -> dict[str, str]:
        """For a nested flow, the Keap twin each unlinked record had before (its link closed when its parent lost its
        Keap company, or under the customer a merge took it from: a contact keeps its own id; closed before, or by
        this plan's `removals`), while no flow links it: taken again as if picked, so a person with no email is not
        made twice."""
        if flow.parent is None or not unlinked:
            return {}
        closing = {removal.link.invoiced_id: removal.link.keap_id for removal in removals}
        former = {invoiced_id.rpartition("/")[2]: keap_id
                  for invoiced_id, keap_id in {**self.store.closed_twins(flow.name), **closing}.items()}
        twins = {record_id: former[own] for record_id in unlinked if (own := record_id.rpartition("/")[2]) in former}
        return {record_id: keap_id for record_id, keap_id in twins.items() if keap_id not in taken}

    @staticmethod
    def _adopted_twins(flow: Flow, changes: FlowChanges, unlinked: list[str], sources: list[Record]) -> dict[str, str]:
        """The unlinked Invoiced records that are the twins of `sources`, Keap records whose twin may be new in
        Invoiced: one a create from Keap made before a crash cut it short (its create intent open; a contact of a
        company has no metadata to name its Keap id), or, of a company's person, the Keap contact whose link this plan
        closes as its Invoiced contact was deleted (a move: deleted under one customer, made under another in the
        same pass). Found as an adoption finds a Keap twin (the flow's match and adoption keys: the email, else the
        name with the phone or street) and taken as if picked, so each is linked to its Keap record, neither made
        again in Keap nor, for a cut-short create, its source in Invoiced."""
        if not sources or not unlinked:
            return {}
        decisions = match_all(build_index(flow, sources), (changes.invoiced[record_id] for record_id in unlinked),
                              adopting=set(unlinked))
        return {decision.invoiced_id: decision.keap_id for decision in decisions
                if decision.action == "link" and decision.keap_id is not None}

    @staticmethod
    def _create(flow: Flow, records: Mapping[str, Record], key: CreateKey) -> Create:
        record = records[key.record_id]
        return Create(key.source, record, plan_create(flow, key.source, record), key.intent_key)

    def _creates(self, flow: Flow, records: Mapping[str, Record], keys: list[CreateKey]) -> Batches[CreateKey, Create]:
        async def build(batch: Sequence[CreateKey]) -> list[Create]:
            return [self._create(flow, records, key) for key in batch]

        weigh = record_sizes(records)
        return Batches(keys, build, None if weigh is None else lambda batch: weigh([key.record_id for key in batch]))

"""One sync pass per flow: read changes, match and create, plan, apply, commit; plus `relink` and `reconcile`.

    syncer = Syncer(store, invoiced, keap, SyncOptions.build(...), progress=hook)
    report = await syncer.sync(["companies"], dry_run=False)    # RunReport; report.exit_code
    await syncer.retry()       # every open failure due now, then a pass
    await syncer.reconcile()   # full id scans for deletes without hooks (own schedule, e.g. daily)
    await syncer.relink()      # rebuild links from the Keap ids stamped in Invoiced metadata
    await syncer.sync_ids("companies", invoiced_ids=["12"], keap_ids=["34"])   # webhooks, `verify --repair`
    syncer.request_stop()      # from a signal handler: the records in hand finish, the rest waits

A pass, per flow, under `store.flow_lock(flow)` for every flow of the run:
1. `changes.read_changes`: what changed on each side since the flow's marks (customers and removal
   events read once for both customer flows), plus the source records of due failures and open intents.
2. Plan without writing: type changes (a customer linked in the other customer flow: that link is closed,
   the old Keap record left alone, and the customer is matched/created here; edits of the old Keap twin
   this pass read were made while the pair was linked, so they still reach Invoiced first, and a create
   cut short before the move leaves its twin in a closed link), removals (Invoiced delete/merge events
   of linked customers), linked pairs (`plan.plan_pair` against the stored shadows;
   the side that did not change is taken from its stored record, not re-read).
3. Circuit breaker on planned deletes and updates (`deletes.check_breaker`): over the limit, the flow
   is skipped with a clear error and nothing of it is written.
4. Apply: removals by the deletes policy, pair updates; then unlinked Invoiced records are matched
   against an index of one bulk Keap listing (or the pass's own full read on a first pass): link
   (merging fields), review (nothing created) or create (intent first). Open intents left by a crash
   are adopted through the same index: the twin they made carries the record's match key (sku, email,
   company name; for a contact with no email, its name with its phone or street: `match.ADOPTION_KEYS`),
   so it matches and is linked instead of created again. `review ID --create` opens such an intent
   for the record, and its rejected candidates are left out of its matching (`store.create_decisions`):
   the record is created, or adopted if its own create was cut short. Then, if the flow has
   `create_in_invoiced`, unlinked Keap records get Invoiced twins (idempotency key from the intent).
5. Commit the flow's marks after everything they cover is committed. A `FatalError`, or any API error
   that escapes the writes' failure handling (a read still failing after its retries: a 429 listing),
   ends the pass cleanly with `report.error` (exit 1): what was done stays committed, the marks of the
   unfinished flow do not move, and the run row gets its result.

`sync_ids` is the same pass over named records only (`targeted.read_ids`: no watermark moves; a Keap 404
is a believed delete); with `rebaseline` its pairs are planned as on first link, without shadows, which
is how `verify --repair` settles pairs whose sides both equal their shadows yet disagree.

`request_stop` makes the pass start no further record: those in flight finish, their batch commits, and
the pass ends with `report.error` set and its marks unmoved (the next pass carries on).

`dry_run` reads and plans exactly as a pass does, records every action in the report (`plan_lines()`),
and writes nothing: no API write, no state row (it does not even start a run record).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import replace
from typing import TypeVar

from invoiced_keap.connectors.errors import ApiError, NotFound
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.engine.apply import Applier, PairWork, PassStopped, link_shadows, snapshot, stored_record
from invoiced_keap.engine.changes import (
    CUSTOMER_FLOWS,
    INVOICED_RESOURCES,
    KEAP_STREAMS,
    FlowChanges,
    add_due_failures,
    read_changes,
)
from invoiced_keap.engine.deletes import CircuitBreakerTripped, check_breaker, find_gone
from invoiced_keap.engine.match import build_index, match_all, match_key_of
from invoiced_keap.engine.options import SyncOptions
from invoiced_keap.engine.plan import plan_pair
from invoiced_keap.engine.report import Action, FlowReport, Progress, ProgressHook, RunReport, no_progress
from invoiced_keap.engine.targeted import read_ids
from invoiced_keap.flows import Flow, Side, flow_for_customer
from invoiced_keap.mapping import Record
from invoiced_keap.state import FlowLease, FlowLockHeld, FlowLockLost, NewLink, Store
from invoiced_keap.state.models import Link

T = TypeVar("T")
# What ends a pass early (reported, not raised): writes turn their own API errors into failures, so an
# `ApiError` here is a read that could not be done (or a `FatalError`); the next pass starts over from the marks.
PASS_ENDING = (ApiError, FlowLockHeld, FlowLockLost)
ChangesReader = Callable[[], Awaitable[dict[str, FlowChanges]]]


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Syncer:
    """The imperative shell around the pure core: connectors in, state store for memory."""

    def __init__(
        self,
        store: Store,
        invoiced: InvoicedConnector,
        keap: KeapConnector,
        options: SyncOptions | None = None,
        *,
        progress: ProgressHook = no_progress,
    ) -> None:
        self.store = store
        self.invoiced = invoiced
        self.keap = keap
        self.options = options or SyncOptions()
        self.progress = progress
        self._leases: list[FlowLease] = []
        self.stop_requested = False

    # --- entry points ------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Start no further record; the pass in hand commits what it did and ends (see the module docstring)."""
        self.stop_requested = True

    async def sync(self, flows: Iterable[str] | None = None, *, dry_run: bool = False) -> RunReport:
        """One pass over `flows` (all by default)."""
        names = self._flow_names(flows)
        return await self._pass(names, lambda: read_changes(self.store, self.invoiced, self.keap, names, self.progress), dry_run=dry_run)

    async def sync_ids(
        self,
        flow: str,
        *,
        invoiced_ids: Iterable[str] = (),
        keap_ids: Iterable[str] = (),
        removed_invoiced: Iterable[str] = (),
        rebaseline: bool = False,
    ) -> RunReport:
        """A pass over the named records of one flow only (webhooks, `verify --repair`); marks stay put.

        `removed_invoiced` are believed deletes (signed Invoiced events); `rebaseline` plans the pairs as
        on first link: an empty value never wins, otherwise the policy's priority side.
        """
        names = self._flow_names([flow])

        async def read() -> dict[str, FlowChanges]:
            return {flow: await read_ids(flow, self.invoiced, self.keap, invoiced_ids=invoiced_ids,
                                         keap_ids=keap_ids, removed_invoiced=removed_invoiced)}

        return await self._pass(names, read, rebaseline=rebaseline)

    async def _pass(self, names: list[str], read: ChangesReader, *, dry_run: bool = False, rebaseline: bool = False) -> RunReport:
        """Under the flows' locks: `read` the changes, then sync each flow (see the module docstring)."""
        run_id = None if dry_run else self.store.start_run(names, dry_run=False).id
        report = RunReport(run_id, dry_run)
        calls_before = self._calls()
        try:
            with self._locks(names):
                changes = await read()
                for name in names:
                    report.flows[name] = FlowReport(name)
                    try:
                        await self._sync_flow(self.options.flows[name], changes, report.flows[name], run_id, dry_run, rebaseline)
                    except CircuitBreakerTripped as error:
                        report.flows[name].error = str(error)
        except PASS_ENDING as error:
            report.error = str(error)
        except PassStopped:
            report.error = "stopped on request before the end; the next pass carries on"
        return self._finish(report, calls_before)

    async def retry(self, flows: Iterable[str] | None = None, *, failure_id: int | None = None) -> RunReport:
        """Make open failures due now, then run a pass (the `retry` command): the one `failure_id` (a pass
        over its flow only; LookupError if it is not open), else every failure of `flows`."""
        if failure_id is not None:
            flows = [self.store.retry_failure_now(failure_id).flow]
        else:
            for name in self._flow_names(flows):
                self.store.retry_failures_now(name)
        return await self.sync(flows)

    async def reconcile(self, flows: Iterable[str] | None = None, *, dry_run: bool = False) -> RunReport:
        """Find deletes no event or hook told us about (full id scans; see `deletes.find_gone`)."""
        names = self._flow_names(flows)
        run_id = None if dry_run else self.store.start_run(names, dry_run=False).id
        report = RunReport(run_id, dry_run)
        calls_before = self._calls()
        try:
            with self._locks(names):
                for name in names:
                    flow_report = report.flows[name] = FlowReport(name)
                    applier = self._applier(self.options.flows[name], flow_report, run_id, dry_run)
                    links = self.store.active_link_ids(name)
                    gone = await find_gone(name, links, self.invoiced, self.keap)
                    try:
                        self._check_breaker(name, links=len(links), deletes=len(gone), updates=0)
                    except CircuitBreakerTripped as error:
                        flow_report.error = str(error)
                        continue
                    found = self.store.find_links(name, "invoiced", [invoiced_id for invoiced_id, _ in gone])
                    for invoiced_id, side in gone:
                        await applier.remove(found[invoiced_id], gone=side, reason=f"not found in {side} (reconcile)")
                    applier.commit()
        except PASS_ENDING as error:
            report.error = str(error)
        return self._finish(report, calls_before)

    async def relink(self, flows: Iterable[str] | None = None) -> RunReport:
        """Rebuild lost links from the Keap ids stamped in Invoiced metadata (one full listing per side).

        Shadows are taken from both records as they are now: the pair counts as in sync from here on
        (`verify` shows pairs that disagree). Records already linked are left alone.
        """
        names = self._flow_names(flows)
        report = RunReport(None, False)
        calls_before = self._calls()
        with self._locks(names):
            customers = [c async for c in self.invoiced.customers()] if set(names) & set(CUSTOMER_FLOWS) else []
            items = [i async for i in self.invoiced.items()] if "products" in names else []
            for name in names:
                flow = self.options.flows[name]
                flow_report = report.flows[name] = FlowReport(name)
                records = items if name == "products" else [c for c in customers if flow_for_customer(c) == name]
                stamped = {str(r["id"]): (r, str(r["metadata"][flow.metadata_key])) for r in records
                           if (r.get("metadata") or {}).get(flow.metadata_key)}
                linked = self.store.active_link_ids(name)
                linked_keap = set(linked.values())
                keap_records = {str(k["id"]): k async for k in self.keap.list_all(KEAP_STREAMS[name])} if stamped else {}
                new_links = [
                    NewLink(invoiced_id, keap_id, snapshot(flow, "invoiced", record), snapshot(flow, "keap", keap_records[keap_id]))
                    for invoiced_id, (record, keap_id) in stamped.items()
                    if invoiced_id not in linked and keap_id not in linked_keap and keap_id in keap_records
                ]
                self.store.add_links(name, new_links)
                flow_report.counts["linked"] = len(new_links)
        return self._finish(report, calls_before)

    # --- one flow ----------------------------------------------------------------------------------
    async def _sync_flow(
        self, flow: Flow, read: dict[str, FlowChanges], report: FlowReport, run_id: int | None, dry_run: bool, rebaseline: bool = False
    ) -> None:
        store, name = self.store, flow.name
        changes = read[name]
        applier = self._applier(flow, report, run_id, dry_run)
        failures = store.failures(name)
        applier.open_failures = {(failure.side, failure.record_id) for failure in failures}
        applier.unstamped = {failure.record_id for failure in failures if failure.operation == "stamp"}
        await add_due_failures(store, self.invoiced, self.keap, changes, dry_run=dry_run)
        moved_sources = await self._add_intent_sources(flow, changes, applier)
        report.counts["read.invoiced"] = len(changes.invoiced)
        report.counts["read.keap"] = len(changes.keap)

        moved = self._moved_links(name, changes)
        removed: dict[int, tuple[Link, Side]] = {
            link.id: (link, "invoiced") for link in store.find_links(name, "invoiced", changes.removed_invoiced).values()}
        for link in store.find_links(name, "keap", changes.removed_keap).values():
            removed.setdefault(link.id, (link, "keap"))
        by_invoiced = store.find_links(name, "invoiced", [i for i in changes.invoiced if i not in changes.removed_invoiced])
        by_keap = store.find_links(name, "keap", changes.keap)
        pairs = {link.id: link for link in (*by_invoiced.values(), *by_keap.values()) if link.id not in removed}
        work = [await self._plan(flow, link, changes, rebaseline) for link in pairs.values()]
        links = len(store.active_link_ids(name))
        self._check_breaker(name, links=links, updates=sum(1 for w in work if w.plan.write_count),
                            deletes=0 if self.options.flow_options(name).deletes == "ignore" else len(removed))
        if moved:  # closed by a type change: counted as unlinks of the flow they leave (see `deletes`)
            left = moved[0].flow
            self._check_breaker(left, links=len(store.active_link_ids(left)), deletes=len(moved), updates=0)

        await self._carry_over(flow, moved, read, report, run_id, dry_run)
        for link in moved:
            applier.close(link, f"type changed: customer {link.invoiced_id} moved to {name}")
        for link, gone in removed.values():
            await applier.remove(link, gone=gone, reason="deleted or merged in Invoiced" if gone == "invoiced" else "not found in Keap (404)")
        if moved_sources:
            await self._close_moved_twins(flow, changes, moved_sources, applier)
        applier.commit()
        for done, batch in enumerate(chunks(work, self.options.batch_size)):
            applier.record_conflicts(batch)
            await applier.each(batch, applier.sync_pair)
            await applier.commit_and_stamp()
            self._batch_done(Progress(name, "pairs", min((done + 1) * self.options.batch_size, len(work)), len(work)))

        linked_keap = {link.keap_id for link in by_keap.values()}
        unlinked = [record for record_id, record in changes.invoiced.items()
                    if record_id not in by_invoiced and record_id not in changes.removed_invoiced]
        if unlinked:
            linked_keap |= await self._match_and_create(flow, changes, unlinked, applier)
        unlinked_keap = [record for record_id, record in changes.keap.items() if record_id not in linked_keap]
        if unlinked_keap:
            await self._keap_unlinked(flow, unlinked_keap, applier)
        applier.commit()
        if not dry_run:
            with store.transaction() as tx:
                for stream, value in changes.watermarks.items():
                    tx.set_watermark(stream, value)

    async def _plan(self, flow: Flow, link: Link, changes: FlowChanges, rebaseline: bool = False) -> PairWork:
        """The pair's plan: changed records as read, the other side from its stored record (or a GET);
        `rebaseline` plans without the shadows, as on first link."""
        current: dict[Side, Record] = {}
        for side, changed, record_id in (("invoiced", changes.invoiced, link.invoiced_id), ("keap", changes.keap, link.keap_id)):
            record = changed.get(record_id) or stored_record(link, side)  # type: ignore[arg-type]
            current[side] = record if record is not None else await self._get(flow, side, record_id)  # type: ignore[index]
        shadows = None if rebaseline else link_shadows(link)
        plan = plan_pair(flow, shadows, current["invoiced"], current["keap"], self.options.flow_options(flow.name).policy)
        return PairWork(link, current["invoiced"], current["keap"], plan)

    async def _match_and_create(self, flow: Flow, changes: FlowChanges, unlinked: list[Record], applier: Applier) -> set[str]:
        """Link, review or create each unlinked Invoiced record; returns the Keap ids linked now."""
        name, stream = flow.name, KEAP_STREAMS[flow.name]
        keap_records = (list(changes.keap.values()) if changes.keap_full
                        else [record async for record in self.keap.list_all(stream)])
        index = build_index(name, keap_records, self.store.active_link_ids(name).values())
        keap_by_id = {str(record["id"]): record for record in keap_records}
        adopting = {intent.source_id for intent in self.store.intents(name) if intent.source_side == "invoiced"}
        decisions = match_all(index, unlinked, adopting=adopting, rejected=self.store.create_decisions(name))
        self.progress(Progress(name, "matched", len(decisions), len(unlinked)))
        invoiced_by_id = {str(record["id"]): record for record in unlinked}
        policy = self.options.flow_options(name).policy
        in_review = {item.invoiced_id for item in self.store.review_items(name)}
        claimed: set[str] = set()
        to_create: list[Record] = []
        to_link: list[tuple[Record, Record]] = []
        for decision in decisions:
            record = invoiced_by_id[decision.invoiced_id]
            if decision.action == "review":
                claimed.update(decision.candidates)
                applier.report.add(Action(name, "review", "invoiced", decision.invoiced_id, {"candidates": list(decision.candidates)}), "review")
                reason = f"{len(decision.candidates)} Keap records match {decision.key[0]} {decision.key[1]!r}" if decision.key else "ambiguous"
                applier.pending.append(lambda tx, d=decision, r=reason: tx.add_review_item(name, d.invoiced_id, d.candidates, r))
                continue
            if decision.invoiced_id in in_review:
                applier.pending.append(lambda tx, d=decision: tx.resolve_review_item(name, d.invoiced_id, d.action))
            if decision.action == "link":
                assert decision.keap_id is not None
                claimed.add(decision.keap_id)
                to_link.append((record, keap_by_id[decision.keap_id]))
            else:
                to_create.append(record)
        for done, batch in enumerate(chunks(to_link, self.options.batch_size)):
            await applier.each(batch, lambda pair: applier.link_pair(*pair, plan_pair(flow, None, *pair, policy)))
            await applier.commit_and_stamp()
            self._batch_done(Progress(name, "links", min((done + 1) * self.options.batch_size, len(to_link)), len(to_link)))
        for done, batch in enumerate(chunks(to_create, self.options.batch_size)):
            intents = applier.open_intents("invoiced", ((str(r["id"]), _intent_key(name, r)) for r in batch))
            await applier.each(batch, lambda record: applier.create_twin("invoiced", record, intents.get(str(record["id"]))))
            await applier.commit_and_stamp()
            self._batch_done(Progress(name, "creates", min((done + 1) * self.options.batch_size, len(to_create)), len(to_create)))
        return claimed

    async def _keap_unlinked(self, flow: Flow, records: list[Record], applier: Applier) -> None:
        """Keap records with no link: Invoiced twins when the flow creates in Invoiced, else counted."""
        still = [r for r in records if str(r["id"]) not in self.store.find_links(flow.name, "keap", [str(r["id"]) for r in records])]
        if not self.options.flow_options(flow.name).create_in_invoiced:
            applier.report.counts["unlinked.keap"] += len(still)
            return
        for batch in chunks(still, self.options.batch_size):
            intents = applier.open_intents("keap", ((str(r["id"]), None) for r in batch))
            await applier.each(batch, lambda record: applier.create_twin("keap", record, intents.get(str(record["id"]))))
            applier.commit()

    def _moved_links(self, name: str, changes: FlowChanges) -> list[Link]:
        """Links in the other customer flow of customers that now belong to this one (type changed)."""
        if name not in CUSTOMER_FLOWS:
            return []
        other = next(flow for flow in CUSTOMER_FLOWS if flow != name)
        return list(self.store.find_links(other, "invoiced", changes.invoiced).values())

    async def _carry_over(self, flow: Flow, moved: list[Link], read: dict[str, FlowChanges], report: FlowReport,
                          run_id: int | None, dry_run: bool) -> None:
        """Sync the moved links' old pairs one last time where this pass read their Keap twin changed: the edit
        was made while they were linked. Planned as any pair (an Invoiced edit of the same group is a conflict),
        but only Invoiced is written: the old twin is left alone. The customers written are read again for
        this flow, whose own read is older than those writes (and may share their second)."""
        if not moved:
            return
        old = self.options.flows[moved[0].flow]
        twins = read[old.name].keap if old.name in read else {}
        customers = read[flow.name].invoiced
        work = []
        for link in (link for link in moved if link.keap_id in twins):
            pair = FlowChanges(old.name, keap={link.keap_id: twins[link.keap_id]})
            if link.invoiced_id in customers:
                pair.invoiced[link.invoiced_id] = customers[link.invoiced_id]
            planned = await self._plan(old, link, pair)
            work.append(replace(planned, plan=replace(planned.plan, keap_writes={})))
        applier = self._applier(old, report, run_id, dry_run)
        applier.record_conflicts(work)
        await applier.each(work, applier.sync_pair)
        applier.commit()
        for written in (w.link.invoiced_id for w in work if w.plan.writes("invoiced") and not dry_run):
            try:
                read[flow.name].invoiced[written] = await self._get(flow, "invoiced", written)
            except NotFound:
                pass  # deleted since it was read: its removal event arrives on a later pass

    async def _add_intent_sources(self, flow: Flow, changes: FlowChanges, applier: Applier) -> list[Record]:
        """Bring the source records of open intents (a create cut short) into the pass to finish or adopt;
        answers the sources that moved to the other customer flow since (see `_close_moved_twins`)."""
        moved: list[Record] = []
        for intent in self.store.intents(flow.name):
            source: Side = intent.source_side  # type: ignore[assignment]
            records = changes.invoiced if source == "invoiced" else changes.keap
            if intent.source_id in records:
                continue
            if self.store.find_link(flow.name, source, intent.source_id) is not None:
                applier.pending.append(lambda tx, i=intent: tx.close_intent(flow.name, i.source_side, i.source_id))  # type: ignore[arg-type]
                continue
            try:
                record: Record | None = await self._get(flow, source, intent.source_id)
            except NotFound:
                record = None
            if record is not None and source == "invoiced" and flow.name in CUSTOMER_FLOWS and flow_for_customer(record) != flow.name:
                moved.append(record)
                continue
            if record is None:
                applier.pending.append(lambda tx, i=intent: tx.close_intent(flow.name, i.source_side, i.source_id))  # type: ignore[arg-type]
                continue
            records[intent.source_id] = record
        return moved

    async def _close_moved_twins(self, flow: Flow, changes: FlowChanges, moved: list[Record], applier: Applier) -> None:
        """Creates cut short whose customer then moved to the other customer flow: the twin one may have made is
        found as an adoption would find it, and kept as a link the type change closed (known, not a duplicate,
        and left alone, like the twin of a linked customer that moved); the intents close either way."""
        stream = KEAP_STREAMS[flow.name]
        keap_records = list(changes.keap.values()) if changes.keap_full else [r async for r in self.keap.list_all(stream)]
        index = build_index(flow.name, keap_records, self.store.active_link_ids(flow.name).values())
        keap_by_id = {str(record["id"]): record for record in keap_records}
        for record, decision in zip(moved, match_all(index, moved, adopting={str(r["id"]) for r in moved}), strict=True):
            twin = keap_by_id[decision.keap_id] if decision.action == "link" and decision.keap_id else None
            applier.moved_twin(record, twin, f"type changed: customer {record['id']} moved to {flow_for_customer(record)}")

    # --- helpers -----------------------------------------------------------------------------------
    async def _get(self, flow: Flow, side: Side, record_id: str) -> Record:
        if side == "invoiced":
            return await self.invoiced.get(INVOICED_RESOURCES[flow.name], record_id)
        stream = KEAP_STREAMS[flow.name]
        return await self.keap.get(stream, record_id, fields=stream.fields)

    def _applier(self, flow: Flow, report: FlowReport, run_id: int | None, dry_run: bool) -> Applier:
        return Applier(flow, self.options.flow_options(flow.name), self.store, self.invoiced, self.keap, report,
                       run_id, dry_run, self.options.concurrency, should_stop=lambda: self.stop_requested)

    def _check_breaker(self, name: str, *, links: int, deletes: int, updates: int) -> None:
        check_breaker(name, self.options.breaker, links=links, deletes=deletes, updates=updates,
                      allowed=self.options.allow_mass_change)

    def _flow_names(self, flows: Iterable[str] | None) -> list[str]:
        names = list(self.options.flows) if flows is None else list(dict.fromkeys(flows))
        unknown = set(names) - set(self.options.flows)
        if unknown:
            raise ValueError(f"unknown flow(s): {sorted(unknown)}; expected {sorted(self.options.flows)}")
        return names

    def _locks(self, names: Sequence[str]) -> ExitStack:
        """Hold every flow of the run (in name order, so two runs never wait on each other crosswise)."""
        stack = ExitStack()
        try:
            self._leases = [stack.enter_context(self.store.flow_lock(name)) for name in sorted(names)]
        except BaseException:
            stack.close()
            raise
        return stack

    def _batch_done(self, progress: Progress) -> None:
        """After each committed batch: keep the flow locks and tell the progress hook."""
        for lease in self._leases:
            lease.renew()
        self.progress(progress)

    def _calls(self) -> dict[str, int]:
        return {"invoiced": self.invoiced.calls.total, "keap": self.keap.stats.total}

    def _finish(self, report: RunReport, calls_before: dict[str, int]) -> RunReport:
        report.api_calls = {system: total - calls_before[system] for system, total in self._calls().items()}
        status = self.store.status_counts()
        names = list(report.flows)
        report.open_failures = sum(count for flow, count in status.open_failures.items() if flow in names)
        report.open_review = sum(count for flow, count in status.open_review_items.items() if flow in names)
        if report.run_id is not None:
            result = "error" if report.exit_code == 1 else "ok" if report.exit_code == 0 else "attention"
            self.store.finish_run(report.run_id, result, {**report.counts(), "api_calls": report.api_calls})
        return report


def _intent_key(flow: str, record: Record) -> str | None:
    key = match_key_of(flow, record)
    return f"{key[0]}:{key[1]}" if key else None

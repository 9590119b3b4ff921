"""The pass skeleton: under the flows' locks, read, plan each flow, let the breaker judge the plan, apply it.

    syncer = Syncer(store, invoiced, keap, SyncOptions(...), progress=hook)
    report = await syncer.sync(["companies"], dry_run=False)    # RunReport; report.exit_code (then what customers owe)
    await syncer.retry()       # every open failure due now, then a pass
    await syncer.reconcile()   # full id scans for deletes without hooks (own schedule, e.g. daily)
    await syncer.relink()      # rebuild links from the Keap ids stamped in Invoiced metadata (products: by sku),
                               # then settle the relinked pairs that differ as `verify --repair` does
    await syncer.sync_ids("companies", invoiced_ids=["12"], keap_ids=["34"])   # webhooks, `verify --repair`
    reads = syncer.batch_reads_for({"contacts": ["34"], "company_contacts": ["34"]})   # a webhook batch's flows
    await syncer.sync_ids("contacts", keap_ids=["34"], keap_reads=reads)   # ... share one Keap read by id
    syncer.request_stop()      # from a signal handler: the records in hand finish, the rest waits

Every kind of pass runs the same skeleton (`_pass`): a run row, the locks of its flows (a flow another
worker holds is skipped alone, with who holds it in its report), then per flow a `FlowPlan`
(`planner.Planner.plan`; for a reconcile, the links whose record is gone), judged by the circuit breaker
(`deletes.check_breaker`: over the limit, nothing of the flow is written), then printed (`dry_run`: the
report carries the plan's actions and counts, and nothing is written: no run row, no flow lock) or applied
(`apply.Applier`), and the flow's watermarks committed after everything they cover. A `FatalError`, or an
API error that escapes the writes' failure handling (a read still failing after its retries), ends the
pass cleanly with `report.error` (exit 1): what was done stays committed, the marks of the unfinished
flow do not move. `request_stop` makes the pass start no further record; its marks stay unmoved.

`sync_ids` is a pass over named records only (`changes.read_ids`: no watermark moves; a Keap 404 is a
believed delete; the passes of one webhook batch read Keap by id once per object: `batch_reads`); with `repair` its
pairs that drifted (both sides equal their shadows, yet they disagree) are
settled by the conflict policy too, which is how `verify --repair` works.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import ExitStack

from invoiced_keap.connectors.errors import ApiError, CallAbandoned
from invoiced_keap.connectors.invoiced import InvoicedConnector
from invoiced_keap.connectors.keap import KeapConnector
from invoiced_keap.engine.apply import Applier, KeapIdLinked, PassStopped
from invoiced_keap.engine.batch_reads import BatchReads
from invoiced_keap.engine.changes import (
    FlowChanges,
    ParentTwins,
    PassEvents,
    event_marks,
    every_record,
    read_changes,
    read_children,
    read_events,
    read_ids,
)
from invoiced_keap.engine.deletes import CircuitBreakerTripped, check_breaker, find_gone, keap_ids
from invoiced_keap.engine.keap_account import KeapAccount
from invoiced_keap.engine.match import relink_pairs
from invoiced_keap.engine.options import SyncOptions
from invoiced_keap.engine.owed import OwedStep
from invoiced_keap.engine.plan import disagreements
from invoiced_keap.engine.planner import FlowPlan, Planner, Removal
from invoiced_keap.engine.report import Action, FlowReport, Progress, ProgressHook, RunReport, no_progress
from invoiced_keap.engine.shadows import snapshot
from invoiced_keap.engine.spool import RecordSpool
from invoiced_keap.flows import Flow, Side, sharing_keap_object
from invoiced_keap.logs import log_event
from invoiced_keap.state import FlowLease, FlowLockHeld, FlowLockLost, NewLink, Store

# What ends a pass early (reported, not raised): writes turn their own API errors into failures, so an
# `ApiError` here is a read that could not be done (or a `FatalError`); `KeapIdLinked`, a state that probably belongs
# to another Keap account; the next pass starts over from the marks.
PASS_ENDING = (ApiError, FlowLockLost, KeapIdLinked)
RELINK_BATCH = 1_000
"""Links `relink` adds in one statement (`Store.add_links`): it holds this many pairs' records at a time."""
FlowsWork = Callable[[list[Flow], RunReport], Awaitable[None]]
logger = logging.getLogger("invoiced_keap.events")


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
        on_planned: Callable[[Action], None] | None = None,
    ) -> None:
        """`on_planned` takes every action a dry run plans, in order, as it is planned (the CLI prints them: a plan
        of 100,000 creates is never held whole); the report keeps the first of each verb either way."""
        self.store = store
        self.invoiced = invoiced
        self.keap = keap
        self.options = options or SyncOptions()
        self.progress = progress
        self.on_planned = on_planned
        self.planner = Planner(store, invoiced, keap, dict(self.options.flows),
                               {name: self.options.flow_options(name) for name in self.options.flows},
                               lambda note: self.progress(note))  # `progress` may be replaced (the service watches it)
        self._leases: list[FlowLease] = []
        self.stop_requested = False
        self.last_events: PassEvents | None = None  # the Invoiced events the last `sync` pass read (`run` watches them)
        self.account = KeapAccount(store)  # every Keap response, passes' and others' (the service's hooks), is checked
        self.account.expect(record=False)
        keap.api.check_response = self.account.check

    # --- entry points ------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Start no further record, and abandon calls still waiting for their turn under the pacers (nothing of
        them was sent); the pass in hand commits what it did and ends (see the module docstring)."""
        self.stop_requested = True
        self.invoiced.api.pacer.stop()
        self.keap.api.pacer.stop()

    async def sync(self, flows: Iterable[str] | None = None, *, dry_run: bool = False, read_keap: bool = True,
                   read_invoiced: bool = True) -> RunReport:
        """One pass over `flows` (all by default); `dry_run` plans and prints, and writes nothing; without
        `read_keap` Keap's changes are not read, without `read_invoiced` those Invoiced's webhook delivers are not
        (`changes.read_changes`)."""

        async def work(held: list[Flow], report: RunReport) -> None:
            owed = self._owed()
            events = self.last_events = await read_events(self.store, self.invoiced, [*event_marks(held), *owed.marks(held)])
            changes = await read_changes(self.store, self.invoiced, self.keap, held, self.progress, read_keap=read_keap,
                                         read_invoiced=read_invoiced, events=events)
            await self._plan_and_apply(held, changes, report, dry_run=dry_run, events=events)
            await owed.run(held, events, report, dry_run=dry_run)

        return await self._pass("sync", flows, work, dry_run=dry_run)

    def _owed(self) -> OwedStep:
        """The step that tells Keap what customers owe (`engine.owed`), for one pass."""
        return OwedStep(self.store, self.invoiced, self.keap, self.options.receivables, self.options.keap_currency,
                        concurrency=self.options.concurrency, batch_size=self.options.batch_size)

    async def sync_ids(
        self,
        flow: str,
        *,
        invoiced_ids: Iterable[str] = (),
        keap_ids: Iterable[str] = (),
        removed_invoiced: Iterable[str] = (),
        repair: bool = False,
        keap_reads: BatchReads | None = None,
    ) -> RunReport:
        """A pass over the named records of one flow only (webhooks, `verify --repair`); marks stay put.

        `removed_invoiced` are believed deletes (signed Invoiced events); `repair` settles the pairs
        that drifted by the conflict policy (`plan.plan_pair`). `keap_reads`: the Keap reads by id of a batch of
        such passes (`batch_reads_for`), shared by its flows on one Keap object.
        """

        async def work(held: list[Flow], report: RunReport) -> None:
            changes = {one.name: await read_ids(self.store, one, self.invoiced, self.keap, invoiced_ids=invoiced_ids,
                                                keap_ids=keap_ids, removed_invoiced=removed_invoiced,
                                                should_stop=lambda: self.stop_requested, shared=keap_reads)
                       for one in held}
            await self._plan_and_apply(held, changes, report, repair=repair)
            await self._owed().settle(held, report)  # a twin made now gets its figures now

        return await self._pass("sync_ids", [flow], work)

    def batch_reads_for(self, keap_ids: Mapping[str, Iterable[str]]) -> BatchReads:
        """For a batch of `sync_ids` passes naming `keap_ids` (by flow): one Keap read by id per object, shared by
        the batch's flows on it (`engine.batch_reads`); hand it to each pass as `keap_reads`."""
        return BatchReads(self.options.flows, keap_ids)

    async def retry(self, flows: Iterable[str] | None = None, *, failure_id: int | None = None) -> RunReport:
        """Make open failures due now, then run a pass (the `retry` command): the one `failure_id` (a pass
        over its flow only; LookupError if it is not open), else every failure of `flows`."""
        if failure_id is not None:
            flows = [self.store.retry_failure_now(failure_id).flow]
        else:
            for flow in self._flows(flows):
                self.store.retry_failures_now(flow.name)
        return await self.sync(flows)

    async def reconcile(self, flows: Iterable[str] | None = None, *, dry_run: bool = False) -> RunReport:
        """Find deletes no event or hook told us about (full id scans; see `deletes.find_gone`), and for a nested
        flow the links of records whose parent has no link any more (`ParentTwins.orphaned`: closed by a pass that
        did not close theirs); each flow done is noted (`Store.mark_reconciled`) for the schedule
        (`Store.reconcile_due`)."""

        async def work(held: list[Flow], report: RunReport) -> None:
            listed: dict[str, set[str]] = {}  # Keap object -> its ids: one listing for both contact flows
            for flow in held:
                links = self.store.active_link_ids(flow.name)
                orphans = ParentTwins.load(self.store, flow.parent).orphaned(links) if flow.parent else {}
                if flow.keap.name not in listed:  # an object that takes `fields` lists ids only: no page to size
                    longest = 0 if flow.keap.takes_fields else self.store.longest_recent_record([flow.name], "keap")
                    listed[flow.keap.name] = await keap_ids(self.keap, flow.keap, longest)
                rest = {invoiced_id: keap_id for invoiced_id, keap_id in links.items() if invoiced_id not in orphans}
                gone: list[tuple[str, Side, str]] = [
                    *((invoiced_id, "invoiced", why) for invoiced_id, why in orphans.items()),
                    *((invoiced_id, side, f"not found in {side} (reconcile)")
                      for invoiced_id, side in await find_gone(flow, rest, self.invoiced, self.keap, listed[flow.keap.name]))]
                found = self.store.find_links(flow.name, "invoiced", [invoiced_id for invoiced_id, _, _ in gone])
                plan = FlowPlan(flow, self.options.flow_options(flow.name).deletes, links=len(links), removals=[
                    Removal(found[invoiced_id], side, why) for invoiced_id, side, why in gone])
                if await self._judge_and_apply(plan, report, dry_run=dry_run) and not dry_run:
                    self.store.mark_reconciled(flow.name)
            if not dry_run:  # the failures of records unlinked now close now; Keap is looked at as the scans do
                await self._owed().settle(held, report, look=True)

        return await self._pass("reconcile", flows, work, dry_run=dry_run)

    async def relink(self, flows: Iterable[str] | None = None) -> RunReport:
        """Rebuild lost links (one full listing per side): from the Keap ids stamped in Invoiced metadata, or for a
        flow that stamps none, from its first match key (`relink_pairs`).

        Shadows are taken from both records as they are now. A pair whose sides disagree (`plan.disagreements`: an
        edit made while the state was lost, which no later pass would see, as neither side differs from its
        shadow) is then settled as `verify --repair` settles drift (`_plan_and_apply` with `repair`, on the records
        in hand: no further read): by the conflict policy, `newest` taking the side whose record was updated later,
        each recorded as a conflict; counted as `linked.differing`. Should the circuit breaker hold them, they stay
        linked as they are and the flow's error says how to settle them. Records already linked are left alone.
        The listings are spooled to disk (`RecordSpool`), the links added `RELINK_BATCH` at a time, the records of
        pairs that differ spooled for their pass: what the pass holds is ids.
        """

        async def work(held: list[Flow], report: RunReport) -> None:
            with ExitStack() as spools:
                listings: dict[str, RecordSpool] = {}
                for flow in held:
                    parents = ParentTwins.load(self.store, flow.parent) if flow.parent else None
                    if flow.invoiced.name not in listings:
                        listings[flow.invoiced.name] = spools.enter_context(RecordSpool())
                        async for record in every_record(self.invoiced, flow, parents):
                            listings[flow.invoiced.name][str(record["id"])] = record
                    invoiced = listings[flow.invoiced.name]
                    linked = self.store.active_link_ids(flow.name)
                    unlinked = [record_id for record_id, record in invoiced.items()
                                if flow.belongs(record) and record_id not in linked]
                    differing = FlowChanges(flow.name, RecordSpool(), RecordSpool(), parents=parents)
                    spools.callback(differing.close)
                    with RecordSpool() as keap:
                        if unlinked:
                            async for record in self.keap.list_all(flow.keap, fields=flow.keap_fields):
                                keap[str(record["id"])] = record
                        taken = {keap_id for other in sharing_keap_object(flow, self.options.flows)
                                 for keap_id in self.store.active_link_ids(other.name).values()}
                        pairs = relink_pairs(flow, (invoiced[record_id] for record_id in unlinked), keap, taken)
                        for start in range(0, len(pairs), RELINK_BATCH):
                            batch = pairs[start:start + RELINK_BATCH]
                            self.store.add_links(flow.name, [
                                NewLink(invoiced_id, keap_id, snapshot(flow, "invoiced", invoiced[invoiced_id]),
                                        snapshot(flow, "keap", keap[keap_id]))
                                for invoiced_id, keap_id in batch])
                            for invoiced_id, keap_id in batch:
                                if disagreements(flow, invoiced[invoiced_id], keap[keap_id]):
                                    differing.invoiced[invoiced_id] = invoiced[invoiced_id]
                                    differing.keap[keap_id] = parents.of("keap", keap[keap_id]) if parents else keap[keap_id]
                    settled = len(differing.invoiced)
                    if settled:
                        await self._plan_and_apply([flow], {flow.name: differing}, report, repair=True)
                    flow_report = report.flows.setdefault(flow.name, FlowReport(flow.name))
                    flow_report.counts["linked"] = len(pairs)
                    if settled:
                        flow_report.counts["linked.differing"] = settled
                    if flow_report.held:
                        flow_report.error = flow_report.held = (
                            f"{flow.name}: circuit breaker: {settled:,} of the {len(pairs):,} relinked pairs differ "
                            f"(limit {self.options.breaker.update_limit(self.store.count_links(flow.name)):,}); they "
                            "stay linked as they are and nothing was written to them. Check both systems, then run "
                            "`invoiced-keap verify --repair --allow-mass-change`: it settles them as relink would.")

        return await self._pass("relink", flows, work)

    # --- the skeleton ------------------------------------------------------------------------------
    async def _pass(self, kind: str, flows: Iterable[str] | None, work: FlowsWork, *, dry_run: bool = False) -> RunReport:
        """Run `work` over the flows whose locks this worker gets (see the module docstring); a `pass.started`
        and a `pass.finished` event frame it."""
        chosen = self._flows(flows)
        run_id = None if dry_run else self.store.start_run([flow.name for flow in chosen], dry_run=False).id
        report = RunReport(run_id, dry_run, kind=kind)
        calls_before, started = self._calls(), time.monotonic()
        self.account.expect(record=not dry_run)
        log_event(logger, "pass.started", kind=kind, run_id=run_id, flows=[flow.name for flow in chosen], dry_run=dry_run)
        try:
            with ExitStack() as stack:
                held = chosen if dry_run else self._lock(chosen, stack, report)  # a dry run writes nothing: no locks
                if held:
                    await work(held, report)
        except PASS_ENDING as error:
            report.error, report.cause = str(error), error
        except (PassStopped, CallAbandoned):
            report.error = "stopped on request before the end; the next pass carries on"
        self._finish(report, calls_before)
        log_event(logger, "pass.finished", logging.WARNING if report.exit_code == 1 else logging.INFO, kind=kind,
                  run_id=run_id, exit_code=report.exit_code, seconds=round(time.monotonic() - started, 3),
                  counts=report.counts(), api_calls=report.api_calls, error=report.error,
                  flow_errors={name: flow.error for name, flow in report.flows.items() if flow.error} or None)
        return report

    def _lock(self, flows: list[Flow], stack: ExitStack, report: RunReport) -> list[Flow]:
        """Take each flow's lock (in name order, so two runs never wait on each other crosswise); a flow another
        worker holds is skipped alone, its report saying who holds it."""
        held, self._leases = [], []
        for flow in sorted(flows, key=lambda one: one.name):
            try:
                self._leases.append(stack.enter_context(self.store.flow_lock(flow.name)))
            except FlowLockHeld as refused:
                report.flows[flow.name] = FlowReport(flow.name, error=str(refused))
                continue
            held.append(flow)
        return [flow for flow in flows if flow in held]

    async def _plan_and_apply(self, flows: list[Flow], changes: dict[str, FlowChanges], report: RunReport,
                              *, dry_run: bool = False, repair: bool = False, events: PassEvents | None = None) -> None:
        """Plan, judge and apply each flow in turn (a nested flow reads its records once its parent flow is done:
        `read_children`), then remove what the pass spooled (`FlowChanges.close`)."""
        try:
            for flow in flows:
                if flow.parent is not None and events is not None:
                    await read_children(self.store, self.invoiced, flow, changes[flow.name], events)
                plan = await self.planner.plan(flow, changes, repair=repair)
                if await self._judge_and_apply(plan, report, dry_run=dry_run) and not dry_run and plan.watermarks:
                    with self.store.transaction() as tx:
                        for mark, value in plan.watermarks.items():
                            tx.set_watermark(mark, value)
        finally:
            for flow_changes in changes.values():
                flow_changes.close()

    async def _judge_and_apply(self, plan: FlowPlan, report: RunReport, *, dry_run: bool) -> bool:
        """Breaker, then print (dry run) or apply; False when the breaker stopped the flow."""
        name = plan.flow.name
        flow_report = report.flows[name] = FlowReport(name)
        try:
            self._check_breaker(name, links=plan.links, updates=plan.updates, deletes=plan.deletes_counted)
            if plan.moves:  # closed by a type change: counted as unlinks of the flow they leave (see `deletes`)
                self._check_breaker(plan.moves[0].flow, links=plan.moved_from_links, deletes=len(plan.moves), updates=0)
        except CircuitBreakerTripped as error:
            flow_report.error = flow_report.held = str(error)
            flow_report.held_deletes = error.deletes
            return False
        if dry_run:
            flow_report.counts = +plan.uncounted()
            async for action in plan.actions():
                flow_report.note(action)
                if self.on_planned is not None:
                    self.on_planned(action)
            flow_report.unplanned = self._unplanned(plan.flow, report)
            return True
        options = self.options.flow_options(name)
        applier = Applier(plan.flow, self.store, self.invoiced, self.keap, flow_report, report.run_id, options.deletes,
                          self.options.concurrency, self.options.batch_size,
                          should_stop=lambda: self.stop_requested, on_batch=self._batch_done)
        await applier.apply(plan)
        return True

    # --- helpers -----------------------------------------------------------------------------------
    @staticmethod
    def _unplanned(flow: Flow, report: RunReport) -> str | None:
        """What a dry run cannot plan for a nested flow: the children of parents its parent flow would link now (they
        are read once their parent is linked, by the pass that links it)."""
        parent = report.flows.get(flow.parent.flow) if flow.parent is not None else None
        if parent is None:
            return None
        linked = parent.counts["created.keap"] + parent.counts["linked"]
        if not linked:
            return None
        return (f"{flow.name}: the records under the {linked:,} {flow.parent.flow} this pass would link are not in "
                f"this plan: they are read once their parent is linked, by the pass that links it")

    def _check_breaker(self, name: str, *, links: int, deletes: int, updates: int) -> None:
        check_breaker(name, self.options.breaker, links=links, deletes=deletes, updates=updates,
                      allowed=self.options.allow_mass_change)

    def _flows(self, names: Iterable[str] | None) -> list[Flow]:
        chosen = set(self.options.flows) if names is None else set(names)
        unknown = chosen - set(self.options.flows)
        if unknown:
            raise ValueError(f"unknown flow(s): {sorted(unknown)}; expected {sorted(self.options.flows)}")
        return [flow for name, flow in self.options.flows.items() if name in chosen]  # catalogue order: parents first

    def _batch_done(self, progress: Progress) -> None:
        """After each committed batch: check the flow locks still hold and tell the progress hook."""
        for lease in self._leases:
            lease.check()
        self.progress(progress)

    def _calls(self) -> dict[str, int]:
        return {"invoiced": self.invoiced.calls.total, "keap": self.keap.stats.total}

    def _finish(self, report: RunReport, calls_before: dict[str, int]) -> None:
        report.api_calls = {system: total - calls_before[system] for system, total in self._calls().items()}
        names = list(report.flows)
        if report.dry_run:  # nothing was written: the lists as the plan would leave them
            review = {(item.flow, "invoiced", item.invoiced_id) for item in self.store.review_items() if item.flow in names}
            failures = {(failure.flow, failure.side, failure.record_id) for failure in self.store.failures()
                        if failure.flow in names and failure.dismissed_at is None}
            report.open_review = len(review.union(*(flow.listed["review"] for flow in report.flows.values())))
            report.open_failures = len(failures.union(*(flow.listed["refuse"] for flow in report.flows.values())))
        else:
            self.store.refresh_statistics()
            status = self.store.status_counts()
            report.open_failures = sum(count for flow, count in status.open_failures.items() if flow in names)
            report.open_review = sum(count for flow, count in status.open_review_items.items() if flow in names)
        if report.run_id is not None:
            result = "error" if report.exit_code == 1 else "ok" if report.exit_code == 0 else "attention"
            self.store.finish_run(report.run_id, result, {**report.counts(), "api_calls": report.api_calls})

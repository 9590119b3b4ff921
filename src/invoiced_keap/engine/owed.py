"""The pass's step that tells Keap what customers owe: the imperative shell around `engine.receivables`.

    step = OwedStep(store, invoiced, keap, options.receivables, options.keap_currency, concurrency=8)
    await step.run(held_flows, pass_events, report, dry_run=False)

Once the flows of a pass are applied, for the customer flows it holds (organisations -> Keap companies, people ->
Keap contacts: the flows whose Invoiced resource is the customer):

1. **Who.** The customers the pass's events name since the step's own cursor (`receivables.events`; invoice,
   payment and credit note events name their customer; a merge names the survivor; a customer deleted or merged
   away is read no more, its row kept only while its Keap record has yet to be cleared),
   and the customers with open invoices whose figures were read a day ago or longer (aging moves with time; a
   customer with nothing open has nothing to age). Without a cursor (the first pass, or the feature just turned
   on) the account's open invoices are listed once (100 a page) and every customer with one is named: customers
   with nothing open get their figures with their next invoice or payment event.
2. **Read.** Per customer named, one listing of its open invoices (one page per 100) and, where a payment event
   named it (or nothing is known of it yet), its latest payment: `receivables.owed` makes its figures. (Invoiced's
   balance endpoint, `GET /customers/{id}/balance`, gives the outstanding total in one currency and whether
   anything is past due, not the amount past due, the due dates or the count: it could only add a call.) The figures
   and the cursor commit together; a customer whose figures differ from what its Keap record was last told is
   marked pending.
2b. **Look at Keap.** Once a day (`AUDITED`), every record the sync wrote to is read in bulk with its custom values
   and tags (`receivables_drift`: one listing per 1000 records of the object) and compared with what the sync wrote:
   a record that drifted (a Keap user's or automation's edit of the figures, the tag taken off, a field or the tag
   deleted in Keap) is kept as found and pending, so this pass puts it right (the figures are one-way).
3. **Write.** The pending customers linked in a held flow, and those whose link appeared or moved since their
   figures were written (`Store.receivables_to_write`), minus those whose last refusal is not due for a retry:
   `receivables.decide` says what changes (a customer an event of this pass names is retried at once; a change of
   the settings, `ReceivablesOptions.fingerprint`, marks every customer pending). The custom fields and the tag are found by name, or made, the first time
   they are needed (their ids are kept in the state; a same-named field of another type is left alone, ours made
   as "<label> (invoiced-keap)"; when Keap refuses a write, they are looked for again, made again when deleted in
   Keap, and the write is tried once more in the same pass; with `tag = ""` no tag is looked for, and the tags the
   sync kept ids of come off where it put them). The record's custom values are read first (Keap replaces the
   whole array on a PATCH; contacts: one listing per 100 ids, companies: one listing per run of ids less than
   1000 apart, a company alone in its run by one GET; the pass's own reads do not ask for `custom_fields` and
   hold only records changed since their watermark), then one PATCH with
   `update_mask=custom_fields` where they differ; the tag goes on or off with one call per company, or one per
   100 contacts. A tag the sync put on under a former name (the setting renamed; the state keeps each record's
   tag name) comes off first, the same way, and the configured one goes on once it has. A record whose values
   are read finds the tag gone there (taken off in Keap: contacts' `tag_ids`, companies' `groups` come with the
   values) and gets it back; a tag found deleted in Keap (a call naming it refused) is made again and put back, in
   the same pass, on every record the state says has it. What went through
   commits per batch, with an audit entry; a refusal becomes a failure of the record (operation `receivables`)
   with Keap's words, and the rest goes on.
4. **Records left.** A record the customer's link left for another (a type change, a merge) and a record whose
   customer has no link any more (deleted or merged away in Invoiced and unlinked by the deletes policy
   `unlink`: `Store.receivables_unlinked`) are cleared of the sync's values and tag, once: a refusal is
   reported, not kept as a failure; a record gone (404) has nothing to clear; what Keap could not take for a
   while (or was not tried: the fields or tag not found) is tried by the next pass. With deletes `ignore` the
   link stays, and the record is left as it is.

Keap writes per record: one PATCH of its custom values, and a company's tag one more call (two on a renamed tag):
the v2 spec offers no single write for both (`UpdateCompanyRequest` and `CreateUpdateContactRequest` have no
`tag_ids` or `groups` property, though the `update_mask` enums list them among read-only names like `id` and
`create_time`; tags go on through `POST /v2/companies/{company_id}/tags/{tag_id}` and
`POST /v2/tags/{tag_id}/contacts:applyTags` only), and no partial write of custom values (`custom_fields` is one
property of the mask: the array sent replaces the record's, "Any item not listed here will be removed if it
already exists").

An idle pass (no event, nothing due, nothing pending) makes no call: the events come from the pass's one listing.
A dry run reads the figures and reports what it would write, and writes nothing (state included).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from invoiced_keap.connectors.errors import (
    ApiError, CallAbandoned, FatalError, NotFound, RecordRejected, TransientError,
)
from invoiced_keap.connectors.invoiced import CUSTOMER, InvoicedConnector, removed_customer_id
from invoiced_keap.connectors.keap import CONTACTS, TAGS, KeapConnector, KeapObject, changed_fields
from invoiced_keap.engine.apply import refusal_message
from invoiced_keap.engine.changes import PassEvents
from invoiced_keap.engine.receivables import (
    OPERATION, OWN_SUFFIX, Change, Drift, Figures, ReceivablesOptions, SharedLabel, Wanted, Written, after, decide, drift,
    keap_values, merged_custom_fields, named_by, owed, payment_date,
)
from invoiced_keap.engine.report import Action, FlowReport, RunReport
from invoiced_keap.flows import Flow
from invoiced_keap.logs import log_event
from invoiced_keap.mapping import Record
from invoiced_keap.state import AuditNote, AuditOperation, Store
from invoiced_keap.state.models import Receivable
from invoiced_keap.state.receivables import GONE

STEP = OPERATION
"""The step's name: its report entry (a column next to the flows') and its failures' operation."""
CURSOR = "receivables.events"
RELIST = "receivables.relist"
"""Set (by a migration) when the next pass is to list the account's open invoices once beside the events: what the
state knows of the customers lacks something only such a listing gives (0009: the dates of invoices dated ahead)."""
SETTINGS = "receivables.settings"
"""The settings the written values and tag were made with (`ReceivablesOptions.fingerprint`): a change marks every
customer's record to be looked at again (labels switched, the tag turned off, another account currency)."""
RECOMPUTE_EVERY = timedelta(days=1)
AUDITED = "receivables.audited"
"""When Keap's records were last compared with what the sync wrote there (`OwedStep._audit`), ISO 8601."""
AUDIT_EVERY = timedelta(days=1)
TAG_PROPERTY = {"companies": "groups", "contacts": "tag_ids"}
"""The property a listing or GET of the object names the record's tags by: v2's `Company.groups` ("Comma-delimited
list of tag IDs applied to this company") and `Contact.tag_ids`."""
TAG_DESCRIPTION = "Applied by invoiced-keap while the customer has invoices past due in Invoiced"
T = TypeVar("T")
logger = logging.getLogger("invoiced_keap.events")
BLOCKED = "blocked"
"""The key of a failure's payload naming the labels Keap has no field of ours for (label -> why): such a failure
holds back those labels only; the record's other figures are written meanwhile."""
NOT_SENT = ApiError("not sent: the pass is stopping (the day's quota used up, credentials refused, or a stop asked)")
"""What `_guarded` answers for a call not made, or cut off, once the pass is to stop: nothing of it is counted done."""


@dataclass(frozen=True)
class Job:
    """One Keap record to tell: whose (customer), where (flow and Keap id), what it should show, what it was last
    told (None: nothing, or that went to another record), and the change."""

    customer_id: str
    flow: Flow
    keap_id: str
    wanted: Wanted
    written: Written | None
    change: Change
    left: bool = False  # a record the customer's link left (a merge, a type change): what the sync wrote is taken off
    unlinked: bool = False  # a left record the customer has no link for now: the row forgets it once tried


@dataclass
class Outcome:
    """What of a job's change went through."""

    values_written: bool = False  # the record holds the values sent (written now, or Keap had them already)
    values_sent: bool = False  # a PATCH went through (Keap did not hold them all already)
    sent: dict[str, Any] | None = None  # the values the write covered, by label (None clears)
    tag_written: bool = False
    untag_written: bool = False
    gone: bool = False  # the record is not in Keap (404): nothing of ours is on it
    refused: bool = False  # Keap refused a call for the record (not a 404; not for a while)
    failed: bool = False  # the last bulk tag call for this record was refused
    blocked: tuple[str, ...] = ()  # labels wanted that Keap has no field of ours for (`OwedStep._blocked`)

    def note(self, error: ApiError | None) -> None:
        """What a failed call says of the record: gone (404), or refused."""
        self.gone = self.gone or isinstance(error, NotFound)
        self.refused = self.refused or (isinstance(error, RecordRejected) and not isinstance(error, NotFound))

    def done(self, change: Change) -> bool:
        return ((self.values_written or not change.values) and (self.tag_written or change.tag is None)
                and (self.untag_written or change.untag is None) and not self.blocked)

    def wrote(self) -> bool:
        return self.values_written or self.tag_written or self.untag_written

    def sent_any(self) -> bool:
        """Whether a write went through (a PATCH Keap accepted, a tag call): what is audited and counted."""
        return self.values_sent or self.tag_written or self.untag_written


def written_to(row: Receivable | None, flow: str | None, keap_id: str | None) -> Written | None:
    """What a customer's row says was written to this very record (None: nothing, or to another record)."""
    if row is None or (row.written_flow, row.written_keap_id) != (flow, keap_id):
        return None
    return Written(dict(row.written or {}), row.tagged, row.tag)


class OwedStep:
    """See the module docstring."""

    def __init__(self, store: Store, invoiced: InvoicedConnector, keap: KeapConnector, options: ReceivablesOptions,
                 keap_currency: str, *, concurrency: int = 8, batch_size: int = 200) -> None:
        self.store, self.invoiced, self.keap = store, invoiced, keap
        self.options, self.keap_currency = options, keap_currency
        self.concurrency, self.batch_size = concurrency, batch_size
        self.report = FlowReport(STEP)
        self.run_id: int | None = None
        self.named: set[str] = set()  # customers the pass's events name: their source changed, retried at once
        self._tags_again: dict[tuple[str, bool], asyncio.Future[str | None]] = {}
        self._fields_again: dict[str, asyncio.Future[dict[str, str] | None]] = {}
        self._batch: list[Job] = []
        self._stop: FatalError | CallAbandoned | None = None  # the error that ends the pass once the batch commits
        self._seen: dict[tuple[str, str], Record] = {}  # records the audit read this pass: no second read to write
        self._tags_found: dict[tuple[str, str], set[str]] = {}  # the tags on records read before their writes
        self._remade: dict[str, str] = {}  # tags found deleted in Keap and made again this pass: name -> new id
        self._tagged_now: set[str] = set()  # customers whose record got the configured tag this pass
        self._blocked: dict[str, dict[str, str]] = {}  # object -> label -> why Keap has no field of ours for it

    # --- the step ----------------------------------------------------------------------------------
    def takes_part(self, flows: Iterable[Flow]) -> list[Flow]:
        """The customer flows of `flows` (none while the step is turned off)."""
        return [flow for flow in flows if flow.invoiced is CUSTOMER] if self.options.enabled else []

    def marks(self, flows: Iterable[Flow]) -> list[str]:
        """The step's event cursor, for the pass's one event listing, when it takes part."""
        return [CURSOR] if self.takes_part(flows) else []

    async def run(self, flows: Sequence[Flow], events: PassEvents, report: RunReport, *, dry_run: bool) -> None:
        customer_flows = self.takes_part(flows)
        if not customer_flows:
            return
        self.run_id = report.run_id
        try:
            if not dry_run:
                self._settle_unlinked(customer_flows)
            figures = await self._read(events, dry_run=dry_run)
            if not dry_run and self._audit_due():
                await self._audit(customer_flows)
            await self._write_all(self._jobs(customer_flows, figures, dry_run=dry_run), dry_run=dry_run)
            if self._remade and not dry_run:
                self._retag_remade(customer_flows)
                await self._write_all(self._jobs(customer_flows, {}, dry_run=False), dry_run=False)
        except SharedLabel as refused:  # refused clearly, the pass's exit 1: never two figures in one field
            self.report.error = str(refused)
        finally:
            if self.report.done or self.report.counts or self.report.error:
                report.flows[STEP] = self.report

    async def settle(self, flows: Sequence[Flow], report: RunReport, *, look: bool = False) -> None:
        """For a pass that reads no events (a reconcile, a webhook's or a repair's `sync_ids`): the failures of
        records whose link closed are resolved, and the records to tell now (a link that appeared or moved, figures
        pending; `Store.receivables_to_write`) and those whose link closed with no new one are written, from the
        figures as last read. No call when there is nothing to write. With `look` (a reconcile: full scans, due
        or asked for by `sync --full`), Keap's records are first compared with what the sync wrote (`_audit`),
        whether or not a day has passed."""
        customer_flows = self.takes_part(flows)
        if not customer_flows:
            return
        self.run_id = report.run_id
        try:
            self._settle_unlinked(customer_flows)
            if look:
                await self._audit(customer_flows)
            await self._write_all(self._jobs(customer_flows, {}, dry_run=False), dry_run=False)
            if self._remade:
                self._retag_remade(customer_flows)
                await self._write_all(self._jobs(customer_flows, {}, dry_run=False), dry_run=False)
        finally:
            if self.report.done or self.report.counts or self.report.error:
                report.flows[STEP] = self.report

    async def _write_all(self, jobs: list[Job], *, dry_run: bool) -> None:
        for start in range(0, len(jobs), self.batch_size):
            batch = jobs[start : start + self.batch_size]
            if dry_run:
                for job in batch:
                    self._report_change(job, Outcome(values_written=True, values_sent=True, tag_written=True))
            else:
                await self._write(batch)

    # --- what Keap holds, against what the sync wrote -------------------------------------------------------
    def _audit_due(self) -> bool:
        """Whether the daily comparison of Keap's records with what the sync wrote is due (the first pass only
        starts the clock: nothing was written yet)."""
        now = self.store.clock()
        last = self.store.get_watermark(AUDITED)
        if last is None:
            self.store.set_watermark(AUDITED, now.isoformat())
            return False
        return datetime.fromisoformat(last) <= now - AUDIT_EVERY

    async def _audit(self, flows: Sequence[Flow]) -> None:
        """Once a day: every record the sync wrote to, read in bulk with its custom values and tags (one listing
        per 1000 records of the object), compared with what the sync wrote (`receivables.drift`); a record that
        drifted (a Keap user's or automation's edit of the figures, the tag taken off, a field or the tag deleted
        in Keap) is kept as found and pending, so this pass's writes put it right (the figures are one-way:
        Invoiced's). The records read serve the writes (no second read)."""
        try:
            drifted = await receivables_drift(self.store, self.keap, flows, self.options, seen=self._seen)
        except (RecordRejected, TransientError) as error:  # looked at by the next pass; the writes go on
            if isinstance(error, TransientError):
                self.report.unavailable = error.outage()
            log_event(logger, "receivables.look_failed", logging.WARNING, error=str(error))
            self._seen.clear()
            return
        with self.store.transaction() as tx:
            for found in drifted:
                held = found.drift.held(found.written)
                tx.hold_found(found.customer_id, held.values, held.tagged, held.tag)
            tx.set_watermark(AUDITED, self.store.clock().isoformat())
        if drifted:
            self.report.counts["drift.keap"] += len(drifted)
            for found in drifted:
                log_event(logger, "receivables.drift", logging.WARNING, flow=found.flow, record_id=found.keap_id,
                          customer=found.customer_id, fields=sorted(found.drift.values),
                          tag_missing=found.drift.tag_missing)

    def _retag_remade(self, flows: Sequence[Flow]) -> None:
        """A tag found deleted in Keap and made again this pass: every record the state says has it (but those
        tagged with the new one this pass) is marked untagged and pending, for this pass to tag again."""
        for flow in flows:
            for row in self.store.receivables_written(flow.name):
                name = (row.tag or self.options.tag) if row.tagged else None
                if name in self._remade and row.customer_id not in self._tagged_now:
                    self.store.hold_found(row.customer_id, dict(row.written or {}), False, None)
        self._remade = {}

    def _settle_unlinked(self, flows: Sequence[Flow]) -> None:
        """Resolve the step's open failures on Keap records no longer linked (deleted in Keap, unlinked): nothing
        will write there again (state reads only: no call)."""
        for flow in flows:
            failing = [failure.record_id for failure in self.store.failures(flow.name)
                       if failure.operation == STEP and failure.side == "keap"]
            if not failing:
                continue
            linked = self.store.find_links(flow.name, "keap", failing)
            for record_id in sorted(set(failing) - set(linked)):
                self.store.resolve_operation_failures(flow.name, record_id, STEP)

    # --- 1 and 2: who, and what they owe ------------------------------------------------------------------
    async def _read(self, events: PassEvents, *, dry_run: bool) -> dict[str, Figures]:
        """The figures of the customers to read now (see the module docstring), stored with the cursor."""
        cursor = self.store.get_watermark(CURSOR)
        relist = self.store.get_watermark(RELIST) is not None
        listed: dict[str, list[Record]] = {}
        now: float | None = None
        if cursor is None or relist:
            async for page in self.invoiced.open_invoices():
                now = now or _epoch(page.served_at)
                for invoice in page.records:
                    listed.setdefault(str(invoice["customer"]), []).append(invoice)
        if cursor is None:
            changed, paid, removed = set(listed), set(listed), set()
        else:
            named = named_by(events.since(cursor), removed_customer_id)
            changed, paid, removed = named.changed | (set(listed) - named.removed), named.paid, named.removed
            self.named = set(named.changed)
        changed |= set(self.store.receivables_due(RECOMPUTE_EVERY)) - removed
        known = self.store.receivables(changed)
        paid |= changed - set(known)
        order = sorted(changed)
        found = await _each(order, self.concurrency, lambda customer_id: self._figures(
            customer_id, listed.get(customer_id), now, customer_id in paid, known.get(customer_id)))
        figures = dict(zip(order, found, strict=True))
        if figures:
            self.report.counts["read.invoiced"] += len(figures)
        mark = events.mark(cursor)
        if dry_run:
            return figures
        settings = self.options.fingerprint(self.keap_currency)
        settings_changed = self.store.get_watermark(SETTINGS) != settings
        with self.store.transaction() as tx:
            if settings_changed:
                tx.mark_all_pending()
                tx.set_watermark(SETTINGS, settings)
            tx.forget_customers(removed)
            for customer_id, owes in figures.items():
                row = known.get(customer_id)
                last = written_to(row, row.written_flow, row.written_keap_id) if row and row.written_flow else None
                tx.put_figures(customer_id, owes.to_json(), owes.open_invoices,
                               pending=decide(self._wanted(owes), last) is not None, opens_at=owes.opens())
            tx.set_watermark(CURSOR, mark or "0")  # "0": the account had no event yet; all of them are new
            if relist:
                tx.forget_watermark(RELIST)
        return figures

    async def _figures(self, customer_id: str, invoices: list[Record] | None, now: float | None, read_payment: bool,
                       row: Receivable | None) -> Figures:
        if invoices is None:
            invoices = []
            async for page in self.invoiced.open_invoices(customer_id):
                now = now or _epoch(page.served_at)
                invoices.extend(page.records)
        if read_payment:
            last_payment = payment_date(await self.invoiced.latest_payment(customer_id))
        else:
            last_payment = Figures.from_json(row.figures).last_payment if row is not None else None
        return owed(invoices, now or time.time(), last_payment)

    def _wanted(self, figures: Figures) -> Wanted:
        return keap_values(figures, self.options, self.keap_currency)

    # --- 3: what to write where --------------------------------------------------------------------------
    def _jobs(self, flows: Sequence[Flow], figures: dict[str, Figures], *, dry_run: bool) -> list[Job]:
        """The records to tell: the customers `Store.receivables_to_write` names (a dry run, which stored nothing,
        adds the customers just read, on their links), less those waiting for a retry, less those with no change
        (whose rows are settled on the way); and the records of customers whose link closed with no new one
        (`Store.receivables_unlinked`), cleared of what the sync wrote."""
        by_name = {flow.name: flow for flow in flows}
        jobs = self._unlinked_jobs(by_name, dry_run=dry_run)
        places = {target.receivable.customer_id: (target.flow, target.keap_id, target.receivable)
                  for target in self.store.receivables_to_write(list(by_name))}
        if dry_run:
            known = self.store.receivables(figures)
            for flow in flows:
                for customer_id, link in self.store.find_links(flow.name, "invoiced", list(figures)).items():
                    places.setdefault(customer_id, (flow.name, link.keap_id, known.get(customer_id)))
        waiting = self._waiting(by_name, {(flow, keap_id) for customer_id, (flow, keap_id, _) in places.items()
                                          if customer_id in self.named}) if places else {}
        failing = {(failure.flow, failure.record_id) for name in by_name for failure in self.store.failures(name)
                   if failure.operation == STEP} if places else set()
        for customer_id, (flow, keap_id, row) in sorted(places.items()):
            held_back = waiting.get((flow, keap_id))
            if held_back is not None and not held_back:
                continue
            owes = figures.get(customer_id) or Figures.from_json(row.figures)  # type: ignore[union-attr]
            if (row is not None and row.written_flow in by_name and row.written_keap_id
                    and (row.written_flow, row.written_keap_id) != (flow, keap_id)):
                old = Written(dict(row.written or {}), row.tagged, row.tag)
                nothing = Wanted({}, {}, False)
                clear = decide(nothing, old)
                if clear is not None:
                    jobs.append(Job(customer_id, by_name[row.written_flow], row.written_keap_id, nothing, old, clear,
                                    left=True))
            wanted, written = self._wanted(owes), written_to(row, flow, keap_id)
            if held_back:  # figures Keap has no field for wait for their retry; the others are written meanwhile
                wanted = Wanted({label: content for label, content in wanted.values.items() if label not in held_back},
                                {label: kind for label, kind in wanted.types.items() if label not in held_back},
                                wanted.tagged, wanted.tag)
            change = decide(wanted, written)
            if change is not None:
                jobs.append(Job(customer_id, by_name[flow], keap_id, wanted, written, change))
            elif not dry_run:
                held = written or Written()
                self.store.mark_written(customer_id, flow, keap_id, held.values, held.tagged, done=not held_back,
                                        tag=held.tag)
                if not held_back and (flow, keap_id) in failing:
                    self.store.resolve_operation_failures(flow, keap_id, STEP)  # nothing of it is wanted now
        return jobs

    def _unlinked_jobs(self, flows: Mapping[str, Flow], *, dry_run: bool) -> list[Job]:
        """A Keap record whose customer's link closed with no new one (the customer deleted in Invoiced and its
        link dropped by the deletes policy `unlink`, a record unlinked) is no longer anyone's twin: the sync's
        values are cleared and its tag taken off, once. With deletes `ignore` the link stays, and so does what
        was written; a record deleted (`propagate`, or in Keap) answers 404: nothing to clear."""
        jobs = []
        nothing = Wanted({}, {}, False)
        for row in self.store.receivables_unlinked(list(flows)):
            old = Written(dict(row.written or {}), row.tagged, row.tag)
            clear = decide(nothing, old)
            flow = flows[row.written_flow]  # type: ignore[index]
            if clear is None:
                if not dry_run:
                    self.store.forget_written(row.customer_id)
                continue
            jobs.append(Job(row.customer_id, flow, row.written_keap_id, nothing, old, clear,  # type: ignore[arg-type]
                            left=True, unlinked=True))
        return jobs

    def _waiting(self, flows: Iterable[str], changed: set[tuple[str, str]]) -> dict[tuple[str, str], frozenset[str]]:
        """(flow, Keap id) of the records whose last refusal is dismissed or not due for a retry yet -> the labels it
        holds back (a figure Keap has no field for: `BLOCKED`), or none (empty: the whole record waits); a record
        whose customer an event of this pass names (`changed`: its source changed) is tried at once unless
        dismissed."""
        now = self.store.clock()
        return {(failure.flow, failure.record_id): frozenset((failure.payload or {}).get(BLOCKED) or ())
                if isinstance(failure.payload, dict) else frozenset()
                for name in flows for failure in self.store.failures(name)
                if failure.operation == STEP and (failure.dismissed_at is not None or (
                    failure.next_retry_at > now and (failure.flow, failure.record_id) not in changed))}

    # --- 3: writing --------------------------------------------------------------------------------------------
    async def _write(self, jobs: list[Job]) -> None:
        """One batch: the definitions it needs, the records' custom values, the PATCHes and the tags, then one
        commit of what went through (rows, failures, audit entries)."""
        self._fields_again, self._tags_again = {}, {}
        current = await self._custom_values([job for job in jobs if job.change.values])
        known_tag = self.store.definitions(TAGS.name).get(self.options.tag) if self.options.tag else None
        jobs = [self._tag_gone(job, known_tag.keap_id if known_tag else None) for job in jobs]
        self._batch = jobs
        objects = {job.flow.keap.name: job.flow.keap for job in jobs}
        field_ids = {name: await self._fields(keap_object, [job for job in jobs if job.flow.keap is keap_object])
                     for name, keap_object in objects.items()}
        tag_ids = await self._tag_ids({job.change.tag for job in jobs if job.change.tag is not None})
        former_ids = await self._former_tag_ids({job.change.untag for job in jobs if job.change.untag is not None})
        pending: list[Callable[[Any], None]] = []
        outcomes = await _each(jobs, self.concurrency, lambda job: self._write_one(
            job, field_ids[job.flow.keap.name], current, tag_ids, former_ids, pending))
        await self._tag_contacts([(job, outcome) for job, outcome in zip(jobs, outcomes, strict=True)
                                  if job.flow.keap is CONTACTS and not outcome.gone], tag_ids, former_ids, pending)
        audits = []
        for job, outcome in zip(jobs, outcomes, strict=True):
            now = after(job.written, job.change, values_written=outcome.values_written, tag_written=outcome.tag_written,
                        untag_written=outcome.untag_written, sent=outcome.sent)
            done = outcome.done(job.change)
            if job.unlinked and (done or outcome.gone or outcome.refused):  # tried once: cleared, gone, or refused
                pending.append(lambda tx, job=job: tx.forget_written(job.customer_id))
            elif job.unlinked and outcome.wrote():  # what went through is not sent again; the rest waits for a pass
                pending.append(lambda tx, job=job, now=now: tx.mark_written(
                    job.customer_id, job.flow.name, job.keap_id, now.values, now.tagged, done=False, tag=now.tag))
            if not outcome.wrote():
                continue
            if not job.left:
                pending.append(lambda tx, job=job, now=now, done=done: tx.mark_written(
                    job.customer_id, job.flow.name, job.keap_id, now.values, now.tagged, done=done, tag=now.tag))
            if done and not job.left:
                pending.append(lambda tx, job=job: tx.resolve_operation_failures(job.flow.name, job.keap_id, STEP))
            if job.change.tag and outcome.tag_written:
                self._tagged_now.add(job.customer_id)
            if not outcome.sent_any():
                continue  # Keap held it all already: nothing was written, nothing to report
            before = job.written or Written()
            audits.append(AuditNote(job.flow.name, "keap", job.keap_id, AuditOperation.UPDATE,
                                    {"custom_fields": before.values, "tagged": before.tagged, "tag": before.tag},
                                    {"custom_fields": now.values, "tagged": now.tagged, "tag": now.tag}, self.run_id))
            self._report_change(job, outcome)
        with self.store.transaction() as tx:
            for change in pending:
                change(tx)
            tx.append_audits(audits)
        if self._stop is not None:
            raise self._stop  # what went through is committed; the rest waits for the next pass

    async def _fields(self, keap_object: KeapObject, jobs: list[Job]) -> dict[str, str] | None:
        """Label -> custom field id for every label `jobs` write: as kept, else found by label (the object's model
        read once) or made; None when Keap refused (the jobs wait; the step reports the error)."""
        types = {label: kind for job in jobs if job.change.values for label, kind in job.wanted.types.items()}
        cleared = {label for job in jobs for label in job.change.values if label not in types}
        definitions = self.store.definitions(keap_object.name)
        known = {name: definition.keap_id for name, definition in definitions.items()
                 if name not in types or definition.field_type in (None, types[name])}
        missing = [label for label in [*types, *cleared] if label not in known]
        if not missing:
            return known
        blocked = self._blocked.setdefault(keap_object.name, {})
        try:
            model = {field["label"].casefold(): field for field in await self.keap.custom_fields(keap_object)}
            for label in missing:
                kind = types.get(label)
                field, name = None, label
                for name in (label, label + OWN_SUFFIX) if kind else (label + OWN_SUFFIX, label):
                    field = model.get(name.casefold())
                    if field is None or kind is None or field.get("field_type") == kind:
                        break
                if field is not None and kind is not None and field.get("field_type") != kind:
                    taken = [model[option.casefold()] for option in (label, label + OWN_SUFFIX)]
                    blocked[label] = (
                        f"{label!r} is not written: Keap's {keap_object.name} custom fields "
                        + " and ".join(f"{item['label']!r} (id {item['id']}) is a {item.get('field_type')} field"
                                       for item in taken)
                        + f", a {kind} field is needed; rename or delete one of them in Keap, or choose another label "
                          "in [receivables.labels]")
                    continue
                if field is None and kind is not None:
                    field = await self.keap.create_custom_field(keap_object, name, kind)
                    self.report.add(Action(STEP, "create", "keap", str(field["id"]),
                                           {"custom_field": name, "field_type": kind, "object": keap_object.name}))
                if field is not None:
                    self.store.put_definition(keap_object.name, label, str(field["id"]), field.get("field_type"))
                    known[label] = str(field["id"])
        except (RecordRejected, TransientError) as error:
            self.report.error = f"Keap refused the {keap_object.name} custom fields: {error.message}"
            return None
        wanted = [label for label in [*types, *cleared] if label in known]
        for label in wanted:  # two labels on one Keap field would write two figures to it: neither is written
            others = [other for other in wanted if other != label and known[other] == known[label]]
            if others:
                blocked[label] = (f"{label!r} is not written: Keap's {keap_object.name} custom field id {known[label]} "
                                  f"is also the field of {', '.join(map(repr, others))}; two figures never share a field")
        return {label: field_id for label, field_id in known.items() if label not in blocked}

    async def _tag_ids(self, changes: set[bool]) -> dict[bool, list[str] | None]:
        """The tags to apply (True) and to remove (False), for the changes a batch makes: the configured tag (found
        or made when needed; None when Keap refused); with no tag configured (`tag = ""`), removals take off every
        tag this sync kept an id of (its own, put on before the tag was turned off), with no call to find it."""
        ids: dict[bool, list[str] | None] = {True: [], False: []}
        if not changes:
            return ids
        if not self.options.tag:
            ids[False] = sorted({definition.keap_id for definition in self.store.definitions(TAGS.name).values()})
            return ids
        tag_id = await self._tag()
        for applied in changes:
            ids[applied] = [tag_id] if tag_id is not None else None
        return ids

    async def _former_tag_ids(self, names: set[str]) -> dict[str, list[str] | None]:
        """The ids of tags the sync put on records under former names (to take off): as kept, else found by name
        (never made; [] when Keap has no such tag: it is on no record); None when Keap refused (the jobs wait)."""
        ids: dict[str, list[str] | None] = {}
        for name in sorted(names):
            try:
                tag_id = await self._find_tag(name, create=False)
            except (RecordRejected, TransientError) as error:
                self.report.error = f"Keap refused the tag {name!r}: {error.message}"
                ids[name] = None
                continue
            ids[name] = [tag_id] if tag_id is not None else []
        return ids

    async def _tag(self, name: str | None = None, *, create: bool = True) -> str | None:
        """The tag's id: as kept, else found by name among the account's tags, else made (with `create`); None
        when Keap refused (or it is not there and not to be made)."""
        name = name or self.options.tag
        if not name:
            return None
        try:
            return await self._find_tag(name, create=create)
        except (RecordRejected, TransientError) as error:
            self.report.error = f"Keap refused the tag {name!r}: {error.message}"
            return None

    async def _find_tag(self, name: str, *, create: bool) -> str | None:
        """`_tag`, with Keap's refusal raised."""
        known = self.store.definitions(TAGS.name).get(name)
        if known is not None:
            return known.keap_id
        tag_id = None
        async for tag in self.keap.list_all(TAGS):
            if tag.get("name") == name:
                tag_id = str(tag["id"])
                break
        if tag_id is None and not create:
            return None
        if tag_id is None:
            tag_id = str((await self.keap.create_tag(name, TAG_DESCRIPTION))["id"])
            self.report.add(Action(STEP, "create", "keap", tag_id, {"tag": name}))
        self.store.put_definition(TAGS.name, name, tag_id)
        return tag_id

    async def _tag_again(self, old_id: str, *, create: bool) -> str | None:
        """After Keap refused a call naming tag `old_id` (deleted in Keap?): its id found again by name, or made
        (with `create`, and always for the configured tag, which the records it was on lost with it: `_retag_remade`
        puts it back), once per batch however many calls were refused."""
        key = (old_id, create)
        if key not in self._tags_again:
            async def find() -> str | None:
                names = [name for name, found in self.store.definitions(TAGS.name).items() if found.keap_id == old_id]
                self.store.forget_definitions(TAGS.name, names)
                name = names[0] if names else self.options.tag
                again = await self._tag(name, create=create or name == self.options.tag)
                if again is not None and again != old_id and name == self.options.tag:
                    self._remade[name] = again  # the records tagged with the deleted one are tagged again
                return again
            self._tags_again[key] = asyncio.ensure_future(find())
        return await self._tags_again[key]

    async def _tagged(self, tag_id: str, applied: bool, call: Callable[[str], Awaitable[Any]]) -> None:
        """`call(tag_id)`; when Keap refuses it, the tag is looked for again (`_tag_again`) and, when its id changed,
        a call to apply it is made once more; a tag to remove that is gone is on no record."""
        try:
            await call(tag_id)
            return
        except RecordRejected:
            again = await self._tag_again(tag_id, create=applied)
            if again is None and not applied:
                return
            if again is None or again == tag_id:
                raise
            if not applied:
                return
        await call(again)

    async def _fields_refound(self, keap_object: KeapObject) -> dict[str, str] | None:
        """After Keap refused custom values (a field deleted in Keap?): the object's fields found again by label
        (made when missing), once per batch."""
        if keap_object.name not in self._fields_again:
            self.store.forget_definitions(keap_object.name)
            self._fields_again[keap_object.name] = asyncio.ensure_future(
                self._fields(keap_object, [job for job in self._batch if job.flow.keap is keap_object]))
        return await self._fields_again[keap_object.name]

    async def _custom_values(self, jobs: list[Job]) -> dict[tuple[str, str], list[Record]]:
        """(object, Keap id) -> custom values now, for the records of `jobs`, their tags kept too (`_tags_found`):
        as the day's audit read them this pass, else contacts one listing per 100 ids; companies, which v2 lists
        by no id list, one listing per window of ids less than 1000 apart (`KeapConnector.near_ids`), and a
        company alone in its window by its own GET. Ids are unique per object only; a record not read here (gone,
        refused) is read again by `_patch`, whose error tells."""
        found: dict[tuple[str, str], list[Record]] = {}
        for keap_object in {job.flow.keap.name: job.flow.keap for job in jobs}.values():
            ids = sorted({job.keap_id for job in jobs if job.flow.keap is keap_object})
            records = {record_id: self._seen[(keap_object.name, record_id)] for record_id in ids
                       if (keap_object.name, record_id) in self._seen}
            ids = [record_id for record_id in ids if record_id not in records]
            fields = ["custom_fields", TAG_PROPERTY[keap_object.name]]
            records.update(await self.keap.by_ids(keap_object, ids, fields=fields))
            if keap_object.ids_filter is None:
                alone = [record_id for record_id in ids if record_id not in records]
                for record_id, record in zip(alone, await _each(alone, self.concurrency, lambda record_id: self._get(
                        keap_object, record_id, fields)), strict=True):
                    if record is not None:
                        records[record_id] = record
            for record_id, record in records.items():
                found[(keap_object.name, record_id)] = list(record.get("custom_fields") or [])
                self._tags_found[(keap_object.name, record_id)] = tags_on(keap_object, record)
        return found

    async def _get(self, keap_object: KeapObject, record_id: str, fields: list[str]) -> Record | None:
        try:
            return await self.keap.get(keap_object, record_id, fields=fields)
        except (RecordRejected, TransientError):
            return None  # gone, or refused: `_patch` reads it again and its error tells

    def _tag_gone(self, job: Job, tag_id: str | None) -> Job:
        """The job, with the tag put back where the sync put it on and the record read before its write shows it
        gone (a Keap user or automation took it off, or the tag was deleted in Keap)."""
        written, change = job.written, job.change
        if (job.left or written is None or not written.tagged or not job.wanted.tagged or change.tag is not None
                or change.untag is not None or (written.tag or self.options.tag) != self.options.tag):
            return job
        tags = self._tags_found.get((job.flow.keap.name, job.keap_id))
        if tags is None or tag_id is None or tag_id in tags:
            return job
        self.report.counts["drift.keap"] += 1
        log_event(logger, "receivables.drift", logging.WARNING, flow=job.flow.name, record_id=job.keap_id,
                  customer=job.customer_id, fields=[], tag_missing=True)
        return replace(job, written=Written(written.values, False, None),
                       change=replace(change, tag=True, tag_name=self.options.tag))

    async def _write_one(self, job: Job, field_ids: dict[str, str] | None, current: dict[tuple[str, str], list[Record]],
                         tag_ids: dict[bool, list[str] | None], former_ids: dict[str, list[str] | None],
                         pending: list[Callable[[Any], None]]) -> Outcome:
        """The record's custom values (all of ours: what is wanted, and clears), and a company's tags (a former
        one off first; the configured one waits until it is). Values Keap refuses (other than for a missing
        record) are tried once more with the fields found again, when that finds other ids (a field deleted in
        Keap is made again)."""
        outcome = Outcome()
        if job.change.values and field_ids is not None:
            # every field of ours not wanted is cleared too: a label written under former settings, or before the
            # state kept every value written (Keap is read first: a clear of what is not there costs nothing)
            values = {**dict.fromkeys(field_ids), **job.change.sent(job.wanted)}

            async def patch() -> None:
                ours = {field_ids[label]: content for label, content in values.items() if label in field_ids}
                try:
                    outcome.values_sent = await self._patch(job, ours, current)
                    outcome.sent = {label: content for label, content in values.items() if label in field_ids}
                    return
                except RecordRejected as error:
                    if isinstance(error, NotFound):
                        raise
                    fresh = await self._fields_refound(job.flow.keap)
                    again = {fresh[label]: content for label, content in values.items() if fresh and label in fresh}
                    if not fresh or again == ours:
                        raise
                outcome.values_sent = await self._patch(job, again, current)
                outcome.sent = {label: content for label, content in values.items() if label in fresh}

            error = await self._guarded(job, {"custom_fields": values}, pending, patch())
            outcome.values_written = error is None
            outcome.note(error)
            blocked = self._blocked.get(job.flow.keap.name, {})
            outcome.blocked = tuple(sorted(label for label in job.wanted.values if label in blocked))
            if outcome.blocked and not job.left and error is None:
                reasons = {label: blocked[label] for label in outcome.blocked}
                message = "; ".join(reasons.values())
                self.report.add(Action(STEP, "fail", "keap", job.keap_id, {"operation": STEP, "error": message}))
                pending.append(lambda tx: tx.record_failure(job.flow.name, "keap", job.keap_id, STEP, message,
                                                            field="custom_fields", payload={BLOCKED: reasons}))
        if job.flow.keap is CONTACTS or outcome.gone:
            return outcome
        if job.change.untag is not None:
            former = self._untagging(job, tag_ids, former_ids)
            if former is not None:
                outcome.untag_written = await self._company_tags(job, former, False, job.change.untag, pending, outcome)
            if not outcome.untag_written:
                return outcome
        ids = tag_ids[job.change.tag] if job.change.tag is not None else None
        if ids is not None:
            outcome.tag_written = await self._company_tags(job, ids, bool(job.change.tag), self.options.tag, pending, outcome)
        return outcome

    async def _company_tags(self, job: Job, ids: list[str], applied: bool, tag: str | None,
                            pending: list[Callable[[Any], None]], outcome: Outcome) -> bool:
        """Put the tags `ids` on the job's company (or, not `applied`, take them off), each through `_tagged`; a
        refusal is the record's failure (`_guarded`, naming `tag`); whether it went through."""

        async def change() -> None:
            for tag_id in ids:
                await self._tagged(tag_id, applied, lambda tag_id: self.keap.tag_company(job.keap_id, tag_id, applied=applied))

        error = await self._guarded(job, {"tag": tag, "applied": applied}, pending, change())
        outcome.note(error)
        return error is None

    @staticmethod
    def _untagging(job: Job, tag_ids: dict[bool, list[str] | None],
                   former_ids: dict[str, list[str] | None]) -> list[str] | None:
        """The ids of the former tag to take off the job's record (None: Keap refused finding it); one that is the
        configured tag's own id (renamed in Keap, then in the settings) stays where the tag is to be on."""
        found = former_ids.get(job.change.untag) if job.change.untag is not None else None
        if found is None:
            return None
        keep = set(tag_ids.get(True) or []) if job.change.tag else set()
        return [tag_id for tag_id in found if tag_id not in keep]

    async def _patch(self, job: Job, ours: dict[str, Any], current: dict[tuple[str, str], list[Record]]) -> bool:
        """The record's custom values as read in bulk (`_custom_values`; else read now, one GET), ours merged in,
        PATCHed where they differ (a value of ours a Keap user changed is put right with the rest); whether a PATCH
        was sent (False: Keap held them all already)."""
        values = current.get((job.flow.keap.name, job.keap_id))
        if values is None:
            record = await self.keap.get(job.flow.keap, job.keap_id, fields=["custom_fields"])
            values = list(record.get("custom_fields") or [])
        merged = merged_custom_fields(values, ours)
        if not changed_fields({"custom_fields": merged}, {"custom_fields": values}):
            return False
        await self.keap.update(job.flow.keap, job.keap_id, {"custom_fields": merged}, current={"custom_fields": values})
        current[(job.flow.keap.name, job.keap_id)] = merged  # a second try (fields found again) reads no more
        return True

    async def _tag_contacts(self, jobs: list[tuple[Job, Outcome]], tag_ids: dict[bool, list[str] | None],
                            former_ids: dict[str, list[str] | None], pending: list[Callable[[Any], None]]) -> None:
        """The batch's contacts' tags: a former tag taken off first, then the configured one applied or removed
        (where no former tag is still on), one call per tag per 100 contacts."""
        groups: dict[tuple[str, tuple[str, ...]], list[tuple[Job, Outcome]]] = {}
        for job, outcome in jobs:
            former = self._untagging(job, tag_ids, former_ids) if job.change.untag is not None else None
            if job.change.untag is not None and former is not None:
                groups.setdefault((job.change.untag, tuple(former)), []).append((job, outcome))
        for (name, former), chosen in groups.items():
            await self._contacts_tagged(chosen, list(former), False, {"tag": name, "applied": False}, pending)
            for _, outcome in chosen:
                outcome.untag_written = outcome.untag_written or not outcome.failed
        for applied in (True, False):
            chosen = [(job, outcome) for job, outcome in jobs if job.change.tag is applied
                      and (job.change.untag is None or outcome.untag_written)]
            ids = tag_ids[applied]
            if not chosen or ids is None:
                continue
            await self._contacts_tagged(chosen, ids, applied, {"tag": self.options.tag, "applied": applied}, pending)
            for _, outcome in chosen:
                outcome.tag_written = outcome.tag_written or not outcome.failed

    async def _contacts_tagged(self, chosen: list[tuple[Job, Outcome]], ids: list[str], applied: bool, payload: Record,
                               pending: list[Callable[[Any], None]]) -> None:
        """Tags `ids` applied to (or removed from) the contacts of `chosen`; a refusal fails them all (`failed`);
        once the pass is to stop (`_stop`), no call is made and none of them is done."""
        for _, outcome in chosen:
            outcome.failed = False
        contact_ids = [job.keap_id for job, _ in chosen]
        try:
            for tag_id in ids:
                if self._stop is not None:
                    raise self._stop
                await self._tagged(tag_id, applied, lambda tag_id: self.keap.tag_contacts(
                    tag_id, contact_ids, applied=applied))
        except (FatalError, CallAbandoned) as error:
            self._stop = self._stop or error
            for _, outcome in chosen:
                outcome.failed = True
        except (RecordRejected, TransientError) as error:
            for job, outcome in chosen:
                self._fail(job, payload, error, pending)
                outcome.failed = True
                outcome.note(error)

    async def _guarded(self, job: Job, payload: Record, pending: list[Callable[[Any], None]],
                       call: Awaitable[Any]) -> ApiError | None:
        """None when `call` went through; else its error, its failure queued for the record. A fatal error (the
        day's quota used up, credentials refused) or a stop is kept (`_stop`): no further call is made, the batch
        commits what went through, then the pass ends with it."""
        if self._stop is not None:
            call.close()  # type: ignore[attr-defined]
            return NOT_SENT
        try:
            await call
        except (FatalError, CallAbandoned) as error:
            self._stop = self._stop or error
            return NOT_SENT
        except (RecordRejected, TransientError) as error:
            self._fail(job, payload, error, pending)
            return error
        return None

    def _fail(self, job: Job, payload: Record, error: ApiError, pending: list[Callable[[Any], None]]) -> None:
        if job.left and isinstance(error, NotFound):
            return  # the record the link left is gone: nothing of ours is on it
        if isinstance(error, TransientError):
            self.report.unavailable = error.outage()
        message = refusal_message("keap", error, payload)
        self.report.add(Action(STEP, "fail", "keap", job.keap_id, {"operation": STEP, "error": message}))
        if not job.left:  # a record the link left is tried once: no failure that nothing would retry
            pending.append(lambda tx: tx.record_failure(job.flow.name, "keap", job.keap_id, STEP, message,
                                                        field=error.field, payload=payload))

    def _report_change(self, job: Job, outcome: Outcome) -> None:
        about = {"customer": job.customer_id, "object": job.flow.keap.name}
        if job.change.values and outcome.values_sent:
            self.report.add(Action(STEP, "update", "keap", job.keap_id, dict(job.change.values)), **about)
        if job.change.untag is not None and outcome.untag_written:
            self.report.add(Action(STEP, "untag", "keap", job.keap_id, {"tag": job.change.untag}), **about)
        if job.change.tag is not None and outcome.tag_written:
            self.report.add(Action(STEP, "tag" if job.change.tag else "untag", "keap", job.keap_id,
                                   {"tag": self.options.tag or "(turned off)"}), **about)


def tags_on(keap_object: KeapObject, record: Mapping[str, Any]) -> set[str]:
    """The ids of the tags on a record read with its `TAG_PROPERTY` (none named: no tag)."""
    value = record.get(TAG_PROPERTY.get(keap_object.name, ""))
    if isinstance(value, str):
        return {part.strip() for part in value.split(",") if part.strip()}
    return {str(tag_id) for tag_id in value} if isinstance(value, list) else set()


@dataclass(frozen=True)
class FoundDrift:
    """A record of `flow` whose Keap values or tag differ from what the sync wrote (`Written`) for the customer."""

    customer_id: str
    flow: str
    keap_id: str
    written: Written
    drift: Drift


async def receivables_drift(store: Store, keap: KeapConnector, flows: Iterable[Flow], options: ReceivablesOptions,
                            *, seen: dict[tuple[str, str], Record] | None = None) -> list[FoundDrift]:
    """Every record of `flows` the sync wrote to whose custom values (of the sync's fields) or tag differ from what
    the state says was written, read in bulk: per object one listing per 1000 records with `custom_fields` and its
    tags (`TAG_PROPERTY`), and, when no id of the configured tag is kept, one listing of the tags to find it (a tag
    Keap no longer has is on no record). `seen` keeps the records of ours read (their writes need not read them
    again). A record Keap does not list (gone) is left to the flows' deletes."""
    written = {flow.name: {row.written_keap_id: row for row in store.receivables_written(flow.name)
                           if not (row.figures or {}).get(GONE)} for flow in flows}  # gone: left as deletes left it
    tag_ids: dict[str, str] = {}
    if options.tag and any(row.tagged for rows in written.values() for row in rows.values()):
        known = store.definitions(TAGS.name).get(options.tag)
        if known is not None:
            tag_ids[options.tag] = known.keap_id
        else:
            found = [str(tag["id"]) async for tag in keap.list_all(TAGS) if tag.get("name") == options.tag]
            tag_ids[options.tag] = found[0] if found else ""
    drifted: list[FoundDrift] = []
    for flow in flows:
        rows = written[flow.name]
        if not rows:
            continue
        defined = {label: definition.keap_id for label, definition in store.definitions(flow.keap.name).items()}
        labels = {field_id: label for label, field_id in defined.items()}
        async for record in keap.list_all(flow.keap, fields=["custom_fields", TAG_PROPERTY[flow.keap.name]]):
            keap_id = str(record["id"])
            row = rows.get(keap_id)
            if row is None:
                continue
            if seen is not None:
                seen[(flow.keap.name, keap_id)] = record
            found = {labels[str(value.get("id"))]: value.get("content") for value in record.get("custom_fields") or []
                     if str(value.get("id")) in labels}
            held = Written(dict(row.written or {}), row.tagged, row.tag)
            difference = drift(held, found, defined, tags_on(flow.keap, record), tag_ids, options.tag)
            if difference is not None:
                drifted.append(FoundDrift(row.customer_id, flow.name, keap_id, held, difference))
    return drifted


def _epoch(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


async def _each(items: Iterable[T], limit: int, work: Callable[[T], Awaitable[Any]]) -> list[Any]:
    """`work` on each item, at most `limit` at a time; the answers in the items' order."""
    turns = asyncio.Semaphore(limit)

    async def one(item: T) -> Any:
        async with turns:
            return await work(item)

    return list(await asyncio.gather(*(one(item) for item in items)))

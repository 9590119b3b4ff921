"""`invoiced-keap run`: polls, webhook receivers, status page, `/metrics` and `/healthz` on one uvicorn server.

One worker per process does the engine's work, one job at a time: a debounced batch of webhook ids
(synced by id, so a burst of edits costs one read and one write per record), a poll pass when the
poll interval is up, then a reconcile (full id scans) of the flows whose last one, as the state
database remembers it, is `full_scan_interval` old. Polling is the safety net for anything a webhook
missed. Across processes the engine's flow locks keep two workers off one flow; a pass that finds its
flow locked is skipped and tried again at the next poll, which comes sooner after a failure
(`RETRY_FAILED_PASS`). `/healthz` answers 503 while a flow's last
pass failed or none succeeded or made progress within 3 × `poll_interval` (`health.FlowHealth`).

SIGTERM and SIGINT set `stop` and ask the engine to stop (`Syncer.request_stop`): the records in hand
finish and are committed, no further record starts, the web server closes, and `run` returns normally
(exit status 0). What was left undone is picked up by the next start (the marks did not move).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Literal

import uvicorn

from invoiced_keap.config import Settings, revealed
from invoiced_keap.connectors.errors import ApiError
from invoiced_keap.connectors.redaction import register_secret
from invoiced_keap.engine.report import Progress, RunReport
from invoiced_keap.engine.run import Syncer
from invoiced_keap.flows import Flow
from invoiced_keap.server.app import INVOICED_WEBHOOK_PATH, ServerSettings, create_app
from invoiced_keap.server.debounce import DirtyBatch, DirtyKey, DirtyQueue
from invoiced_keap.server.health import FlowHealth
from invoiced_keap.server.invoiced_webhooks import DeliveryWatch, SeenEvents, invoiced_webhook_upkeep, webhook_problem
from invoiced_keap.server.keap_hooks import ensure_hooks, event_keys, hook_problem, hook_url, keap_hook_upkeep, remove_hooks
from invoiced_keap.server.metrics import CALL_KINDS, Metrics
from invoiced_keap.server.quota import QuotaWatchingPacer, keap_day
from invoiced_keap.server.upkeep import HOOK_CHECK_INTERVAL, PushUpkeep


logger = logging.getLogger(__name__)


__all__ = ["HOOK_CHECK_INTERVAL", "Service"]

HEALTHY_POLLS = 3
"""A flow with no successful pass within this many poll intervals is unhealthy."""
LOOK_AT_THE_CLOCK = 1.0
"""Seconds at most between the worker's looks at `Service.clock` while it waits for a poll: a clock that jumps
(a machine woken from sleep, a test's clock moved by hand) is noticed within this."""
RETRY_FAILED_PASS = 5.0
"""Seconds to the next poll after a failed pass, doubling while passes keep failing, at most `poll_interval`."""


def next_job(*, poll_due: bool, batch_ready: bool) -> Literal["poll", "batch"] | None:
    """What the worker does next: a due poll goes before a ready webhook batch, so a stream of batches (a burst on
    one flow) never holds back the poll, the safety net of every flow; else the batch; else nothing yet."""
    if poll_due:
        return "poll"
    return "batch" if batch_ready else None


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service stops only after the job in hand."""

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class Service:
    """The long-running sync around one `Syncer` (its store and connectors), as `settings` say: the
    server settings (`server_host`, `public_url`, the webhook secrets, `status_token`) and `[schedule]`.
    Without `invoiced_webhook_secret` the Invoiced receiver is off; `public_url` is how Keap reaches
    its receiver: without it no Keap hook is registered, and neither push path is checked (`hook_upkeep`,
    `webhook_upkeep` say why), so both sides are polled every `poll_interval`."""

    def __init__(self, syncer: Syncer, flows: Mapping[str, Flow], settings: Settings) -> None:
        self.syncer = syncer
        self.flows = dict(flows)
        self.settings = settings
        self.hook_token = revealed(settings.keap_hook_token) or secrets.token_urlsafe(24)
        self.receivers = ServerSettings(
            invoiced_webhook_secret=revealed(settings.invoiced_webhook_secret),
            keap_hook_token=self.hook_token if settings.keap_hooks else None,
            status_token=revealed(settings.status_token),
        )
        # the hook token is in URLs we log; none of these may reach a log line
        register_secret(self.hook_token, *settings.secrets())
        self.queue = DirtyQueue(settings.schedule.webhook_debounce)
        self.metrics = Metrics(syncer.store, self.flows)
        self.metrics.watch_keap_quota(self.keap_quota, self.keap_used_today)
        syncer.invoiced.api.listeners.append(self.metrics.api_listener("invoiced"))
        syncer.keap.api.listeners.append(self.metrics.api_listener("keap"))
        self.failed_jobs = 0
        self.keap_polled = -float("inf")  # clock time of the last poll that read Keap
        self.invoiced_polled = -float("inf")  # clock time of the last poll that listed Invoiced's customers
        self.unsynced: set[DirtyKey] = set()  # webhook-named records whose pass failed: the next polls read both sides
        self.flow_health = FlowHealth(list(self.flows), HEALTHY_POLLS * settings.schedule.poll_interval, time.time())
        self.shown_progress = syncer.progress
        syncer.progress = self.progressed
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((settings.server_host, settings.server_port))
        self.clock: Callable[[], float] = time.monotonic  # when polls and hook checks are due
        public_url = str(settings.public_url) if settings.public_url else None
        self.hook_upkeep = keap_hook_upkeep(enabled=settings.keap_hooks, receiver_url=self.url, public_url=public_url)
        self.webhook_upkeep = invoiced_webhook_upkeep(secret=self.receivers.invoiced_webhook_secret, public_url=public_url)
        self.seen_events = SeenEvents()
        self.delivery_watch = DeliveryWatch(self.seen_events)

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"http://{host}:{port}"

    @property
    def public_url(self) -> str:
        return str(self.settings.public_url or self.url).rstrip("/")

    @property
    def hooks_verified(self) -> bool:
        """Every Keap hook we need answered Verified at the last check."""
        return self.hook_upkeep.verified

    def push(self) -> dict[str, dict[str, object]]:
        """What the status page and `/healthz` say of the push paths (`keap_hooks`, `invoiced_webhook`): state,
        reason, next check."""
        now = self.clock()
        return {"keap_hooks": self.hook_upkeep.as_json(now), "invoiced_webhook": self.webhook_upkeep.as_json(now)}

    def keap_day(self) -> dict[str, object]:
        """Keap calls on the key today (UTC) and their share of the daily quota, with this process's by kind, for the
        status page (`quota.keap_day`)."""
        calls = self.metrics.own_keap_calls
        return keap_day(calls.today(), CALL_KINDS, self.syncer.keap.api.pacer, calls.since())

    def keap_quota(self) -> int | None:
        """Known when the Keap connector was opened with a `QuotaWatchingPacer`."""
        pacer = self.syncer.keap.api.pacer
        return pacer.quota_remaining if isinstance(pacer, QuotaWatchingPacer) else None

    def keap_used_today(self) -> int | None:
        """Keap's count of the calls on the key today, by every process on it (`QuotaWatchingPacer.key_used_today`)."""
        pacer = self.syncer.keap.api.pacer
        return pacer.key_used_today() if isinstance(pacer, QuotaWatchingPacer) else None

    def progressed(self, note: Progress) -> None:
        """The engine's progress: a pass that makes progress keeps its flow healthy; then shown as before."""
        self.flow_health.progressed(note.flow, time.time())
        self.shown_progress(note)

    def health(self) -> dict[str, object]:
        """The verdict, the ids waiting (marked by the push paths, or of their passes that failed, until a poll that
        reads both sides succeeds), and the push paths' states (informative: polling covers for them, so hooks that
        do not work leave the service healthy)."""
        return {**self.flow_health.verdict(time.time()).as_json(),
                "pending_ids": self.queue.pending() + len(self.unsynced), **self.push()}

    # --- running -------------------------------------------------------------------------------
    async def run_until_signalled(self) -> None:
        """`run` with SIGTERM and SIGINT wired to a graceful stop."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await self.run(stop)
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve and work until `stop` is set; then finish the job in hand and close."""
        settings = self.settings
        app = create_app(
            self.syncer.store,
            self.flows,
            self.queue,
            self.metrics,
            self.receivers,
            health=self.health,
            keap_quota=self.keap_quota,
            push=self.push,
            keap_day=self.keap_day,
            seen_events=self.seen_events,
        )
        server = _Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
        serving = asyncio.create_task(server.serve(sockets=[self.socket]))
        helpers: list[asyncio.Task[None]] = []
        try:
            while not server.started:
                if serving.done():
                    serving.result()  # raises why it could not start
                await asyncio.sleep(0.01)
            logger.info("serving on %s (public %s)", self.url, self.public_url)
            if not self.hook_upkeep.wanted:
                await self.drop_hooks()
            if self._checks():  # first: the worker's first poll then knows whether the push paths work
                await self.keep_checking(stop, once=True)
                helpers.append(asyncio.create_task(self.keep_checking(stop)))
            await self._work(stop)
        finally:
            for helper in helpers:
                helper.cancel()
            server.should_exit = True
            await serving
            self.socket.close()

    async def check_hooks(self) -> None:
        """Register missing Keap hooks, revive Inactive ones, delete ours on another address or token; a Keap error
        is noted (`hook_upkeep`), never fatal."""
        try:
            with self.metrics.job_in_hand("hooks"):
                report = await ensure_hooks(
                    self.syncer.keap,
                    hook_url(self.public_url, self.hook_token),
                    event_keys(self.flows.values()),
                )
        except ApiError as error:
            self.hook_upkeep.checked(self.clock(), error=str(error))
        else:
            self.hook_upkeep.checked(self.clock(), hook_problem(report, self.public_url))

    async def check_webhook(self) -> None:
        """Look in Invoiced's webhooks for ours (`webhook_problem`); an Invoiced error is noted (`webhook_upkeep`),
        never fatal."""
        secret = self.receivers.invoiced_webhook_secret
        assert secret is not None, "the Invoiced webhook is checked only with its secret"
        try:
            with self.metrics.job_in_hand("hooks"):
                problem = await webhook_problem(self.syncer.invoiced, self.public_url + INVOICED_WEBHOOK_PATH, secret)
        except ApiError as error:
            self.webhook_upkeep.checked(self.clock(), error=str(error))
        else:
            self.webhook_upkeep.checked(self.clock(), problem)

    async def drop_hooks(self) -> None:
        """Hooks off: delete the hooks of ours a former start left registered (`remove_hooks`), once; a Keap error
        is logged, never fatal (the next start tries again)."""
        try:
            with self.metrics.job_in_hand("hooks"):
                await remove_hooks(self.syncer.keap)
        except ApiError as error:
            logger.warning("Keap hooks off: could not look for hooks of ours left registered: %s", error)

    def _checks(self) -> list[tuple[PushUpkeep, Callable[[], Awaitable[None]]]]:
        """The push paths to check, each with its check."""
        return [(upkeep, check) for upkeep, check in ((self.hook_upkeep, self.check_hooks),
                                                      (self.webhook_upkeep, self.check_webhook)) if upkeep.wanted]

    async def keep_checking(self, stop: asyncio.Event, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, *,
                            once: bool = False) -> None:
        """Check each push path whenever its upkeep says a check is due (at once, then by its schedule), until `stop`
        (`once`: the checks due now, then return); nothing when both are off."""
        checks = self._checks()
        while checks and not stop.is_set():
            for upkeep, check in checks:
                if upkeep.due(self.clock()):
                    await check()
            if once:
                return
            await sleep(max(0.0, min(upkeep.next_check for upkeep, _ in checks) - self.clock()))

    async def _work(self, stop: asyncio.Event) -> None:
        """The worker: whichever comes first of a settled dirty batch or a due poll, one at a time."""
        schedule = self.settings.schedule
        next_poll = self.clock()
        batch: asyncio.Task[DirtyBatch] | None = None
        stopping = asyncio.create_task(stop.wait())
        stopping.add_done_callback(lambda done: done.cancelled() or self.syncer.request_stop())
        try:
            while not stop.is_set():
                batch = batch or asyncio.create_task(self.queue.next_batch())
                wait = min(max(0.0, next_poll - self.clock()), LOOK_AT_THE_CLOCK)
                await asyncio.wait({batch, stopping}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    break
                job = next_job(poll_due=self.clock() >= next_poll, batch_ready=batch.done())
                if job == "poll":
                    next_poll = self.clock() + schedule.poll_interval  # polls start poll_interval apart
                    await self._guarded(self.poll(), self.flows)
                    due = self.syncer.store.reconcile_due(self.flows, timedelta(seconds=schedule.full_scan_interval))
                    if due and not stop.is_set():
                        await self._guarded(self.reconcile(due), due)
                elif job == "batch":
                    marked = batch.result()
                    await self._guarded(self.sync_batch(marked), marked.flows())
                    self.unsynced |= {key for key in marked.marks if key.flow in self.flow_health.last_error}
                    batch = None
                if job is not None:
                    next_poll = min(next_poll, self.clock() + self._retry_in())
        finally:
            stopping.cancel()
            if batch is not None:
                batch.cancel()

    def _retry_in(self) -> float:
        """After a job: how soon to poll again because a flow's last pass failed (never, when none did)."""
        if not self.flow_health.last_error:
            self.failed_jobs = 0
            return float("inf")
        self.failed_jobs += 1
        return RETRY_FAILED_PASS * 2 ** min(self.failed_jobs - 1, 16)

    async def _guarded(self, job: Awaitable[object], flows: Iterable[str]) -> None:
        """A job that fails is logged and makes its flows unhealthy until one of their passes succeeds; the service
        goes on (polling retries what it missed)."""
        try:
            await job
        except Exception as error:
            logger.exception("sync job failed; the next poll retries")
            for flow in flows:
                self.flow_health.last_error[flow] = f"the pass crashed: {type(error).__name__}: {error}"

    # --- jobs ----------------------------------------------------------------------------------
    def keap_poll_due(self, now: float) -> bool:
        """Keap is read by a poll every `poll_interval`, but only every `keap_poll_interval` while its hooks are
        verified: they deliver every change, and the poll is the safety net (Keap rations calls by the day)."""
        schedule = self.settings.schedule
        return now >= self.keap_polled + (schedule.keap_poll_interval if self.hooks_verified else schedule.poll_interval)

    def invoiced_poll_due(self, now: float) -> bool:
        """Invoiced's customers are listed by a poll every `poll_interval`, but only every `invoiced_poll_interval`
        while its webhook is verified; items (Invoiced makes no events of them) and events are read by every poll."""
        schedule = self.settings.schedule
        slow = self.webhook_upkeep.verified
        return now >= self.invoiced_polled + (schedule.invoiced_poll_interval if slow else schedule.poll_interval)

    async def poll(self) -> RunReport:
        """A poll pass. It reads both sides while a flow's last pass failed or records a failed webhook pass named
        wait (`unsynced`): the watermarks did not move past their changes, so a whole poll that succeeds carries them
        (and only such a poll clears them), while one that leaves a side to its push path would call a flow healthy
        without looking at the side that failed."""
        started, now = time.monotonic(), self.clock()
        whole = bool(self.flow_health.last_error or self.unsynced)
        read_keap, read_invoiced = whole or self.keap_poll_due(now), whole or self.invoiced_poll_due(now)
        with self.metrics.job_in_hand("poll"):
            report = await self.syncer.sync(list(self.flows), read_keap=read_keap, read_invoiced=read_invoiced)
        if not report.error:
            self.keap_polled = now if read_keap else self.keap_polled
            self.invoiced_polled = now if read_invoiced else self.invoiced_polled
        self._watch_deliveries()
        self._finished(report, "sync", list(self.flows), started, whole=read_keap and read_invoiced)
        if read_keap and read_invoiced:
            self.unsynced = {key for key in self.unsynced if key.flow in self.flow_health.last_error}
        return report

    def _watch_deliveries(self) -> None:
        """After a poll: customer events it listed before that the webhook has not delivered since (`DeliveryWatch`)
        make the webhook unverified at once, so the next poll lists Invoiced's customers (the next check looks again)."""
        events, self.syncer.last_events = self.syncer.last_events, None
        if events is None:
            return
        missed = self.delivery_watch.missed(events.events, events.newest)
        if missed and self.webhook_upkeep.verified:
            shown = ", ".join(map(str, missed[:5])) + (f" and {len(missed) - 5} more" if len(missed) > 5 else "")
            self.webhook_upkeep.checked(self.clock(), (
                f"Invoiced's webhook did not deliver event(s) {shown} to {self.public_url}{INVOICED_WEBHOOK_PATH} within a "
                "poll: is that address reachable from Invoiced?"))

    async def reconcile(self, flows: list[str]) -> RunReport:
        started = time.monotonic()
        with self.metrics.job_in_hand("reconcile"):
            report = await self.syncer.reconcile(flows)
        self._finished(report, "reconcile", flows, started)
        return report

    async def sync_batch(self, batch: DirtyBatch) -> None:
        """Sync exactly the records the webhooks named, then time their propagation.

        An Invoiced delete arrives signed, so it is believed as it is; a Keap delete hook is not signed,
        so its id is synced like a change and the engine believes the delete on the GET's 404. The flows on one
        Keap object (contacts: people and the people of companies) share one read of the ids by id.
        """
        keap_ids = {flow: [*batch.ids(flow, "keap"), *batch.ids(flow, "keap", removed=True)] for flow in batch.flows()}
        keap_reads = self.syncer.batch_reads_for(keap_ids)
        for flow in batch.flows():
            if self.syncer.stop_requested:
                return
            started = time.monotonic()
            with self.metrics.job_in_hand("sync_ids"):
                report = await self.syncer.sync_ids(
                    flow,
                    invoiced_ids=batch.ids(flow, "invoiced"),
                    keap_ids=keap_ids[flow],
                    removed_invoiced=batch.ids(flow, "invoiced", removed=True),
                    keap_reads=keap_reads,
                )
            self._finished(report, "sync_ids", [flow], started)
        done = time.monotonic()
        for key, mark in batch.marks.items():
            self.metrics.propagation_delay.labels(key.flow).observe(done - mark.first_seen)

    def _finished(self, report: RunReport, kind: str, flows: list[str], started: float, *, whole: bool = True) -> None:
        """A pass ended: health and metrics learn how each of its flows did (the engine logged it); `whole`: a poll
        read both sides (`FlowHealth.record`)."""
        self.flow_health.record(report, flows, time.time(), kind, whole=whole)
        self.metrics.record_run(report, kind, time.monotonic() - started, self.flow_health.last_success)

"""Prometheus metrics: one registry per service, so tests and two services in one process never mix.

Counters and histograms are fed as things happen (passes and their duration, records written, API calls,
webhook deliveries, propagation), with each flow's last successful pass as a timestamp to alert on; what the
state database holds (links, open failures, review items, lossy carries, conflicts) is read at scrape time
by `StateCollector`, so the numbers agree with the status page and survive restarts.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as CounterOf
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from invoiced_keap.connectors.http import RequestEvent
from invoiced_keap.engine.report import RunReport
from invoiced_keap.logs import log_event
from invoiced_keap.state import Store

PREFIX = "invoiced_keap"
WRITE_VERBS = frozenset({"create", "update", "delete", "stamp"})
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
READS_OF_JOB = {"poll": "polling reads", "sync_ids": "webhook reads", "reconcile": "reconcile reads"}
CALL_KINDS = ("polling reads", "webhook reads", "reconcile reads", "other reads", "writes", "hooks upkeep")
DAY = 86_400
logger = logging.getLogger("invoiced_keap.events")
PROPAGATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
PASS_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class StateCollector(Collector):
    """Gauges read from the state store on each scrape; each configured flow reads 0 where it has none."""

    def __init__(self, store: Store, flows: Iterable[str]) -> None:
        self.store = store
        self.flows = set(flows)

    def collect(self) -> Iterator[Metric]:
        counts = self.store.status_counts()
        for name, documentation, per_flow in (
            ("links", "Active links per flow", counts.active_links),
            ("open_failures", "Records in the failures list per flow", counts.open_failures),
            ("open_review_items", "Records waiting for review per flow", counts.open_review_items),
            ("lossy_carries", "Values carried with loss, noted on active links, per flow", counts.lossy_carries),
        ):
            family = GaugeMetricFamily(f"{PREFIX}_{name}", documentation, labels=["flow"])
            for flow in sorted(self.flows | set(per_flow)):
                family.add_metric([flow], per_flow.get(flow, 0))
            yield family
        yield GaugeMetricFamily(f"{PREFIX}_conflicts", "Conflicts recorded so far", value=counts.conflicts)
        yield GaugeMetricFamily(f"{PREFIX}_open_intents", "Creates begun and not yet confirmed", value=counts.open_intents)


def call_kind(job: str, endpoint: str) -> str:
    """What a call was spent on: hooks upkeep (every call of a hook check), writes (any other call that changes
    something), or reads by the job that made them (polling, webhook-driven syncs, reconciles, other)."""
    if job == "hooks":
        return "hooks upkeep"
    if endpoint.split(" ", 1)[0] in WRITE_METHODS:
        return "writes"
    return READS_OF_JOB.get(job, "other reads")


class DailyCalls:
    """This process's calls per kind since it started or since 00:00 UTC, when Keap's daily quota starts afresh,
    whichever is later (`since`); `clock`: epoch seconds."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.started = clock()
        self.day = -1
        self.counts: CounterOf[str] = CounterOf()

    def since(self) -> float:
        """When the counts began (epoch seconds): this process's start, or 00:00 UTC today if later."""
        self._roll()
        return max(self.started, self.day * DAY)

    def add(self, kind: str) -> None:
        self._roll()
        self.counts[kind] += 1

    def today(self) -> dict[str, int]:
        self._roll()
        return dict(self.counts)

    def _roll(self) -> None:
        day = int(self.clock() // DAY)
        if day != self.day:
            self.day = day
            self.counts.clear()


class KeapQuotaCollector(Collector):
    """Keap's daily quota as last reported: left, and used on the key today by every process on it (each absent
    until Keap has reported it); and this process's own Keap calls by kind since it started or 00:00 UTC."""

    def __init__(self, calls_today: DailyCalls) -> None:
        self.remaining: Callable[[], int | None] = lambda: None
        self.used: Callable[[], int | None] = lambda: None
        self.calls_today = calls_today

    def collect(self) -> Iterator[Metric]:
        left = self.remaining()
        if left is not None:
            yield GaugeMetricFamily(f"{PREFIX}_keap_quota_remaining", "Keap calls left in the daily quota (last reported)",
                                    value=left)
        used = self.used()
        if used is not None:
            yield GaugeMetricFamily(f"{PREFIX}_keap_calls_today", "Keap calls on the key since 00:00 UTC by every process "
                                    "on it, as Keap counts them (its quota headers)", value=used)
        today = self.calls_today.today()
        family = GaugeMetricFamily(f"{PREFIX}_keap_own_calls_today", "This process's Keap calls since it started or "
                                   "since 00:00 UTC, the later, per kind (polling reads, webhook reads, reconcile reads, "
                                   "other reads, writes, hooks upkeep)", labels=["kind"])
        for kind in CALL_KINDS:
            family.add_metric([kind], today.get(kind, 0))
        yield family


class Metrics:
    """The service's metric objects; `exposition()` is what `/metrics` serves. `clock` (epoch seconds) says when a
    UTC day begins for the Keap calls counted per day."""

    def __init__(self, store: Store | None = None, flows: Iterable[str] = (), clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.own_keap_calls = DailyCalls(clock)
        self.keap_quota = KeapQuotaCollector(self.own_keap_calls)
        registry.register(self.keap_quota)
        self.passes = Counter(f"{PREFIX}_passes", "Sync passes per flow and result", ["flow", "result"], registry=registry)
        self.records_read = Counter(f"{PREFIX}_records_read", "Records read per flow and side", ["flow", "side"], registry=registry)
        self.records_written = Counter(
            f"{PREFIX}_records_written", "Records written per flow, side and kind (create, update, delete, stamp)",
            ["flow", "side", "kind"], registry=registry
        )
        self.pass_duration = Histogram(
            f"{PREFIX}_pass_duration_seconds", "Pass duration per kind (sync, sync_ids, reconcile)", ["kind"],
            buckets=PASS_BUCKETS, registry=registry
        )
        self.last_success = Gauge(
            f"{PREFIX}_last_success_timestamp_seconds", "When a pass of the flow last succeeded (Unix time)", ["flow"],
            registry=registry
        )
        self.failures = Counter(f"{PREFIX}_failures", "Records rejected per flow", ["flow"], registry=registry)
        self.conflicts_resolved = Counter(
            f"{PREFIX}_conflicts_resolved", "Field conflicts resolved per flow", ["flow"], registry=registry
        )
        self.api_calls = Counter(f"{PREFIX}_api_calls", "API calls sent per system and job (poll, sync_ids, reconcile, "
                                 "hooks)", ["system", "job"], registry=registry)
        self.job = "other"  # the service's job in hand, which the calls are counted under
        self.api_rate_limited = Counter(
            f"{PREFIX}_api_rate_limited", "429 answers per system", ["system"], registry=registry
        )
        self.webhook_deliveries = Counter(
            f"{PREFIX}_webhook_deliveries",
            "Webhook deliveries per source and outcome (accepted, duplicate, ignored, rejected, handshake)",
            ["source", "outcome"],
            registry=registry,
        )
        self.propagation_delay = Histogram(
            f"{PREFIX}_propagation_delay_seconds",
            "From a webhook's arrival to the commit of the sync it caused",
            ["flow"],
            buckets=PROPAGATION_BUCKETS,
            registry=registry,
        )
        if store is not None:
            registry.register(StateCollector(store, flows))

    def record_run(self, report: RunReport, kind: str, seconds: float, last_success: Mapping[str, float]) -> None:
        """Count a pass's reads, writes, failures and conflicts, per flow, and its duration; set the flows'
        last successes (a dry run counts nothing)."""
        if report.dry_run:
            return
        self.pass_duration.labels(kind).observe(seconds)
        for flow, at in last_success.items():
            self.last_success.labels(flow).set(at)
        for flow, flow_report in report.flows.items():
            result = "error" if report.error or flow_report.error else "ok"
            self.passes.labels(flow, result).inc()
            for side in ("invoiced", "keap"):
                self.records_read.labels(flow, side).inc(flow_report.counts.get(f"read.{side}", 0))
            for (verb, side), count in flow_report.done.items():
                if verb in WRITE_VERBS:
                    self.records_written.labels(flow, side, verb).inc(count)
                elif verb == "fail":
                    self.failures.labels(flow).inc(count)
                elif verb == "conflict":
                    self.conflicts_resolved.labels(flow).inc(count)

    def delivered(self, source: str, outcome: str, **about: Any) -> None:
        """A webhook or hook delivery answered: counted, and logged as a `webhook` event."""
        self.webhook_deliveries.labels(source, outcome).inc()
        log_event(logger, "webhook", logging.WARNING if outcome == "rejected" else logging.INFO,
                  source=source, outcome=outcome, **about)

    def watch_keap_quota(self, remaining: Callable[[], int | None], used: Callable[[], int | None]) -> None:
        """Read the quota left and the calls used on the key today at scrape time (each gauge is left out while
        its callable answers None: Keap has not reported it)."""
        self.keap_quota.remaining = remaining
        self.keap_quota.used = used

    def calls_by_job(self, system: str) -> dict[str, int]:
        """API calls to `system` since the start, per job (the status page's "spent by polling vs the rest")."""
        return {sample.labels["job"]: int(sample.value) for metric in self.api_calls.collect() for sample in metric.samples
                if sample.name.endswith("_total") and sample.labels["system"] == system}

    @contextmanager
    def job_in_hand(self, job: str) -> Iterator[None]:
        """Count the API calls made meanwhile under `job` (what polling costs against what webhooks and writes do)."""
        self.job = job
        try:
            yield
        finally:
            self.job = "other"

    def api_listener(self, system: str) -> Callable[[RequestEvent], None]:
        """A connector `listeners=` entry counting that system's calls and 429s."""
        limited = self.api_rate_limited.labels(system)

        def count(event: RequestEvent) -> None:
            self.api_calls.labels(system, self.job).inc()
            if system == "keap":
                self.own_keap_calls.add(call_kind(self.job, event.endpoint))
            if event.status == 429:
                limited.inc()

        return count

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

"""What `/healthz` says: per flow, did its last pass fail, and has one succeeded recently enough.

`FlowHealth` is fed every pass's report and the progress of the pass in hand; `verdict(now)` is pure over
what it holds: a flow is unhealthy when its last pass stopped with an error (a held lock, refused
credentials, an unreachable API, the quota) or met a system that kept answering 5xx after the retries, while
the circuit breaker holds changes of it back (until a reconcile of the flow passes the breaker, or a pass applies
unlinks or deletes of it, or, for changes a poll held back and for updates, a later poll that read both sides passes
it: no held pass moves a watermark, so such a poll reads again what was held, and finds it applied if another
process did, such as `sync --allow-mass-change`; a poll does not see again the deletes a webhook batch or a reconcile
found: Keap's hooks and the id scans are their only sources), or when
within `max_age` (3 × `poll_interval`) of the last success, the last progress or the start no pass
succeeded and none made progress (a long first pass that commits batches stays healthy, and so do the flows whose
poll waits for a long job of another flow, such as a webhook burst's, while that job makes progress). Times are
wall-clock seconds, as `/metrics` exposes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from invoiced_keap.connectors.errors import TransientError
from invoiced_keap.engine.report import RunReport


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    reasons: dict[str, str]  # flow -> why it is unhealthy

    def as_json(self) -> dict[str, object]:
        return {"status": "ok" if self.healthy else "unhealthy", "reasons": self.reasons}


class Hold(NamedTuple):
    """A flow's changes the circuit breaker holds back: the kind of pass that held them, the breaker's message, and
    whether it held deletes (else updates)."""

    kind: str
    message: str
    deletes: bool

    @property
    def read_again_by_polls(self) -> bool:
        """A poll reads these changes again (no held pass moves a watermark): all a poll held, and updates; not the
        deletes a webhook batch (a Keap hook) or a reconcile (an id scan) found."""
        return self.kind == "sync" or not self.deletes


@dataclass
class FlowHealth:
    """The last error and the last success of each flow, since `started`."""

    flows: list[str]
    max_age: float
    started: float
    last_success: dict[str, float] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)
    last_progress: dict[str, float] = field(default_factory=dict)
    held: dict[str, Hold] = field(default_factory=dict)
    worker_progress: float | None = None  # the last progress of any job: flows waiting behind it are not stalled

    def progressed(self, flow: str, at: float) -> None:
        """The job in hand made progress on `flow` (a committed batch, a step's count; a label naming several
        flows) at `at`: that flow is not stalled, nor is a flow whose poll waits for the job to end."""
        self.last_progress[flow] = at
        self.worker_progress = at

    def record(self, report: RunReport, flows: Iterable[str], at: float, kind: str = "sync", *, whole: bool = True) -> None:
        """A pass of `kind` over `flows` ended at `at`: each one failed with its own error or the pass's, or
        succeeded; a breaker stop is held (see the module docstring). `whole`: a poll (`sync`) read the changes of
        both sides (not one that left a side to its push path)."""
        if report.dry_run:
            return
        for flow in flows:
            flow_report = report.flows.get(flow)
            if flow_report and flow_report.held:
                self.held[flow] = Hold(kind, flow_report.held, flow_report.held_deletes)
            elif flow_report and not report.error and flow in self.held and (
                    kind == "reconcile" or flow_report.counts["unlinked"]
                    or (kind == "sync" and whole and self.held[flow].read_again_by_polls)):
                self.held.pop(flow, None)
            error = (flow_report.error if flow_report else None) or _outage_or(report.error, report.cause) or (
                flow_report.unavailable if flow_report else None)
            if error:
                self.last_error[flow] = error
            else:
                self.last_error.pop(flow, None)
                self.last_success[flow] = at

    def verdict(self, now: float) -> Verdict:
        reasons = {}
        for flow in self.flows:
            if flow in self.last_error:
                reasons[flow] = f"last pass failed: {self.last_error[flow]}"
            elif flow in self.held:
                reasons[flow] = f"changes held back: {self.held[flow].message}"
            elif now - max(self.last_success.get(flow, self.started), self.last_progress.get(flow, self.started),
                           self.worker_progress or self.started) > self.max_age:
                since = "since the start" if flow not in self.last_success else f"for {now - self.last_success[flow]:.0f} s"
                reasons[flow] = f"no pass succeeded {since} and none made progress (more than {self.max_age:.0f} s)"
        return Verdict(not reasons, reasons)


def _outage_or(error: str | None, cause: Exception | None) -> str | None:
    """A pass ended by a read still failing after its retries says so as an outage; other errors as they are."""
    return f"{cause.outage()}: {error}" if isinstance(cause, TransientError) else error

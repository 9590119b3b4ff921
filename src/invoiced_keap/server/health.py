"""What `/healthz` says: per flow, did its last pass fail, and has one succeeded recently enough.

`FlowHealth` is fed every pass's report; `verdict(now)` is pure over what it holds: a flow is unhealthy
when its last pass stopped with an error (a held lock, refused credentials, an unreachable API, the
quota), or when no pass has succeeded within `max_age` (3 × `poll_interval`) of the last success or of
the start. Times are wall-clock seconds, as `/metrics` exposes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from invoiced_keap.engine.report import RunReport


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    reasons: dict[str, str]  # flow -> why it is unhealthy

    def as_json(self) -> dict[str, object]:
        return {"status": "ok" if self.healthy else "unhealthy", "reasons": self.reasons}


@dataclass
class FlowHealth:
    """The last error and the last success of each flow, since `started`."""

    flows: list[str]
    max_age: float
    started: float
    last_success: dict[str, float] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)

    def record(self, report: RunReport, flows: Iterable[str], at: float) -> None:
        """A pass over `flows` ended at `at`: each one failed with its own error or the pass's, or succeeded."""
        if report.dry_run:
            return
        for flow in flows:
            flow_report = report.flows.get(flow)
            error = (flow_report.error if flow_report else None) or report.error
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
            elif now - self.last_success.get(flow, self.started) > self.max_age:
                since = "since the start" if flow not in self.last_success else f"for {now - self.last_success[flow]:.0f} s"
                reasons[flow] = f"no pass succeeded {since} (more than {self.max_age:.0f} s)"
        return Verdict(not reasons, reasons)

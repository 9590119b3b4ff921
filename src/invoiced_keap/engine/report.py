"""What a pass did (or, for a dry run, would do): counts per flow, the printable plan, the exit code.

The engine never prints; the CLI renders `RunReport` (`plan_lines()` is the diffsync-style plan, one
line per action with its fields) and exits with `exit_code`. Each action a pass does is also logged as an
event (`FlowReport.add`): field names, ids and messages, never the values written.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from invoiced_keap.flows import Side
from invoiced_keap.logs import log_event

logger = logging.getLogger("invoiced_keap.events")

EXIT_SYNCED = 0
EXIT_NOT_RUN = 1
EXIT_NEEDS_ATTENTION = 2
ACTIONS_KEPT = 1_000
"""A pass's report keeps this many actions of each verb (a pass of 100,000 writes would hold them all); every
action is counted (`FlowReport.counts`, `FlowReport.done`) and logged as an event, kept or not."""
KEPT_CHARS = 1_000_000
"""...and at most this many characters of their values in all (`Action.size`): 1,000 creates of 20,000-character
descriptions would otherwise keep hundreds of megabytes to the end of the pass. Past it actions are counted, not
kept, as past `ACTIONS_KEPT`."""
SHOWN_CHARS = 120
"""A value longer than this is cut in printed lines and tables (`shortened`); JSON output keeps it whole."""


@dataclass(frozen=True)
class Action:
    """One write (or state change) the pass made or plans: `create`, `update`, `delete`, `link`,
    `unlink`, `review`, `stamp` (metadata), `conflict`, `fail`, `lossy` (a value carried with loss to `side`),
    `refuse` (a create Keap's documented rules refuse, not sent), `tag` / `untag` (a Keap tag applied or removed),
    on `side`'s record."""

    flow: str
    verb: str
    side: Side
    record_id: str | None
    fields: dict[str, Any] = field(default_factory=dict)

    def event_fields(self) -> dict[str, Any]:
        """What a log event says of the action: the names of the fields written, not their values."""
        details = self.fields
        if self.verb in VALUE_VERBS:
            details = {"fields": sorted(self.fields)}
        elif self.verb == "conflict":
            details = {key: self.fields[key] for key in ("keap_id", "group", "winner", "reason")}
        elif self.verb == "lossy":
            details = {key: self.fields[key] for key in ("field", "reason")}
        return {"flow": self.flow, "side": self.side, "record_id": self.record_id, **details}

    @property
    def size(self) -> int:
        """The characters of the action's values as JSON text (what keeping it costs, in characters)."""
        return len(json.dumps(self.fields, default=str, ensure_ascii=False))

    def line(self) -> str:
        target = f"{self.side}:{self.record_id}" if self.record_id else f"{self.side}:(new)"
        fields = self.fields
        if self.verb == "stamp":  # a dry run's stamp of a twin yet to be created: its id is not known yet (JSON: null)
            fields = {key: "(new)" if value is None else value for key, value in fields.items()}
        details = json.dumps(shortened(fields), sort_keys=True, default=str) if fields else ""
        return f"{self.flow:<9} {self.verb:<8} {target:<24} {details}".rstrip()


def shortened(value: Any, limit: int = SHOWN_CHARS) -> Any:
    """`value` with each text in it longer than `limit` cut, ending in an ellipsis and its full length."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}… ({len(value):,} characters)"
    if isinstance(value, dict):
        return {key: shortened(item, limit) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [shortened(item, limit) for item in value]
    return value


ListedRecord = tuple[str, str, str | None]
"""A record on the review or failures list: (flow, side, record id)."""

LISTED = ("review", "refuse")
"""The verbs whose actions put a record on a list (review, failures)."""


VALUE_VERBS = frozenset({"create", "update", "stamp"})
"""The verbs whose fields are values written (logged by name only)."""

COUNTED = {"update": "updated.{side}", "create": "created.{side}", "delete": "deleted.{side}", "link": "linked",
           "unlink": "unlinked", "review": "review", "stamp": "stamped", "conflict": "conflicts", "fail": "failed",
           "lossy": "lossy.{side}", "refuse": "refused", "tag": "tagged", "untag": "untagged"}
"""The report counter of each action verb."""


@dataclass
class FlowReport:
    """Counters of one flow's pass; `counts` keys are `read.invoiced`, `created.keap`, `linked`, ...

    `error` is set when the pass stopped early (fatal API error, circuit breaker, flow lock held); `held` too when
    it was the circuit breaker (`held_deletes`: over its limit of deletes and unlinks, else of updates); `unavailable` when a system kept answering 5xx or timing out after the retries,
    though the pass went on (its writes failed). `actions` keeps the first `ACTIONS_KEPT` of each verb, at most `KEPT_CHARS` of values in all (`kept_chars`; a dry run
    hands every planned action to the engine's `on_planned` hook); `done` counts every action by (verb, side);
    `left_out` how many `actions` does not show; `listed` the records a dry run would put on the review and
    failures lists; `unplanned` what a dry run's plan could not show (one sentence).
    """

    flow: str
    counts: Counter[str] = field(default_factory=Counter)
    actions: list[Action] = field(default_factory=list)
    done: Counter[tuple[str, str]] = field(default_factory=Counter)
    listed: dict[str, set[ListedRecord]] = field(default_factory=lambda: {verb: set() for verb in LISTED})
    error: str | None = None
    held: str | None = None
    held_deletes: bool = False
    unavailable: str | None = None
    unplanned: str | None = None
    kept_chars: int = 0

    @property
    def left_out(self) -> int:
        return sum(self.done.values()) - len(self.actions) if self.done else 0

    def add(self, action: Action, **about: Any) -> None:
        """Note an action the pass did (a write once it went through), count it (`COUNTED`) and log it;
        `about` adds to the event what the action does not carry (a created record's id)."""
        self.note(action)
        log_event(logger, "refused" if action.verb in ("fail", "refuse") else action.verb,
                  logging.WARNING if action.verb in ("fail", "refuse", "lossy") else logging.INFO,
                  **action.event_fields(), **about)

    def note(self, action: Action) -> None:
        """Count an action (done, or planned by a dry run) and keep it if fewer than `ACTIONS_KEPT` of its verb are
        kept; a dry run's review and refusal records are remembered whole (`listed`), for the lists' sizes."""
        if sum(count for (verb, _), count in self.done.items() if verb == action.verb) < ACTIONS_KEPT:
            size = action.size
            if self.kept_chars + size <= KEPT_CHARS:
                self.actions.append(action)
                self.kept_chars += size
        self.done[(action.verb, action.side)] += 1
        self.counts[COUNTED[action.verb].format(side=action.side)] += 1
        if action.verb in LISTED:
            self.listed[action.verb].add((action.flow, action.side, action.record_id))


@dataclass
class RunReport:
    """A pass of `kind` (`sync`, `sync_ids`, `reconcile`, `relink`) over some flows. `api_calls` counts calls per system; `open_failures` / `open_review` are
    the lists' sizes after the pass (what the exit code reflects); `cause` is the API error that ended the
    pass, if one did (its message is `error`)."""

    run_id: int | None
    dry_run: bool
    flows: dict[str, FlowReport] = field(default_factory=dict)
    api_calls: dict[str, int] = field(default_factory=dict)
    open_failures: int = 0
    open_review: int = 0
    error: str | None = None
    cause: Exception | None = None
    kind: str = "sync"

    @property
    def exit_code(self) -> int:
        if self.error or any(report.error for report in self.flows.values()):
            return EXIT_NOT_RUN
        return EXIT_NEEDS_ATTENTION if self.open_failures or self.open_review else EXIT_SYNCED

    def plan_lines(self) -> list[str]:
        return [action.line() for report in self.flows.values() for action in report.actions]

    def counts(self) -> dict[str, dict[str, int]]:
        return {name: dict(report.counts) for name, report in self.flows.items()}


@dataclass(frozen=True)
class Progress:
    """A progress note for the CLI: `step` of `flow` has handled `done` records (of `total` if known)."""

    flow: str
    step: str
    done: int
    total: int | None = None


ProgressHook = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """The default hook: the engine reports nothing while it runs."""

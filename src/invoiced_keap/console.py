"""What the command line looks like: Rich tables and progress bars, plain JSON for scripts.

Tables and results go to stdout; progress and error lines go to stderr. On a terminal progress is a
set of bars; elsewhere (a pipe, cron, a container) it is a `progress` log line per unfinished step every
`PROGRESS_EVERY` seconds, and with JSON logs (`use_json_lines`) error lines are JSON log lines too.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from invoiced_keap.engine.report import Action, ProgressHook, RunReport, shortened
from invoiced_keap.logs import PROGRESS, log_event

out = Console()
err = Console(stderr=True)
PROGRESS_EVERY = 10.0
"""Seconds between progress lines when stderr is not a terminal."""
_json_lines = threading.Event()


def use_json_lines(on: bool) -> None:
    """Whether error lines go through the (JSON) log handler, from now on."""
    if on:
        _json_lines.set()
    else:
        _json_lines.clear()


def error(message: str) -> None:
    """One line on stderr, markup-free (messages quote user data and API text)."""
    if _json_lines.is_set():
        logging.getLogger("invoiced_keap").error(message)
    else:
        err.print(Text(f"invoiced-keap: {message}", style="bold red"), soft_wrap=True)


def note(message: str) -> None:
    out.print(Text(message), soft_wrap=True)


def print_json(data: Any) -> None:
    """Plain JSON on stdout, for scripts (no colour, no wrapping)."""
    out.file.write(json.dumps(data, indent=2, default=_jsonable, ensure_ascii=False) + "\n")
    out.file.flush()


def print_json_list(items: Iterable[Any]) -> None:
    """A JSON list on stdout written an item at a time, so a long listing is never held whole (same format as
    `print_json` of the list)."""
    first = True
    for item in items:
        text = json.dumps(item, indent=2, default=_jsonable, ensure_ascii=False).replace("\n", "\n  ")
        out.file.write(("[\n  " if first else ",\n  ") + text)
        first = False
    out.file.write("[]\n" if first else "\n]\n")
    out.file.flush()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def cell(value: Any, *, record_value: bool = False) -> str:
    """A value as a table shows it: times to the second, JSON for structures, nothing for None. A record's value
    (a structure, or a text in a value column) is cut when long (`report.shortened`; `--json` shows it whole);
    messages and reasons never are."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict | list):
        return json.dumps(shortened(value), ensure_ascii=False, default=str)
    return str(shortened(value) if record_value else value)


def _holds_record_values(column: str) -> bool:
    """Whether a table column shows record values ("Invoiced value", "keap value"), which `cell` cuts."""
    return column.lower().endswith("value")


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "none") -> None:
    rows = list(rows)
    if not rows:
        note(f"{title}: {empty}")
        return
    table = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    cut = [_holds_record_values(column) for column in columns]
    for row in rows:
        table.add_row(*(escape(cell(value, record_value=values)) for value, values in zip(row, cut, strict=True)))
    out.print(table)


def print_rows(title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> None:
    """Rows of named values as a table of `columns` (default: every key), headed by their names."""
    shown = list(columns) if columns is not None else list(rows[0]) if rows else []
    print_table(title, [name.replace("_", " ") for name in shown], [[row[name] for name in shown] for row in rows])


class RateColumn(ProgressColumn):
    """Records (or writes) a second, from Rich's own speed estimate."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f}/s" if task.speed else "", style="progress.data.speed")


class CountingProgress:
    """Progress bars keyed by name, created on first update: `counter("Keap contacts", 1200, total=None)`."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def __call__(self, name: str, done: int, total: int | None = None) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total)
        self.progress.update(self.tasks[name], completed=done, total=total)


class ProgressLines:
    """The same counters without a terminal: every `PROGRESS_EVERY` seconds (`tick`) a `progress` line for each
    step that moved since the last line, and for the step in hand (the last one updated) while it is unfinished, so
    a step that waits still shows; a step that finished, or that a later step followed, is printed once."""

    def __init__(self) -> None:
        self.steps: dict[str, tuple[int, int | None]] = {}
        self.shown: dict[str, tuple[int, int | None]] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.logger = logging.getLogger(PROGRESS)

    def __call__(self, name: str, done: int, total: int | None = None) -> None:
        with self.lock:
            self.steps.pop(name, None)  # the last key is the step in hand
            self.steps[name] = (done, total)

    def run(self) -> None:
        while not self.stop.wait(PROGRESS_EVERY):
            self.tick()

    def tick(self) -> None:
        with self.lock:
            in_hand = next(reversed(self.steps), None)
            due = {name: (done, total) for name, (done, total) in self.steps.items()
                   if self.shown.get(name) != (done, total) or (name == in_hand and total is not None and done < total)}
            self.shown.update(due)
        for name, (done, total) in due.items():
            log_event(self.logger, "progress", step=name, done=done, total=total)


@contextmanager
def pass_progress() -> Iterator[ProgressHook]:
    """The engine's progress hook, drawn as `progress_bars` while the block runs."""
    with progress_bars() as bars:
        yield lambda note: bars(f"{note.flow}: {note.step}", note.done, note.total)


@contextmanager
def progress_bars() -> Iterator[CountingProgress | ProgressLines]:
    """Bars with counts and rates on stderr when it is a terminal; `ProgressLines` otherwise."""
    if not err.is_terminal:
        lines = ProgressLines()
        ticker = threading.Thread(target=lines.run, name="progress", daemon=True)
        ticker.start()
        try:
            yield lines
        finally:
            lines.stop.set()
            ticker.join()
        return
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    with progress:
        yield CountingProgress(progress)


def print_planned(action: Action) -> None:
    """One action of a dry run's plan, as it is planned."""
    out.print(Text(action.line()), soft_wrap=True)


def print_run_report(report: RunReport, *, show_plan: bool) -> None:
    """A pass's counts per flow (a table titled by the pass's kind) and its API calls. `show_plan`: the pass was a
    dry run whose plan went out line by line as it was planned (`print_planned`)."""
    kind = report.kind.replace("_", " ")
    if show_plan and not report.error and not any(flow.done for flow in report.flows.values()):
        out.print("nothing to do")
    counters = sorted({counter for flow in report.flows.values() for counter in flow.counts})
    rows: list[tuple[Any, ...]] = [(counter, *(flow.counts.get(counter, 0) for flow in report.flows.values())) for counter in counters]
    if any(flow.error for flow in report.flows.values()):
        rows.append(("stopped because", *(flow.error for flow in report.flows.values())))
    print_table(f"Dry run: what a {kind} would do" if report.dry_run else kind.capitalize(), ["", *report.flows], rows,
                empty=f"not run: {report.error}" if report.error else "nothing read")
    if not show_plan:
        lossy = [action.line() for flow in report.flows.values() for action in flow.actions if action.verb in ("lossy", "refuse")]
        for line in lossy:
            out.print(Text(line), soft_wrap=True)
    for flow in report.flows.values():
        if flow.unplanned:
            note(flow.unplanned)
    left_out = sum(flow.left_out for flow in report.flows.values())
    if left_out and not show_plan:
        note(f"{left_out:,} more actions are counted above but not listed; each one is logged as an event (--log-level INFO; --log-format json for machines)")
    calls = ", ".join(f"{system} {count}" for system, count in report.api_calls.items())
    note(f"API calls: {calls or 'none'}   Open failures: {report.open_failures}   Waiting for review: {report.open_review}")
    if report.error:
        error(report.error)

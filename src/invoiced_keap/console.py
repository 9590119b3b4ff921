"""What the command line looks like: Rich tables and progress bars, plain JSON for scripts.

Tables and results go to stdout; progress bars and error lines go to stderr, and progress bars
only appear on a terminal, so a command in a pipe or a cron job prints nothing but its result.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from invoiced_keap.engine.report import RunReport

out = Console()
err = Console(stderr=True)


def error(message: str) -> None:
    """One line on stderr, markup-free (messages quote user data and API text)."""
    err.print(Text(f"invoiced-keap: {message}", style="bold red"), soft_wrap=True)


def note(message: str) -> None:
    out.print(Text(message), soft_wrap=True)


def print_json(data: Any) -> None:
    """Plain JSON on stdout, for scripts (no colour, no wrapping)."""
    out.file.write(json.dumps(data, indent=2, default=_jsonable, ensure_ascii=False) + "\n")
    out.file.flush()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def cell(value: Any) -> str:
    """A value as a table shows it: times to the second, JSON for structures, nothing for None."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "none") -> None:
    rows = list(rows)
    if not rows:
        note(f"{title}: {empty}")
        return
    table = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell(value)) for value in row))
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


@contextmanager
def progress_bars() -> Iterator[CountingProgress]:
    """Bars with counts and rates on stderr, when it is a terminal; silent otherwise."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=False,
    )
    with progress:
        yield CountingProgress(progress)


def print_run_report(report: RunReport, *, show_plan: bool) -> None:
    """A pass's counts per flow, its API calls, and (for a dry run) the plan, one action a line."""
    if show_plan:
        for line in report.plan_lines() or ["nothing to do"]:
            out.print(Text(line), soft_wrap=True)
    counters = sorted({counter for flow in report.flows.values() for counter in flow.counts})
    rows: list[tuple[Any, ...]] = [(counter, *(flow.counts.get(counter, 0) for flow in report.flows.values())) for counter in counters]
    if any(flow.error for flow in report.flows.values()):
        rows.append(("stopped because", *(flow.error for flow in report.flows.values())))
    print_table("Dry run: what a pass would do" if report.dry_run else "Sync", ["", *report.flows], rows, empty="nothing read")
    calls = ", ".join(f"{system} {count}" for system, count in report.api_calls.items())
    note(f"API calls: {calls or 'none'}   Open failures: {report.open_failures}   Waiting for review: {report.open_review}")
    if report.error:
        error(report.error)

"""The `invoiced-keap` command line: thin over the engine, the store and the emulators.

Exit codes: 0 everything synced or agrees, 2 finished but records wait in the failures
or review lists (or `verify` found differences), 1 could not run (a setting, credentials, an
unreachable system, the circuit breaker). Setting and connection problems print one line, never a
traceback; the group class below turns them into exit code 1 for every command.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
import time
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import typer
from sqlalchemy.exc import SQLAlchemyError
from typer.core import TyperGroup

from invoiced_keap import __version__, compose, console
from invoiced_keap.compose import CannotConnect, check_credentials, open_invoiced, open_keap, selected_flows
from invoiced_keap.config import Settings, SettingError, load_settings
from invoiced_keap.connectors.errors import ApiError
from invoiced_keap.connectors.keap_auth import KeapOAuth
from invoiced_keap.connectors.redaction import register_secret
from invoiced_keap.engine import review as reviewing
from invoiced_keap.engine.report import EXIT_NEEDS_ATTENTION, EXIT_NOT_RUN, EXIT_SYNCED, RunReport, shortened
from invoiced_keap.engine.review import ReviewRefused
from invoiced_keap.engine.run import Syncer
from invoiced_keap.flows import CATALOGUE, Flow, sharing_keap_object
from invoiced_keap.logs import LogFormat, configure_logging
from invoiced_keap.state import Store
from invoiced_keap.state.models import AuditEntry, ConflictRow, Failure, Link, LossyCarryRow, ReviewItem
from invoiced_keap.state.views import OPEN_INTENTS, OPEN_INTENTS_NOTE, explain_view, search_links, status_view
from invoiced_keap.engine.changes import ParentTwins
from invoiced_keap.engine.keap_account import KeapAccount
from invoiced_keap.engine.owed import FoundDrift, receivables_drift
from invoiced_keap.connectors.invoiced import CUSTOMER
from invoiced_keap.verify import FlowCheck, Listings, check_flow, linked_elsewhere_left_out, read_listings, repair, stored


class _StopsCleanly(TyperGroup):
    """Any command: a setting, credential, API or database problem is one line on stderr and exit 1."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except typer.TyperException as problem:
            if getattr(problem, "exit_code", None) == 2:  # a usage error: 2 means "finished, records wait" here
                problem.exit_code = 1  # type: ignore[attr-defined]
            raise
        except (SettingError, CannotConnect, ApiError, ReviewRefused) as problem:
            console.error(str(problem))
        except SQLAlchemyError as problem:
            console.error(f"state database: {type(problem).__name__}: {str(problem).splitlines()[0]}")
        raise typer.Exit(1)


app = typer.Typer(
    cls=_StopsCleanly, no_args_is_help=True, add_completion=False, help="Two-way sync between Invoiced and Keap."
)
auth_app = typer.Typer(cls=_StopsCleanly, no_args_is_help=True, help="Connect an account that needs a browser step.")
app.add_typer(auth_app, name="auth")


@dataclass
class Session:
    """What the global options chose; settings are read only by the commands that need them."""

    config_path: Path | None
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
            register_secret(*self._settings.secrets())
        return self._settings

    def store(self, *, dry_run: bool = False) -> Store:
        return compose.open_store(self.settings(), dry_run=dry_run)


def _session(ctx: typer.Context) -> Session:
    session = ctx.find_object(Session)
    assert session is not None, "the main callback sets it"
    return session


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"invoiced-keap {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", envvar="INVOICED_KEAP_CONFIG", help="Configuration file (default: ./invoiced-keap.toml if present)."
    ),
    log_format: LogFormat = typer.Option(LogFormat.text, "--log-format", help="Log lines for people (text) or machines (json)."),
    log_level: str = typer.Option("WARNING", "--log-level", help="DEBUG, INFO, WARNING or ERROR."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Two-way sync between Invoiced and Keap."""
    if log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise typer.BadParameter("expected DEBUG, INFO, WARNING or ERROR", param_hint="--log-level")
    configure_logging(log_format, log_level)
    console.use_json_lines(log_format is LogFormat.json)
    ctx.obj = Session(config)


FlowOption = typer.Option(None, "--flow", help=f"Only this flow ({', '.join(CATALOGUE)}); repeatable.")
OneFlowOption = typer.Option(None, "--flow", help=f"Only this flow ({', '.join(CATALOGUE)}).")
JsonOption = typer.Option(False, "--json", help="Print JSON for scripts instead of a table.")


def _flow_filter(settings: Settings, flow: str | None) -> str | None:
    if flow is not None:
        selected_flows(settings, [flow])  # validates the name
    return flow


# --- syncing ---------------------------------------------------------------------------------------

T = TypeVar("T")
EngineWork = Callable[[Syncer, list[str]], Awaitable[T]]


def _run_engine(session: Session, flows: Sequence[str], work: EngineWork[T], *, allow_mass_change: bool = False,
                dry_run: bool = False) -> T:
    """Open the APIs and the store, and let the engine `work` with progress bars. Credentials are checked by the
    pass's first reads (no call of their own): a refusal there names the system and the setting to look at.
    A `dry_run` creates no state database (`compose.open_store`)."""
    settings = session.settings()
    names = list(selected_flows(settings, flows))

    async def run() -> T:
        with session.store(dry_run=dry_run) as store:
            async with open_invoiced(settings) as invoiced, open_keap(settings) as keap:
                with console.pass_progress() as progress:
                    options = compose.sync_options(settings, allow_mass_change=allow_mass_change)
                    syncer = Syncer(store, invoiced, keap, options, progress=progress,
                                    on_planned=console.print_planned if dry_run else None)
                    result = await work(syncer, names)
        for report in result if isinstance(result, (list, tuple)) else (result,):
            if isinstance(report, RunReport) and isinstance(report.cause, ApiError):
                report.error = compose.explain_failure(settings, report.cause) or report.error
        return result

    return asyncio.run(run())


def _finish(*reports: RunReport, show_plan: bool = False) -> None:
    """Print each pass's report; exit with the worst code (1, then 2, then 0)."""
    for report in reports:
        console.print_run_report(report, show_plan=show_plan)
    raise typer.Exit(max((report.exit_code for report in reports), key=[EXIT_SYNCED, EXIT_NEEDS_ATTENTION, EXIT_NOT_RUN].index))


@app.command()
def sync(
    ctx: typer.Context,
    flow: list[str] | None = FlowOption,
    dry_run: bool = typer.Option(False, "--dry-run", help="Read and plan, print the plan, write nothing."),
    allow_mass_change: bool = typer.Option(False, "--allow-mass-change", help="Let this pass exceed the circuit breaker."),
    full: bool = typer.Option(False, "--full", help="Also reconcile now (full id scans find deletes), due or not."),
) -> None:
    """One pass: read what changed on both sides and bring the linked pairs together; then a reconcile (full id
    scans for deletes) of the flows whose last one is `full_scan_interval` old, as the state database says."""
    session = _session(ctx)
    every = timedelta(seconds=session.settings().schedule.full_scan_interval)

    async def work(syncer: Syncer, names: list[str]) -> list[RunReport]:
        reports = [await syncer.sync(names, dry_run=dry_run)]
        due = names if full else [] if dry_run else syncer.store.reconcile_due(names, every)
        if due and not reports[0].error:  # a pass the APIs refused (credentials, quota) is not followed by scans
            reports.append(await syncer.reconcile(due, dry_run=dry_run))
        return reports

    _finish(*_run_engine(session, flow or (), work, allow_mass_change=allow_mass_change, dry_run=dry_run), show_plan=dry_run)


@app.command()
def retry(
    ctx: typer.Context,
    failure_id: int | None = typer.Argument(None, help="A failure id (see `failures`): retries that record, in a pass over its flow."),
    retry_all: bool = typer.Option(False, "--all", help="Retry every open failure."),
) -> None:
    """Retry rejected records now instead of waiting for their backoff, then run a pass."""
    if (failure_id is None) == (not retry_all):
        raise SettingError("retry: give a failure ID or --all")
    try:
        report = _run_engine(_session(ctx), (), lambda syncer, names: syncer.retry(names, failure_id=failure_id))
    except LookupError as error:
        raise SettingError(f"retry: {error}") from None
    _finish(report)


@app.command()
def relink(ctx: typer.Context, flow: list[str] | None = FlowOption) -> None:
    """Rebuild links from the Keap ids stamped in Invoiced metadata (after losing the state database)."""
    _finish(_run_engine(_session(ctx), flow or (), lambda syncer, names: syncer.relink(names)))


@app.command()
def run(ctx: typer.Context, flow: list[str] | None = FlowOption) -> None:
    """Sync until stopped: polls, webhook receivers, status page, /metrics and /healthz on one server.

    SIGTERM or SIGINT (Ctrl-C) lets the records in hand finish and be committed, then exits 0.
    """
    from invoiced_keap.server.quota import QuotaWatchingPacer  # the server's imports: about 16 MB no other command needs
    from invoiced_keap.server.service import Service

    session = _session(ctx)
    settings = session.settings()
    flows = selected_flows(settings, flow or ())

    async def serve() -> None:
        await check_credentials(settings)
        with session.store() as store:
            async with open_invoiced(settings) as invoiced, open_keap(settings, pacer=QuotaWatchingPacer) as keap:
                with console.pass_progress() as progress:
                    syncer = Syncer(store, invoiced, keap, compose.sync_options(settings), progress=progress)
                    try:
                        service = Service(syncer, flows, settings)
                    except OSError as error:
                        raise SettingError(f"cannot listen on {settings.server_host}:{settings.server_port}: {error.strerror}") from None
                    console.note(f"invoiced-keap: serving on {service.url} (status page, /metrics, /healthz); SIGTERM or Ctrl-C stops")
                    await service.run_until_signalled()
        console.note("invoiced-keap: stopped")

    asyncio.run(serve())


# --- looking at the state ------------------------------------------------------------------------

# Each row kind is shown the same way wherever it appears (its own listing, `explain`, `status`).

def _link_row(link: Link) -> dict[str, Any]:
    shadows = {shadow.side: shadow.field_values for shadow in link.shadows}
    return {"flow": link.flow, "invoiced_id": link.invoiced_id, "keap_id": link.keap_id,
            "name": shadows.get("invoiced", {}).get("name"), "status": link.status,
            "closed_reason": link.closed_reason, "linked_at": link.created_at, "shadows": shadows}


def _failure_row(failure: Failure) -> dict[str, Any]:
    return {"id": failure.id, "flow": failure.flow, "side": failure.side, "record_id": failure.record_id,
            "operation": failure.operation, "attempts": failure.attempts, "message": failure.message,
            "field": failure.field, "first_seen": failure.first_seen, "next_retry_at": failure.next_retry_at,
            "resolved_at": failure.resolved_at,
            "dismissed_at": failure.dismissed_at, "dismissed_reason": failure.dismissed_reason}


def _lossy_row(note: LossyCarryRow) -> dict[str, Any]:
    return {"at": note.created_at, "flow": note.flow, "link": note.link_id, "side": note.side, "field": note.field,
            "source_value": note.source_value, "sent_value": note.sent_value, "reason": note.reason}


def _conflict_row(conflict: ConflictRow) -> dict[str, Any]:
    return {"at": conflict.created_at, "flow": conflict.flow, "link": conflict.link_id, "field": conflict.field_group,
            "invoiced_value": conflict.invoiced_value, "keap_value": conflict.keap_value,
            "winner": conflict.winner, "reason": conflict.reason}


def _write_row(entry: AuditEntry) -> dict[str, Any]:
    return {"at": entry.created_at, "flow": entry.flow, "side": entry.side, "record_id": entry.record_id,
            "operation": entry.operation, "before": entry.before, "after": entry.after}


def _review_row(item: ReviewItem) -> dict[str, Any]:
    return {"flow": item.flow, "invoiced_id": item.invoiced_id, "candidates": item.candidate_ids,
            "reason": item.reason, "since": item.created_at}


def _show(title: str, rows: list[dict[str, Any]], as_json: bool) -> None:
    """Rows as JSON, or as a table of every field."""
    if as_json:
        console.print_json(rows)
    else:
        console.print_rows(title, rows)


@app.command()
def status(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Links, open failures and review items per flow, and the last run. Exit 2 when records wait."""
    with _session(ctx).store() as store:
        view = status_view(store, CATALOGUE)
    last = view.last_run
    if as_json:
        console.print_json({
            "flows": {flow.name: {"active_links": flow.links, "open_failures": flow.open_failures,
                                  "open_review_items": flow.open_review_items} for flow in view.flows},
            "open_intents": view.open_intents, "conflicts": view.conflicts,
            "last_run": None if last is None else {"id": last.id, "started_at": last.started_at, "finished_at": last.finished_at,
                                                   "result": last.result, "dry_run": last.dry_run, "counts": last.counts},
        })
    else:
        console.print_table("Flows", ["flow", "links", "failures", "review"],
                            [(flow.name, flow.links, flow.open_failures, flow.open_review_items) for flow in view.flows])
        console.note(f"Conflicts resolved so far: {view.conflicts}   {OPEN_INTENTS}: {view.open_intents}"
                     f"{f' ({OPEN_INTENTS_NOTE})' if view.open_intents else ''}")
        console.note("Last run: never" if last is None else
                     f"Last run: #{last.id} {console.cell(last.started_at)} {last.result or 'unfinished'}"
                     f"{' (dry run)' if last.dry_run else ''}")
    if view.needs_attention:
        raise typer.Exit(EXIT_NEEDS_ATTENTION)


@app.command()
def links(
    ctx: typer.Context,
    flow: str | None = OneFlowOption,
    search: str | None = typer.Option(None, "--search", help="Only links whose ids or synced values contain this text."),
    as_json: bool = JsonOption,
) -> None:
    """The linked pairs, with the values last synced."""
    session = _session(ctx)
    flow = _flow_filter(session.settings(), flow)
    with session.store() as store:
        rows = (_link_row(link) for link in search_links(store, [flow] if flow else list(CATALOGUE), search))
        if as_json:  # streamed: 100,000 links are never held at once
            console.print_json_list(rows)
        else:
            console.print_rows("Links", list(rows), ["flow", "invoiced_id", "keap_id", "name", "linked_at"])


failures_app = typer.Typer(cls=_StopsCleanly, invoke_without_command=True,
                           help="Records a system rejected: list them, dismiss one, or undo a dismissal.")
app.add_typer(failures_app, name="failures")


@failures_app.callback()
def failures(ctx: typer.Context, flow: str | None = OneFlowOption, as_json: bool = JsonOption) -> None:
    """Records a system rejected, with its message; they are retried on later runs and by `retry`, unless dismissed.
    Printed as the state database is read, a page at a time, so any number of them is listed whole."""
    if ctx.invoked_subcommand is not None:
        return
    session = _session(ctx)
    flow = _flow_filter(session.settings(), flow)
    with session.store() as store:
        if as_json:
            console.print_json_list(_failure_row(failure) for failure in store.iter_failures(flow))
        else:
            _print_failures(store.iter_failures(flow))


def _print_failures(found: Iterable[Failure]) -> None:
    """One block a failure (a table's columns wrap to a few characters at 80 columns, as in cron mail): its id, flow,
    record, operation, attempts and next retry on one line, the message whole on the next, a dismissal on a third;
    then how many. "Failures: none" when there are none."""
    count = 0
    for failure in found:
        count += 1
        dismissed = (f"\n    dismissed {console.cell(failure.dismissed_at)} ({_reason(failure.dismissed_reason)})"
                     if failure.dismissed_at else "")
        field = f" (field {failure.field})" if failure.field else ""
        console.note(f"{'Failures:' if count == 1 else ''}\n#{failure.id} {failure.flow}: {failure.side} {failure.record_id}, "
                     f"{failure.operation}, attempts {failure.attempts}, next retry {console.cell(failure.next_retry_at)}\n"
                     f"    {failure.message.replace(chr(10), chr(10) + '    ')}{field}{dismissed}")
    console.note("Failures: none" if not count else
                 f"\n{count} open failure{'s' if count != 1 else ''} (`invoiced-keap failures dismiss ID` sets one aside)")


@failures_app.command("dismiss")
def dismiss_failure(ctx: typer.Context, failure_id: int = typer.Argument(..., help="A failure id (see `failures`)."),
                    reason: str | None = typer.Option(None, "--reason", help="Why it is set aside (shown with it).")) -> None:
    """Set a failure aside: no retries, no exit code 2, until its source record changes (then it is tried again)."""
    with _session(ctx).store() as store:
        try:
            failure, was_dismissed, reason_before = store.dismiss_failure(failure_id, reason)
        except LookupError as error:
            raise SettingError(f"failures dismiss: {error}") from None
    about = f"Failure {failure.id} ({failure.flow} {failure.side} {failure.record_id})"
    if was_dismissed:
        console.note(f"{about} was dismissed already ({_reason(reason_before)}); now {_reason(reason)}.")
        return
    console.note(f"{about} dismissed ({_reason(reason)}) until the record changes; "
                 f"`invoiced-keap failures undismiss {failure.id}` undoes it.")


def _reason(reason: str | None) -> str:
    return "no reason given" if reason is None else f"reason: {reason!r}"


@failures_app.command("undismiss")
def undismiss_failure(ctx: typer.Context, failure_id: int = typer.Argument(..., help="A dismissed failure's id.")) -> None:
    """Undo `failures dismiss`: the failure is retried and counts again."""
    with _session(ctx).store() as store:
        try:
            failure, was_dismissed, _ = store.undismiss_failure(failure_id)
        except LookupError as error:
            raise SettingError(f"failures undismiss: {error}") from None
    about = f"Failure {failure.id} ({failure.flow} {failure.side} {failure.record_id})"
    console.note(f"{about} counts and is retried again." if was_dismissed else f"{about} was not dismissed; nothing changed.")


@app.command()
def conflicts(ctx: typer.Context, flow: str | None = OneFlowOption, as_json: bool = JsonOption,
              limit: int = typer.Option(50, help="Show at most this many, newest first.")) -> None:
    """Fields changed on both sides, with both values and which side won."""
    session = _session(ctx)
    flow = _flow_filter(session.settings(), flow)
    with session.store() as store:
        found = store.conflicts(flow, limit=limit)
    _show("Conflicts", [_conflict_row(conflict) for conflict in found], as_json)


@app.command()
def explain(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="A record: invoiced:customer:ID, invoiced:item:ID, keap:company:ID, "
                                              "keap:contact:ID, keap:product:ID, or a bare ID (see --flow, --side)."),
    flow: str | None = typer.Option(None, "--flow", help=f"A bare ID's flow ({', '.join(CATALOGUE)})."),
    side: str | None = typer.Option(None, "--side", help="A bare ID's side (invoiced or keap)."),
    as_json: bool = JsonOption,
) -> None:
    """The history of one record: its links, the writes, conflicts, values carried with loss, failures and review
    items. Exit 1 when nothing is known about it, or when a bare ID means records of several flows or sides
    (they are listed)."""
    with _session(ctx).store() as store:
        try:
            found = explain_view(store, reference, flow=flow, side=side)
        except ValueError as error:
            raise SettingError(f"explain: {error}") from None
    if found.ambiguous:
        if as_json:
            console.print_json({"matches": [str(match) for match in found.matches]})
        else:
            console.print_table(f"{reference} may mean", ["reference"], [(str(match),) for match in found.matches])
        console.error(f"explain: {reference} names {len(found.matches)} records; give one reference above, or --flow/--side")
        raise typer.Exit(1)
    history = found.history
    sections = {} if history is None else {
        "links": [_link_row(link) for link in history.links],
        "writes": [_write_row(entry) for entry in history.writes],
        "conflicts": [_conflict_row(conflict) for conflict in history.conflicts],
        "lossy": [_lossy_row(note) for note in history.lossy],
        "failures": [_failure_row(failure) for failure in history.failures],
        "review": [_review_row(item) for item in history.review_items],
    }
    if as_json:
        console.print_json({"record": None if history is None else str(history.record), **sections})
    elif not found.known:
        hint = (" (read as a bare id: a reference is invoiced:TYPE:ID or keap:TYPE:ID)"
                if ":" in reference and history is None else "")
        console.note(f"Nothing is known about {reference}{hint}.")
    else:
        assert history is not None
        console.note(f"{history.record}  {history.name or ''}".rstrip())
        for title, rows in sections.items():
            console.print_rows(title.capitalize(), rows)
    if not found.known:
        raise typer.Exit(1)


# --- acting on the review list -------------------------------------------------------------------

@app.command()
def review(
    ctx: typer.Context,
    invoiced_id: str | None = typer.Argument(None, help="The Invoiced record to decide about."),
    pick: str | None = typer.Option(None, "--pick", help="Link it to this Keap candidate."),
    create: bool = typer.Option(False, "--create", help="Link it to none of them: create a new Keap record."),
    flow: str | None = OneFlowOption,
    as_json: bool = JsonOption,
) -> None:
    """Ambiguous matches: list them, or decide one with `review ID --pick KEAP_ID` or `review ID --create`."""
    session = _session(ctx)
    flow = _flow_filter(session.settings(), flow)
    if invoiced_id is not None and (pick is None) == (not create):
        raise SettingError("review: give exactly one of --pick KEAP_ID or --create")
    with session.store() as store:
        if invoiced_id is None:
            _show("Waiting for review", [_review_row(item) for item in store.review_items(flow)], as_json)
        elif pick is not None:
            item = reviewing.pick(store, invoiced_id, pick, flow)
            console.note(f"{item.flow}: Invoiced {invoiced_id} will be linked to Keap {pick} by the next sync, "
                         "which merges their fields and stamps the link for relink.")
        else:
            item = reviewing.create_instead(store, invoiced_id, flow)
            console.note(f"{item.flow}: Invoiced {invoiced_id} will get a new Keap record on the next sync.")


# --- verify ----------------------------------------------------------------------------------------

@app.command()
def verify(
    ctx: typer.Context,
    flow: list[str] | None = FlowOption,
    as_json: bool = JsonOption,
    fix: bool = typer.Option(False, "--repair", help="Sync what differs (drift settled by the conflict policy), then verify again."),
    allow_mass_change: bool = typer.Option(False, "--allow-mass-change", help="Let the repair exceed the circuit breaker."),
) -> None:
    """The specification as a checklist: do linked pairs agree, rule by rule? Exit 0 only when all agree. The people
    of companies cost one Invoiced call per company linked in Keap: --flow without company_contacts leaves them out."""
    session = _session(ctx)
    settings = session.settings()
    chosen = selected_flows(settings, flow or ())
    asyncio.run(check_credentials(settings))
    checks = _check_flows(session, chosen)
    owed = _check_receivables(session, chosen)
    if fix and (owed or any(check.needs_repair for check in checks)):
        repaired = _run_engine(session, sorted({check.flow for check in checks if check.needs_repair} | {found.flow for found in owed}),
                               lambda syncer, _: _repair_all(syncer, checks, owed), allow_mass_change=allow_mass_change)
        if not as_json:
            console.print_run_report(repaired, show_plan=False)
        if repaired.exit_code == 1:
            raise typer.Exit(1)
        checks = _check_flows(session, chosen)
        owed = _check_receivables(session, chosen)
    agrees = all(check.agrees for check in checks) and not owed
    if as_json:
        console.print_json({"agrees": agrees, "flows": [check.as_json() for check in checks],
                            "receivables_drift": [row for found in owed for row in _drift_rows(found)]})
    else:
        if not flow and (hint := _nested_cost_hint(session, chosen)):
            console.note(hint)
        _print_checks(checks, owed, _failing(session, checks))
    if not agrees:
        raise typer.Exit(EXIT_NEEDS_ATTENTION)


def _nested_cost_hint(session: Session, chosen: dict[str, Flow]) -> str | None:
    """For an operator who did not pick the flows: what the people of companies cost verify (one Invoiced listing per
    linked parent) and the `--flow` that leaves them out; None when no nested flow was verified."""
    nested = [item for item in chosen.values() if item.parent is not None]
    if not nested:
        return None
    with session.store() as store:
        parents = sum(store.count_links(item.parent.flow) for item in nested if item.parent is not None)
    others = " ".join(f"--flow {name}" for name, item in chosen.items() if item.parent is None)
    leave_out = f"; `verify {others}` leaves them out" if others else ""
    names = ", ".join(item.name for item in nested)
    return (f"verify: {names}: the people of {parents:,} linked companies were read, one Invoiced call each "
            f"({session.settings().rate_limits.invoiced_max_in_flight} at a time){leave_out}.")


def _check_receivables(session: Session, chosen: dict[str, Flow]) -> list[FoundDrift]:
    """The Keap records whose figures or tag differ from what the sync wrote there (`owed.receivables_drift`: one
    listing per 1000 records of each customer flow's object); none when the feature is off."""
    settings = session.settings()
    flows = [item for item in chosen.values() if item.invoiced is CUSTOMER] if settings.receivables.enabled else []
    if not flows:
        return []

    async def read() -> list[FoundDrift]:
        async with open_keap(settings) as keap:
            with session.store() as store:
                return await receivables_drift(store, keap, flows, settings.receivables)

    return asyncio.run(read())


async def _repair_all(syncer: Syncer, checks: Sequence[FlowCheck], owed: Sequence[FoundDrift]) -> RunReport:
    """`verify.repair` of the flows' checks, then, where figures drifted, the state brought to what Keap holds and a
    pass of their flows, which writes the figures back (they are one-way)."""
    report = await repair(syncer, checks)
    if not owed:
        return report
    with syncer.store.transaction() as tx:
        for found in owed:
            held = found.drift.held(found.written)
            tx.hold_found(found.customer_id, held.values, held.tagged, held.tag)
    passed = await syncer.sync(sorted({found.flow for found in owed}))
    report.flows.update(passed.flows)
    report.error = report.error or passed.error
    report.open_failures, report.open_review = passed.open_failures, passed.open_review
    for system, calls in passed.api_calls.items():
        report.api_calls[system] = report.api_calls.get(system, 0) + calls
    return report


def _drift_rows(found: FoundDrift) -> list[dict[str, Any]]:
    rows = [{"flow": found.flow, "customer": found.customer_id, "keap_id": found.keap_id, "field": label,
             "written": written, "keap": keap} for label, (written, keap) in found.drift.values.items()]
    if found.drift.tag_missing:
        rows.append({"flow": found.flow, "customer": found.customer_id, "keap_id": found.keap_id, "field": "(tag)",
                     "written": found.written.tag or "on", "keap": None})
    return rows


def _check_flows(session: Session, chosen: dict[str, Flow]) -> list[FlowCheck]:
    """Read both sides in bulk, spooled to disk, and check each chosen flow against its stored state, whose links
    are read a page at a time as the check walks them (`verify.stored`)."""
    settings = session.settings()
    with session.store() as store:
        parents = {name: ParentTwins.load(store, item.parent) for name, item in chosen.items() if item.parent}
        account = KeapAccount(store)
        account.expect(record=False)  # another account's records are not compared with the state's links

    async def read() -> Listings:
        async with open_invoiced(settings) as invoiced, open_keap(settings) as keap:
            keap.api.check_response = account.check
            with console.progress_bars() as bars:
                return await read_listings(invoiced, keap, chosen.values(), bars, parents)

    with asyncio.run(read()) as listings, session.store() as store:
        return [
            linked_elsewhere_left_out(
                check_flow(item, listings.invoiced_records(item), listings.keap[name], stored(store, name),
                           invoiced_ids_anywhere=listings.invoiced_ids(item),
                           keap_unlinked_matter=settings.flow[name].create_in_invoiced),
                store, [other.name for other in sharing_keap_object(item) if other.name != name])
            for name, item in chosen.items()
        ]


def _failing(session: Session, checks: Sequence[FlowCheck]) -> dict[tuple[str, str], str]:
    """The open failure of each Invoiced record with no Keap twin, by (flow, record id): why it has none."""
    with session.store() as store:
        return {(failure.flow, failure.record_id): failure.message
                for check in checks if check.without_twin
                for failure in store.failures(check.flow) if failure.side == "invoiced"}


def _print_checks(checks: Sequence[FlowCheck], owed: Sequence[FoundDrift] = (),
                  failing: Mapping[tuple[str, str], str] | None = None) -> None:
    console.print_table(
        "Field rules: linked pairs that agree", ["flow", "rule", "agree", "carried with loss", "of pairs"],
        [(check.flow, rule, agreeing, check.lossy_by_rule[rule], check.pairs)
         for check in checks for rule, agreeing in check.agreeing.items()],
        empty="no field rules",
    )
    for title, kind in (("Pending pairs (changed on a side; the next pass carries it)", "pending"),
                        ("Drifted pairs", "drifted"),
                        ("Pairs carried with loss (one side holds what it can of the other's value)", "lossy")):
        console.print_table(title, ["flow", "invoiced", "keap", "rule", "Invoiced value", "Keap value", "noted"],
                            [(check.flow, d.invoiced_id, d.keap_id, d.rule, d.invoiced_value, d.keap_value, "; ".join(d.notes))
                             for check in checks for d in getattr(check, kind)])
    console.print_table("Invoiced records with no Keap twin", ["flow", "invoiced", "failure"],
                        [*((check.flow, record_id, shortened((failing or {}).get((check.flow, record_id), "")))
                           for check in checks for record_id in check.without_twin),
                         *((check.flow, record_id, f"dismissed: {reason}" if reason else "dismissed")
                           for check in checks for record_id, reason in check.dismissed.items())])
    console.print_table("Invoiced records waiting in the review list (`review ID --pick/--create`; --repair leaves them)",
                        ["flow", "invoiced", "reason"],
                        [(check.flow, record_id, shortened(reason)) for check in checks for record_id, reason in check.in_review.items()])
    console.print_table("Links to a record that is gone", ["flow", "invoiced", "keap", "missing in"],
                        [(check.flow, gone.invoiced_id, gone.keap_id, gone.missing) for check in checks for gone in check.gone])
    console.print_table("Keap records linked to nothing", ["flow", "keap", "counts against verify"],
                        [(check.flow, record_id, "yes" if check.keap_unlinked_matter else "no (information)")
                         for check in checks for record_id in check.keap_unlinked])
    console.print_table("What customers owe: Keap records that differ from what the sync wrote (--repair writes it back)",
                        ["flow", "customer", "keap", "field", "written", "Keap value"],
                        [(row["flow"], row["customer"], row["keap_id"], row["field"], row["written"], row["keap"])
                         for found in owed for row in _drift_rows(found)])
    waiting = sum(len(check.in_review) for check in checks)
    verdict = "differences found" if owed or any(check.needs_repair for check in checks) else (
        "everything agrees" if not waiting else "no differences")
    console.note(f"verify: {verdict}" + (f"; {waiting} record{' waits' if waiting == 1 else 's wait'} in the review list"
                                         if waiting else ""))


# --- connecting a Keap OAuth app -------------------------------------------------------------------

@auth_app.command("keap")
def auth_keap(
    ctx: typer.Context,
    code: str | None = typer.Option(None, "--code", help="The code (or the whole URL) Keap redirected to; asked for if missing."),
) -> None:
    """Authorize a Keap OAuth app: open the printed URL, allow access, paste back the code or the URL."""
    settings = _session(ctx).settings()
    client = compose.keap_oauth_client(settings)
    if settings.keap_redirect_uri is None:
        raise SettingError("KEAP_REDIRECT_URI is not set: expected the redirect URI registered with your Keap app")
    redirect_uri = str(settings.keap_redirect_uri)
    oauth = KeapOAuth(client)
    state = secrets.token_urlsafe(16)
    console.note("Open this URL, sign in to Keap and allow access:")
    console.note(oauth.authorize_url(redirect_uri, state, base=str(settings.keap_authorize_url)))
    answer = code or typer.prompt("Paste the code, or the whole URL you were sent to")
    tokens = asyncio.run(oauth.exchange_code(_authorization_code(answer, state), redirect_uri))
    lasts = ("" if tokens.expires_at is None else
             f" The access token lasts until {datetime.fromtimestamp(tokens.expires_at, UTC):%Y-%m-%d %H:%M} UTC"
             f" ({(tokens.expires_at - time.time()) / 3600:.0f} h);")
    console.note(f"Keap tokens saved to {settings.keap_token_file}.{lasts} the sync renews it with the refresh token"
                 " as it runs, so this is needed again only if the refresh token is revoked or left unused for months.")


def _authorization_code(answer: str, state: str) -> str:
    """The code from a pasted redirect URL (whose `state` must be ours) or the bare code itself."""
    answer = answer.strip()
    if "://" not in answer:
        return answer
    query = httpx.URL(answer).params
    if "state" in query and query["state"] != state:
        raise SettingError("the pasted URL belongs to another authorization attempt (state differs); start again")
    if "code" not in query:
        raise SettingError("the pasted URL has no `code` parameter; paste the URL Keap redirected to")
    return query["code"]


@app.command()
def demo() -> None:
    """The whole product in a minute: both emulators in-process with a sample account, no network, no account."""
    from invoiced_keap.demo import run_demo

    asyncio.run(run_demo())


# --- emulators -------------------------------------------------------------------------------------

class Seed(str, Enum):
    demo = "demo"
    empty = "empty"


@app.command()
def emulate(
    invoiced_port: int = typer.Option(8001, help="Port for the Invoiced emulator (0 picks a free one)."),
    keap_port: int = typer.Option(8002, help="Port for the Keap emulator (0 picks a free one)."),
    seed: Seed = typer.Option(Seed.demo, help="Start with the sample account or with no data."),
    invoiced_key: str = typer.Option("test", help="API key the Invoiced emulator accepts."),
    keap_key: str = typer.Option("test", help="API key (PAT/SAK) the Keap emulator accepts."),
    oauth_client: list[str] | None = typer.Option(
        None, "--oauth-client", help="ID:SECRET of an OAuth client the Keap emulator knows, for `auth keap`; repeatable."),
    keap_tenant: str | None = typer.Option(
        None, help="The Keap account the emulator is (x-keap-tenant-id); default: a new one each start, as its "
                   "records live in memory only."),
) -> None:
    """Run the Invoiced and Keap emulators on 127.0.0.1 until stopped (Ctrl-C)."""
    clients = dict(client.partition(":")[::2] for client in oauth_client or ())
    if not all(clients) or not all(clients.values()):
        raise SettingError("emulate: --oauth-client takes ID:SECRET")
    from invoiced_keap.emulators.invoiced import InvoicedEmulator
    from invoiced_keap.emulators.keap import KeapEmulator
    from invoiced_keap.emulators.keap.auth import AUTHORIZE_PATH, TOKEN_PATH
    from invoiced_keap.emulators.sample import INVOICED_SAMPLE, KEAP_SAMPLE
    from invoiced_keap.emulators.serve import BackgroundServer

    invoiced = InvoicedEmulator(api_key=invoiced_key)
    keap = KeapEmulator(api_key=keap_key, oauth_clients=clients,
                        tenant_id=keap_tenant or f"emulator-{secrets.token_hex(3)}.infusionsoft.com")
    if seed is Seed.demo:
        invoiced.seed(INVOICED_SAMPLE)
        keap.seed(KEAP_SAMPLE)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with BackgroundServer(invoiced.asgi(), port=invoiced_port) as invoiced_server, BackgroundServer(
        keap.asgi(), port=keap_port
    ) as keap_server:
        typer.echo(f"Invoiced emulator: {invoiced_server.url}  (API key {invoiced_key!r})")
        typer.echo(f"Keap emulator:     {keap_server.url}/crm/rest  (API key {keap_key!r}, account {keap.tenant_id})")
        if clients:
            typer.echo(f"Keap OAuth:        KEAP_AUTHORIZE_URL={keap_server.url}{AUTHORIZE_PATH} "
                       f"KEAP_TOKEN_URL={keap_server.url}{TOKEN_PATH}  (clients {', '.join(clients)})")
        typer.echo("Control: GET /_emulator/stats, POST /_emulator/reset, POST /_emulator/faults. Ctrl-C stops.")
        stop.wait()

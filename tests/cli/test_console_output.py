"""What the command line prints: a pass's table titled by its kind, long record values cut but never a message,
and off a terminal a finished step's progress line printed once."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from invoiced_keap import console
from invoiced_keap.engine.report import SHOWN_CHARS, FlowReport, RunReport
from invoiced_keap.logs import FIELDS, PROGRESS

BREAKER = ("contacts: circuit breaker: 50 of 250 links would be deleted (20 %, over the limit of 10 %); nothing of "
           "the flow was written. Look at the records, then run again with --allow-mass-change")


def printed(show: Callable[[], None]) -> str:
    with console.out.capture() as captured:
        show()
    return captured.get()


def test_the_table_is_titled_by_the_kind_of_pass() -> None:
    report = RunReport(1, False, {"contacts": FlowReport("contacts")}, kind="reconcile")
    report.flows["contacts"].counts["unlinked"] = 2
    text = printed(lambda: console.print_run_report(report, show_plan=False))
    assert text.lstrip().startswith("Reconcile") and "Sync" not in text


def test_messages_are_shown_whole_and_only_record_values_are_cut() -> None:
    assert len(BREAKER) > SHOWN_CHARS
    long_value = "n" * 500
    text = printed(lambda: console.print_table("Conflicts", ["flow", "Invoiced value", "why"],
                                                        [("contacts", long_value, BREAKER)]))
    flat = "".join(text.replace("│", " ").split())
    assert "--allow-mass-change" in flat
    assert "n" * 500 not in flat and "(500characters)" in flat


def test_a_finished_step_is_printed_once(caplog: pytest.LogCaptureFixture) -> None:
    lines = console.ProgressLines()
    with caplog.at_level(logging.INFO, logger=PROGRESS):
        lines("companies: read Invoiced", 40)  # unknown total: done once the next step starts
        lines("companies: create in Keap", 10, 10)
        lines("products: create in Keap", 3, 150)
        lines.tick()
        lines.tick()
        lines.tick()
    steps = [getattr(record, FIELDS)["step"] for record in caplog.records]
    assert steps.count("companies: read Invoiced") == 1 and steps.count("companies: create in Keap") == 1
    assert steps.count("products: create in Keap") == 3  # the step in hand, unfinished: it still shows while it waits

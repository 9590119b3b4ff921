"""One Invoiced account in memory: a table per resource, archived item ids, event subjects, id counters, and the
due dates the clock will pass.

The resources (`resources.py`) read and write it; `emit` appends to the event log and tells the listeners
(the emulator's webhook deliveries).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable
from typing import Any

from invoiced_keap.emulators.invoiced import events
from invoiced_keap.emulators.invoiced.grouped import GroupedTable
from invoiced_keap.emulators.table import Table, TableMarks
from invoiced_keap.mapping import Record

EventListener = Callable[[Record], None]

# items have string ids, given or generated; `numbers` and `invoice_numbers` feed CUST-0001 and INV-0001;
# `line_items`, `rates` and `transactions` number an invoice's lines, its discounts and taxes, a payment's applications
COUNTERS = ("customers", "numbers", "events", "webhooks", "contacts", "invoices", "invoice_numbers", "line_items",
            "rates", "payments", "transactions")


def numeric_key(raw: Any) -> int | None:
    """A numeric id as a path or body gives it (`"7"`, `7`); None for anything else."""
    return int(raw) if str(raw).isdecimal() else None


class Account:
    """The tables stay the same objects across `reset`, so callers may hold on to them."""

    def __init__(self, clock: Callable[[], float], rng: random.Random) -> None:
        self.clock = clock
        self.random = rng
        self.listeners: list[EventListener] = []
        self.contacts = GroupedTable("customer")  # a customer's contacts: its listing passes over them only
        self.invoices = GroupedTable("customer", unique=("number",))  # a customer's invoices: its balance, likewise
        self.tables = {
            "customers": Table(unique=("number",)),
            "contacts": self.contacts,
            "items": Table(),
            "invoices": self.invoices,
            "payments": Table(),
            "events": Table(),
            "webhooks": Table(),
        }
        # deleted items stay in `items` (an id resolves to its latest version); listings tell them apart by this
        self.archived_item_ids = TableMarks(self.tables["items"])
        self.reset()

    def reset(self) -> None:
        for table in self.tables.values():
            table.clear()
        self.archived_item_ids.clear()
        self.event_subjects: dict[int, events.Subjects] = {}
        self.counters = {name: itertools.count(1) for name in COUNTERS}
        self.due_dates: list[tuple[int, int]] = []  # heap of (due_date, invoice id) the past-due sweep watches

    def now(self) -> int:
        return int(self.clock())

    def next_id(self, counter: str) -> int:
        return next(self.counters[counter])

    def emit(
        self, event_type: str, obj: Record, previous: Record | None = None, extra: Record | None = None,
        related: Iterable[events.Subject] = (),
    ) -> None:
        """Log an event about `obj`, related also to the `related` subjects (e.g. a contact's customer)."""
        event = events.new_event(self.next_id("events"), event_type, obj, now=self.now(), previous=previous, extra=extra)
        self.tables["events"].put(event["id"], event)
        self.event_subjects[event["id"]] = events.subjects_of(event, related)
        for listener in self.listeners:
            listener(event)

    def move_events(self, old: events.Subject, new: events.Subject) -> None:
        """Re-point the event history of `old` at `new` (a merge hands the merged customer's to the survivor)."""
        for event_id, subjects in self.event_subjects.items():
            if old in subjects:
                self.event_subjects[event_id] = events.moved(subjects, old, new)
        self.tables["events"].touch()

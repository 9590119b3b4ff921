"""Read models over the store: the status of the flows (one view for the `status` command and the
status page), the history of one record (`explain`), and the link search (`links --search`).

Queries only; the command line and the page decide how the rows look.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from invoiced_keap.state.models import AuditEntry, ConflictRow, Failure, Link, LossyCarryRow, ReviewItem, Run, utcnow
from invoiced_keap.state.store import Store

RECENT = 10
"""How many of a flow's newest failures, review items, conflicts and writes the status shows."""
RUNS_SCANNED = 50
"""How far back the status looks for each flow's last pass."""


@dataclass(frozen=True)
class FlowStatus:
    name: str
    links: int
    open_failures: int
    open_review_items: int
    last_run: Run | None
    failures: list[Failure]
    review_items: list[ReviewItem]
    conflicts: list[ConflictRow]
    writes: list[AuditEntry]
    lossy_carries: int
    lossy: list[LossyCarryRow]


@dataclass(frozen=True)
class StatusView:
    """Per flow: counts, its last pass and its newest entries; overall: conflicts, creates in progress, the last run."""

    generated_at: datetime
    flows: list[FlowStatus]
    conflicts: int
    open_intents: int
    last_run: Run | None

    @property
    def needs_attention(self) -> bool:
        """Records wait in a failures or review list."""
        return any(flow.open_failures or flow.open_review_items for flow in self.flows)


def status_view(store: Store, flow_names: Iterable[str]) -> StatusView:
    counts = store.status_counts()
    runs = store.runs(limit=RUNS_SCANNED)
    flows = [
        FlowStatus(
            name=flow,
            links=counts.active_links.get(flow, 0),
            open_failures=counts.open_failures.get(flow, 0),
            open_review_items=counts.open_review_items.get(flow, 0),
            last_run=next((run for run in runs if flow in run.flows), None),  # runs come newest first
            failures=store.failures(flow)[:RECENT],
            review_items=store.review_items(flow)[:RECENT],
            conflicts=store.conflicts(flow, limit=RECENT),
            writes=store.audit_entries(flow=flow, limit=RECENT),
            lossy_carries=counts.lossy_carries.get(flow, 0),
            lossy=store.lossy_carries(flow, limit=RECENT),
        )
        for flow in flow_names
    ]
    return StatusView(utcnow(), flows, counts.conflicts, counts.open_intents, counts.last_run)


@dataclass(frozen=True)
class RecordHistory:
    """Everything known about one record: its links (active or closed, of any flow, oldest first), the
    writes to it or its twins, the conflicts and lossy carries of its links and its failures (resolved ones too)."""

    links: list[Link]
    writes: list[AuditEntry]
    conflicts: list[ConflictRow]
    lossy: list[LossyCarryRow]
    failures: list[Failure]

    @property
    def empty(self) -> bool:
        return not (self.links or self.writes or self.conflicts or self.lossy or self.failures)


def record_history(store: Store, record_id: str) -> RecordHistory:
    """The history of an Invoiced or a Keap record id."""
    links = store.links_of_record(record_id)
    ids = {record_id} | {link.invoiced_id for link in links} | {link.keap_id for link in links}
    writes = sorted((entry for one_id in ids for entry in store.audit_entries(record_id=one_id)), key=lambda entry: entry.id)
    conflicts = [conflict for link in links for conflict in store.conflicts(link_id=link.id)]
    lossy = store.lossy_carries(link_ids=[link.id for link in links]) if links else []
    return RecordHistory(links, writes, conflicts, lossy, store.failures(include_resolved=True, record_ids=ids))


def search_links(store: Store, flow_names: Sequence[str], text: str | None = None) -> list[Link]:
    """The active links of the flows; with `text`, only those whose ids or last synced values contain
    it (case-insensitively)."""
    needle = text.casefold() if text else None
    found = []
    for flow in flow_names:
        for link in store.iter_links(flow):
            shadow = link.shadow("invoiced")
            values = shadow.field_values if shadow is not None else {}
            haystack = " ".join([link.invoiced_id, link.keap_id, *_texts(values)]).casefold()
            if needle is None or needle in haystack:
                found.append(link)
    return found


def _texts(value: Any) -> Iterator[str]:
    """Every text inside a neutral value (str, None, or a mapping of those)."""
    if isinstance(value, Mapping):
        for inner in value.values():
            yield from _texts(inner)
    elif value is not None:
        yield str(value)

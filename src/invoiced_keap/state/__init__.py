"""What the sync remembers: links, shadows, watermarks, intents, failures, review, audit, runs."""

from invoiced_keap.state.locks import FlowLease, FlowLockHeld, FlowLockLost
from invoiced_keap.state.models import AuditOperation, LinkStatus
from invoiced_keap.state.store import (
    AuditNote,
    FailureBackoff,
    LinkConflict,
    NewLink,
    StatusCounts,
    Store,
    Transaction,
)

__all__ = [
    "AuditNote",
    "AuditOperation",
    "FailureBackoff",
    "FlowLease",
    "FlowLockHeld",
    "FlowLockLost",
    "LinkConflict",
    "LinkStatus",
    "NewLink",
    "StatusCounts",
    "Store",
    "Transaction",
]

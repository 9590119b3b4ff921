"""The state tables: what the sync remembers between runs.

Tables (all names plural, one idea each):

- `runs`: one row per sync pass (flows, dry run, result, counts).
- `links`: a linked pair `(flow, invoiced_id, keap_id)`; at most one *active* link per
  `(flow, invoiced_id)` and per `(flow, keap_id)` (partial unique indexes); closed links are kept.
- `shadows`: per link and side, the mapped values as last read or written (JSON per field group)
  and that side's own update timestamp, kept as given (Invoiced: epoch int, Keap: ISO text);
  `record` keeps the side's raw mapped fields, so a write can merge into them without a re-read.
- `watermarks`: stream name -> opaque text; event cursors are watermarks of event streams.
- `intents`: a create about to happen, persisted first so a crash never makes a duplicate.
- `failures`: records a system rejected, with payload, attempts and the next retry time; a person may dismiss
  one (`dismissed_at`, `dismissed_reason`) until its source changes (`source_updated`, its update time then).
- `lossy_carries`: per link, side and field group, the values a write could not carry exactly (field, source
  value, value sent, reason); replaced whenever that group is carried to that side again.
- `review_items`: ambiguous matches waiting for a person.
- `conflicts`: both-sides-changed decisions, with both values and the winner.
- `audit_log`: every write, with before/after values and its run.
- `reconciles`: per flow, when its last reconcile (full id scans for deletes) finished, so the schedule
  survives restarts and serves cron-style `sync` as well as `run`.
- `flow_locks`: who holds each flow's lock and since when (the lock itself is an OS file lock on
  SQLite, an advisory lock on PostgreSQL: see `locks`).
- `keap_definitions`: what the sync made (or found) in Keap's setup, by object and name: its custom fields
  (`companies`/`contacts`, by label, with the field type) and its tag (`tags`, by name), with Keap's id.
- `receivables`: per Invoiced customer, what it owes as last read (`figures`), when (`computed_at`), whether
  the Keap record still has to be told (`pending`), and what was last written there (the record, its values
  by label, the tag and its name), so unchanged figures write nothing and a renamed tag comes off where it was put.

No credentials are ever stored. Timestamps are timezone-aware UTC in Python on every backend.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, MetaData, String, Text, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from invoiced_keap.flows import Side

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class LinkStatus(StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"


class AuditOperation(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    LINK = "link"
    UNLINK = "unlink"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend: SQLite drops the zone, so it is put back on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: state timestamps must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[str]: JSON,
        Any: JSON,
    }


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    flows: Mapped[list[str]]
    dry_run: Mapped[bool]
    result: Mapped[str | None] = mapped_column(String(32))
    counts: Mapped[dict[str, Any]]


class Link(Base):
    __tablename__ = "links"
    __table_args__ = (
        Index(
            "uq_links_active_invoiced",
            "flow",
            "invoiced_id",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        Index(
            "uq_links_active_keap",
            "flow",
            "keap_id",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flow: Mapped[str] = mapped_column(String(32))
    invoiced_id: Mapped[str] = mapped_column(String(64))
    keap_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    closed_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    shadows: Mapped[list[ShadowRow]] = relationship(
        back_populates="link", cascade="all, delete-orphan", passive_deletes=True
    )

    def shadow(self, side: Side) -> ShadowRow | None:
        """This link's shadow of `side`; None until that side has been read or written."""
        return next((shadow for shadow in self.shadows if shadow.side == side), None)

    def record_id(self, side: Side) -> str:
        """The id of this link's record of `side`."""
        return self.invoiced_id if side == "invoiced" else self.keap_id


class ShadowRow(Base):
    __tablename__ = "shadows"

    link_id: Mapped[int] = mapped_column(
        ForeignKey("links.id", ondelete="CASCADE"), primary_key=True
    )
    side: Mapped[str] = mapped_column(String(16), primary_key=True)
    field_values: Mapped[dict[str, Any]]
    source_updated: Mapped[Any | None]
    record: Mapped[Any | None]
    written_at: Mapped[datetime]

    link: Mapped[Link] = relationship(back_populates="shadows")


class Watermark(Base):
    __tablename__ = "watermarks"

    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class Intent(Base):
    __tablename__ = "intents"
    __table_args__ = (Index("uq_intents_source", "flow", "source_side", "source_id", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flow: Mapped[str] = mapped_column(String(32))
    source_side: Mapped[str] = mapped_column(String(16))
    source_id: Mapped[str] = mapped_column(String(64))
    match_key: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]


class Failure(Base):
    __tablename__ = "failures"
    __table_args__ = (
        Index(
            "uq_failures_open",
            "flow",
            "side",
            "record_id",
            "operation",
            unique=True,
            sqlite_where=text("resolved_at IS NULL"),
            postgresql_where=text("resolved_at IS NULL"),
        ),
        Index(None, "next_retry_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flow: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(16))
    record_id: Mapped[str] = mapped_column(String(64))
    operation: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    field: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[Any | None]
    attempts: Mapped[int]
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    next_retry_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    source_updated: Mapped[Any | None]
    dismissed_at: Mapped[datetime | None]
    dismissed_reason: Mapped[str | None] = mapped_column(Text)


class LossyCarryRow(Base):
    __tablename__ = "lossy_carries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flow: Mapped[str] = mapped_column(String(32))
    link_id: Mapped[int] = mapped_column(ForeignKey("links.id", ondelete="CASCADE"), index=True)
    side: Mapped[str] = mapped_column(String(16))
    field_group: Mapped[str] = mapped_column(String(64))
    field: Mapped[str] = mapped_column(Text)
    source_value: Mapped[Any | None]
    sent_value: Mapped[Any | None]
    reason: Mapped[str] = mapped_column(Text)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    created_at: Mapped[datetime]


class ReviewItem(Base):
    __tablename__ = "review_items"
    __table_args__ = (
        Index(
            "uq_review_items_open",
            "flow",
            "invoiced_id",
            unique=True,
            sqlite_where=text("resolution IS NULL"),
            postgresql_where=text("resolution IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flow: Mapped[str] = mapped_column(String(32))
    invoiced_id: Mapped[str] = mapped_column(String(64))
    candidate_ids: Mapped[list[str]]
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    resolution: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None]


class ConflictRow(Base):
    __tablename__ = "conflicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flow: Mapped[str] = mapped_column(String(32))
    link_id: Mapped[int] = mapped_column(ForeignKey("links.id"), index=True)
    field_group: Mapped[str] = mapped_column(String(64))
    invoiced_value: Mapped[Any | None]
    keap_value: Mapped[Any | None]
    winner: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    created_at: Mapped[datetime]


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), index=True)
    flow: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(16))
    record_id: Mapped[str] = mapped_column(String(64), index=True)
    operation: Mapped[str] = mapped_column(String(16))
    before: Mapped[Any | None]
    after: Mapped[Any | None]
    created_at: Mapped[datetime]


class Reconcile(Base):
    __tablename__ = "reconciles"

    flow: Mapped[str] = mapped_column(String(32), primary_key=True)
    finished_at: Mapped[datetime]


class FlowLock(Base):
    __tablename__ = "flow_locks"

    flow: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(Text)
    acquired_at: Mapped[datetime]


class KeapDefinition(Base):
    __tablename__ = "keap_definitions"

    keap_object: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    keap_id: Mapped[str] = mapped_column(String(64))
    field_type: Mapped[str | None] = mapped_column(String(32))
    found_at: Mapped[datetime]


class Receivable(Base):
    __tablename__ = "receivables"
    __table_args__ = (Index(None, "open_invoices", "computed_at"), Index(None, "pending"), Index(None, "opens_at"))

    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    figures: Mapped[dict[str, Any]]
    open_invoices: Mapped[int]
    computed_at: Mapped[datetime]
    opens_at: Mapped[datetime | None]  # when its earliest open invoice dated ahead starts to count (no event says so)
    pending: Mapped[bool] = mapped_column(Boolean)
    written_flow: Mapped[str | None] = mapped_column(String(32))
    written_keap_id: Mapped[str | None] = mapped_column(String(64))
    written: Mapped[dict[str, Any] | None]
    tagged: Mapped[bool | None] = mapped_column(Boolean)
    tag: Mapped[str | None] = mapped_column(String(255))  # the name of the tag the sync put on (tagged), as configured then
    written_at: Mapped[datetime | None]

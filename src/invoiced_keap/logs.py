"""Logging set-up: readable lines for people by default, one JSON object per line for machines.

What the sync does is logged as events (`log_event`): a name and fields (`pass.finished flow=...`), which
JSON mode writes as keys of the line. Registered secrets (`connectors.redaction`) are scrubbed from every
line at format time too (tracebacks and fields can quote a URL or a header). Progress lines and command
errors use the same handler, so with `--log-format json` every line on stderr is JSON.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import stamina.instrumentation
from rich.console import Console
from rich.logging import RichHandler

from invoiced_keap.connectors.redaction import scrub

FIELDS = "event_fields"
"""The `LogRecord` attribute an event's fields travel in."""
PROGRESS = "invoiced_keap.progress"
"""The logger of progress lines, shown at INFO whatever `--log-level` says."""


class LogFormat(str, Enum):
    text = "text"
    json = "json"


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """One structured event: `event` is the line's message, `fields` its data."""
    logger.log(level, event, extra={FIELDS: fields})


class RedactingFormatter(logging.Formatter):
    """`logger: message key=value ...`, with registered secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, FIELDS, None) or {}
        details = " ".join(f"{key}={_text(value)}" for key, value in fields.items() if value is not None)
        return scrub(f"{super().format(record)} {details}".rstrip())


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", ...event fields[, "exception"]}`, one object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None)
        if fields:
            entry["event"] = entry["message"]
            entry.update({key: value for key, value in fields.items() if key not in entry})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return scrub(json.dumps(entry, ensure_ascii=False, default=str))


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(str(item) for item in value)
    return json.dumps(value, ensure_ascii=False, default=str) if isinstance(value, dict) else str(value)


def configure_logging(log_format: LogFormat = LogFormat.text, level: str = "WARNING") -> None:
    """Send the program's logs to stderr (stdout is kept for command output and `--json`); HTTP retries
    are logged as `retry` events."""
    from invoiced_keap.connectors.http import log_retry  # http logs events too

    handler: logging.Handler
    if log_format is LogFormat.json:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    else:
        handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)
        handler.setFormatter(RedactingFormatter("%(name)s: %(message)s"))
    root = logging.getLogger()
    for previous in root.handlers[:]:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger(PROGRESS).setLevel(min(logging.INFO, root.level))
    stamina.instrumentation.set_on_retry_hooks([log_retry])

"""Logging set-up: readable lines for people by default, one JSON object per line for machines.

Registered secrets (`connectors.redaction`) are already scrubbed from log messages as records are
made; the formatters here scrub again what is added at format time (exception tracebacks, which
can quote a URL or a header), so no secret reaches the output whichever path it took.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from enum import Enum

from rich.console import Console
from rich.logging import RichHandler

from invoiced_keap.connectors.redaction import scrub


class LogFormat(str, Enum):
    text = "text"
    json = "json"


class RedactingFormatter(logging.Formatter):
    """Any formatter's output with registered secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message"[, "exception"]}`, one object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(log_format: LogFormat = LogFormat.text, level: str = "WARNING") -> None:
    """Send the program's logs to stderr (stdout is kept for command output and `--json`)."""
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

"""What can go wrong with an API call, sorted by what the engine should do about it.

- `TransientError`: try again later (429, 5xx, timeouts, dropped connections); raised once in-run retries are spent.
- `RecordRejected`: the API refused this record; keep it in the failures list with the API's message and field.
- `FatalError`: no point going on (bad credentials, billing, quota used up); stop the run cleanly.

Messages name the method and a redacted URL, never a credential.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


class ApiError(Exception):
    """Base class: `message` is the API's own words (or ours when it said nothing)."""

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        url: str | None = None,
        status: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.method = method
        self.url = url
        self.status = status
        self.field = field
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = " ".join(part for part in (self.method, self.url) if part)
        status = f"{self.status} " if self.status is not None else ""
        field = f" (field {self.field})" if self.field else ""
        return f"{where}: {status}{self.message}{field}" if where else f"{status}{self.message}{field}"


class TransientError(ApiError):
    """Worth retrying later. `retry_after` is the server's hint in seconds, if it gave one.

    `may_have_been_processed` is False only when the server certainly did not act on the request
    (connection refused, 429): such requests are safe to retry even when they are not idempotent.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        may_have_been_processed: bool = True,
        **context: Any,
    ) -> None:
        self.retry_after = retry_after
        self.may_have_been_processed = may_have_been_processed
        self.system, self.attempts = "the API", 1  # who answered, how many times it was asked (set by the client)
        super().__init__(message, **context)

    def outage(self) -> str:
        """What the error says once the retries are spent ("Keap answered 503 after 6 attempts"), for health."""
        answer = self.status if self.status is not None else self.message
        return f"{self.system} answered {answer} after {self.attempts} attempt{'s' if self.attempts != 1 else ''}"


class RecordRejected(ApiError):
    """The API refused this request for this record (validation, conflict, permission)."""


class NotFound(RecordRejected):
    """404: the record does not exist (or no longer does); delete detection relies on telling this apart."""


class FatalError(ApiError):
    """The run cannot go on; retrying this run will not help."""


class AuthenticationFailed(FatalError):
    """401: the key or token was refused."""


class CallAbandoned(Exception):
    """A call given up before it was sent, because the work was asked to stop (`Pacer.stop`); not an API error."""


class QuotaExhausted(FatalError):
    """The quota for a long window (typically the day) is used up. `resume_at` (UTC) says when to try again."""

    def __init__(self, message: str, *, resume_at: datetime | None = None, **context: Any) -> None:
        self.resume_at = resume_at
        if resume_at is not None:
            message = f"{message}; resume at {resume_at.isoformat(timespec='seconds')}"
        super().__init__(message, **context)

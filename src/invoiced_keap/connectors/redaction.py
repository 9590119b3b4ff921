"""Keep credentials out of logs, exception messages and reprs.

Secrets are registered once (by `SecretHeaders`) and scrubbed from every log record the process
creates, whichever library logs it (httpx, httpcore, stamina, ours) and whichever handler prints it.
A log record factory is used rather than a `logging.Filter` because filters only run on the logger
they are attached to (not on records from child loggers) or on handlers we do not own.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable, Generator, Mapping

import httpx

MASK = "***"
SECRET_QUERY_PARAMETERS = frozenset(
    {"access_token", "api_key", "apikey", "key", "token", "refresh_token", "client_secret", "password", "secret"}
)

_secrets_longest_first: tuple[str, ...] = ()  # replaced whole, so readers in other threads need no lock
_lock = threading.Lock()


def register_secret(*values: str) -> None:
    """Never let these strings reach a log line again (empty values are ignored)."""
    global _secrets_longest_first
    with _lock:
        known = set(_secrets_longest_first).union(value for value in values if value)
        _secrets_longest_first = tuple(sorted(known, key=len, reverse=True))
        if not isinstance(logging.getLogRecordFactory(), _RedactingRecordFactory):
            logging.setLogRecordFactory(_RedactingRecordFactory(logging.getLogRecordFactory()))


def scrub(text: str) -> str:
    """`text` with every registered secret masked, longest first (a secret may contain another)."""
    for secret in _secrets_longest_first:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def safe_url(url: httpx.URL | str) -> str:
    """The URL for messages: no user info, secret-looking query values masked, registered secrets scrubbed."""
    url = httpx.URL(url)
    query = [(name, MASK if name.lower() in SECRET_QUERY_PARAMETERS else value) for name, value in url.params.multi_items()]
    return scrub(str(url.copy_with(userinfo=b"", params=query or None)))


class _RedactingRecordFactory:
    """Wraps the factory in force: the record's final message is scrubbed as it is created."""

    def __init__(self, wrapped: Callable[..., logging.LogRecord]) -> None:
        self.wrapped = wrapped

    def __call__(self, *args: object, **kwargs: object) -> logging.LogRecord:
        record = self.wrapped(*args, **kwargs)
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return record


class SecretHeaders(httpx.Auth):
    """Credential headers added to every request; registered as secrets so they never show."""

    def __init__(self, headers: Mapping[str, str], *, secrets: tuple[str, ...] = ()) -> None:
        self._headers = dict(headers)
        register_secret(*self._headers.values(), *secrets)

    @classmethod
    def api_key(cls, header: str, key: str) -> "SecretHeaders":
        """E.g. Keap's `X-Keap-API-Key`."""
        return cls({header: key})

    @classmethod
    def bearer(cls, token: str) -> "SecretHeaders":
        return cls({"Authorization": f"Bearer {token}"}, secrets=(token,))

    @classmethod
    def basic(cls, username: str, password: str = "") -> "SecretHeaders":
        """Invoiced: the API key as user name, empty password."""
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        return cls({"Authorization": f"Basic {token}"}, secrets=(username, password))

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.update(self._headers)
        yield request

    def __repr__(self) -> str:
        return f"<SecretHeaders {sorted(self._headers)} values hidden>"

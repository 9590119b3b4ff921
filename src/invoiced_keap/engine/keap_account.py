"""The Keap account a state database belongs to.

A state's links name Keap ids, and a Keap id means something in one Keap account (application instance) only: a
state made with a sandbox app, or restored from the wrong backup, names records of another account, whose ids the
account in hand hands out anew. Keap names the account on every response, in `x-keap-tenant-id`
(`ps359.infusionsoft.com`). The first pass that reads Keap records it in the state (the watermark-table entry
`KEAP_TENANT`) at its first response, with no call of its own; from then on a response naming another account ends
the call, and so the pass, with `WrongKeapAccount`. A pass reads Keap before it writes there, so it stops before
writing anything. A response without the header (a proxy that drops it) is not compared.

    account = KeapAccount(store)
    keap.api.check_response = account.check     # every Keap response is checked (`http.ApiClient`)
    account.expect(record=True)                  # before a pass: the recorded account, anew; record the first seen
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from invoiced_keap.connectors.errors import FatalError
from invoiced_keap.connectors.redaction import safe_url
from invoiced_keap.state import Store

TENANT_HEADER = "x-keap-tenant-id"
KEAP_TENANT = "keap.tenant"
"""The state's entry (watermark table) holding the Keap account's tenant id."""


class WrongKeapAccount(FatalError):
    """Keap answers for `answering`, but the state database was made with the account `recorded`."""

    def __init__(self, recorded: str, answering: str, **context: Any) -> None:
        self.recorded, self.answering = recorded, answering
        super().__init__(
            f"Keap answers for account {answering}, but this state database was made with Keap account {recorded} "
            f"(its links name records of {recorded}): stopped, nothing synced. Use the state database of {answering} "
            f"(setting database_url, env INVOICED_KEAP_DATABASE_URL) or a new one to start afresh, or the Keap "
            f"credentials and KEAP_API_URL of {recorded}", **context)

    def _describe(self) -> str:
        return self.message  # which call met it does not matter: the account does


@dataclass
class KeapAccount:
    """Checks each Keap response (`check`) against the account the state records (`expected`; None: none yet)."""

    store: Store
    expected: str | None = None
    record: bool = False

    def expect(self, *, record: bool) -> None:
        """Read the recorded account anew (before each pass). While none is recorded, the first account a response
        names is expected from then on, and recorded in the state when `record` (False for a dry run, which writes
        nothing)."""
        self.expected = self.store.get_watermark(KEAP_TENANT)
        self.record = record

    def check(self, response: httpx.Response) -> None:
        """Raise `WrongKeapAccount` when `response` names another account than the one expected."""
        answering = response.headers.get(TENANT_HEADER)
        if not answering:
            return
        if self.expected is None:
            self.expected = answering
            if self.record:
                self.store.set_watermark(KEAP_TENANT, answering)
        elif answering != self.expected:
            raise WrongKeapAccount(self.expected, answering, method=response.request.method,
                                   url=safe_url(response.request.url), status=response.status_code)

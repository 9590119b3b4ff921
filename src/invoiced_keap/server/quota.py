"""What Keap says is left of the daily quota, for the status page and `/metrics`.

The connector's pacer already reads Keap's `x-keap-product-quota-available` header on every answer;
this pacer also remembers the last value, so showing the quota costs no call of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from invoiced_keap.connectors.pacing import Pacer, RateLimits, ServerBudget

DAILY_QUOTA = "product-quota"


class QuotaWatchingPacer(Pacer):
    """A `Pacer` (pass it to `KeapConnector(pacer=...)`) whose `quota_remaining` is the last reported daily quota."""

    def __init__(self, limits: RateLimits, **options: Any) -> None:
        super().__init__(limits, **options)
        self.quota_remaining: int | None = None

    def observe(self, call_number: int, budgets: Iterable[ServerBudget], *, counted: bool = True) -> None:
        budgets = list(budgets)
        super().observe(call_number, budgets, counted=counted)
        for budget in budgets:
            if budget.name.startswith(DAILY_QUOTA):
                self.quota_remaining = budget.available

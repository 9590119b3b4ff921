"""What Keap says of the key's daily quota (left, used, the limit), for the status page and `/metrics`.

The connector's pacer already reads Keap's `x-keap-product-quota-*` headers on every answer;
this pacer also remembers the last values, so showing the quota costs no call of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from invoiced_keap.connectors.pacing import DAY, KEAP_PAT_LIMITS, Pacer, RateLimits, ServerBudget

DAILY_QUOTA = "product-quota"


class QuotaWatchingPacer(Pacer):
    """A `Pacer` (pass it to `KeapConnector(pacer=...)`) whose `quota_remaining`, `quota_used` and `quota_limit` are
    the last reported daily quota's (None until Keap reported them)."""

    def __init__(self, limits: RateLimits, **options: Any) -> None:
        super().__init__(limits, **options)
        self.quota_remaining: int | None = None
        self.quota_used: int | None = None
        self.quota_limit: int | None = None
        self._quota_seen_at = 0

    def observe(self, call_number: int, budgets: Iterable[ServerBudget], *, counted: bool = True) -> None:
        budgets = list(budgets)
        super().observe(call_number, budgets, counted=counted)
        if call_number < self._quota_seen_at:
            return  # an older answer overtaken by a newer one
        for budget in budgets:
            if budget.name.startswith(DAILY_QUOTA):
                self._quota_seen_at = call_number
                self.quota_remaining = budget.available
                self.quota_used = budget.used if budget.used is not None else self.quota_used
                self.quota_limit = budget.limit if budget.limit is not None else self.quota_limit


def keap_day(calls: Mapping[str, int], kinds: Iterable[str], pacer: Pacer) -> dict[str, Any]:
    """Our Keap calls today by kind, their total and its share of the day's quota: the limit Keap's headers report
    (`x-keap-product-quota-limit`), else the configured daily limit, else a personal access token's 30,000; and what
    Keap counts used on the key today (every client of it), when it said."""
    watching = pacer if isinstance(pacer, QuotaWatchingPacer) else None
    reported = watching.quota_limit if watching else None
    configured = next((window.limit for window in pacer.limits.windows if window.seconds == DAY), None)
    published = next(window.limit for window in KEAP_PAT_LIMITS.windows if window.seconds == DAY)
    limit = reported or configured or published
    source = "as Keap reports it" if reported else "as configured" if configured else "a personal access token's"
    total = sum(calls.values())
    return {
        "calls": {kind: calls.get(kind, 0) for kind in kinds},
        "total": total,
        "limit": limit,
        "limit_source": source,
        "share": total / limit,
        "key_used": watching.quota_used if watching else None,
    }

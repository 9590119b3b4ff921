"""What Keap says of the key's daily quota (left, used, the limit), for the status page and `/metrics`.

The connector's pacer already reads Keap's `x-keap-product-quota-*` headers on every answer;
this pacer also remembers the last values, so showing the quota costs no call of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from invoiced_keap.connectors.pacing import DAY, KEAP_PAT_LIMITS, Pacer, RateLimits, ServerBudget

DAILY_QUOTA = "product-quota"


class QuotaWatchingPacer(Pacer):
    """A `Pacer` (pass it to `KeapConnector(pacer=...)`) whose `quota_remaining`, `quota_used` and `quota_limit` are
    the last reported daily quota's (None until Keap reported them; `quota_used` also when the last answer left its
    header out); `key_used_today()` is what Keap counts used on the key today."""

    def __init__(self, limits: RateLimits, **options: Any) -> None:
        super().__init__(limits, **options)
        self.quota_remaining: int | None = None
        self.quota_used: int | None = None
        self.quota_limit: int | None = None
        self._quota_seen_at = 0
        self._quota_ends_at: float | None = None  # epoch seconds: when the day Keap last reported on ends

    def key_used_today(self) -> int | None:
        """Calls on the key today (UTC) by every client of it (other processes, cron `sync`s, a restarted `run`): the
        quota used as Keap last reported it (`x-keap-product-quota-used`, else the limit less what is available),
        plus our calls sent after the one it answered. None until Keap has reported it, and from the end of the day
        it reported on until it reports the new day's."""
        if self._quota_ends_at is None or self.wall_clock() >= self._quota_ends_at:
            return None
        used = self.quota_used
        if used is None and self.quota_limit is not None and self.quota_remaining is not None:
            used = self.quota_limit - self.quota_remaining
        return None if used is None else used + self.calls_sent - self._quota_seen_at

    def observe(self, call_number: int, budgets: Iterable[ServerBudget], *, counted: bool = True) -> None:
        budgets = list(budgets)
        super().observe(call_number, budgets, counted=counted)
        if call_number < self._quota_seen_at:
            return  # an older answer overtaken by a newer one
        for budget in budgets:
            if budget.name.startswith(DAILY_QUOTA):
                self._quota_seen_at = call_number
                self.quota_remaining = budget.available
                self.quota_used = budget.used
                self.quota_limit = budget.limit if budget.limit is not None else self.quota_limit
                self._quota_ends_at = self.wall_clock() + budget.resets_in


def keap_day(calls: Mapping[str, int], kinds: Iterable[str], pacer: Pacer, since: float) -> dict[str, Any]:
    """The day's Keap calls for the status page. `total`: what Keap counts used on the key today by every process on
    it (`QuotaWatchingPacer.key_used_today`; None until Keap has reported it today), and `share`, its part of the
    day's quota (None with it): the limit Keap's headers report (`x-keap-product-quota-limit`), else the configured
    daily limit, else a personal access token's 30,000. `calls` (by kind, in `kinds` order) and `own_total`: this
    process's own calls since `since` (epoch seconds: its start or 00:00 UTC, the later; `since_utc` as a datetime)."""
    watching = pacer if isinstance(pacer, QuotaWatchingPacer) else None
    reported = watching.quota_limit if watching else None
    configured = next((window.limit for window in pacer.limits.windows if window.seconds == DAY), None)
    published = next(window.limit for window in KEAP_PAT_LIMITS.windows if window.seconds == DAY)
    limit = reported or configured or published
    source = "as Keap reports it" if reported else "as configured" if configured else "a personal access token's"
    total = watching.key_used_today() if watching else None
    return {
        "calls": {kind: calls.get(kind, 0) for kind in kinds},
        "own_total": sum(calls.values()),
        "since_utc": datetime.fromtimestamp(since, UTC),
        "total": total,
        "limit": limit,
        "limit_source": source,
        "share": None if total is None else total / limit,
    }

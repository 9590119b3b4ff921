"""Whether a push path works (Keap's REST hooks, Invoiced's webhook), why not, and when to check it again: what
`run`'s status page, `/healthz` and log say of it, and what lets the safety-net poll of its side run less often."""

from __future__ import annotations

import logging


logger = logging.getLogger(__name__)

HOOK_CHECK_INTERVAL = 900.0
"""Seconds between checks of a push path that works."""
HOOK_BACKOFF_CAP = 86_400.0
"""The longest wait between checks of a push path that does not work (the wait doubles from `HOOK_CHECK_INTERVAL`)."""
OFF, VERIFIED, UNVERIFIED, ERROR = "off", "verified", "unverified", "error"


class PushUpkeep:
    """The state of one push path: `off` (never checked: `off_reason` says why), `unchecked`, `verified`,
    `unverified` (the check found it cannot deliver: the problem says why) or `error` (the API answered the check
    with an error). While verified it is checked every `interval`; otherwise the next check waits twice as long as
    the last, up to `cap`. The state and its reason are logged when they change, not on every check.

    `name` ("Keap hooks") and `polls` ("Keap is read by a poll every {interval}", formatted with the setting that
    applies) are how the log words it."""

    def __init__(self, name: str, polls: str, *, off_reason: str | None = None, slow_poll: str,
                 interval: float = HOOK_CHECK_INTERVAL, cap: float = HOOK_BACKOFF_CAP) -> None:
        self.name = name
        self.polls = polls
        self.slow_poll = slow_poll
        self.interval = interval
        self.cap = cap
        self.next_check = 0.0  # clock time of the next check due
        self.failed_checks = 0
        self.state, self.reason = (OFF, off_reason) if off_reason else ("unchecked", None)
        if self.state == OFF:
            logger.warning("%s off: %s", name, off_reason)

    @property
    def verified(self) -> bool:
        return self.state == VERIFIED

    @property
    def wanted(self) -> bool:
        return self.state != OFF

    def due(self, now: float) -> bool:
        return self.wanted and now >= self.next_check

    def checked(self, now: float, problem: str | None = None, error: str | None = None) -> None:
        """The outcome of a check made at `now`: nothing wrong, the `problem` it found, or the `error` the API
        answered with."""
        if error is not None:
            state, reason = ERROR, f"the API answered the check with an error: {error}"
        else:
            state, reason = (UNVERIFIED, problem) if problem else (VERIFIED, None)
        self.failed_checks = 0 if state == VERIFIED else self.failed_checks + 1
        wait = self.interval if state == VERIFIED else min(self.cap, self.interval * 2 ** (self.failed_checks - 1))
        self.next_check = now + wait
        if (state, reason) != (self.state, self.reason):
            if state == VERIFIED:
                logger.info("%s verified: %s; checked every %.0f s", self.name,
                            self.polls.format(interval=self.slow_poll), wait)
            else:
                logger.warning("%s not working: %s; checking again in %.0f s (the wait doubles up to %.0f s while "
                               "it fails), meanwhile %s", self.name, reason, wait, self.cap,
                               self.polls.format(interval="poll_interval"))
        else:
            logger.debug("%s still %s; next check in %.0f s", self.name, state, wait)
        self.state, self.reason = state, reason

    def as_json(self, now: float) -> dict[str, object]:
        answer: dict[str, object] = {"state": self.state}
        if self.reason:
            answer["reason"] = self.reason
        if self.wanted:
            answer["next_check_in_seconds"] = max(0, round(self.next_check - now))
        return answer

"""Plain helpers for tests (fixtures live in conftest.py)."""

from __future__ import annotations

API_KEY = "test"


class ManualClock:
    """Epoch seconds that tests move by hand: token expiry and rate-limit windows without sleeping."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

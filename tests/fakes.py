"""Fakes beside the engine's ports, shared by the tests that need them."""

from datetime import UTC, datetime, timedelta


class ManualClock:
    """A clock that moves only when told: leases expire when a test says so."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

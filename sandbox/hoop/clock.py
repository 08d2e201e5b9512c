"""Time for the hoop stand-in: the test clock and hoop's timestamp format.

``ManualClock`` stands still until a test moves it (other stand-ins' tests borrow it too); ``ts`` and
``parse_ts`` write and read timestamps as hoop's API does (RFC 3339, UTC, ``Z``). Nothing here reads the
wall clock except ``utcnow``, the default when no clock is injected.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class ManualClock:
    """A clock for tests: stands still until moved. ``HoopStandIn(clock=ManualClock())``."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware datetime")
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | None = None, /, **kwargs: float) -> datetime:
        with self._lock:
            self._now += (delta or timedelta()) + timedelta(**kwargs)
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when


def utcnow() -> datetime:
    return datetime.now(UTC)


def ts(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_ts(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

"""``Retry-After`` as every vendor sends it: delta-seconds or an HTTP-date.

One parser for hoop, SCIM, Jira and Slack, so every adapter honours a vendor's pacing the same way
(activities turn the result into ``ApplicationError(next_retry_delay=…)``).
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait (never negative); None when the header is absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())

"""Durations as people type them: ``30s``, ``15m``, ``2h``, ``1d`` (and combinations such as ``1h30m``),
or ISO 8601 (``PT2H``, ``P1DT4H``). Zero, negative and unparseable values are refused with a message
that says what was expected, so every edge (CLI, REST, TOML policy) refuses them the same way."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_SHORT = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
_ISO = re.compile(
    r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$", re.IGNORECASE
)


class DurationError(ValueError):
    """A duration that cannot be used: unparseable, zero or negative."""


MAX_DURATION = timedelta(days=3650)
"""Ten years: longer than any grant, timeout or campaign; larger values are typing mistakes or probes (and
past ~2.7 million years they overflow ``timedelta`` and every database's interval type)."""


def parse_duration(text: str) -> timedelta:
    """Parse a positive duration; raise :class:`DurationError` with a readable message otherwise."""
    raw = text.strip()
    if raw.startswith("-"):
        raise DurationError(f"duration {text!r} is negative; give a positive duration such as 30m or 2h")
    match = _SHORT.match(raw.lower()) if raw and not raw.upper().startswith("P") else None
    if match is None:
        match = _ISO.match(raw) if raw.upper().startswith("P") and raw.upper() not in ("P", "PT") else None
    if match is None or not any(match.groupdict().values()):
        raise DurationError(
            f"duration {text!r} is not understood; use 30s, 15m, 2h, 1d (or ISO 8601 such as PT2H)"
        )
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    try:
        value = timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    except OverflowError:
        value = MAX_DURATION + MAX_DURATION
    if value > MAX_DURATION:
        raise DurationError(
            f"duration {text!r} is too long; nothing grantflow governs lasts more than "
            f"{format_duration(MAX_DURATION)}"
        )
    if value <= timedelta(0):
        raise DurationError(f"duration {text!r} is zero; give a positive duration such as 30m or 2h")
    return value


def format_duration(value: timedelta) -> str:
    """The short form of a duration (``1d2h``, ``30s``), as the CLI and messages show it."""
    total = int(value.total_seconds())
    if total <= 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


def _coerce(value: Any) -> Any:
    if isinstance(value, bool):  # pydantic would read false as 0 s and true as 1 s
        raise DurationError(f"duration {value!r} is not a duration; use 30s, 15m, 2h, 1d (or PT2H)")
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise DurationError(f"duration {value!r} must be positive")
        if value > MAX_DURATION.total_seconds():  # also NaN-free: inf and huge floats stop here
            raise DurationError(f"duration {value!r} seconds is too long")
        if value != value:
            raise DurationError("duration NaN is not a number of seconds")
        seconds = timedelta(seconds=value)
        if seconds <= timedelta(0):  # under a microsecond rounds to nothing
            raise DurationError(f"duration {value!r} seconds is shorter than a microsecond")
        return seconds
    if isinstance(value, timedelta) and value <= timedelta(0):
        raise DurationError(f"duration {format_duration(value)!r} must be positive")
    if isinstance(value, timedelta) and value > MAX_DURATION:
        # its JSON form (seconds) would be refused when read back: a workflow could not decode its input
        raise DurationError(f"duration {format_duration(value)!r} is too long")
    return value


PositiveDuration = Annotated[
    timedelta,
    BeforeValidator(_coerce),
    PlainSerializer(lambda v: v.total_seconds(), return_type=float, when_used="json"),
]
"""A positive ``timedelta`` that accepts the short and ISO forms and seconds; JSON carries seconds."""


def _non_negative(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = timedelta(seconds=value)
    if isinstance(value, timedelta) and value < timedelta(0):
        raise DurationError(f"duration {format_duration(value)!r} must not be negative")
    return value


Elapsed = Annotated[
    timedelta,
    BeforeValidator(_non_negative),
    PlainSerializer(lambda v: v.total_seconds(), return_type=float, when_used="json"),
]
"""A non-negative ``timedelta`` (e.g. access granted so far); JSON carries seconds like PositiveDuration."""

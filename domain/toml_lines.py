"""Where a key sits in a TOML file, so a validation error can name the line an operator must fix.

``tomllib`` returns plain values without positions, and pydantic reports a field as a path
(``("stages", 1, "reviewers")``). :func:`key_lines` reads the file's text once and maps every table header and
every ``key = value`` line to its dotted path, counting ``[[array]]`` tables from 0 as pydantic does;
:func:`line_of` finds the closest line for a path (a list element or an inline-table field is reported on the
line of the key that holds it). It reads keys only and never interprets values: ``tomllib`` stays the parser.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

Path = tuple[str | int, ...]

_BARE_OR_QUOTED = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_KEY = re.compile(rf"^\s*({_BARE_OR_QUOTED}(?:\s*\.\s*{_BARE_OR_QUOTED})*)\s*=")
_TABLE = re.compile(rf"^\s*\[\s*({_BARE_OR_QUOTED}(?:\s*\.\s*{_BARE_OR_QUOTED})*)\s*\]\s*(?:#.*)?$")
_ARRAY_TABLE = re.compile(rf"^\s*\[\[\s*({_BARE_OR_QUOTED}(?:\s*\.\s*{_BARE_OR_QUOTED})*)\s*\]\]\s*(?:#.*)?$")
_PART = re.compile(_BARE_OR_QUOTED)


def _parts(dotted: str) -> tuple[str, ...]:
    return tuple(p.strip("\"'") for p in _PART.findall(dotted))


def _strip_strings(line: str) -> str:
    """The line without its string literals and comment, to count brackets that open multi-line values."""
    line = re.sub(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', '""', line)
    return line.split("#", 1)[0]


def key_lines(text: str) -> dict[Path, int]:
    """Every table header and top-level ``key =`` of ``text``, by path, with its 1-based line number."""
    lines: dict[Path, int] = {}
    table: Path = ()
    array_counts: dict[Path, int] = {}
    depth = 0  # brackets/braces still open from a multi-line array or inline table
    in_multiline: str | None = None  # the delimiter of a multi-line string we are inside
    for number, raw in enumerate(text.splitlines(), start=1):
        if in_multiline is not None:
            if in_multiline in raw:
                in_multiline = None
            continue
        if depth == 0:
            if (match := _ARRAY_TABLE.match(raw)) is not None:
                name = _parts(match.group(1))
                index = array_counts.get(name, -1) + 1
                array_counts[name] = index
                table = (*name, index)
                lines.setdefault(name, number)
                lines[table] = number
                continue
            if (match := _TABLE.match(raw)) is not None:
                table = _parts(match.group(1))
                lines[table] = number
                continue
            if (match := _KEY.match(raw)) is not None:
                lines[(*table, *_parts(match.group(1)))] = number
        for delimiter in ('"""', "'''"):
            if raw.count(delimiter) % 2 == 1:
                in_multiline = delimiter
        if in_multiline is None:
            bare = _strip_strings(raw)
            depth = max(0, depth + bare.count("[") + bare.count("{") - bare.count("]") - bare.count("}"))
    return lines


def line_of(lines: dict[Path, int], loc: Sequence[str | int]) -> int | None:
    """The line of ``loc``, or of the nearest enclosing key or table that has one; None at the root."""
    path = tuple(loc)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None

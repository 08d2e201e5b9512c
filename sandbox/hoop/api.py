"""What every handler of the hoop stand-in's API shares: hoop's limits and statuses, the caller, the error
answer, the recorded call, and reading a request's body and query the way hoop does.

Handlers raise :class:`HTTPError` to answer ``{"message": …}`` with a status; they never build responses
themselves (``routing`` does). Nothing here touches the stand-in's state.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sandbox.hoop.clock import parse_ts

MAX_ACCESS_DURATION_SEC = 48 * 3600
DEFAULT_ACCESS_DURATION_SEC = 30 * 60
NANOS = 1_000_000_000
MAX_LIMIT = 100
ID_NAMESPACE = uuid.UUID("6f1d2a8e-3c4b-4e5f-8a9b-0c1d2e3f4a5b")

PENDING, APPROVED, REJECTED, REVOKED = "PENDING", "APPROVED", "REJECTED", "REVOKED"
ADMIN_GROUP, AUDITOR_GROUP = "admin", "auditor"  # storagev2/types/const.go defaults


class HoopAccessDenied(PermissionError):
    """``connect`` refused: no standing access and no valid jit grant. ``str()`` says why."""


class Call(NamedTuple):
    """One HTTP exchange with the stand-in, as recorded for assertions."""

    method: str
    path: str  # as requested, including the /api prefix
    query: dict[str, str]
    json: Any  # the parsed request body, or None
    status: int
    response: Any = None  # the parsed response body, or None
    injected: bool = False  # the status came from ``fail_next``


@dataclass(frozen=True)
class Caller:
    """Who made the request: an API key (``kind="apikey"``) or a person's token (``kind="user"``)."""

    kind: str  # "apikey" | "user"
    id: str
    name: str
    email: str
    groups: tuple[str, ...]
    slack_id: str = ""

    @property
    def admin(self) -> bool:
        return "admin" in self.groups

    def owner(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "email": self.email, "slack_id": self.slack_id}


@dataclass
class HTTPError(Exception):
    """Answer ``status`` with ``{"message": message, **extra}``."""

    status: int
    message: str
    extra: dict[str, Any] = field(default_factory=dict)


def need_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise HTTPError(422, "the request body must be a JSON object")
    return body


def need_str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise HTTPError(422, f"missing or invalid attribute {key!r}")
    return value


def person_request(body: Any) -> tuple[dict[str, Any], str]:
    """A body about one person (the provision and ``/api/_sandbox`` posts): the object and its
    ``user_email``, or 422."""
    body = need_object(body)
    return body, need_str(body, "user_email")


def person_and_connection(body: Any) -> tuple[dict[str, Any], str, str]:
    """A body about one person and one connection (provision, ``/api/_sandbox/connect`` and ``reviews``):
    the object, its ``user_email`` and its ``connection``, or 422."""
    body, email = person_request(body)
    return body, email, need_str(body, "connection")


@contextmanager
def refusal_as_403() -> Iterator[None]:
    """A ``HoopAccessDenied`` raised inside becomes a 403 saying why (the ``/api/_sandbox`` posts)."""
    try:
        yield
    except HoopAccessDenied as exc:
        raise HTTPError(403, str(exc)) from None


def int_param(query: dict[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise HTTPError(422, f"{name} must be an integer") from None


def date_param(query: dict[str, str], name: str) -> datetime | None:
    raw = query.get(name)
    if not raw:
        return None
    try:
        return parse_ts(raw)
    except ValueError:
        raise HTTPError(422, f"{name} must be an RFC 3339 date") from None


def page_params(query: dict[str, str], default_size: int) -> tuple[int, int]:
    """``page`` (from 1) and ``page_size`` (1 to ``MAX_LIMIT``), or 422: connections and attributes."""
    page = int_param(query, "page", 1)
    size = int_param(query, "page_size", default_size)
    if page < 1 or not 1 <= size <= MAX_LIMIT:
        raise HTTPError(422, f"page must be >= 1 and page_size between 1 and {MAX_LIMIT}")
    return page, size

"""The records the stand-in keeps (users, projects, custom fields, issues, comments) and the calls it logs.

Plain mutable dataclasses, stored as they are in the state file (``state.py``); ids are Jira's numeric
strings, people are referred to by accountId. Nothing here renders JSON for the API (``render.py`` does) or
checks a value (``fields.py`` does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sandbox.jira.workflow import JiraWorkflow


class JiraCall(NamedTuple):
    """One HTTP exchange with the stand-in, as recorded for assertions."""

    method: str
    path: str  # as requested: /rest/api/2/issue
    api_path: str  # below the version: /issue ("" when the path is not under /rest/api/<version>)
    version: str | None  # "2", "3", "latest"
    query: list[tuple[str, str]]
    json: Any  # the parsed request body, or None
    status: int  # 0 when the connection was dropped without an answer
    response: Any = None  # the parsed response body, or None
    user: str | None = None  # the email of the authenticated caller
    injected: bool = False  # the answer (or the drop) came from fail_next / drop_next


@dataclass
class User:
    account_id: str
    email: str
    display_name: str
    email_visible: bool
    active: bool
    account_type: str
    time_zone: str
    api_token: str | None


@dataclass
class Project:
    id: str
    key: str
    name: str
    issue_types: dict[str, str]  # id -> name
    workflow: JiraWorkflow


@dataclass
class CustomField:
    id: str
    name: str
    type: str  # string, number, date, option, labels
    options: tuple[str, ...]


@dataclass
class Comment:
    id: str
    author: str  # account id
    text: str
    adf: dict[str, Any] | None
    created: datetime
    updated: datetime
    visibility: dict[str, Any] | None = None


@dataclass
class Issue:
    id: str
    key: str
    project: str  # key
    issue_type: str  # id
    summary: str
    description: str | None
    description_adf: dict[str, Any] | None
    labels: list[str]
    status: str  # id
    assignee: str | None
    reporter: str | None
    creator: str
    created: datetime
    updated: datetime
    duedate: str | None = None
    resolution: dict[str, str] | None = None
    resolution_date: datetime | None = None
    custom: dict[str, Any] = field(default_factory=dict)
    comments: list[Comment] = field(default_factory=list)
    histories: list[dict[str, Any]] = field(default_factory=list)


def utcnow() -> datetime:
    return datetime.now(UTC)


def jira_time(when: datetime | None) -> str | None:
    """Jira's timestamp format: ``2026-01-05T09:00:00.000+0000``."""
    if when is None:
        return None
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}+0000"


def changelog_item(
    field_id: str, from_id: str | None, from_string: str | None, to_id: str | None, to_string: str | None
) -> dict[str, Any]:
    """A changelog item of a system field as Jira writes it (``from``/``to``: ids, null for text fields)."""
    return {
        "field": field_id,
        "fieldtype": "jira",
        "fieldId": field_id,
        "from": from_id,
        "fromString": from_string,
        "to": to_id,
        "toString": to_string,
    }

"""A local Jira Cloud for tests and ``grantflow dev``: a real HTTP server answering the calls grantflow makes
through the ``jira`` client, the way Jira Cloud answers them (see ``../shared/notes/integrations.md`` and
``../shared/specs/jira-platform-v3.json``), and sending signed webhooks when issues change.

    jira = JiraStandIn(users={"grantflow@corp.example": "api-token"}, webhook_secret="s3cret",
                       webhook_url="http://127.0.0.1:8000/hooks/jira")
    jira.add_project("ACC")                                  # the default approval workflow
    bob = jira.add_user("bob@corp.example", "Bob", email_visible=False)
    url = jira.start()                                       # http://127.0.0.1:PORT
    ...
    jira.transition_as("ACC-1", "Approve", bob)              # a person clicking "Approve" in Jira's UI
    jira.wait_idle()                                         # every webhook delivered (or given up)
    jira.stop()

Behaviour reproduced (Jira Cloud, REST v2 and v3):

- Paths under ``/rest/api/2/``, ``/rest/api/latest/`` and ``/rest/api/3/``. v3 carries descriptions and
  comment bodies as Atlassian Document Format (ADF) and refuses plain strings there; v2/latest take and return
  strings (both are stored, so an issue written through one reads back through the other).
- ``GET /serverInfo`` answers as Cloud (``deploymentType: "Cloud"``) without credentials, like Cloud. Every
  other route needs HTTP basic auth ``email:api-token`` of a user given in ``users``; wrong or missing
  credentials get **401**. Every object carries a ``self`` link (the ``jira`` client raises ``KeyError:
  'self'`` without it).
- ``POST /issue`` → **201** ``{id, key, self}``; bad fields → **400** ``{"errorMessages": [], "errors":
  {field: message}}`` with Jira's messages (missing/unknown project, issue type or summary, a summary with a
  newline or over 255 characters, labels with spaces, a description of the wrong format for the API version,
  an unknown assignee accountId, an unknown or unsettable field: ``Field 'x' cannot be set. It is not on the
  appropriate screen, or unknown.``). Every call creates an issue: Jira has no idempotency key.
- ``GET /issue/{key|id}`` (``fields``, ``expand=changelog,transitions``), ``PUT /issue/{key}`` → **204**
  (summary, description, labels, assignee ``{accountId}``, duedate, configured custom fields; ``update`` with
  ``labels``/``comment`` operations), unknown issue → **404**.
- ``GET /issue/{key}/transitions`` lists the transitions available from the current status (by the project's
  workflow); ``POST`` with ``{"transition": {"id"}}`` (plus optional ``fields`` and ``update.comment``) →
  **204**, a transition not available → **400**. Entering a ``done``-category status sets the resolution
  (``Done``), leaving it clears it, as the default Jira workflows do.
- ``POST``/``GET /issue/{key}/comment`` (201 Comment / PageOfComments).
- ``GET /user/search?query=`` returns active users whose display name (or one of its words) or visible email
  starts with the query; a user with email privacy on (``email_visible=False``) has no ``emailAddress`` in any
  answer but is still found by the exact email, as on Cloud. ``GET /user?accountId=``, ``GET /myself``.
- ``GET``/``POST /search`` (startAt paging; Atlassian has since retired these on Cloud:
  ``legacy_search_gone=True`` answers **410** as Cloud does now) and ``GET``/``POST /search/jql``
  (``nextPageToken`` paging, ``isLast``; ``fields`` defaults to none; an unbounded query is refused with
  **400** as on Cloud). The JQL understood is a subset: clauses on ``project``, ``labels``,
  ``key``/``issuekey``, ``status``, ``statusCategory``, ``issuetype``/``type``, ``assignee``, ``reporter``
  with ``=``, ``!=``, ``in (…)``, ``not in (…)``, ``is [not] empty``, joined by ``AND``, then ``ORDER BY
  created|updated|key [ASC|DESC]``. ``labels != x`` skips issues without labels, as Jira does. ``OR`` and
  parentheses are refused with a 400 naming the stand-in.
- ``GET /field`` (the client loads it before searching), ``GET /project/{key}``.
- Not reproduced: Cloud's search index is eventually consistent (a new issue can be missing from search for a
  moment); here it is searchable at once. Pages hold at most 100 issues. No issue properties, attachments,
  links or ``comment_created`` events; state is in memory only.

Webhooks (Cloud admin webhooks): when an issue is created (``jira:issue_created``), edited, transitioned or
commented on (``jira:issue_updated``, with ``issue_event_type_name`` ``issue_generic``/``issue_assigned``/
``issue_updated``/``issue_commented``), through the API or by a person (``transition_as``, ``comment_as``),
the stand-in POSTs the payload (``timestamp``, ``webhookEvent``, ``issue{id,key,self,fields}``, ``user``,
``changelog{id, items[{field, fieldtype, fieldId, from, fromString, to, toString}]}``, ``comment``) to
``webhook_url`` from a background thread, so the call that caused it returns at once. Headers:
``X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`` when a secret is set,
``X-Atlassian-Webhook-Identifier`` (the same for every delivery of one event), ``X-Atlassian-Webhook-Retry:
n`` on the n-th redelivery, ``X-Atlassian-Webhook-Flow: Primary``. Redelivery follows Atlassian's published
policy: on **408, 409, 425, 429, 5xx** and connection failures (``webhook_retry_statuses`` changes the set),
at most ``len(webhook_retry_delays)`` times (Cloud: 5 times over up to ~30 minutes; here after short delays).
Other answers (2xx, and 4xx such as a 401 for a bad signature) end the delivery. ``redeliver(identifier)``
sends an event again on demand, as a lost acknowledgement would make Jira do.

Test hooks: ``fail_next`` answers the next matching requests with 429/503/… (with ``Retry-After``), before or
*after* the write; ``drop_next`` closes the connection without an answer, before or after the write (the
caller cannot tell whether the write happened). Every call is recorded in ``calls``; every webhook event in
``events`` and every delivery attempt in ``deliveries``. Injected answers carry ``X-Sandbox-Fault: injected``.
One lock guards all state: HTTP handlers and the in-process helpers run on different threads. State lives in
memory only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import hashlib
import heapq
import hmac
import itertools
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox._server import HttpStandIn

__all__ = [
    "DEFAULT_WORKFLOW",
    "JiraCall",
    "JiraStandIn",
    "JiraStatus",
    "JiraTransition",
    "JiraWorkflow",
    "WebhookDelivery",
    "WebhookEvent",
]

API_VERSIONS = ("2", "3", "latest")
SERVER_VERSION = [1001, 0, 0]
MAX_SEARCH_RESULTS = 100
DEFAULT_SEARCH_RESULTS = 50
ATLASSIAN_RETRY_STATUSES = frozenset({408, 409, 425, 429, *range(500, 600)})
DEFAULT_WEBHOOK_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8)
_ID_NAMESPACE = uuid.UUID("0b4f9a52-7f53-4b7e-9a3c-5a1de0c1a2b3")
_JSON_TYPE = "application/json;charset=UTF-8"

# Jira's fixed status categories: key -> (id, name, colour)
CATEGORIES: dict[str, tuple[int, str, str]] = {
    "undefined": (1, "No Category", "medium-gray"),
    "new": (2, "To Do", "blue-gray"),
    "done": (3, "Done", "green"),
    "indeterminate": (4, "In Progress", "yellow"),
}
_RESOLUTION_DONE = {"id": "10000", "name": "Done", "description": "Work has been completed on this issue."}


# ---------------------------------------------------------------------------------------------- workflow


@dataclass(frozen=True)
class JiraStatus:
    id: str
    name: str
    category: str = "new"  # a key of CATEGORIES: new, indeterminate, done

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"status {self.name!r}: unknown category {self.category!r}")


@dataclass(frozen=True)
class JiraTransition:
    id: str
    name: str
    to: str  # the name of the status it leads to
    sources: tuple[
        str, ...
    ] = ()  # the statuses it leaves from; empty: a global transition (any other status)


@dataclass(frozen=True)
class JiraWorkflow:
    statuses: tuple[JiraStatus, ...]
    transitions: tuple[JiraTransition, ...]
    initial: str

    def __post_init__(self) -> None:
        names = [s.name for s in self.statuses]
        if len(set(names)) != len(names) or len({s.id for s in self.statuses}) != len(names):
            raise ValueError("status names and ids must be unique in a workflow")
        if len({t.id for t in self.transitions}) != len(self.transitions):
            raise ValueError("transition ids must be unique in a workflow")
        for status in (
            self.initial,
            *(t.to for t in self.transitions),
            *(s for t in self.transitions for s in t.sources),
        ):
            if status not in names:
                raise ValueError(f"workflow refers to unknown status {status!r}")

    def status(self, name_or_id: str) -> JiraStatus:
        for status in self.statuses:
            if name_or_id in (status.id, status.name):
                return status
        raise KeyError(name_or_id)

    def available(self, current: JiraStatus) -> list[JiraTransition]:
        """Transitions offered from ``current``: its own, and global ones that lead elsewhere."""
        return [
            t
            for t in self.transitions
            if (current.name in t.sources) or (not t.sources and t.to != current.name)
        ]


DEFAULT_WORKFLOW = JiraWorkflow(
    statuses=(
        JiraStatus("10000", "Waiting for approval", "new"),
        JiraStatus("10001", "Approved", "indeterminate"),
        JiraStatus("10002", "Denied", "done"),
        JiraStatus("10003", "Done", "done"),
        JiraStatus("10004", "Cancelled", "done"),
    ),
    transitions=(
        JiraTransition("11", "Approve", "Approved", ("Waiting for approval",)),
        JiraTransition("21", "Deny", "Denied", ("Waiting for approval",)),
        JiraTransition("31", "Close", "Done", ("Approved",)),
        JiraTransition("41", "Cancel", "Cancelled", ("Waiting for approval", "Approved")),
        JiraTransition("51", "Reopen", "Waiting for approval", ("Approved", "Denied", "Done", "Cancelled")),
    ),
    initial="Waiting for approval",
)


# ---------------------------------------------------------------------------------------------- records


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


@dataclass(frozen=True)
class WebhookEvent:
    """One webhook event: the same body (and so the same signature) goes out on every delivery."""

    identifier: str
    event: str  # jira:issue_created, jira:issue_updated
    type_name: str  # issue_event_type_name: issue_created, issue_generic, issue_assigned, ...
    issue_key: str
    payload: dict[str, Any]
    body: bytes
    url: str | None
    secret: str | None

    @property
    def signature(self) -> str | None:
        if self.secret is None:
            return None
        return "sha256=" + hmac.new(self.secret.encode(), self.body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class WebhookDelivery:
    """One attempt to deliver an event. ``retry`` is 0 for the first attempt, else the value sent in
    ``X-Atlassian-Webhook-Retry``. ``status`` is None when the connection failed (``error`` says how)."""

    identifier: str
    event: str
    retry: int
    status: int | None
    error: str | None
    headers: dict[str, str]

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class _Fault:
    prefix: str
    method: str | None
    remaining: int
    drop: bool
    status: int
    retry_after: float | str | None
    after_write: bool


@dataclass
class _User:
    account_id: str
    email: str
    display_name: str
    email_visible: bool
    active: bool
    account_type: str
    time_zone: str
    api_token: str | None


@dataclass
class _Project:
    id: str
    key: str
    name: str
    issue_types: dict[str, str]  # id -> name
    workflow: JiraWorkflow


@dataclass
class _CustomField:
    id: str
    name: str
    type: str  # string, number, date, option, labels
    options: tuple[str, ...]


@dataclass
class _Comment:
    id: str
    author: str  # account id
    text: str
    adf: dict[str, Any] | None
    created: datetime
    updated: datetime
    visibility: dict[str, Any] | None = None


@dataclass
class _Issue:
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
    comments: list[_Comment] = field(default_factory=list)
    histories: list[dict[str, Any]] = field(default_factory=list)


class _HTTPError(Exception):
    def __init__(
        self,
        status: int,
        messages: Sequence[str] = (),
        errors: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, messages, errors)
        self.status = status
        self.messages = list(messages)
        self.errors = dict(errors or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"errorMessages": self.messages, "errors": self.errors}


@dataclass
class _Ctx:
    """What a handler gets: the API version, path parameters, query, parsed body and the caller."""

    version: str
    params: dict[str, str]
    query: list[tuple[str, str]]
    body: Any
    caller: _User | None

    @property
    def v3(self) -> bool:
        return self.version == "3"

    def q(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None

    def q_all(self, name: str) -> list[str]:
        return [value for key, value in self.query if key == name]

    def q_int(self, name: str, default: int) -> int:
        raw = self.q(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise _HTTPError(400, [f"The value '{raw}' is not valid for '{name}'."]) from None


@dataclass
class _Outcome:
    status: int
    payload: Any
    headers: dict[str, str]
    drop: bool = False


@dataclass(order=True)
class _Pending:
    due: float
    seq: int
    event: WebhookEvent = field(compare=False)
    retry: int = field(compare=False)
    chain: bool = field(compare=False)  # keep retrying on failure (False for an on-demand redelivery)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _jira_time(when: datetime | None) -> str | None:
    """Jira's timestamp format: ``2026-01-05T09:00:00.000+0000``."""
    if when is None:
        return None
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}+0000"


# ---------------------------------------------------------------------------------------------- ADF


def text_to_adf(text: str) -> dict[str, Any]:
    """Plain text as an ADF document: paragraphs at blank lines, hard breaks at single newlines."""
    content = []
    for paragraph in text.split("\n\n"):
        inline: list[dict[str, Any]] = []
        for n, line in enumerate(paragraph.split("\n")):
            if n:
                inline.append({"type": "hardBreak"})
            if line:
                inline.append({"type": "text", "text": line})
        content.append({"type": "paragraph", "content": inline})
    return {"type": "doc", "version": 1, "content": content}


def adf_to_text(node: Any) -> str:
    """The text of an ADF document (blocks separated by blank lines), good enough for comparisons."""
    if not isinstance(node, dict):
        return ""
    kind = node.get("type")
    if kind == "text":
        return str(node.get("text", ""))
    if kind == "hardBreak":
        return "\n"
    children = node.get("content") or []
    if kind in ("doc", "bulletList", "orderedList", "listItem", "blockquote", "panel"):
        return "\n\n".join(adf_to_text(c) for c in children)
    return "".join(adf_to_text(c) for c in children)


def is_adf(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.get("type") == "doc"
        and value.get("version") == 1
        and isinstance(value.get("content"), list)
    )


# ---------------------------------------------------------------------------------------------- JQL


class _JqlError(Exception):
    pass


class _Clause(NamedTuple):
    field: str
    op: str  # =, !=, in, not in, empty, not empty
    values: tuple[str, ...]


class _Query(NamedTuple):
    clauses: tuple[_Clause, ...]
    order: tuple[tuple[str, bool], ...]  # (field, descending)


_JQL_TOKEN = re.compile(
    r"""\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<op>!=|=|\(|\)|,)|(?P<word>[^\s=!(),"']+))"""
)
_JQL_FIELDS = {
    "project": "project",
    "labels": "labels",
    "key": "key",
    "issuekey": "key",
    "id": "key",
    "status": "status",
    "statuscategory": "statusCategory",
    "issuetype": "issuetype",
    "type": "issuetype",
    "assignee": "assignee",
    "reporter": "reporter",
}
_JQL_ORDER = {"created": "created", "updated": "updated", "key": "key", "issuekey": "key", "id": "key"}


def parse_jql(text: str) -> _Query:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _JQL_TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise _JqlError(f"Error in the JQL Query: unexpected character at position {pos + 1}.")
        pos = match.end()
        if match.group("str") is not None:
            raw = match.group("str")[1:-1]
            tokens.append(("value", re.sub(r"\\(.)", r"\1", raw)))
        elif match.group("op") is not None:
            tokens.append(("op", match.group("op")))
        elif match.group("word") is not None:
            tokens.append(("word", match.group("word")))
    index = 0

    def peek(offset: int = 0) -> tuple[str, str] | None:
        return tokens[index + offset] if index + offset < len(tokens) else None

    def is_word(token: tuple[str, str] | None, *words: str) -> bool:
        return token is not None and token[0] == "word" and token[1].lower() in words

    def take_value() -> str:
        nonlocal index
        token = peek()
        if token is None or token[0] == "op":
            got = "end of query" if token is None else repr(token[1])
            raise _JqlError(
                f"Error in the JQL Query: Expecting either a value, list or function but got {got}."
            )
        index += 1
        return token[1]

    clauses: list[_Clause] = []
    order: list[tuple[str, bool]] = []
    if tokens and not is_word(peek(), "order"):
        while True:
            token = peek()
            if token is not None and token == ("op", "("):
                raise _JqlError("The Jira stand-in does not support parentheses in JQL.")
            name = take_value()
            field_name = _JQL_FIELDS.get(name.lower())
            if field_name is None:
                raise _JqlError(f"Field '{name}' does not exist or you do not have permission to view it.")
            token = peek()
            if token == ("op", "="):
                index += 1
                clauses.append(_Clause(field_name, "=", (take_value(),)))
            elif token == ("op", "!="):
                index += 1
                clauses.append(_Clause(field_name, "!=", (take_value(),)))
            elif is_word(token, "in") or (is_word(token, "not") and is_word(peek(1), "in")):
                negate = is_word(token, "not")
                index += 2 if negate else 1
                if peek() != ("op", "("):
                    raise _JqlError("Error in the JQL Query: Expecting '(' after IN.")
                index += 1
                values = [take_value()]
                while peek() == ("op", ","):
                    index += 1
                    values.append(take_value())
                if peek() != ("op", ")"):
                    raise _JqlError("Error in the JQL Query: Expecting ')' to close the list.")
                index += 1
                clauses.append(_Clause(field_name, "not in" if negate else "in", tuple(values)))
            elif is_word(token, "is"):
                index += 1
                negate = is_word(peek(), "not")
                index += 1 if negate else 0
                if not is_word(peek(), "empty", "null"):
                    raise _JqlError("Error in the JQL Query: Expecting EMPTY or NULL after IS.")
                index += 1
                clauses.append(_Clause(field_name, "not empty" if negate else "empty", ()))
            else:
                got = "end of query" if token is None else repr(token[1])
                raise _JqlError(f"Error in the JQL Query: Expecting an operator but got {got}.")
            if is_word(peek(), "and"):
                index += 1
                continue
            if is_word(peek(), "or"):
                raise _JqlError("The Jira stand-in supports only AND between JQL clauses, not OR.")
            break
    if is_word(peek(), "order"):
        index += 1
        if not is_word(peek(), "by"):
            raise _JqlError("Error in the JQL Query: Expecting 'BY' after 'ORDER'.")
        index += 1
        while True:
            name = take_value()
            order_field = _JQL_ORDER.get(name.lower())
            if order_field is None:
                raise _JqlError(f"The Jira stand-in cannot order by '{name}'.")
            descending = False
            if is_word(peek(), "asc", "desc"):
                descending = tokens[index][1].lower() == "desc"
                index += 1
            order.append((order_field, descending))
            if peek() != ("op", ","):
                break
            index += 1
    if peek() is not None:
        raise _JqlError(f"Error in the JQL Query: unexpected {tokens[index][1]!r}.")
    return _Query(tuple(clauses), tuple(order))


# ---------------------------------------------------------------------------------------------- kept state

STATE_VERSION = 1
WEBHOOKS_API = "/rest/webhooks/1.0"
WEBHOOKS_VERSION = "webhooks/1.0"


def _encode_value(value: Any) -> Any:
    """JSON for what the state holds besides plain data: times (tagged, so they load back as times)."""
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    raise TypeError(f"cannot keep {type(value).__name__} in the Jira stand-in's state")


def _decode_value(obj: dict[str, Any]) -> Any:
    if set(obj) == {"$datetime"}:
        return datetime.fromisoformat(obj["$datetime"])
    return obj


# ---------------------------------------------------------------------------------------------- the stand-in

_Handler = Callable[[_Ctx], tuple[int, Any]]


class JiraStandIn(HttpStandIn):
    """Jira Cloud, in process. See the module docstring for the behaviour and its sources."""

    def __init__(
        self,
        *,
        users: Mapping[str, str],
        webhook_secret: str | None = None,
        webhook_url: str | None = None,
        clock: Callable[[], datetime] | None = None,
        webhook_retry_delays: Sequence[float] = DEFAULT_WEBHOOK_RETRY_DELAYS,
        webhook_retry_statuses: Iterable[int] = ATLASSIAN_RETRY_STATUSES,
        webhook_timeout: float = 5.0,
        legacy_search_gone: bool = False,
        state_file: Path | None = None,
    ) -> None:
        """``state_file``: keep users, projects, custom fields and issues there (rewritten after every
        change, loaded back here), so a restarted stand-in goes on numbering tickets where it stopped, as
        Jira would; calls, events, deliveries and faults are not kept."""
        if not users:
            raise ValueError("at least one API user (email -> API token) is needed")
        self._lock = threading.RLock()
        self._clock = clock or _utcnow
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.webhook_retry_delays = tuple(webhook_retry_delays)
        self.webhook_retry_statuses = frozenset(webhook_retry_statuses)
        self.webhook_timeout = webhook_timeout
        self.legacy_search_gone = legacy_search_gone
        self.calls: list[JiraCall] = []
        self.events: list[WebhookEvent] = []
        self.deliveries: list[WebhookDelivery] = []
        self._faults: list[_Fault] = []
        self._users: dict[str, _User] = {}  # account id -> user
        self._projects: dict[str, _Project] = {}  # key -> project
        self._issues: dict[str, _Issue] = {}  # key -> issue
        self._custom_fields: dict[str, _CustomField] = {}
        self._next_id = 10001
        self._next_number: dict[str, int] = {}  # project key -> the number of its next issue
        self._webhooks: dict[str, dict[str, Any]] = {}  # admin webhooks registered through the REST API
        self.site_admins: set[str] = set()  # emails of users with "Administer Jira" (webhook registration)
        self.state_file = Path(state_file) if state_file is not None else None
        self._retry_counts: dict[str, int] = {}
        self._server = None
        self._base_url = "http://127.0.0.1"
        # webhook delivery: a heap of due deliveries, worked off by one thread
        self._wh_cond = threading.Condition()
        self._wh_heap: list[_Pending] = []
        self._wh_seq = itertools.count()
        self._wh_inflight = 0
        self._wh_stop = False
        self._wh_thread: threading.Thread | None = None
        if self.state_file is not None and self.state_file.exists():
            self._load(json.loads(self.state_file.read_text(), object_hook=_decode_value))
        for email, token in users.items():
            self.add_user(email, api_token=token)
        self._routes = self._build_routes()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            # a plain coroutine function: uvicorn takes a bound method for an ASGI2 app
            await self._asgi(scope, receive, send)

        self.app = app

    # ------------------------------------------------------------------ lifecycle

    def _started(self, url: str) -> None:
        """Start the webhook sender once serving."""
        with self._lock:
            self._base_url = url
        with self._wh_cond:
            self._wh_stop = False
        self._wh_thread = threading.Thread(target=self._webhook_worker, name="jira-webhooks", daemon=True)
        self._wh_thread.start()

    def _stopping(self) -> None:
        """Deliveries still waiting are dropped."""
        with self._wh_cond:
            self._wh_stop = True
            self._wh_cond.notify_all()
        if self._wh_thread is not None:
            self._wh_thread.join(self.webhook_timeout + 1)
            self._wh_thread = None

    # ------------------------------------------------------------------ state

    def _new_id(self) -> str:
        """Jira's numeric ids (projects, issue types, issues, comments, changelog entries)."""
        with self._lock:
            value, self._next_id = self._next_id, self._next_id + 1
            return str(value)

    def _save(self) -> None:
        """Write the whole state atomically (a rename), as the hoop stand-in does."""
        if self.state_file is None:
            return
        with self._lock:
            text = json.dumps(self._dump(), default=_encode_value, sort_keys=True)
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, self.state_file)

    def _dump(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "next_id": self._next_id,
            "next_number": dict(self._next_number),
            "users": [asdict(u) for u in self._users.values()],
            "projects": [asdict(p) for p in self._projects.values()],
            "custom_fields": [asdict(f) for f in self._custom_fields.values()],
            "issues": [asdict(i) for i in self._issues.values()],
            "webhooks": list(self._webhooks.values()),
        }

    def _load(self, data: dict[str, Any]) -> None:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"{self.state_file}: unknown state version {data.get('version')!r}")
        self._next_id = int(data["next_id"])
        self._next_number = {str(k): int(v) for k, v in data["next_number"].items()}
        self._users = {u["account_id"]: _User(**u) for u in data["users"]}
        for raw in data["projects"]:
            flow = raw["workflow"]
            workflow = JiraWorkflow(
                statuses=tuple(JiraStatus(**st) for st in flow["statuses"]),
                transitions=tuple(
                    JiraTransition(**{**t, "sources": tuple(t["sources"])}) for t in flow["transitions"]
                ),
                initial=flow["initial"],
            )
            self._projects[raw["key"]] = _Project(**{**raw, "workflow": workflow})
        self._custom_fields = {
            f["id"]: _CustomField(**{**f, "options": tuple(f["options"])}) for f in data["custom_fields"]
        }
        for raw in data["issues"]:
            comments = [_Comment(**c) for c in raw["comments"]]
            self._issues[raw["key"]] = _Issue(**{**raw, "comments": comments})
        self._webhooks = {w["id"]: w for w in data.get("webhooks", [])}

    # ------------------------------------------------------------------ seeding

    def add_user(
        self,
        email: str,
        display_name: str = "",
        *,
        account_id: str | None = None,
        email_visible: bool = True,
        active: bool = True,
        account_type: str = "atlassian",
        time_zone: str = "Etc/UTC",
        api_token: str | None = None,
    ) -> str:
        """Add (or update) a Jira user; returns the accountId. Only users with an ``api_token`` call the API.
        ``email_visible=False`` is Cloud's email privacy: answers leave ``emailAddress`` out."""
        with self._lock:
            existing = self._user_by_email(email)
            if existing is not None:
                account_id = existing.account_id
            elif account_id is None:
                account_id = "712020:" + str(uuid.uuid5(_ID_NAMESPACE, email.lower()))
            self._users[account_id] = _User(
                account_id=account_id,
                email=email,
                display_name=display_name or email.split("@")[0].replace(".", " ").title(),
                email_visible=email_visible,
                active=active,
                account_type=account_type,
                time_zone=time_zone,
                api_token=api_token if api_token is not None else (existing.api_token if existing else None),
            )
            self._save()
            return account_id

    def account_id(self, email: str) -> str:
        with self._lock:
            user = self._user_by_email(email)
            if user is None:
                raise KeyError(email)
            return user.account_id

    def add_project(
        self,
        key: str,
        name: str = "",
        *,
        issue_types: Sequence[str] = ("Task",),
        workflow: JiraWorkflow = DEFAULT_WORKFLOW,
    ) -> str:
        """Add a project with its issue types and one workflow for all of them. Returns its id."""
        if not re.fullmatch(r"[A-Z][A-Z0-9_]{1,9}", key):
            raise ValueError(f"bad project key {key!r}: 2-10 upper-case letters, digits or _")
        with self._lock:
            if key in self._projects:
                raise ValueError(f"project {key} exists")
            project = _Project(
                id=self._new_id(),
                key=key,
                name=name or key.title(),
                issue_types={self._new_id(): t for t in issue_types},
                workflow=workflow,
            )
            self._projects[key] = project
            self._next_number[key] = 1
            self._save()
            return project.id

    def has_project(self, key: str) -> bool:
        with self._lock:
            return key in self._projects

    def add_custom_field(
        self,
        name: str,
        *,
        field_type: str = "string",
        field_id: str | None = None,
        options: Sequence[str] = (),
    ) -> str:
        """A custom field settable on every project's screens. Types: string, number, date, option, labels."""
        if field_type not in ("string", "number", "date", "option", "labels"):
            raise ValueError(f"unknown custom field type {field_type!r}")
        with self._lock:
            # the same field asked for again (a restarted stand-in) keeps its id
            same = [f.id for f in self._custom_fields.values() if f.name == name and field_id in (None, f.id)]
            fid = field_id or (same[0] if same else f"customfield_{10050 + len(self._custom_fields)}")
            self._custom_fields[fid] = _CustomField(fid, name, field_type, tuple(options))
            self._save()
            return fid

    # ------------------------------------------------------------------ people acting in Jira's UI

    def transition_as(
        self, key: str, transition_name: str, account_id: str, comment: str | None = None
    ) -> str:
        """A person performs a transition in Jira's UI (by its name, as on the button). Raises ``ValueError``
        when the transition is not available from the issue's status. Returns the webhook event identifier."""
        with self._lock:
            issue = self._require_issue(key)
            actor = self._require_user_id(account_id)
            workflow = self._projects[issue.project].workflow
            current = workflow.status(issue.status)
            matches = [t for t in workflow.available(current) if t.name.lower() == transition_name.lower()]
            if not matches:
                names = ", ".join(t.name for t in workflow.available(current)) or "none"
                raise ValueError(
                    f"{key} is {current.name}: transition {transition_name!r} is not available "
                    f"(available: {names})"
                )
            event = self._transition(issue, matches[0], actor, comment=comment, comment_adf=None)
            self._save()
            return event.identifier

    def comment_as(self, key: str, text: str, account_id: str) -> str:
        """A person comments in Jira's UI. Returns the webhook event identifier."""
        with self._lock:
            issue = self._require_issue(key)
            actor = self._require_user_id(account_id)
            comment = self._add_comment(issue, actor, text, None)
            event = self._emit("jira:issue_updated", "issue_commented", issue, actor, comment=comment)
            self._save()
            return event.identifier

    # ------------------------------------------------------------------ inspection

    def issue(self, key: str) -> dict[str, Any]:
        """An issue as ``GET /rest/api/2/issue/{key}`` renders it (every field, changelog expanded)."""
        with self._lock:
            issue = self._require_issue(key)
            body = self._render_issue(issue, "2", None)
            body["changelog"] = self._render_changelog(issue)
            return body

    def issues(self, *, label: str | None = None) -> list[dict[str, Any]]:
        """Every issue (with ``label``, if given), in creation order, rendered as by ``issue``."""
        with self._lock:
            keys = [i.key for i in self._ordered_issues() if label is None or label in i.labels]
            return [self.issue(k) for k in keys]

    def status_of(self, key: str) -> str:
        with self._lock:
            issue = self._require_issue(key)
            return self._projects[issue.project].workflow.status(issue.status).name

    def comments(self, key: str) -> list[str]:
        """The text of every comment on the issue, oldest first."""
        with self._lock:
            return [c.text for c in self._require_issue(key).comments]

    def calls_to(self, method: str, api_path_prefix: str) -> list[JiraCall]:
        """Recorded calls with this method whose path below the version starts with the prefix."""
        prefix = self._api_prefix(api_path_prefix)
        with self._lock:
            return [c for c in self.calls if c.method == method.upper() and c.api_path.startswith(prefix)]

    # ------------------------------------------------------------------ fault injection

    def fail_next(
        self,
        path_prefix: str,
        status: int = 503,
        retry_after: float | str | None = None,
        count: int = 1,
        *,
        after_write: bool = False,
        method: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests whose path starts with ``path_prefix`` (``/issue``, with or
        without ``/rest/api/<version>``) with ``status``, plus ``Retry-After`` when given (seconds, or an
        HTTP-date string). ``after_write=True`` runs the request first and replaces its answer."""
        with self._lock:
            self._faults.append(
                _Fault(
                    self._api_prefix(path_prefix),
                    method.upper() if method else None,
                    count,
                    False,
                    status,
                    retry_after,
                    after_write,
                )
            )

    def drop_next(
        self, path_prefix: str, *, after_write: bool = False, count: int = 1, method: str | None = None
    ) -> None:
        """Close the connection of the next ``count`` matching requests without answering; with
        ``after_write=True`` the request is carried out first (an issue is created, a transition done)."""
        with self._lock:
            self._faults.append(
                _Fault(
                    self._api_prefix(path_prefix),
                    method.upper() if method else None,
                    count,
                    True,
                    0,
                    None,
                    after_write,
                )
            )

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def clear_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    # ------------------------------------------------------------------ webhooks

    def set_webhook(self, url: str | None, secret: str | None = None) -> None:
        """Where (and with which secret) events from now on are sent; None stops sending."""
        with self._lock:
            self.webhook_url = url
            self.webhook_secret = secret

    def event(self, identifier: str) -> WebhookEvent:
        with self._lock:
            for event in self.events:
                if event.identifier == identifier:
                    return event
        raise KeyError(identifier)

    def deliveries_of(self, identifier: str) -> list[WebhookDelivery]:
        with self._lock:
            return [d for d in self.deliveries if d.identifier == identifier]

    def redeliver(self, identifier: str) -> None:
        """Send an event once more (with the next ``X-Atlassian-Webhook-Retry``), as Jira does when it did not
        see an acknowledgement. One attempt: a failure is recorded, not retried."""
        event = self.event(identifier)
        if event.url is None:
            raise ValueError(f"event {identifier} had no webhook URL")
        with self._lock:
            retry = self._retry_counts.get(identifier, 0) + 1
            self._retry_counts[identifier] = retry
        self._schedule(event, retry, delay=0.0, chain=False)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until no delivery is due or under way (retries included). Raises ``TimeoutError``."""
        with self._wh_cond:
            if not self._wh_cond.wait_for(lambda: not self._wh_heap and self._wh_inflight == 0, timeout):
                raise TimeoutError(f"webhook deliveries still pending after {timeout}s")

    def _schedule(self, event: WebhookEvent, retry: int, *, delay: float, chain: bool) -> None:
        with self._wh_cond:
            heapq.heappush(
                self._wh_heap, _Pending(time.monotonic() + delay, next(self._wh_seq), event, retry, chain)
            )
            self._wh_cond.notify_all()

    def _webhook_worker(self) -> None:
        with httpx.Client(timeout=self.webhook_timeout, follow_redirects=False) as client:
            while True:
                with self._wh_cond:
                    while not self._wh_stop:
                        if self._wh_heap and self._wh_heap[0].due <= time.monotonic():
                            break
                        wait = self._wh_heap[0].due - time.monotonic() if self._wh_heap else None
                        self._wh_cond.wait(wait)
                    if self._wh_stop:
                        self._wh_heap.clear()
                        self._wh_cond.notify_all()
                        return
                    pending = heapq.heappop(self._wh_heap)
                    self._wh_inflight += 1
                try:
                    self._deliver(client, pending)
                finally:
                    with self._wh_cond:
                        self._wh_inflight -= 1
                        self._wh_cond.notify_all()

    def _deliver(self, client: httpx.Client, pending: _Pending) -> None:
        event = pending.event
        assert event.url is not None
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Atlassian Webhook HTTP Client",
            "X-Atlassian-Webhook-Identifier": event.identifier,
            "X-Atlassian-Webhook-Flow": "Primary",
        }
        if event.signature is not None:
            headers["X-Hub-Signature"] = event.signature
        if pending.retry:
            headers["X-Atlassian-Webhook-Retry"] = str(pending.retry)
        status: int | None = None
        error: str | None = None
        try:
            status = client.post(event.url, content=event.body, headers=headers).status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.deliveries.append(
                WebhookDelivery(event.identifier, event.event, pending.retry, status, error, headers)
            )
            retryable = status is None or status in self.webhook_retry_statuses
            if not (pending.chain and retryable) or pending.retry >= len(self.webhook_retry_delays):
                return
            retry = self._retry_counts.get(event.identifier, 0) + 1
            self._retry_counts[event.identifier] = retry
            delay = self.webhook_retry_delays[pending.retry]
        self._schedule(event, retry, delay=delay, chain=True)

    def _emit(
        self,
        event_name: str,
        type_name: str,
        issue: _Issue,
        actor: _User,
        *,
        changelog: list[dict[str, Any]] | None = None,
        comment: _Comment | None = None,
    ) -> WebhookEvent:
        """Record an event and, with a webhook URL set, queue its delivery (under the lock)."""
        payload: dict[str, Any] = {
            "timestamp": int(self.now().timestamp() * 1000),
            "webhookEvent": event_name,
            "issue_event_type_name": type_name,
            "user": self._render_user(actor, full=False),
            "issue": self._render_issue(issue, "2", None, with_expand=False),
            "matchedWebhookIds": [1],
        }
        if changelog:
            payload["changelog"] = {"id": issue.histories[-1]["id"], "items": copy.deepcopy(changelog)}
        if comment is not None:
            payload["comment"] = self._render_comment(issue, comment, "2")
        event = WebhookEvent(
            identifier=str(uuid.uuid4()),
            event=event_name,
            type_name=type_name,
            issue_key=issue.key,
            payload=payload,
            body=json.dumps(payload, separators=(",", ":")).encode(),
            url=self.webhook_url,
            secret=self.webhook_secret,
        )
        self.events.append(event)
        if event.url is not None:
            self._schedule(event, 0, delay=0.0, chain=True)
        return event

    # ------------------------------------------------------------------ internals: state

    def _user_by_email(self, email: str) -> _User | None:
        for user in self._users.values():
            if user.email.lower() == email.lower():
                return user
        return None

    def _require_user_id(self, account_id: str) -> _User:
        user = self._users.get(account_id)
        if user is None:
            raise KeyError(f"no Jira user with accountId {account_id!r}")
        return user

    def _require_issue(self, key: str) -> _Issue:
        issue = self._find_issue(key)
        if issue is None:
            raise KeyError(f"no issue {key!r}")
        return issue

    def _find_issue(self, key_or_id: str) -> _Issue | None:
        issue = self._issues.get(key_or_id.upper())
        if issue is not None:
            return issue
        for candidate in self._issues.values():
            if candidate.id == key_or_id:
                return candidate
        return None

    def _ordered_issues(self) -> list[_Issue]:
        return sorted(self._issues.values(), key=lambda i: int(i.id))

    @staticmethod
    def _api_prefix(path_prefix: str) -> str:
        match = re.match(r"^/?rest/api/[^/]+(/.*)?$", path_prefix)
        if match:
            return match.group(1) or "/"
        return path_prefix if path_prefix.startswith("/") else "/" + path_prefix

    def _status(self, issue: _Issue) -> JiraStatus:
        return self._projects[issue.project].workflow.status(issue.status)

    def _history(self, issue: _Issue, actor: _User, items: list[dict[str, Any]]) -> None:
        now = self.now()
        issue.histories.append(
            {"id": self._new_id(), "author": actor.account_id, "created": now, "items": items}
        )
        issue.updated = now

    def _transition(
        self,
        issue: _Issue,
        transition: JiraTransition,
        actor: _User,
        *,
        comment: str | None,
        comment_adf: dict[str, Any] | None,
        items: list[dict[str, Any]] | None = None,
    ) -> WebhookEvent:
        workflow = self._projects[issue.project].workflow
        before, after = workflow.status(issue.status), workflow.status(transition.to)
        items = list(items or [])
        if after.category == "done" and issue.resolution is None:
            items.append(_item("resolution", None, None, _RESOLUTION_DONE["id"], _RESOLUTION_DONE["name"]))
            issue.resolution = dict(_RESOLUTION_DONE)
            issue.resolution_date = self.now()
        elif after.category != "done" and issue.resolution is not None:
            items.append(_item("resolution", issue.resolution["id"], issue.resolution["name"], None, None))
            issue.resolution = None
            issue.resolution_date = None
        items.append(_item("status", before.id, before.name, after.id, after.name))
        issue.status = after.id
        self._history(issue, actor, items)
        added = self._add_comment(issue, actor, comment, comment_adf) if comment or comment_adf else None
        return self._emit("jira:issue_updated", "issue_generic", issue, actor, changelog=items, comment=added)

    def _add_comment(
        self,
        issue: _Issue,
        actor: _User,
        text: str | None,
        adf: dict[str, Any] | None,
        visibility: dict[str, Any] | None = None,
    ) -> _Comment:
        now = self.now()
        comment = _Comment(
            id=self._new_id(),
            author=actor.account_id,
            text=text if text is not None else adf_to_text(adf),
            adf=adf,
            created=now,
            updated=now,
            visibility=visibility,
        )
        issue.comments.append(comment)
        issue.updated = now
        return comment

    # ------------------------------------------------------------------ internals: rendering

    def _self(self, version: str, path: str) -> str:
        return f"{self._base_url}/rest/api/{'3' if version == '3' else '2'}/{path}"

    def _avatars(self, seed: str) -> dict[str, str]:
        digest = hashlib.md5(seed.encode()).hexdigest()  # an avatar URL, like Gravatar's
        return {
            size: f"{self._base_url}/avatar/{digest}?s={size[:2]}"
            for size in ("48x48", "24x24", "16x16", "32x32")
        }

    def _render_user(
        self, user: _User, *, full: bool, version: str = "2", own: bool = False
    ) -> dict[str, Any]:
        """``full``: the User shape (user search, myself); else UserDetails (embedded in issues, comments)."""
        body: dict[str, Any] = {
            "self": self._self(version, f"user?accountId={user.account_id}"),
            "accountId": user.account_id,
            "accountType": user.account_type,
        }
        if user.email_visible or own:
            body["emailAddress"] = user.email
        body.update(
            avatarUrls=self._avatars(user.account_id),
            displayName=user.display_name,
            active=user.active,
            timeZone=user.time_zone,
        )
        if full:
            body["locale"] = "en_US"
        return body

    def _render_status(self, status: JiraStatus, version: str) -> dict[str, Any]:
        cat_id, cat_name, colour = CATEGORIES[status.category]
        return {
            "self": self._self(version, f"status/{status.id}"),
            "description": "",
            "iconUrl": f"{self._base_url}/images/icons/statuses/generic.png",
            "name": status.name,
            "id": status.id,
            "statusCategory": {
                "self": self._self(version, f"statuscategory/{cat_id}"),
                "id": cat_id,
                "key": status.category,
                "colorName": colour,
                "name": cat_name,
            },
        }

    def _render_issue_type(self, type_id: str, name: str, version: str) -> dict[str, Any]:
        return {
            "self": self._self(version, f"issuetype/{type_id}"),
            "id": type_id,
            "description": f"A {name.lower()} to be done.",
            "iconUrl": f"{self._base_url}/images/icons/issuetypes/task.svg",
            "name": name,
            "subtask": False,
            "avatarId": 10318,
            "hierarchyLevel": 0,
        }

    def _render_project(self, project: _Project, version: str) -> dict[str, Any]:
        return {
            "self": self._self(version, f"project/{project.id}"),
            "id": project.id,
            "key": project.key,
            "name": project.name,
            "projectTypeKey": "software",
            "simplified": False,
            "avatarUrls": self._avatars(project.key),
        }

    def _render_comment(self, issue: _Issue, comment: _Comment, version: str) -> dict[str, Any]:
        author = self._render_user(self._users[comment.author], full=False, version=version)
        body: dict[str, Any] = {
            "self": self._self(version, f"issue/{issue.id}/comment/{comment.id}"),
            "id": comment.id,
            "author": author,
            "body": (comment.adf or text_to_adf(comment.text)) if version == "3" else comment.text,
            "updateAuthor": author,
            "created": _jira_time(comment.created),
            "updated": _jira_time(comment.updated),
            "jsdPublic": True,
        }
        if comment.visibility is not None:
            body["visibility"] = comment.visibility
        return body

    def _render_fields(self, issue: _Issue, version: str) -> dict[str, Any]:
        project = self._projects[issue.project]
        description: Any = issue.description
        if version == "3" and issue.description is not None:
            description = issue.description_adf or text_to_adf(issue.description)
        fields: dict[str, Any] = {
            "summary": issue.summary,
            "description": description,
            "labels": list(issue.labels),
            "issuetype": self._render_issue_type(
                issue.issue_type, project.issue_types[issue.issue_type], version
            ),
            "project": self._render_project(project, version),
            "status": self._render_status(self._status(issue), version),
            "assignee": self._user_details(issue.assignee, version),
            "reporter": self._user_details(issue.reporter, version),
            "creator": self._user_details(issue.creator, version),
            "created": _jira_time(issue.created),
            "updated": _jira_time(issue.updated),
            "duedate": issue.duedate,
            "resolution": (
                {"self": self._self(version, f"resolution/{issue.resolution['id']}"), **issue.resolution}
                if issue.resolution
                else None
            ),
            "resolutiondate": _jira_time(issue.resolution_date),
            "comment": {
                "self": self._self(version, f"issue/{issue.id}/comment"),
                "comments": [self._render_comment(issue, c, version) for c in issue.comments],
                "maxResults": len(issue.comments),
                "total": len(issue.comments),
                "startAt": 0,
            },
        }
        for fid in self._custom_fields:
            fields[fid] = copy.deepcopy(issue.custom.get(fid))
        return fields

    def _user_details(self, account_id: str | None, version: str) -> dict[str, Any] | None:
        if account_id is None:
            return None
        return self._render_user(self._users[account_id], full=False, version=version)

    def _render_issue(
        self, issue: _Issue, version: str, wanted: Callable[[str], bool] | None, *, with_expand: bool = True
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if with_expand:
            body["expand"] = (
                "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations"
            )
        body.update(id=issue.id, self=self._self(version, f"issue/{issue.id}"), key=issue.key)
        fields = self._render_fields(issue, version)
        body["fields"] = fields if wanted is None else {k: v for k, v in fields.items() if wanted(k)}
        return body

    def _render_changelog(self, issue: _Issue) -> dict[str, Any]:
        histories = [
            {
                "id": h["id"],
                "author": self._render_user(self._users[h["author"]], full=False),
                "created": _jira_time(h["created"]),
                "items": copy.deepcopy(h["items"]),
            }
            for h in issue.histories
        ]
        return {"startAt": 0, "maxResults": len(histories), "total": len(histories), "histories": histories}

    def _render_transition(
        self, transition: JiraTransition, workflow: JiraWorkflow, version: str
    ) -> dict[str, Any]:
        return {
            "id": transition.id,
            "name": transition.name,
            "to": self._render_status(workflow.status(transition.to), version),
            "hasScreen": False,
            "isGlobal": not transition.sources,
            "isInitial": False,
            "isAvailable": True,
            "isConditional": False,
            "isLooped": False,
        }

    @staticmethod
    def _field_filter(requested: list[str], default: str) -> Callable[[str], bool] | None:
        """Jira's ``fields`` parameter (repeated or comma-separated): names, ``*all``, ``*navigable``,
        ``-name``. None means every field."""
        names = [n.strip() for raw in requested for n in raw.split(",") if n.strip()] or [default]
        include = {n for n in names if not n.startswith("-")}
        exclude = {n[1:] for n in names if n.startswith("-")}
        if "*all" in include:
            return None if not exclude else (lambda f: f not in exclude)
        if "*navigable" in include:
            return lambda f: f != "comment" and f not in exclude
        return lambda f: f in include and f not in exclude

    # ------------------------------------------------------------------ internals: HTTP

    def _build_routes(self) -> list[tuple[str, re.Pattern[str], _Handler, bool]]:
        table: list[tuple[str, str, _Handler, bool]] = [
            ("GET", "/serverInfo", self._h_server_info, False),
            ("GET", "/myself", self._h_myself, True),
            ("GET", "/field", self._h_fields, True),
            ("GET", "/project/{key}", self._h_project, True),
            ("POST", "/issue", self._h_create_issue, True),
            ("GET", "/issue/{key}", self._h_get_issue, True),
            ("PUT", "/issue/{key}", self._h_edit_issue, True),
            ("GET", "/issue/{key}/transitions", self._h_get_transitions, True),
            ("POST", "/issue/{key}/transitions", self._h_do_transition, True),
            ("GET", "/issue/{key}/comment", self._h_get_comments, True),
            ("POST", "/issue/{key}/comment", self._h_add_comment, True),
            ("GET", "/user", self._h_get_user, True),
            ("GET", "/user/search", self._h_user_search, True),
            ("GET", "/search", self._h_search, True),
            ("POST", "/search", self._h_search, True),
            ("GET", "/search/jql", self._h_search_jql, True),
            ("POST", "/search/jql", self._h_search_jql, True),
            ("GET", "/webhooks/webhook", self._h_list_webhooks, True),
            ("POST", "/webhooks/webhook", self._h_register_webhook, True),
        ]
        return [
            (method, re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$"), handler, auth)
            for method, path, handler, auth in table
        ]

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        raw = await request.body()
        query = parse_qsl(request.url.query, keep_blank_values=True)
        with self._lock:
            outcome = self._handle(request.method, request.url.path, query, request.headers, raw)
            if request.method != "GET":
                self._save()
        if outcome.drop:
            await _drop_connection(send)
            return
        response: Response
        if outcome.status == 204 or outcome.payload is None:
            response = Response(status_code=outcome.status, headers=outcome.headers)
        else:
            response = JSONResponse(outcome.payload, status_code=outcome.status, headers=outcome.headers)
            response.headers["content-type"] = _JSON_TYPE
        await response(scope, receive, send)

    def _handle(
        self, method: str, path: str, query: list[tuple[str, str]], headers: Mapping[str, str], raw: bytes
    ) -> _Outcome:
        body: Any = None
        body_error: str | None = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                body_error = f"Unexpected character in the request body: {exc}"
        match = re.match(r"^/rest/api/([^/]+)(/.*)?$", path)
        version = match.group(1) if match else None
        api_path = (match.group(2) or "/") if match else ""
        if path.startswith(WEBHOOKS_API + "/"):
            # admin webhooks live outside /rest/api (developer.atlassian.com/cloud/jira/platform/webhooks)
            match, version, api_path = None, WEBHOOKS_VERSION, "/webhooks" + path[len(WEBHOOKS_API) :]
        user: _User | None = None
        fault = self._take_fault(method, api_path) if match else None
        out_headers: dict[str, str] = {}
        status: int
        payload: Any
        if fault is not None and not fault.after_write:
            status, payload = self._fault_answer(fault, out_headers)
        else:
            try:
                if version not in (*API_VERSIONS, WEBHOOKS_VERSION):
                    raise _HTTPError(404, [f"null for uri: {self._base_url}{path}"])
                handler, params, needs_auth = self._route(method, api_path)
                user = self._authenticate(headers.get("authorization"))
                if needs_auth and user is None:
                    raise _HTTPError(401, ["Client must be authenticated to access this resource."])
                if body_error is not None:
                    raise _HTTPError(400, [body_error])
                status, payload = handler(_Ctx(version, params, query, body, user))
            except _HTTPError as exc:
                status, payload = exc.status, exc.body()
                out_headers.update(exc.headers)
            if fault is not None:
                status, payload = self._fault_answer(fault, out_headers)
        self.calls.append(
            JiraCall(
                method=method,
                path=path,
                api_path=api_path,
                version=version,
                query=list(query),
                json=body,
                status=status,
                response=payload,
                user=user.email if user else None,
                injected=fault is not None,
            )
        )
        return _Outcome(status, payload, out_headers, drop=fault is not None and fault.drop)

    @staticmethod
    def _fault_answer(fault: _Fault, headers: dict[str, str]) -> tuple[int, Any]:
        if fault.drop:
            return 0, None
        headers["X-Sandbox-Fault"] = "injected"
        if fault.retry_after is not None:
            ra = fault.retry_after
            headers["Retry-After"] = str(int(ra)) if isinstance(ra, int | float) else ra
        if fault.status == 429:
            headers["RateLimit-Reason"] = "jira-burst-based"
            return 429, {"errorMessages": ["Rate limit exceeded."], "errors": {}}
        if fault.status == 503:
            return 503, {"errorMessages": ["Service Unavailable"], "errors": {}}
        return fault.status, {"errorMessages": [f"injected failure ({fault.status})"], "errors": {}}

    def _take_fault(self, method: str, api_path: str) -> _Fault | None:
        for fault in self._faults:
            if api_path.startswith(fault.prefix) and (fault.method is None or fault.method == method):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _route(self, method: str, api_path: str) -> tuple[_Handler, dict[str, str], bool]:
        allowed = False
        for route_method, pattern, handler, needs_auth in self._routes:
            found = pattern.match(api_path)
            if found is None:
                continue
            if route_method == method:
                return handler, found.groupdict(), needs_auth
            allowed = True
        if allowed:
            raise _HTTPError(405, [f"Method '{method}' is not supported on {api_path}."])
        raise _HTTPError(404, [f"null for uri: {self._base_url}/rest/api{api_path}"])

    def _authenticate(self, header: str | None) -> _User | None:
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise _HTTPError(401, ["Client must be authenticated to access this resource."])
        try:
            email, _, token = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise _HTTPError(401, ["Client must be authenticated to access this resource."]) from None
        user = self._user_by_email(email)
        if (
            user is None
            or not user.active
            or user.api_token is None
            or not hmac.compare_digest(user.api_token, token)
        ):
            raise _HTTPError(401, ["Client must be authenticated to access this resource."])
        return user

    # ------------------------------------------------------------------ handlers (run under the lock)

    @staticmethod
    def _caller(ctx: _Ctx) -> _User:
        assert ctx.caller is not None
        return ctx.caller

    def _issue_or_404(self, key: str) -> _Issue:
        issue = self._find_issue(key)
        if issue is None:
            raise _HTTPError(404, ["Issue does not exist or you do not have permission to see it."])
        return issue

    def _require_site_admin(self, ctx: _Ctx) -> _User:
        caller = self._caller(ctx)
        if caller.email not in self.site_admins:
            # admin webhooks need the "Administer Jira" global permission
            raise _HTTPError(403, ["You do not have permission to register or list webhooks."])
        return caller

    def _h_list_webhooks(self, ctx: _Ctx) -> tuple[int, Any]:
        self._require_site_admin(ctx)
        return 200, [self._render_webhook(w) for w in self._webhooks.values()]

    def _h_register_webhook(self, ctx: _Ctx) -> tuple[int, Any]:
        """``POST /rest/webhooks/1.0/webhook`` (Atlassian's "Webhooks" page, "Registering a webhook via the
        REST API"): name, url, events, ``filters["issue-related-events-section"]`` (JQL), excludeBody and,
        for admin webhooks, a ``secret`` with which every delivery is signed (``X-Hub-Signature``). From then
        on this stand-in delivers its events there."""
        self._require_site_admin(ctx)
        body = ctx.body if isinstance(ctx.body, dict) else {}
        errors = {
            k: f"{k} is required" for k in ("name", "url") if not isinstance(body.get(k), str) or not body[k]
        }
        events = body.get("events", [])
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            errors["events"] = "events must be a list of event names"
        secret = body.get("secret")
        if secret is not None and not isinstance(secret, str):
            errors["secret"] = "secret must be a string"
        if errors:
            raise _HTTPError(400, [], errors)
        webhook = {
            "id": self._new_id(),
            "name": body["name"],
            "url": body["url"],
            "events": list(events),
            "filters": dict(body.get("filters") or {}),
            "excludeBody": bool(body.get("excludeBody", False)),
            "secret": secret,
            "lastUpdated": int(self.now().timestamp() * 1000),
        }
        self._webhooks[webhook["id"]] = webhook
        self.set_webhook(webhook["url"], secret)
        return 201, self._render_webhook(webhook)

    def _render_webhook(self, webhook: dict[str, Any]) -> dict[str, Any]:
        shown = {k: v for k, v in webhook.items() if k not in ("id", "secret")}  # the secret is never shown
        return {"self": f"{self._base_url}{WEBHOOKS_API}/webhook/{webhook['id']}", "enabled": True, **shown}

    def _h_server_info(self, ctx: _Ctx) -> tuple[int, Any]:
        return 200, {
            "baseUrl": self._base_url,
            "version": ".".join(str(n) for n in SERVER_VERSION) + "-SNAPSHOT",
            "versionNumbers": list(SERVER_VERSION),
            "deploymentType": "Cloud",
            "buildNumber": 100280,
            "buildDate": "2026-01-01T00:00:00.000+0000",
            "serverTime": _jira_time(self.now()),
            "scmInfo": "0000000000000000000000000000000000000000",
            "serverTitle": "Jira (grantflow sandbox)",
        }

    def _h_myself(self, ctx: _Ctx) -> tuple[int, Any]:
        body = self._render_user(self._caller(ctx), full=True, version=ctx.version, own=True)
        body.update(
            groups={"size": 0, "items": []},
            applicationRoles={"size": 1, "items": []},
            expand="groups,applicationRoles",
        )
        return 200, body

    def _h_fields(self, ctx: _Ctx) -> tuple[int, Any]:
        system = [
            ("summary", "Summary", "string", True),
            ("description", "Description", "string", True),
            ("labels", "Labels", "array", True),
            ("issuetype", "Issue Type", "issuetype", True),
            ("project", "Project", "project", True),
            ("status", "Status", "status", False),
            ("assignee", "Assignee", "user", True),
            ("reporter", "Reporter", "user", True),
            ("creator", "Creator", "user", False),
            ("created", "Created", "datetime", False),
            ("updated", "Updated", "datetime", False),
            ("duedate", "Due date", "date", True),
            ("resolution", "Resolution", "resolution", True),
            ("resolutiondate", "Resolved", "datetime", False),
            ("comment", "Comment", "comments-page", True),
        ]
        fields: list[dict[str, Any]] = [
            {
                "id": fid,
                "key": fid,
                "name": name,
                "custom": False,
                "orderable": orderable,
                "navigable": fid != "comment",
                "searchable": True,
                "clauseNames": [fid],
                "schema": {"type": ftype, "system": fid, **({"items": "string"} if ftype == "array" else {})},
            }
            for fid, name, ftype, orderable in system
        ]
        for cf in self._custom_fields.values():
            number = int(cf.id.removeprefix("customfield_"))
            fields.append(
                {
                    "id": cf.id,
                    "key": cf.id,
                    "name": cf.name,
                    "custom": True,
                    "orderable": True,
                    "navigable": True,
                    "searchable": True,
                    "clauseNames": [f"cf[{number}]", cf.name],
                    "schema": {
                        "type": "array" if cf.type == "labels" else cf.type,
                        "custom": f"com.atlassian.jira.plugin.system.customfieldtypes:{cf.type}",
                        "customId": number,
                    },
                }
            )
        return 200, fields

    def _h_project(self, ctx: _Ctx) -> tuple[int, Any]:
        key = ctx.params["key"]
        project = self._projects.get(key.upper()) or next(
            (p for p in self._projects.values() if p.id == key), None
        )
        if project is None:
            raise _HTTPError(404, [f"No project could be found with key '{key}'."])
        body = self._render_project(project, ctx.version)
        body.update(
            expand="description,lead,issueTypes,url,projectKeys,permissions,insight",
            description="",
            issueTypes=[
                self._render_issue_type(tid, name, ctx.version) for tid, name in project.issue_types.items()
            ],
            assigneeType="UNASSIGNED",
            style="classic",
            isPrivate=False,
            properties={},
        )
        return 200, body

    # --- fields: validation and writes

    def _validate_fields(
        self, values: Mapping[str, Any], ctx: _Ctx, *, creating: bool, errors: dict[str, str]
    ) -> dict[str, Any]:
        """Check settable fields; returns {field: stored value}. Messages follow Jira's."""
        settable = {"summary", "description", "labels", "assignee", "duedate", *self._custom_fields}
        if creating:
            settable |= {"reporter"}
        clean: dict[str, Any] = {}
        for name, value in values.items():
            if name not in settable:
                errors[name] = (
                    f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
                )
                continue
            try:
                clean[name] = self._field_value(name, value, ctx)
            except ValueError as exc:
                errors[name] = str(exc)
        return clean

    def _field_value(self, name: str, value: Any, ctx: _Ctx) -> Any:
        if name == "summary":
            if not isinstance(value, str) or not value.strip():
                raise ValueError("You must specify a summary of the issue.")
            if "\n" in value or "\r" in value:
                raise ValueError("The summary is invalid because it contains newline characters.")
            if len(value) > 255:
                raise ValueError("Summary must be less than 255 characters.")
            return value
        if name == "description":
            if value is None:
                return (None, None)
            if ctx.v3:
                if not is_adf(value):
                    raise ValueError(
                        "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
                    )
                return (adf_to_text(value), value)
            if not isinstance(value, str):
                raise ValueError("Operation value must be a string")
            return (value, None)
        if name == "labels":
            return self._labels(value)
        if name in ("assignee", "reporter"):
            if value is None:
                return None
            if not isinstance(value, dict) or "accountId" not in value:
                if isinstance(value, dict) and ("name" in value or "key" in value):
                    raise ValueError("Use 'accountId': Jira Cloud has no 'name' or 'key' for users (GDPR)")
                raise ValueError(f"Specify a valid value for {name}")
            account_id = value["accountId"]
            if account_id is None or account_id == "-1":
                return None
            user = self._users.get(str(account_id))
            if user is None or not user.active:
                raise ValueError(f"User '{account_id}' cannot be assigned issues.")
            return user.account_id
        if name == "duedate":
            if value is None:
                return None
            try:
                return date.fromisoformat(str(value)).isoformat()
            except ValueError:
                raise ValueError(f"Error parsing date string: {value}") from None
        cf = self._custom_fields[name]
        if value is None:
            return None
        if cf.type == "string" and not isinstance(value, str):
            raise ValueError("Operation value must be a string")
        if cf.type == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError("Operation value must be a number")
        if cf.type == "date":
            try:
                date.fromisoformat(str(value))
            except ValueError:
                raise ValueError(f"Error parsing date string: {value}") from None
        if cf.type == "option":
            chosen = value.get("value") if isinstance(value, dict) else None
            if chosen not in cf.options:
                raise ValueError(f"Option value '{chosen}' is not valid")
            return {
                "self": self._self(ctx.version, f"customFieldOption/{cf.options.index(chosen) + 1}"),
                "value": chosen,
                "id": str(cf.options.index(chosen) + 1),
            }
        if cf.type == "labels":
            return self._labels(value)
        return value

    @staticmethod
    def _labels(value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("Operation value must be an array of strings")
        for label in value:
            if not label or any(ch.isspace() for ch in label):
                raise ValueError(f"The label '{label}' contains spaces which is invalid.")
            if len(label) > 255:
                raise ValueError(f"The label '{label}' exceeds the 255 character limit.")
        return list(dict.fromkeys(value))

    def _apply_fields(self, issue: _Issue, clean: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Write validated values; returns the changelog items for what changed."""
        items: list[dict[str, Any]] = []
        for name, value in clean.items():
            if name == "summary" and value != issue.summary:
                items.append(_item("summary", None, issue.summary, None, value))
                issue.summary = value
            elif name == "description":
                text, adf = value
                if text != issue.description:
                    items.append(_item("description", None, issue.description, None, text))
                issue.description, issue.description_adf = text, adf
            elif name == "labels" and value != issue.labels:
                items.append(_item("labels", None, " ".join(issue.labels), None, " ".join(value)))
                issue.labels = list(value)
            elif name in ("assignee", "reporter") and value != getattr(issue, name):
                old = getattr(issue, name)
                items.append(
                    _item(
                        name,
                        old,
                        self._users[old].display_name if old else None,
                        value,
                        self._users[value].display_name if value else None,
                    )
                )
                setattr(issue, name, value)
            elif name == "duedate" and value != issue.duedate:
                items.append(_item("duedate", issue.duedate, issue.duedate, value, value))
                issue.duedate = value
            elif name in self._custom_fields and value != issue.custom.get(name):
                cf = self._custom_fields[name]
                old = issue.custom.get(name)
                items.append(
                    {
                        "field": cf.name,
                        "fieldtype": "custom",
                        "fieldId": cf.id,
                        "from": None,
                        "fromString": None if old is None else json.dumps(old),
                        "to": None,
                        "toString": None if value is None else json.dumps(value),
                    }
                )
                issue.custom[name] = value
        return items

    def _label_ops(self, ops: Any, errors: dict[str, str]) -> list[tuple[str, Any]]:
        """The ``update.labels`` operations: add, remove, set."""
        out: list[tuple[str, Any]] = []
        if not isinstance(ops, list):
            errors["labels"] = "Operation value must be an array of operations"
            return out
        for op in ops:
            if not isinstance(op, dict) or len(op) != 1 or next(iter(op)) not in ("add", "remove", "set"):
                errors["labels"] = "Operation must be one of add, remove, set"
                continue
            verb, value = next(iter(op.items()))
            try:
                labels = self._labels(value if verb == "set" else [value])
            except ValueError as exc:
                errors["labels"] = str(exc)
                continue
            out.append((verb, labels))
        return out

    def _comment_ops(
        self, ops: Any, ctx: _Ctx, errors: dict[str, str]
    ) -> list[tuple[str | None, dict[str, Any] | None]]:
        out: list[tuple[str | None, dict[str, Any] | None]] = []
        if not isinstance(ops, list):
            errors["comment"] = "Operation value must be an array of operations"
            return out
        for op in ops:
            add = op.get("add") if isinstance(op, dict) else None
            body = add.get("body") if isinstance(add, dict) else None
            try:
                out.append(self._comment_body(body, ctx))
            except ValueError as exc:
                errors["comment"] = str(exc)
        return out

    @staticmethod
    def _comment_body(body: Any, ctx: _Ctx) -> tuple[str | None, dict[str, Any] | None]:
        if ctx.v3:
            if not is_adf(body):
                raise ValueError("Comment body is not valid: an Atlassian Document is expected.")
            if not adf_to_text(body).strip():
                raise ValueError("Comment body can not be empty!")
            return None, body
        if not isinstance(body, str) or not body.strip():
            raise ValueError("Comment body can not be empty!")
        return body, None

    def _updates(
        self, body: Mapping[str, Any], ctx: _Ctx, errors: dict[str, str], *, allowed: Iterable[str]
    ) -> tuple[list[tuple[str, Any]], list[tuple[str | None, dict[str, Any] | None]]]:
        update = body.get("update") or {}
        if not isinstance(update, dict):
            errors["update"] = "update must be an object"
            return [], []
        labels: list[tuple[str, Any]] = []
        comments: list[tuple[str | None, dict[str, Any] | None]] = []
        for name, ops in update.items():
            if name not in allowed:
                errors[name] = (
                    f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
                )
            elif name == "labels":
                labels = self._label_ops(ops, errors)
            elif name == "comment":
                comments = self._comment_ops(ops, ctx, errors)
        return labels, comments

    @staticmethod
    def _with_label_ops(current: list[str], ops: list[tuple[str, Any]]) -> list[str]:
        labels = list(current)
        for verb, values in ops:
            if verb == "set":
                labels = list(values)
            elif verb == "add":
                labels += [v for v in values if v not in labels]
            else:
                labels = [v for v in labels if v not in values]
        return labels

    def _h_create_issue(self, ctx: _Ctx) -> tuple[int, Any]:
        body = ctx.body
        if not isinstance(body, dict) or not isinstance(body.get("fields"), dict):
            raise _HTTPError(
                400,
                [],
                {
                    "project": "Specify a valid project ID or key",
                    "issuetype": "Specify an issue type",
                    "summary": "You must specify a summary of the issue.",
                },
            )
        values: dict[str, Any] = dict(body["fields"])
        errors: dict[str, str] = {}
        project = self._project_from(values.pop("project", None))
        if project is None:
            errors["project"] = "Specify a valid project ID or key"
        type_id = self._issue_type_from(project, values.pop("issuetype", None), errors)
        if "summary" not in values:
            errors["summary"] = "You must specify a summary of the issue."
        clean = self._validate_fields(values, ctx, creating=True, errors=errors)
        label_ops, comment_ops = self._updates(body, ctx, errors, allowed=("labels",))
        if errors:
            raise _HTTPError(400, [], errors)
        assert project is not None and type_id is not None and not comment_ops
        caller = self._caller(ctx)
        now = self.now()
        number = self._next_number[project.key]
        self._next_number[project.key] = number + 1
        issue = _Issue(
            id=self._new_id(),
            key=f"{project.key}-{number}",
            project=project.key,
            issue_type=type_id,
            summary=clean.pop("summary"),
            description=None,
            description_adf=None,
            labels=[],
            status=project.workflow.status(project.workflow.initial).id,
            assignee=None,
            reporter=clean.pop("reporter", caller.account_id),
            creator=caller.account_id,
            created=now,
            updated=now,
        )
        self._apply_fields(issue, clean)
        issue.labels = self._with_label_ops(issue.labels, label_ops)
        self._issues[issue.key] = issue
        self._emit("jira:issue_created", "issue_created", issue, caller)
        return 201, {"id": issue.id, "key": issue.key, "self": self._self(ctx.version, f"issue/{issue.id}")}

    def _project_from(self, value: Any) -> _Project | None:
        if not isinstance(value, dict):
            return None
        if value.get("key") is not None:
            return self._projects.get(str(value["key"]).upper())
        if value.get("id") is not None:
            return next((p for p in self._projects.values() if p.id == str(value["id"])), None)
        return None

    @staticmethod
    def _issue_type_from(project: _Project | None, value: Any, errors: dict[str, str]) -> str | None:
        if not isinstance(value, dict) or (value.get("name") is None and value.get("id") is None):
            errors["issuetype"] = "Specify an issue type"
            return None
        if project is None:
            return None
        for tid, name in project.issue_types.items():
            if str(value.get("id")) == tid or str(value.get("name", "")).lower() == name.lower():
                return tid
        errors["issuetype"] = "The issue type selected is invalid."
        return None

    def _h_get_issue(self, ctx: _Ctx) -> tuple[int, Any]:
        issue = self._issue_or_404(ctx.params["key"])
        body = self._render_issue(issue, ctx.version, self._field_filter(ctx.q_all("fields"), "*all"))
        expand = {e.strip() for raw in ctx.q_all("expand") for e in raw.split(",")}
        if "changelog" in expand:
            body["changelog"] = self._render_changelog(issue)
        if "transitions" in expand:
            workflow = self._projects[issue.project].workflow
            body["transitions"] = [
                self._render_transition(t, workflow, ctx.version)
                for t in workflow.available(self._status(issue))
            ]
        return 200, body

    def _h_edit_issue(self, ctx: _Ctx) -> tuple[int, Any]:
        issue = self._issue_or_404(ctx.params["key"])
        body = ctx.body if ctx.body is not None else {}
        if not isinstance(body, dict):
            raise _HTTPError(400, ["Can not deserialize the request body: an object is expected."])
        errors: dict[str, str] = {}
        values = body.get("fields") or {}
        if not isinstance(values, dict):
            raise _HTTPError(400, ["fields must be an object"])
        clean = self._validate_fields(values, ctx, creating=False, errors=errors)
        label_ops, comment_ops = self._updates(body, ctx, errors, allowed=("labels", "comment"))
        if errors:
            raise _HTTPError(400, [], errors)
        if label_ops:
            clean["labels"] = self._with_label_ops(clean.get("labels", issue.labels), label_ops)
        caller = self._caller(ctx)
        items = self._apply_fields(issue, clean)
        if items:
            self._history(issue, caller, items)
            kind = "issue_assigned" if {i["field"] for i in items} == {"assignee"} else "issue_updated"
            self._emit("jira:issue_updated", kind, issue, caller, changelog=items)
        for text, adf in comment_ops:
            comment = self._add_comment(issue, caller, text, adf)
            self._emit("jira:issue_updated", "issue_commented", issue, caller, comment=comment)
        return 204, None

    def _h_get_transitions(self, ctx: _Ctx) -> tuple[int, Any]:
        issue = self._issue_or_404(ctx.params["key"])
        workflow = self._projects[issue.project].workflow
        available = workflow.available(self._status(issue))
        wanted = ctx.q("transitionId")
        if wanted:
            available = [t for t in available if t.id == wanted]
        with_fields = "transitions.fields" in ",".join(ctx.q_all("expand"))
        rendered = []
        for transition in available:
            item = self._render_transition(transition, workflow, ctx.version)
            if with_fields:
                item["fields"] = {}
            rendered.append(item)
        return 200, {"expand": "transitions", "transitions": rendered}

    def _h_do_transition(self, ctx: _Ctx) -> tuple[int, Any]:
        issue = self._issue_or_404(ctx.params["key"])
        body = ctx.body
        if not isinstance(body, dict) or not isinstance(body.get("transition"), dict):
            raise _HTTPError(400, ["Missing 'transition' identifier"])
        wanted = body["transition"].get("id")
        if wanted is None:
            raise _HTTPError(400, ["Missing 'transition' identifier"])
        workflow = self._projects[issue.project].workflow
        found = [t for t in workflow.available(self._status(issue)) if t.id == str(wanted)]
        if not found:
            raise _HTTPError(400, [f"Transition id '{wanted}' is not valid for this issue."])
        errors: dict[str, str] = {}
        values = body.get("fields") or {}
        if not isinstance(values, dict):
            raise _HTTPError(400, ["fields must be an object"])
        values = {k: v for k, v in values.items() if k != "resolution"}  # set by the workflow here
        clean = self._validate_fields(values, ctx, creating=False, errors=errors)
        _, comment_ops = self._updates(body, ctx, errors, allowed=("comment",))
        if errors:
            raise _HTTPError(400, [], errors)
        items = self._apply_fields(issue, clean)
        text, adf = comment_ops[0] if comment_ops else (None, None)
        self._transition(issue, found[0], self._caller(ctx), comment=text, comment_adf=adf, items=items)
        return 204, None

    def _h_get_comments(self, ctx: _Ctx) -> tuple[int, Any]:
        issue = self._issue_or_404(ctx.params["key"])
        start = max(0, ctx.q_int("startAt", 0))
        size = min(5000, max(0, ctx.q_int("maxResults", 5000)))
        ordered = list(issue.comments)
        if ctx.q("orderBy") == "-created":
            ordered.reverse()
        page = ordered[start : start + size]
        return 200, {
            "startAt": start,
            "maxResults": size,
            "total": len(ordered),
            "comments": [self._render_comment(issue, c, ctx.version) for c in page],
        }

    def _h_add_comment(self, ctx: _Ctx) -> tuple[int, Any]:
        issue = self._issue_or_404(ctx.params["key"])
        body = ctx.body
        if not isinstance(body, dict):
            raise _HTTPError(400, [], {"comment": "Comment body can not be empty!"})
        try:
            text, adf = self._comment_body(body.get("body"), ctx)
        except ValueError as exc:
            raise _HTTPError(400, [], {"comment": str(exc)}) from None
        visibility = body.get("visibility")
        caller = self._caller(ctx)
        comment = self._add_comment(
            issue, caller, text, adf, visibility if isinstance(visibility, dict) else None
        )
        self._emit("jira:issue_updated", "issue_commented", issue, caller, comment=comment)
        return 201, self._render_comment(issue, comment, ctx.version)

    # --- users

    def _h_get_user(self, ctx: _Ctx) -> tuple[int, Any]:
        account_id = ctx.q("accountId")
        user = self._users.get(account_id or "")
        if user is None:
            raise _HTTPError(404, ["Specified user does not exist or you do not have required permissions"])
        return 200, self._render_user(user, full=True, version=ctx.version, own=user is ctx.caller)

    def _h_user_search(self, ctx: _Ctx) -> tuple[int, Any]:
        query = (ctx.q("query") or "").strip().lower()
        account_id = ctx.q("accountId")
        if not query and not account_id:
            raise _HTTPError(400, ["The query parameter 'query' or 'accountId' is required."])
        start = max(0, ctx.q_int("startAt", 0))
        size = min(1000, max(1, ctx.q_int("maxResults", 50)))

        def matches(user: _User) -> bool:
            if account_id and user.account_id != account_id:
                return False
            if not query:
                return True
            words = [user.display_name.lower(), *user.display_name.lower().split()]
            if any(w.startswith(query) for w in words):
                return True
            email = user.email.lower()
            # with email privacy on, only the exact address finds the person
            return email.startswith(query) if user.email_visible else email == query

        found = [u for u in self._users.values() if u.active and matches(u)]
        found.sort(key=lambda u: u.display_name.lower())
        return 200, [
            self._render_user(u, full=True, version=ctx.version) for u in found[start : start + size]
        ]

    # --- search

    def _run_jql(self, jql: str, *, bounded: bool) -> list[_Issue]:
        try:
            query = parse_jql(jql)
        except _JqlError as exc:
            raise _HTTPError(400, [str(exc)]) from None
        if bounded and not query.clauses:
            raise _HTTPError(
                400,
                [
                    "Unbounded JQL queries are not allowed here. "
                    "Please add a search restriction to your query."
                ],
            )
        issues = self._ordered_issues()
        for clause in query.clauses:
            self._check_values(clause)
            issues = [i for i in issues if self._matches(i, clause)]
        for order_field, descending in reversed(query.order):
            if order_field == "key":
                issues.sort(key=lambda i: (i.project, int(i.key.rsplit("-", 1)[1])), reverse=descending)
            else:
                issues.sort(key=lambda i: (getattr(i, order_field), int(i.id)), reverse=descending)
        return issues

    def _check_values(self, clause: _Clause) -> None:
        for value in clause.values:
            known: bool
            if clause.field == "project":
                known = any(
                    value.lower() in (p.key.lower(), p.id, p.name.lower()) for p in self._projects.values()
                )
            elif clause.field == "status":
                known = any(
                    value.lower() in (s.name.lower(), s.id)
                    for p in self._projects.values()
                    for s in p.workflow.statuses
                )
            elif clause.field == "issuetype":
                known = any(
                    value.lower() in (name.lower(), tid)
                    for p in self._projects.values()
                    for tid, name in p.issue_types.items()
                )
            else:
                continue
            if not known:
                raise _HTTPError(400, [f"The value '{value}' does not exist for the field '{clause.field}'."])

    def _matches(self, issue: _Issue, clause: _Clause) -> bool:
        project = self._projects[issue.project]
        status = self._status(issue)
        present: set[str]
        if clause.field == "project":
            present = {project.key.lower(), project.id, project.name.lower()}
        elif clause.field == "labels":
            present = {label.lower() for label in issue.labels}
        elif clause.field == "key":
            present = {issue.key.lower(), issue.id}
        elif clause.field == "status":
            present = {status.name.lower(), status.id}
        elif clause.field == "statusCategory":
            cat_id, cat_name, _ = CATEGORIES[status.category]
            present = {status.category, cat_name.lower(), str(cat_id)}
        elif clause.field == "issuetype":
            present = {project.issue_types[issue.issue_type].lower(), issue.issue_type}
        else:
            account = issue.assignee if clause.field == "assignee" else issue.reporter
            present = set() if account is None else {account.lower()}
        wanted = {v.lower() for v in clause.values}
        if clause.op in ("=", "in"):
            return bool(present & wanted)
        if clause.op in ("!=", "not in"):
            return bool(present) and not present & wanted  # Jira leaves out issues where the field is empty
        if clause.op == "empty":
            return not present
        return bool(present)

    def _search_params(self, ctx: _Ctx) -> dict[str, Any]:
        """The parameters of a search, from the query string (GET) or the body (POST)."""
        if ctx.body is None:
            return {
                "jql": ctx.q("jql") or "",
                "startAt": ctx.q_int("startAt", 0),
                "maxResults": ctx.q_int("maxResults", DEFAULT_SEARCH_RESULTS),
                "fields": ctx.q_all("fields"),
                "expand": ",".join(ctx.q_all("expand")),
                "nextPageToken": ctx.q("nextPageToken"),
            }
        body = ctx.body
        if not isinstance(body, dict):
            raise _HTTPError(400, ["Can not deserialize the request body: an object is expected."])
        fields = body.get("fields") or []
        expand = body.get("expand") or ""
        max_results = body.get("maxResults")
        return {
            "jql": body.get("jql") or "",
            "startAt": int(body.get("startAt") or 0),
            "maxResults": DEFAULT_SEARCH_RESULTS if max_results is None else int(max_results),
            "fields": [fields] if isinstance(fields, str) else list(fields),
            "expand": ",".join(expand) if isinstance(expand, list) else str(expand),
            "nextPageToken": body.get("nextPageToken"),
        }

    def _render_hits(
        self, hits: list[_Issue], ctx: _Ctx, fields: list[str], default: str, expand: str
    ) -> list[dict[str, Any]]:
        wanted = self._field_filter(fields, default)
        out = []
        for issue in hits:
            rendered = self._render_issue(issue, ctx.version, wanted)
            if "changelog" in expand:
                rendered["changelog"] = self._render_changelog(issue)
            out.append(rendered)
        return out

    def _h_search(self, ctx: _Ctx) -> tuple[int, Any]:
        if self.legacy_search_gone:
            raise _HTTPError(
                410, ["The requested API has been removed. Please migrate to the /rest/api/3/search/jql API."]
            )
        params = self._search_params(ctx)
        hits = self._run_jql(params["jql"], bounded=False)
        start = max(0, params["startAt"])
        size = min(MAX_SEARCH_RESULTS, max(0, params["maxResults"]))
        page = hits[start : start + size]
        return 200, {
            "expand": "schema,names",
            "startAt": start,
            "maxResults": size,
            "total": len(hits),
            "issues": self._render_hits(page, ctx, params["fields"], "*navigable", params["expand"]),
        }

    def _h_search_jql(self, ctx: _Ctx) -> tuple[int, Any]:
        params = self._search_params(ctx)
        jql: str = params["jql"]
        hits = self._run_jql(jql, bounded=True)
        size = min(MAX_SEARCH_RESULTS, max(1, params["maxResults"]))
        start = self._decode_token(params["nextPageToken"], jql) if params["nextPageToken"] else 0
        page = hits[start : start + size]
        body: dict[str, Any] = {
            "issues": self._render_hits(page, ctx, params["fields"], "id", params["expand"])
        }
        if start + size < len(hits):
            body["nextPageToken"] = self._encode_token(start + size, jql)
        body["isLast"] = start + size >= len(hits)
        return 200, body

    @staticmethod
    def _encode_token(offset: int, jql: str) -> str:
        raw = json.dumps({"o": offset, "q": hashlib.sha256(jql.encode()).hexdigest()[:16]}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def _decode_token(token: str, jql: str) -> int:
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            if data["q"] != hashlib.sha256(jql.encode()).hexdigest()[:16]:
                raise ValueError("the token belongs to another query")
            return int(data["o"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise _HTTPError(400, ["The provided next page token is invalid or expired."]) from None


def _item(
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


async def _drop_connection(send: Any) -> None:
    """Close the client's connection without an answer. ASGI has no message for that, so reach the transport
    through uvicorn's request cycle (``send`` is its bound method); fail loudly under any other server."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or not hasattr(transport, "close"):
        raise RuntimeError("drop_next needs uvicorn's h11/httptools protocol (no transport found)")
    transport.close()
    for _ in range(20):  # let uvicorn see the connection go, so it does not try to answer 500
        if getattr(cycle, "disconnected", True):
            return
        await asyncio.sleep(0)

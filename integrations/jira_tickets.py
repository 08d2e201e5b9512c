"""grantflow's Jira adapter: one ticket per request, moved through the project's approval workflow, commented
on and assigned, plus the pure functions that read the webhooks Jira sends back.

No business decisions are made here: which transition, which text and which assignee are the caller's.
Everything is synchronous (the ``jira`` client is built on ``requests``): call it from async code through
``asyncio.to_thread``. Named ``jira_tickets`` so that nothing can mistake it for the ``jira`` package.

Retries belong to the caller (a Temporal activity): ``build_jira`` sets ``max_retries=0`` because the client
would otherwise retry a POST whose reply was lost and open a second ticket. So every operation is safe to call
again after an uncertain failure: ``open_ticket`` looks for the ticket's label before creating one,
``transition`` does nothing when the ticket is already in the transition's target status, ``assign`` does
nothing when the assignee is already right, and ``comment`` does not post a comment identical to one already
there. (Jira Cloud's search index is eventually consistent: a ticket created a moment ago can be missing from
search for a second or two, so the caller's first retry should wait that long, as Temporal's default backoff
does.)

Error hierarchy (activities translate it into Temporal retry behaviour)::

    JiraError                   any failure talking to Jira
    ├── JiraTransientError      may succeed if retried: 429, 408, 409, 425, 5xx, dropped connections,
    │                           timeouts. ``retry_after`` is Jira's Retry-After in seconds, if it sent one.
    └── JiraPermanentError      will not change by retrying
        ├── JiraRefusedError    400: Jira refuses the request as sent. ``field_errors`` maps each field to
        │                       Jira's message (also in ``str()``), ``messages`` has the others.
        ├── JiraAuthError       401/403: the API token is wrong, or the API user lacks a permission.
        ├── JiraNotFoundError   404: no such issue, or the API user cannot see it.
        └── JiraWorkflowError   the ticket's workflow does not offer the transition asked for from its status,
                                or leads elsewhere than configured.

Webhooks: ``verify_webhook_signature`` checks ``X-Hub-Signature`` (``sha256=<hex HMAC-SHA256(secret, raw
body)>``) in constant time; ``parse_status_change`` turns a ``jira:issue_updated`` payload into a
``StatusChange`` when its changelog has a status item (by status id, never by display name), else None.
Deduplicate deliveries on ``X-Atlassian-Webhook-Identifier``: Jira redelivers for up to ~30 minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, ParamSpec, TypeVar

import requests
from jira import JIRA, JIRAError

from integrations.retry_after import parse_retry_after

__all__ = [
    "JiraAuthError",
    "JiraError",
    "JiraNotFoundError",
    "JiraPermanentError",
    "JiraRefusedError",
    "JiraTickets",
    "JiraTransientError",
    "JiraWorkflowError",
    "StatusChange",
    "TicketStatus",
    "build_jira",
    "parse_retry_after",
    "parse_status_change",
    "translate_error",
    "verify_webhook_signature",
]

log = logging.getLogger("grantflow.jira")

P = ParamSpec("P")
T = TypeVar("T")

MAX_SUMMARY = 255
MAX_LABEL = 255
# Jira answers these when it may succeed later (409: a concurrent edit of the same issue)
_TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})


# ---------------------------------------------------------------------------------------------- errors


class JiraError(Exception):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class JiraTransientError(JiraError):
    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class JiraPermanentError(JiraError):
    pass


class JiraRefusedError(JiraPermanentError):
    def __init__(
        self,
        message: str,
        *,
        status: int | None = 400,
        field_errors: Mapping[str, str] | None = None,
        messages: Iterable[str] = (),
    ) -> None:
        super().__init__(message, status=status)
        self.field_errors = dict(field_errors or {})
        self.messages = list(messages)


class JiraAuthError(JiraPermanentError):
    pass


class JiraNotFoundError(JiraPermanentError):
    pass


class JiraWorkflowError(JiraPermanentError):
    pass


def _error_body(response: requests.Response | None) -> tuple[list[str], dict[str, str]]:
    """Jira's ``{"errorMessages": [...], "errors": {field: message}}``, tolerant of other shapes."""
    if response is None:
        return [], {}
    try:
        body = response.json()
    except ValueError:
        text = (response.text or "").strip()
        return ([text[:500]] if text else []), {}
    if not isinstance(body, dict):
        return [], {}
    messages = [str(m) for m in body.get("errorMessages") or [] if m]
    if body.get("message"):
        messages.append(str(body["message"]))
    errors = body.get("errors")
    fields = {str(k): str(v) for k, v in errors.items()} if isinstance(errors, dict) else {}
    return messages, fields


def translate_error(exc: BaseException, doing: str) -> JiraError:
    """The grantflow error for an exception raised by the ``jira`` client (or ``requests`` under it)."""
    if isinstance(exc, JiraError):
        return exc
    if isinstance(exc, JIRAError):
        status = exc.status_code
        response = exc.response if isinstance(exc.response, requests.Response) else None
        messages, fields = _error_body(response)
        details = "; ".join([*messages, *(f"{k}: {v}" for k, v in fields.items())]) or (exc.text or "")
        if status is None:  # raised by the client itself, before or without an HTTP answer
            return JiraPermanentError(f"{doing}: {exc.text or 'the Jira client refused the request'}")
        message = f"{doing}: Jira answered {status}" + (f": {details}" if details else "")
        if status in _TRANSIENT_STATUSES or status >= 500:
            retry_after = (
                parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
            )
            return JiraTransientError(message, status=status, retry_after=retry_after)
        if status == 400:
            return JiraRefusedError(message, status=status, field_errors=fields, messages=messages)
        if status in (401, 403):
            return JiraAuthError(message, status=status)
        if status == 404:
            return JiraNotFoundError(message, status=status)
        return JiraPermanentError(message, status=status)
    if isinstance(
        exc,
        requests.ConnectionError
        | requests.Timeout
        | requests.exceptions.ChunkedEncodingError
        | requests.exceptions.ContentDecodingError,
    ):
        return JiraTransientError(f"{doing}: {type(exc).__name__}: {exc}")
    if isinstance(exc, requests.exceptions.JSONDecodeError):
        # a 2xx whose body is not JSON: a proxy or maintenance page, not Jira
        return JiraTransientError(f"{doing}: Jira's answer was not JSON ({exc})")
    if isinstance(exc, requests.RequestException):
        return JiraPermanentError(f"{doing}: {type(exc).__name__}: {exc}")
    raise TypeError(f"not a Jira client error: {exc!r}") from exc


def _jira_call(doing: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return fn(*args, **kwargs)
    except (JIRAError, requests.RequestException) as exc:
        raise translate_error(exc, doing) from exc


# ---------------------------------------------------------------------------------------------- client


def build_jira(server: str, email: str, api_token: str, *, timeout: float = 30.0) -> JIRA:
    """A ``jira`` client for Jira Cloud with basic auth (email + API token).

    ``max_retries=0``: the client would retry a POST after a lost reply and create twice; the caller's retry
    (which looks first) is the only one. ``get_server_info=True``: the client learns it is on Cloud and so
    addresses people by accountId. Raises ``JiraError`` when Jira cannot be reached or refuses the token."""
    return _jira_call(
        f"connecting to Jira at {server}",
        JIRA,
        server=server,
        basic_auth=(email, api_token),
        max_retries=0,
        get_server_info=True,
        timeout=timeout,
    )


# ---------------------------------------------------------------------------------------------- tickets


class TicketStatus(NamedTuple):
    id: str
    name: str
    category: str  # Jira's status category key: new, indeterminate, done


def _status_of(raw: Mapping[str, Any] | None) -> TicketStatus:
    raw = raw or {}
    category = raw.get("statusCategory") or {}
    return TicketStatus(str(raw.get("id", "")), str(raw.get("name", "")), str(category.get("key", "")))


def _one_line(text: str, limit: int) -> str:
    """Jira refuses summaries with newlines or over 255 characters: fold and shorten rather than fail."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _jql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class JiraTickets:
    """Tickets of one project and issue type, identified by a label (``label_prefix`` + grantflow's id).

    ``transition_names`` maps each workflow transition grantflow performs, by its name in Jira (matched
    case-insensitively), to the status it leads to (status name or id), e.g. ``{"Approve": "Approved", "Deny":
    "Denied", "Close": "Done"}``: that is how ``transition`` knows a ticket is already where the transition
    would take it, even when the transition is no longer offered from there. ``account_ids`` is the
    fallback ``{email: accountId}`` mapping for people whom user search cannot find. ``adopted_projects``
    are other projects whose issues can be a request's ticket (the intake project, where people make
    requests in an issue of their own): ``find_issue`` looks there too, new tickets go to ``project_key``."""

    def __init__(
        self,
        client: JIRA,
        *,
        project_key: str,
        issue_type: str,
        transition_names: Mapping[str, str],
        label_prefix: str = "grantflow-",
        extra_fields: Mapping[str, Any] | None = None,
        account_ids: Mapping[str, str] | None = None,
        adopted_projects: Iterable[str] = (),
    ) -> None:
        if not transition_names:
            raise ValueError("transition_names must name at least one transition and its target status")
        if not label_prefix or any(ch.isspace() for ch in label_prefix):
            raise ValueError("label_prefix must be non-empty and without spaces")
        self._client = client
        self.project_key = project_key
        self.searched_projects = list(dict.fromkeys([project_key, *(p for p in adopted_projects if p)]))
        self.issue_type = issue_type
        self.label_prefix = label_prefix
        self._extra_fields = dict(extra_fields or {})
        self._targets = {name.lower(): (name, target) for name, target in transition_names.items()}
        self._fallback_ids = {email.strip().lower(): aid for email, aid in (account_ids or {}).items()}
        self._account_cache: dict[str, str] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ labels

    def jira_label(self, label: str) -> str:
        """The Jira label for a grantflow id (the prefix is added unless already there)."""
        full = label if label.startswith(self.label_prefix) else self.label_prefix + label
        if not label or any(ch.isspace() for ch in full) or len(full) > MAX_LABEL:
            raise ValueError(
                f"{full!r} cannot be a Jira label: it must be 1-{MAX_LABEL} characters, no spaces"
            )
        return full

    def grantflow_id(self, labels: Iterable[str]) -> str | None:
        """The grantflow id carried by one of a ticket's labels (the inverse of ``jira_label``), if any."""
        for label in labels:
            if label.startswith(self.label_prefix) and len(label) > len(self.label_prefix):
                return label[len(self.label_prefix) :]
        return None

    # ------------------------------------------------------------------ tickets

    def find_issue(self, label: str) -> str | None:
        """The key of the ticket carrying this label in the project (or an adopted one), or None. Several
        (which ``open_ticket`` never makes): the oldest, with a warning."""
        jira_label = self.jira_label(label)
        projects, wanted = ", ".join(map(_jql_string, self.searched_projects)), _jql_string(jira_label)
        jql = f"project in ({projects}) AND labels = {wanted} ORDER BY created ASC"
        found = _jira_call(
            f"searching {', '.join(self.searched_projects)} for label {jira_label}",
            self._client.search_issues,
            jql,
            maxResults=10,
            fields="labels",
        )
        keys = [str(issue.key) for issue in found]
        if len(keys) > 1:
            log.warning(
                "label %s is on %d tickets (%s): using %s", jira_label, len(keys), ", ".join(keys), keys[0]
            )
        return keys[0] if keys else None

    def open_ticket(
        self,
        *,
        label: str,
        summary: str,
        description: str,
        assignee_account_id: str | None = None,
        labels: Iterable[str] = (),
        fields: Mapping[str, Any] | None = None,
    ) -> str:
        """The key of the ticket for ``label``: the existing one if there is one, else a new one.

        ``fields`` (and the constructor's ``extra_fields`` under them) are extra Jira fields, such as custom
        fields; project, issue type, summary, description and labels are always this method's own. The summary
        is folded to one line of at most 255 characters, as Jira demands."""
        jira_label = self.jira_label(label)
        existing = self.find_issue(label)
        if existing is not None:
            return existing
        payload: dict[str, Any] = {**self._extra_fields, **(fields or {})}
        payload.update(
            project={"key": self.project_key},
            issuetype={"name": self.issue_type},
            summary=_one_line(summary, MAX_SUMMARY),
            description=description,
            labels=list(dict.fromkeys([jira_label, *labels])),
        )
        if assignee_account_id is not None:
            payload["assignee"] = {"accountId": assignee_account_id}
        issue = _jira_call(
            f"opening a {self.issue_type} in {self.project_key} for {jira_label}",
            self._client.create_issue,
            fields=payload,
            prefetch=False,
        )
        log.info("opened %s for %s", issue.key, jira_label)
        return str(issue.key)

    def status(self, key: str) -> TicketStatus:
        """The ticket's status: (id, name, category key)."""
        issue = _jira_call(f"reading the status of {key}", self._client.issue, key, fields="status")
        return _status_of(issue.raw.get("fields", {}).get("status"))

    def transition(self, key: str, transition_name: str, comment: str | None = None) -> bool:
        """Move the ticket by a transition of its workflow (by name, case-insensitive; it must be in
        ``transition_names``), with an optional comment made in the same request. Returns False (and does
        nothing) when the ticket is already in the transition's target status."""
        name, target = self._target(transition_name)
        current = self.status(key)
        if target in (current.id, current.name) or target.lower() == current.name.lower():
            return False
        offered = _jira_call(f"listing the transitions of {key}", self._client.transitions, key)
        chosen = next((t for t in offered if str(t.get("name", "")).lower() == name.lower()), None)
        if chosen is None:
            names = ", ".join(str(t.get("name")) for t in offered) or "none"
            raise JiraWorkflowError(
                f"{key} is {current.name}: its workflow offers no transition {name!r} from there "
                f"(offered: {names})"
            )
        leads_to = _status_of(chosen.get("to"))
        if (
            leads_to.id
            and target not in (leads_to.id, leads_to.name)
            and target.lower() != leads_to.name.lower()
        ):
            raise JiraWorkflowError(
                f"transition {name!r} of {key} leads to {leads_to.name!r}, but grantflow expects {target!r}: "
                "fix transition_names or the workflow"
            )
        try:
            _jira_call(
                f"moving {key} by {name!r}",
                self._client.transition_issue,
                key,
                str(chosen["id"]),
                comment=comment,
            )
        except JiraRefusedError:
            # someone (or a lost reply of ours) moved it meanwhile: fine if it is now where we wanted it
            now = self.status(key)
            if target in (now.id, now.name) or target.lower() == now.name.lower():
                return False
            raise
        return True

    def _target(self, transition_name: str) -> tuple[str, str]:
        found = self._targets.get(transition_name.lower())
        if found is None:
            known = ", ".join(name for name, _ in self._targets.values())
            raise ValueError(f"transition {transition_name!r} is not configured (transition_names: {known})")
        return found

    def comment(self, key: str, text: str) -> bool:
        """Comment on the ticket. Returns False (and posts nothing) when a comment with the same text
        (whitespace aside) is already there, so a retried call never posts twice: a comment meant to repeat
        must say something new (when, or why)."""
        wanted = _normalise(text)
        if not wanted:
            raise ValueError("a Jira comment cannot be empty")
        existing = _jira_call(f"reading the comments of {key}", self._client.comments, key)
        if any(_normalise(str(getattr(c, "body", ""))) == wanted for c in existing):
            return False
        _jira_call(f"commenting on {key}", self._client.add_comment, key, text)
        return True

    def update_description(self, key: str, description: str) -> bool:
        """Replace the ticket's description. Returns False (and writes nothing) when it already reads so
        (whitespace aside)."""
        issue = _jira_call(f"reading the description of {key}", self._client.issue, key, fields="description")
        current = str(issue.raw.get("fields", {}).get("description") or "")
        if _normalise(current) == _normalise(description):
            return False
        _jira_call(f"updating the description of {key}", issue.update, fields={"description": description})
        return True

    def assign(self, key: str, account_id: str | None) -> bool:
        """Assign the ticket to an accountId (None: unassign). Returns False when it already was."""
        issue = _jira_call(f"reading the assignee of {key}", self._client.issue, key, fields="assignee")
        current = (issue.raw.get("fields", {}).get("assignee") or {}).get("accountId")
        if current == account_id:
            return False
        _jira_call(f"assigning {key}", issue.update, fields={"assignee": {"accountId": account_id}})
        return True

    # ------------------------------------------------------------------ people

    def account_id_for_email(self, email: str) -> str | None:
        """The Jira accountId of a person, by user search on their email (cached), else from the configured
        mapping, else None. On Cloud a person with email privacy on is found by the exact address but answers
        without it: a single such match is taken as them."""
        wanted = email.strip().lower()
        with self._lock:
            if wanted in self._account_cache:
                return self._account_cache[wanted]
        users = _jira_call(
            f"looking up {email} in Jira", self._client.search_users, query=email, maxResults=20
        )
        people = [
            u.raw
            for u in users
            if u.raw.get("active", True) and u.raw.get("accountType", "atlassian") == "atlassian"
        ]
        exact = [u for u in people if str(u.get("emailAddress", "")).lower() == wanted]
        hidden = [u for u in people if not u.get("emailAddress")]
        found: str | None = None
        if exact:
            found = str(exact[0]["accountId"])
        elif len(people) == 1 and hidden:
            found = str(hidden[0]["accountId"])
        else:
            found = self._fallback_ids.get(wanted)
        if found is not None:
            with self._lock:
                self._account_cache[wanted] = found
        return found


# ---------------------------------------------------------------------------------------------- webhooks


def verify_webhook_signature(secret: str | bytes, raw_body: bytes, header: str | None) -> bool:
    """Whether ``header`` (``X-Hub-Signature``) is ``sha256=<hex HMAC-SHA256(secret, raw_body)>``. Compared
    in constant time; a missing header, another algorithm or an empty secret is a failure."""
    if not secret or not header:
        return False
    algorithm, sep, digest = header.strip().partition("=")
    if not sep or algorithm.strip().lower() != "sha256" or not digest:
        return False
    key = secret.encode() if isinstance(secret, str) else secret
    expected = hmac.new(key, raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), digest.strip().lower().encode("utf-8", "replace"))


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A ticket's status changed, as a ``jira:issue_updated`` webhook tells it."""

    issue_key: str
    issue_id: str
    labels: tuple[str, ...]
    actor_account_id: str | None  # who moved it (None for anonymous or automation without a user)
    actor_display_name: str | None
    from_status_id: str | None
    from_status_name: str | None
    to_status_id: str
    to_status_name: str | None
    to_category: str | None  # the new status's category key, when the payload's issue carries it
    timestamp: datetime | None
    webhook_id: str | None  # X-Atlassian-Webhook-Identifier: the key to deduplicate deliveries on


def parse_status_change(payload: Mapping[str, Any], webhook_id: str | None = None) -> StatusChange | None:
    """The status change in a webhook payload, or None when the event is not a ``jira:issue_updated`` whose
    changelog has a status item (a comment, an assignment, a created issue…). The change is read from the
    changelog by status id. Raises ``ValueError`` for a status change without an issue key."""
    if payload.get("webhookEvent") != "jira:issue_updated":
        return None
    changelog = payload.get("changelog")
    items = changelog.get("items") if isinstance(changelog, Mapping) else None
    if not isinstance(items, list):
        return None
    status_items = [
        i
        for i in items
        if isinstance(i, Mapping)
        and (i.get("fieldId") or i.get("field")) == "status"
        and i.get("to") is not None
    ]
    if not status_items:
        return None
    item = status_items[-1]
    issue = payload.get("issue")
    if not isinstance(issue, Mapping) or not issue.get("key"):
        raise ValueError("a jira:issue_updated payload with a status change but no issue key")
    fields = issue.get("fields") if isinstance(issue.get("fields"), Mapping) else {}
    assert isinstance(fields, Mapping)
    labels = tuple(str(label) for label in fields.get("labels") or [] if isinstance(label, str))
    to_id = str(item["to"])
    current = fields.get("status")
    to_category: str | None = None
    if isinstance(current, Mapping) and str(current.get("id")) == to_id:
        category = current.get("statusCategory")
        if isinstance(category, Mapping) and category.get("key"):
            to_category = str(category["key"])
    user = payload.get("user") if isinstance(payload.get("user"), Mapping) else {}
    assert isinstance(user, Mapping)
    stamp = payload.get("timestamp")
    return StatusChange(
        issue_key=str(issue["key"]),
        issue_id=str(issue.get("id", "")),
        labels=labels,
        actor_account_id=str(user["accountId"]) if user.get("accountId") else None,
        actor_display_name=str(user["displayName"]) if user.get("displayName") else None,
        from_status_id=None if item.get("from") is None else str(item["from"]),
        from_status_name=None if item.get("fromString") is None else str(item["fromString"]),
        to_status_id=to_id,
        to_status_name=None if item.get("toString") is None else str(item["toString"]),
        to_category=to_category,
        timestamp=datetime.fromtimestamp(stamp / 1000, UTC) if isinstance(stamp, int | float) else None,
        webhook_id=webhook_id,
    )

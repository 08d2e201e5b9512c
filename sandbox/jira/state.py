"""The stand-in's state: users, projects, custom fields and issues, their ids, and the file that keeps them.

:class:`JiraState` is the base of every part of the stand-in; it holds the records under one lock (HTTP
handlers and the in-process helpers run on different threads) and rewrites the state file after every
change, so a restarted stand-in goes on numbering tickets where it stopped, as Jira would. Calls, events,
deliveries and faults are never kept. Seeding (``add_user``, ``add_project``, ``add_custom_field``) lives
here too: it is how tests set up what an admin would configure in Jira.
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from sandbox._server import HttpStandIn
from sandbox.jira.adf import adf_to_text
from sandbox.jira.api import ApiError, Ctx
from sandbox.jira.model import Comment, CustomField, Issue, JiraCall, Project, User
from sandbox.jira.workflow import DEFAULT_WORKFLOW, JiraStatus, JiraTransition, JiraWorkflow

STATE_VERSION = 1

_ID_NAMESPACE = uuid.UUID("0b4f9a52-7f53-4b7e-9a3c-5a1de0c1a2b3")


def _encode_value(value: Any) -> Any:
    """JSON for what the state holds besides plain data: times (tagged, so they load back as times)."""
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    raise TypeError(f"cannot keep {type(value).__name__} in the Jira stand-in's state")


def _decode_value(obj: dict[str, Any]) -> Any:
    if set(obj) == {"$datetime"}:
        return datetime.fromisoformat(obj["$datetime"])
    return obj


class JiraState(HttpStandIn):
    """The records and their persistence; every other part of the stand-in builds on this."""

    _lock: threading.RLock
    calls: list[JiraCall]
    state_file: Path | None
    site_admins: set[str]  # emails of users with "Administer Jira" (webhook registration)
    _users: dict[str, User]  # account id -> user
    _projects: dict[str, Project]  # key -> project
    _issues: dict[str, Issue]  # key -> issue
    _custom_fields: dict[str, CustomField]
    _next_id: int
    _next_number: dict[str, int]  # project key -> the number of its next issue
    _webhooks: dict[str, dict[str, Any]]  # admin webhooks registered through the REST API
    _base_url: str

    def _init_state(self, state_file: Path | None) -> None:
        """Empty records, then what ``state_file`` kept, if it exists."""
        self.calls = []
        self._users = {}
        self._projects = {}
        self._issues = {}
        self._custom_fields = {}
        self._next_id = 10001
        self._next_number = {}
        self._webhooks = {}
        self.site_admins = set()
        self.state_file = Path(state_file) if state_file is not None else None
        self._base_url = "http://127.0.0.1"
        if self.state_file is not None and self.state_file.exists():
            self._load(json.loads(self.state_file.read_text(), object_hook=_decode_value))

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
        self._users = {u["account_id"]: User(**u) for u in data["users"]}
        for raw in data["projects"]:
            flow = raw["workflow"]
            workflow = JiraWorkflow(
                statuses=tuple(JiraStatus(**st) for st in flow["statuses"]),
                transitions=tuple(
                    JiraTransition(**{**t, "sources": tuple(t["sources"])}) for t in flow["transitions"]
                ),
                initial=flow["initial"],
            )
            self._projects[raw["key"]] = Project(**{**raw, "workflow": workflow})
        self._custom_fields = {
            f["id"]: CustomField(**{**f, "options": tuple(f["options"])}) for f in data["custom_fields"]
        }
        for raw in data["issues"]:
            comments = [Comment(**c) for c in raw["comments"]]
            self._issues[raw["key"]] = Issue(**{**raw, "comments": comments})
        self._webhooks = {w["id"]: w for w in data.get("webhooks", [])}

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
            self._users[account_id] = User(
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
            project = Project(
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

    def set_workflow(self, key: str, workflow: JiraWorkflow) -> None:
        """Publish a new workflow for a project, as a Jira admin does in the workflow editor (issues keep
        their status; Jira asks to migrate issues whose status the new workflow lacks, refused here)."""
        with self._lock:
            project = self._projects[key]
            for issue in self._issues.values():
                if issue.project == key:
                    # Atlassian, "Edit an active workflow" (support.atlassian.com, Jira Cloud administration):
                    # publishing a draft keeps every issue's status; removing a status that issues are in
                    # makes Jira ask for a migration first. The stand-in has no migration: KeyError.
                    workflow.status(issue.status)
            project.workflow = workflow
            self._save()

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
            self._custom_fields[fid] = CustomField(fid, name, field_type, tuple(options))
            self._save()
            return fid

    def _user_by_email(self, email: str) -> User | None:
        for user in self._users.values():
            if user.email.lower() == email.lower():
                return user
        return None

    def _require_user_id(self, account_id: str) -> User:
        user = self._users.get(account_id)
        if user is None:
            raise KeyError(f"no Jira user with accountId {account_id!r}")
        return user

    def _require_issue(self, key: str) -> Issue:
        issue = self._find_issue(key)
        if issue is None:
            raise KeyError(f"no issue {key!r}")
        return issue

    def _find_issue(self, key_or_id: str) -> Issue | None:
        issue = self._issues.get(key_or_id.upper())
        if issue is not None:
            return issue
        for candidate in self._issues.values():
            if candidate.id == key_or_id:
                return candidate
        return None

    def _ordered_issues(self) -> list[Issue]:
        return sorted(self._issues.values(), key=lambda i: int(i.id))

    def _status(self, issue: Issue) -> JiraStatus:
        return self._projects[issue.project].workflow.status(issue.status)

    def _history(self, issue: Issue, actor: User, items: list[dict[str, Any]]) -> None:
        now = self.now()
        issue.histories.append(
            {"id": self._new_id(), "author": actor.account_id, "created": now, "items": items}
        )
        issue.updated = now

    def _add_comment(
        self,
        issue: Issue,
        actor: User,
        text: str | None,
        adf: dict[str, Any] | None,
        visibility: dict[str, Any] | None = None,
    ) -> Comment:
        now = self.now()
        comment = Comment(
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

    @staticmethod
    def _caller(ctx: Ctx) -> User:
        assert ctx.caller is not None
        return ctx.caller

    def _issue_or_404(self, key: str) -> Issue:
        issue = self._find_issue(key)
        if issue is None:
            raise ApiError(404, ["Issue does not exist or you do not have permission to see it."])
        return issue

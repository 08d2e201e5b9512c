"""How the stand-in's records look in Jira's answers: users, statuses, projects, issues, comments, changelogs.

Every object carries a ``self`` link (the ``jira`` client raises ``KeyError: 'self'`` without it). v3 shows
descriptions and comment bodies as ADF, v2/latest as strings. A user with email privacy on has no
``emailAddress`` except in their own ``/myself``. Rendering never changes state.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from typing import Any

from sandbox.jira.adf import text_to_adf
from sandbox.jira.model import Comment, Issue, Project, User, jira_time
from sandbox.jira.state import JiraState
from sandbox.jira.workflow import CATEGORIES, JiraStatus, JiraTransition, JiraWorkflow


class JiraRendering(JiraState):
    """The JSON shapes of Jira's answers, built from the records (under the lock)."""

    def _self(self, version: str, path: str) -> str:
        return f"{self._base_url}/rest/api/{'3' if version == '3' else '2'}/{path}"

    def _avatars(self, seed: str) -> dict[str, str]:
        digest = hashlib.md5(seed.encode()).hexdigest()  # an avatar URL, like Gravatar's
        return {
            size: f"{self._base_url}/avatar/{digest}?s={size[:2]}"
            for size in ("48x48", "24x24", "16x16", "32x32")
        }

    def _render_user(
        self, user: User, *, full: bool, version: str = "2", own: bool = False
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

    def _render_project(self, project: Project, version: str) -> dict[str, Any]:
        return {
            "self": self._self(version, f"project/{project.id}"),
            "id": project.id,
            "key": project.key,
            "name": project.name,
            "projectTypeKey": "software",
            "simplified": False,
            "avatarUrls": self._avatars(project.key),
        }

    def _render_comment(self, issue: Issue, comment: Comment, version: str) -> dict[str, Any]:
        author = self._render_user(self._users[comment.author], full=False, version=version)
        body: dict[str, Any] = {
            "self": self._self(version, f"issue/{issue.id}/comment/{comment.id}"),
            "id": comment.id,
            "author": author,
            "body": (comment.adf or text_to_adf(comment.text)) if version == "3" else comment.text,
            "updateAuthor": author,
            "created": jira_time(comment.created),
            "updated": jira_time(comment.updated),
            "jsdPublic": True,
        }
        if comment.visibility is not None:
            body["visibility"] = comment.visibility
        return body

    def _render_fields(self, issue: Issue, version: str) -> dict[str, Any]:
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
            "created": jira_time(issue.created),
            "updated": jira_time(issue.updated),
            "duedate": issue.duedate,
            "resolution": (
                {"self": self._self(version, f"resolution/{issue.resolution['id']}"), **issue.resolution}
                if issue.resolution
                else None
            ),
            "resolutiondate": jira_time(issue.resolution_date),
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
        self, issue: Issue, version: str, wanted: Callable[[str], bool] | None, *, with_expand: bool = True
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

    def _render_changelog(self, issue: Issue) -> dict[str, Any]:
        histories = [
            {
                "id": h["id"],
                "author": self._render_user(self._users[h["author"]], full=False),
                "created": jira_time(h["created"]),
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

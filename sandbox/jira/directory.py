"""The read-only routes about the site and its people: ``/serverInfo``, ``/myself``, ``/field``,
``/project/{key}``, ``/user`` and ``/user/search``.

``GET /user/search?query=`` returns active users whose display name (or one of its words) or visible email
starts with the query; a user with email privacy on is still found by the exact email, as on Cloud. Nothing
here changes state.
"""

from __future__ import annotations

from typing import Any

from sandbox.jira.api import ApiError, Ctx
from sandbox.jira.model import User, jira_time
from sandbox.jira.render import JiraRendering

SERVER_VERSION = [1001, 0, 0]


class DirectoryRoutes(JiraRendering):
    """Server info, users, fields and projects (handlers run under the lock)."""

    def _h_server_info(self, ctx: Ctx) -> tuple[int, Any]:
        return 200, {
            "baseUrl": self._base_url,
            "version": ".".join(str(n) for n in SERVER_VERSION) + "-SNAPSHOT",
            "versionNumbers": list(SERVER_VERSION),
            "deploymentType": "Cloud",
            "buildNumber": 100280,
            "buildDate": "2026-01-01T00:00:00.000+0000",
            "serverTime": jira_time(self.now()),
            "scmInfo": "0000000000000000000000000000000000000000",
            "serverTitle": "Jira (grantflow sandbox)",
        }

    def _h_myself(self, ctx: Ctx) -> tuple[int, Any]:
        body = self._render_user(self._caller(ctx), full=True, version=ctx.version, own=True)
        body.update(
            groups={"size": 0, "items": []},
            applicationRoles={"size": 1, "items": []},
            expand="groups,applicationRoles",
        )
        return 200, body

    def _h_fields(self, ctx: Ctx) -> tuple[int, Any]:
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

    def _h_project(self, ctx: Ctx) -> tuple[int, Any]:
        key = ctx.params["key"]
        project = self._projects.get(key.upper()) or next(
            (p for p in self._projects.values() if p.id == key), None
        )
        if project is None:
            raise ApiError(404, [f"No project could be found with key '{key}'."])
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

    def _h_get_user(self, ctx: Ctx) -> tuple[int, Any]:
        account_id = ctx.q("accountId")
        user = self._users.get(account_id or "")
        if user is None:
            raise ApiError(404, ["Specified user does not exist or you do not have required permissions"])
        return 200, self._render_user(user, full=True, version=ctx.version, own=user is ctx.caller)

    def _h_user_search(self, ctx: Ctx) -> tuple[int, Any]:
        query = (ctx.q("query") or "").strip().lower()
        account_id = ctx.q("accountId")
        if not query and not account_id:
            raise ApiError(400, ["The query parameter 'query' or 'accountId' is required."])
        start = max(0, ctx.q_int("startAt", 0))
        size = min(1000, max(1, ctx.q_int("maxResults", 50)))

        def matches(user: User) -> bool:
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

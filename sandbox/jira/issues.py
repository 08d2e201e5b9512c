"""The issue routes: ``POST /issue``, ``GET /issue/{key|id}``, ``PUT /issue/{key}``.

Every create makes a new issue: Jira has no idempotency key, so a retried create is a duplicate (which is
what grantflow's search-before-create must cope with). Edits raise ``jira:issue_updated`` only when a field
changed.
"""

from __future__ import annotations

from typing import Any

from sandbox.jira.api import ApiError, Ctx
from sandbox.jira.fields import FieldRules
from sandbox.jira.model import Issue, Project
from sandbox.jira.webhooks import JiraWebhooks


class IssueRoutes(FieldRules, JiraWebhooks):
    """Create, read and edit issues (handlers run under the lock)."""

    def _h_create_issue(self, ctx: Ctx) -> tuple[int, Any]:
        body = ctx.body
        if not isinstance(body, dict) or not isinstance(body.get("fields"), dict):
            raise ApiError(
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
            raise ApiError(400, [], errors)
        assert project is not None and type_id is not None and not comment_ops
        caller = self._caller(ctx)
        now = self.now()
        number = self._next_number[project.key]
        self._next_number[project.key] = number + 1
        issue = Issue(
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

    def _project_from(self, value: Any) -> Project | None:
        if not isinstance(value, dict):
            return None
        if value.get("key") is not None:
            return self._projects.get(str(value["key"]).upper())
        if value.get("id") is not None:
            return next((p for p in self._projects.values() if p.id == str(value["id"])), None)
        return None

    @staticmethod
    def _issue_type_from(project: Project | None, value: Any, errors: dict[str, str]) -> str | None:
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

    def _h_get_issue(self, ctx: Ctx) -> tuple[int, Any]:
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

    def _h_edit_issue(self, ctx: Ctx) -> tuple[int, Any]:
        issue = self._issue_or_404(ctx.params["key"])
        body = ctx.body if ctx.body is not None else {}
        if not isinstance(body, dict):
            raise ApiError(400, ["Can not deserialize the request body: an object is expected."])
        errors: dict[str, str] = {}
        values = body.get("fields") or {}
        if not isinstance(values, dict):
            raise ApiError(400, ["fields must be an object"])
        clean = self._validate_fields(values, ctx, creating=False, errors=errors)
        label_ops, comment_ops = self._updates(body, ctx, errors, allowed=("labels", "comment"))
        if errors:
            raise ApiError(400, [], errors)
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

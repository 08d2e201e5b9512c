"""Moving an issue through its workflow and commenting on it: the transition and comment routes, and the
same actions done by a person in Jira's UI (``transition_as``, ``comment_as``).

Entering a ``done``-category status sets the resolution (``Done``), leaving it clears it, as the default Jira
workflows do. A transition not available from the current status is refused (400 over the API, ``ValueError``
in process); the stand-in never moves an issue along a path its workflow does not have.
"""

from __future__ import annotations

from typing import Any

from sandbox.jira.api import ApiError, Ctx
from sandbox.jira.fields import FieldRules
from sandbox.jira.model import Issue, User, changelog_item
from sandbox.jira.webhooks import JiraWebhooks, WebhookEvent
from sandbox.jira.workflow import RESOLUTION_DONE, JiraTransition


class TransitionRoutes(FieldRules, JiraWebhooks):
    """Transitions and comments, over the API and by a person (under the lock)."""

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

    def _transition(
        self,
        issue: Issue,
        transition: JiraTransition,
        actor: User,
        *,
        comment: str | None,
        comment_adf: dict[str, Any] | None,
        items: list[dict[str, Any]] | None = None,
    ) -> WebhookEvent:
        workflow = self._projects[issue.project].workflow
        before, after = workflow.status(issue.status), workflow.status(transition.to)
        items = list(items or [])
        if after.category == "done" and issue.resolution is None:
            items.append(
                changelog_item("resolution", None, None, RESOLUTION_DONE["id"], RESOLUTION_DONE["name"])
            )
            issue.resolution = dict(RESOLUTION_DONE)
            issue.resolution_date = self.now()
        elif after.category != "done" and issue.resolution is not None:
            items.append(
                changelog_item("resolution", issue.resolution["id"], issue.resolution["name"], None, None)
            )
            issue.resolution = None
            issue.resolution_date = None
        items.append(changelog_item("status", before.id, before.name, after.id, after.name))
        issue.status = after.id
        self._history(issue, actor, items)
        added = self._add_comment(issue, actor, comment, comment_adf) if comment or comment_adf else None
        return self._emit("jira:issue_updated", "issue_generic", issue, actor, changelog=items, comment=added)

    def _h_get_transitions(self, ctx: Ctx) -> tuple[int, Any]:
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

    def _h_do_transition(self, ctx: Ctx) -> tuple[int, Any]:
        issue = self._issue_or_404(ctx.params["key"])
        body = ctx.body
        if not isinstance(body, dict) or not isinstance(body.get("transition"), dict):
            raise ApiError(400, ["Missing 'transition' identifier"])
        wanted = body["transition"].get("id")
        if wanted is None:
            raise ApiError(400, ["Missing 'transition' identifier"])
        workflow = self._projects[issue.project].workflow
        found = [t for t in workflow.available(self._status(issue)) if t.id == str(wanted)]
        if not found:
            raise ApiError(400, [f"Transition id '{wanted}' is not valid for this issue."])
        errors: dict[str, str] = {}
        values = body.get("fields") or {}
        if not isinstance(values, dict):
            raise ApiError(400, ["fields must be an object"])
        values = {k: v for k, v in values.items() if k != "resolution"}  # set by the workflow here
        clean = self._validate_fields(values, ctx, creating=False, errors=errors)
        _, comment_ops = self._updates(body, ctx, errors, allowed=("comment",))
        if errors:
            raise ApiError(400, [], errors)
        items = self._apply_fields(issue, clean)
        text, adf = comment_ops[0] if comment_ops else (None, None)
        self._transition(issue, found[0], self._caller(ctx), comment=text, comment_adf=adf, items=items)
        return 204, None

    def _h_get_comments(self, ctx: Ctx) -> tuple[int, Any]:
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

    def _h_add_comment(self, ctx: Ctx) -> tuple[int, Any]:
        issue = self._issue_or_404(ctx.params["key"])
        body = ctx.body
        if not isinstance(body, dict):
            raise ApiError(400, [], {"comment": "Comment body can not be empty!"})
        try:
            text, adf = self._comment_body(body.get("body"), ctx)
        except ValueError as exc:
            raise ApiError(400, [], {"comment": str(exc)}) from None
        visibility = body.get("visibility")
        caller = self._caller(ctx)
        comment = self._add_comment(
            issue, caller, text, adf, visibility if isinstance(visibility, dict) else None
        )
        self._emit("jira:issue_updated", "issue_commented", issue, caller, comment=comment)
        return 201, self._render_comment(issue, comment, ctx.version)

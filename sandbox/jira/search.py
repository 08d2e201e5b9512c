"""Issue search: ``GET``/``POST /search`` (startAt paging) and ``GET``/``POST /search/jql`` (nextPageToken).

Atlassian has retired ``/search`` on Cloud: ``legacy_search_gone=True`` answers **410** as Cloud does now.
``/search/jql`` refuses an unbounded query and returns no fields unless asked, as on Cloud. Not reproduced:
Cloud's search index is eventually consistent; here a new issue is searchable at once. ``labels != x`` skips
issues without labels, as Jira does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from sandbox.jira.api import ApiError, Ctx
from sandbox.jira.jql import Clause, JqlError, parse_jql
from sandbox.jira.model import Issue
from sandbox.jira.render import JiraRendering
from sandbox.jira.workflow import CATEGORIES

MAX_SEARCH_RESULTS = 100
DEFAULT_SEARCH_RESULTS = 50


class SearchRoutes(JiraRendering):
    """JQL search over the issues (handlers run under the lock)."""

    legacy_search_gone: bool

    def _run_jql(self, jql: str, *, bounded: bool) -> list[Issue]:
        try:
            query = parse_jql(jql)
        except JqlError as exc:
            raise ApiError(400, [str(exc)]) from None
        if bounded and not query.clauses:
            raise ApiError(
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

    def _check_values(self, clause: Clause) -> None:
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
                raise ApiError(400, [f"The value '{value}' does not exist for the field '{clause.field}'."])

    def _matches(self, issue: Issue, clause: Clause) -> bool:
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

    def _search_params(self, ctx: Ctx) -> dict[str, Any]:
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
            raise ApiError(400, ["Can not deserialize the request body: an object is expected."])
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
        self, hits: list[Issue], ctx: Ctx, fields: list[str], default: str, expand: str
    ) -> list[dict[str, Any]]:
        wanted = self._field_filter(fields, default)
        out = []
        for issue in hits:
            rendered = self._render_issue(issue, ctx.version, wanted)
            if "changelog" in expand:
                rendered["changelog"] = self._render_changelog(issue)
            out.append(rendered)
        return out

    def _h_search(self, ctx: Ctx) -> tuple[int, Any]:
        if self.legacy_search_gone:
            raise ApiError(
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

    def _h_search_jql(self, ctx: Ctx) -> tuple[int, Any]:
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
            raise ApiError(400, ["The provided next page token is invalid or expired."]) from None

"""Issue fields: checking the values a caller sets and writing them, with Jira's messages and changelog.

Settable: summary, description (ADF in v3, a string in v2/latest), labels, assignee/reporter
(``{"accountId"}``: Cloud has no user names), duedate and the configured custom fields; anything else gets
``Field 'x' cannot be set. It is not on the appropriate screen, or unknown.`` Also the ``update`` operations
(``labels`` add/remove/set, ``comment`` add). Validation collects every field's error before anything is
written, so a refused call changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from sandbox.jira.adf import adf_to_text, is_adf
from sandbox.jira.api import Ctx
from sandbox.jira.model import Issue, changelog_item
from sandbox.jira.render import JiraRendering


class FieldRules(JiraRendering):
    """Field validation and writes, shared by the issue and transition routes."""

    def _validate_fields(
        self, values: Mapping[str, Any], ctx: Ctx, *, creating: bool, errors: dict[str, str]
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

    def _field_value(self, name: str, value: Any, ctx: Ctx) -> Any:
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

    def _apply_fields(self, issue: Issue, clean: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Write validated values; returns the changelog items for what changed."""
        items: list[dict[str, Any]] = []
        for name, value in clean.items():
            if name == "summary" and value != issue.summary:
                items.append(changelog_item("summary", None, issue.summary, None, value))
                issue.summary = value
            elif name == "description":
                text, adf = value
                if text != issue.description:
                    items.append(changelog_item("description", None, issue.description, None, text))
                issue.description, issue.description_adf = text, adf
            elif name == "labels" and value != issue.labels:
                items.append(changelog_item("labels", None, " ".join(issue.labels), None, " ".join(value)))
                issue.labels = list(value)
            elif name in ("assignee", "reporter") and value != getattr(issue, name):
                old = getattr(issue, name)
                items.append(
                    changelog_item(
                        name,
                        old,
                        self._users[old].display_name if old else None,
                        value,
                        self._users[value].display_name if value else None,
                    )
                )
                setattr(issue, name, value)
            elif name == "duedate" and value != issue.duedate:
                items.append(changelog_item("duedate", issue.duedate, issue.duedate, value, value))
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
        self, ops: Any, ctx: Ctx, errors: dict[str, str]
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
    def _comment_body(body: Any, ctx: Ctx) -> tuple[str | None, dict[str, Any] | None]:
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
        self, body: Mapping[str, Any], ctx: Ctx, errors: dict[str, str], *, allowed: Iterable[str]
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

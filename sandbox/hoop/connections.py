"""Connections and who may reach them in the hoop stand-in: connections, the ``access_control`` plugin,
attributes and access-request rules — seeded in process, read over the API, and the rules every
connect and review consults (``_reaches``, ``_jit_rule_for``, ``_review_required``).

- ``GET /connections`` (an array; with ``page``/``page_size`` → ``{pages, data}``), ``GET
  /connections/{nameOrID}`` (one outside the caller's access control is 404, like a missing one), ``GET
  /plugins/access_control`` (connections with at least one access group, ``config`` = those groups),
  ``GET /attributes`` and ``GET /access-requests/rules`` (``{pages, data}``; admin only).

This module never opens sessions or decides reviews: it only answers whether, and by which rule.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sandbox.hoop.api import (
    ADMIN_GROUP,
    AUDITOR_GROUP,
    ID_NAMESPACE,
    MAX_LIMIT,
    Caller,
    HTTPError,
    int_param,
    page_params,
)
from sandbox.hoop.clock import ts
from sandbox.hoop.state import HoopCore


class Connections(HoopCore):
    """Seeding and serving connections, attributes and access-request rules."""

    def add_connection(
        self,
        name: str,
        type: str = "database",
        subtype: str = "postgres",
        access_groups: Iterable[str] = (),
        reviewers: Iterable[str] = (),
        *,
        min_review_approvals: int | None = None,
        access_max_duration: int | None = None,
        jit_access_duration_sec: int | None = None,
        tags: dict[str, str] | None = None,
        force_approve_groups: Iterable[str] | None = None,
    ) -> str:
        """Add (or update) a connection; ``access_groups`` is its access-control list. Returns its id.
        ``force_approve_groups`` (hoop's field name, ``models/connections.go`` ``ForceApproveGroups``):
        members decide a review of this connection in one ``PUT /reviews`` with ``force_review``
        (``review.go`` ``doForcedReview``), unless the review came from an access-request rule (then the
        rule's ``force_approval_groups`` count)."""
        with self._lock:
            existing = self._state["connections"].get(name)
            conn = {
                "id": existing["id"] if existing else str(uuid.uuid4()),
                "name": name,
                "type": type,
                "subtype": subtype,
                "agent_id": existing["agent_id"] if existing else str(uuid.uuid4()),
                "access_groups": sorted(set(access_groups)),
                "reviewers": list(reviewers),
                "min_review_approvals": min_review_approvals,
                "access_max_duration": access_max_duration,
                "jit_access_duration_sec": jit_access_duration_sec,
                "tags": dict(tags or {}),
                "force_approve_groups": None if force_approve_groups is None else list(force_approve_groups),
            }
            self._state["connections"][name] = conn
            self._save()
            return str(conn["id"])

    def add_access_rule(
        self,
        name: str,
        *,
        access_type: str = "jit",
        connection_names: Sequence[str] = (),
        reviewers_groups: Sequence[str] = (),
        min_approvals: int | None = None,
        access_max_duration: int | None = None,
        description: str = "",
        approval_required_groups: Sequence[str] = (),
        skip_review_groups: Sequence[str] = (),
        force_approval_groups: Sequence[str] = (),
        attributes: Sequence[str] = (),
        all_groups_must_approve: bool = False,
    ) -> None:
        """Add (or replace) an access-request rule (``models/access_request_rules.go``): ``access_type`` jit,
        command or jit_command; it applies to ``connection_names`` and to the connections of its
        ``attributes``. Who is reviewed: see ``_review_required``."""
        if access_type not in ("jit", "command", "jit_command"):
            raise ValueError(f"bad access type {access_type!r}")
        with self._lock:
            now = ts(self.now())
            existing = self._state["rules"].get(name)
            self._state["rules"][name] = {
                "id": existing["id"] if existing else str(uuid.uuid4()),
                "name": name,
                "description": description,
                "access_type": access_type,
                "connection_names": list(connection_names),
                "reviewers_groups": list(reviewers_groups),
                "approval_required_groups": list(approval_required_groups),
                "force_approval_groups": list(force_approval_groups),
                "skip_review_groups": list(skip_review_groups),
                "attributes": list(attributes),
                "all_groups_must_approve": all_groups_must_approve,
                "min_approvals": min_approvals,
                "access_max_duration": access_max_duration,
                "created_at": existing["created_at"] if existing else now,
                "updated_at": now,
            }
            self._save()

    def add_attribute(
        self,
        name: str,
        *,
        connection_names: Sequence[str] = (),
        access_control_group_names: Sequence[str] = (),
        access_request_rule_names: Sequence[str] = (),
        description: str = "",
    ) -> None:
        """Add (or replace) an attribute (``api/attributes/attributes.go``): members of its access-control
        groups reach its connections, and its access-request rules apply to them."""
        with self._lock:
            now = ts(self.now())
            existing = self._state["attributes"].get(name)
            self._state["attributes"][name] = {
                "id": existing["id"] if existing else str(uuid.uuid4()),
                "name": name,
                "description": description,
                "connection_names": sorted(set(connection_names)),
                "access_control_group_names": sorted(set(access_control_group_names)),
                "access_request_rule_names": sorted(set(access_request_rule_names)),
                "created_at": existing["created_at"] if existing else now,
                "updated_at": now,
            }
            self._save()

    def set_access_control(self, enabled: bool) -> None:
        """Turn the ``access_control`` plugin on or off (off: everyone reaches every connection)."""
        with self._lock:
            self._state["access_control_enabled"] = enabled
            self._save()

    def _reaches(self, user: dict[str, Any], conn: dict[str, Any]) -> bool:
        """The access-control gate (``models/connections.go`` ``getConnectionByNameOrID``): plugin off →
        everyone; admin or auditor → always; else a group in the connection's list or linked to it through
        an attribute (``access_control_groups_attributes`` ⋈ ``connections_attributes``)."""
        groups = set(user["groups"])
        if not self._state.get("access_control_enabled", True) or groups & {ADMIN_GROUP, AUDITOR_GROUP}:
            return True
        if groups & set(conn["access_groups"]):
            return True
        return any(
            conn["name"] in attribute["connection_names"]
            and groups & set(attribute["access_control_group_names"])
            for attribute in self._state.get("attributes", {}).values()
        )

    def _jit_rule_for(self, connection: str) -> dict[str, Any] | None:
        """``services.GetRuleForConnection`` for access type jit: a rule reached through one of the
        connection's attributes first, then one naming the connection; ``jit_command`` rules count too
        (``expandAccessTypes``)."""
        rules = [r for r in self._state["rules"].values() if r["access_type"] in ("jit", "jit_command")]
        attributes = [
            a for a in self._state.get("attributes", {}).values() if connection in a["connection_names"]
        ]
        for rule in rules:
            if any(
                rule["name"] in a["access_request_rule_names"] or a["name"] in rule["attributes"]
                for a in attributes
            ):
                return rule
        return next((r for r in rules if connection in r["connection_names"]), None)

    def _command_rule_for(self, connection: str) -> dict[str, Any] | None:
        """``services.GetRuleForConnection`` for access type command (``jit_command`` counts too), by the
        rule's ``connection_names`` (attribute links are not followed here)."""
        return next(
            (
                r
                for r in self._state["rules"].values()
                if r["access_type"] in ("command", "jit_command") and connection in r["connection_names"]
            ),
            None,
        )

    def _review_required(self, user: dict[str, Any], conn: dict[str, Any]) -> str | None:
        """Why a ``hoop connect`` without a valid jit review needs one, or None when it goes through."""
        groups = set(user["groups"])
        rule = self._jit_rule_for(conn["name"])
        if rule is not None:
            # accessrequest.go OnReceive: approval_required_groups narrow who is reviewed; skip_review_groups
            # apply only when no approval-required groups are set.
            required, skip = rule["approval_required_groups"], rule["skip_review_groups"]
            if required and groups & set(required):
                return f"access request rule {rule['name']}"
            if not required and not (skip and groups & set(skip)):
                return f"access request rule {rule['name']}"
        # transport/plugins/review/review.go runs next unless the interceptor took the packet: a connection
        # with the review plugin's groups reviews everyone.
        if conn["reviewers"]:
            return "the review plugin"
        return None

    def _h_list_connections(
        self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        conns = sorted(self._state["connections"].values(), key=lambda c: c["name"])
        for key in ("type", "subtype"):
            if query.get(key):
                conns = [c for c in conns if c[key] == query[key]]
        if query.get("search"):
            needle = query["search"].lower()
            conns = [c for c in conns if any(needle in c[k].lower() for k in ("name", "type", "subtype"))]
        if query.get("tag_selector"):
            for clause in query["tag_selector"].split(","):
                negate = "!=" in clause
                key, _, value = clause.partition("!=" if negate else "=")
                conns = [c for c in conns if (c["tags"].get(key.strip()) == value.strip()) != negate]
        rendered = [self._render_connection(c) for c in conns]
        if "page" not in query and "page_size" not in query:
            return 200, rendered
        page, size = page_params(query, MAX_LIMIT)
        data = rendered[(page - 1) * size : page * size]
        return 200, {"pages": {"page": page, "size": size, "total": len(rendered)}, "data": data}

    def _h_get_connection(
        self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        # api/connections GetConnection → models.GetConnectionByNameOrID: a connection outside the caller's
        # access control is "not found", exactly like one that does not exist.
        key = params["name_or_id"]
        conn = self._state["connections"].get(key) or next(
            (c for c in self._state["connections"].values() if c["id"] == key), None
        )
        caller_user = {"groups": list(caller.groups)}
        if conn is None or not self._reaches(caller_user, conn):
            raise HTTPError(404, "not found")  # api/connections/connections.go Get answers a bare "not found"
        return 200, self._render_connection(conn)

    def _h_list_attributes(
        self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        # api/attributes/attributes.go List: paginated {pages, data}; page_size 1-100
        page, size = page_params(query, 50)
        attributes = sorted(self._state["attributes"].values(), key=lambda a: a["name"])
        if query.get("search"):
            attributes = [a for a in attributes if query["search"].lower() in a["name"].lower()]
        data = [
            {
                k: a[k]
                for k in (
                    "id",
                    "name",
                    "description",
                    "connection_names",
                    "access_control_group_names",
                    "access_request_rule_names",
                    "created_at",
                )
            }
            | {"datamasking_rule_names": [], "guardrail_rule_names": []}
            for a in attributes[(page - 1) * size : page * size]
        ]
        return 200, {"pages": {"page": page, "size": size, "total": len(attributes)}, "data": data}

    def _h_get_plugin(self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        # api/plugins/plugin.go Get: a plugin the organisation has not enabled answers 404 "plugin not found"
        if params["name"] != "access_control" or not self._state["access_control_enabled"]:
            raise HTTPError(404, "plugin not found")
        conns = sorted(self._state["connections"].values(), key=lambda c: c["name"])
        return 200, {
            "id": str(uuid.uuid5(ID_NAMESPACE, "plugin:access_control")),
            "name": "access_control",
            "priority": 0,
            "connections": [
                {"id": c["id"], "name": c["name"], "config": list(c["access_groups"])}
                for c in conns
                if c["access_groups"]
            ],
        }

    def _h_list_rules(self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        rules = [self._render_rule(r) for r in sorted(self._state["rules"].values(), key=lambda r: r["name"])]
        page = int_param(query, "page", 1)
        size = int_param(query, "page_size", 0)
        if page < 1 or size < 0:
            raise HTTPError(400, "invalid pagination parameters")
        data = rules if size == 0 else rules[(page - 1) * size : page * size]
        return 200, {"pages": {"page": page, "size": size, "total": len(rules)}, "data": data}

    @staticmethod
    def _render_connection(conn: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": conn["id"],
            "name": conn["name"],
            "type": conn["type"],
            "subtype": conn["subtype"],
            "agent_id": conn["agent_id"],
            "status": "online",
            "access_mode_connect": "enabled",
            "access_mode_exec": "enabled",
            "access_mode_runbooks": "enabled",
            "access_schema": "enabled",
            "reviewers": list(conn["reviewers"]),
            "connection_tags": dict(conn["tags"]),
            "redact_enabled": False,
            "attributes": [],
            "effective_features": None,  # the list endpoint never resolves it (spec prose)
            # api/connections/connections.go: ForceApproveGroups (hoop sends null when unset; [] here, as the
            # spec types it non-null)
            "force_approve_groups": list(conn.get("force_approve_groups") or []),
        }
        for name in ("access_max_duration", "min_review_approvals", "jit_access_duration_sec"):
            if conn[name] is not None:
                body[name] = conn[name]
        return body

    @staticmethod
    def _render_rule(rule: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in rule.items() if v is not None}

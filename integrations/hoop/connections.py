"""Connections and the access rules hoop applies to them: the connection list, the access_control plugin's
groups, attributes, and the jit access-request rule a connection falls under.

It reads what hoop would decide a ``hoop connect`` by and returns it as
``domain.access.ConnectionAccessRules``; ``domain.access`` explains the rules and judges them.
This module never writes to hoop.
"""

from __future__ import annotations

from typing import Any

from domain.access import ConnectionAccessRules
from integrations.gateway import GatewayConnection, GatewayNotFoundError
from integrations.hoop.client import HoopClient, seg
from integrations.hoop.records import connection_from_body, review_rule_from_body

_JIT_ACCESS_TYPES = ("jit", "jit_command")  # models/access_request_rules.go expandAccessTypes


def _groups_by_connection(plugin: dict[str, Any]) -> dict[str, list[str]]:
    """Connection name → groups, from the access_control plugin's body."""
    return {
        str(c["name"]): [str(g) for g in (c.get("config") or [])]
        for c in plugin.get("connections") or []
        if c.get("name")
    }


class HoopConnections(HoopClient):
    """The connection and access-rule calls of ``HoopGateway``."""

    async def list_connections(self) -> list[GatewayConnection]:
        return [connection_from_body(c) for c in await self._paged("/connections")]

    async def access_control_groups(self) -> dict[str, list[str]]:
        """Connection name → groups allowed by hoop's access_control plugin (direct links only; attribute
        links come from ``/attributes``). A connection absent here is reachable by admins only."""
        return _groups_by_connection(self._json(await self._request("GET", "/plugins/access_control")))

    async def connection_access_rules(self, connection: str) -> ConnectionAccessRules:
        """Everything hoop decides a ``hoop connect`` to ``connection`` by (``domain.access`` explains the
        rules): the access_control plugin (404: off), the attributes linking groups and rules to the
        connection, the jit access-request rule, and the legacy review plugin's groups (the connection's
        ``reviewers``). Raises ``GatewayNotFoundError`` for a connection hoop does not have."""
        try:
            plugin = self._json(await self._request("GET", "/plugins/access_control"))
        except GatewayNotFoundError:
            plugin = None
        access_groups = _groups_by_connection(plugin).get(connection, []) if isinstance(plugin, dict) else []
        conn = self._json(await self._request("GET", f"/connections/{seg(connection)}"))
        attributes = [
            a for a in await self._paged("/attributes") if connection in (a.get("connection_names") or [])
        ]
        rules = [
            r
            for r in await self._paged("/access-requests/rules")
            if r.get("access_type") in _JIT_ACCESS_TYPES
        ]
        # services.GetRuleForConnection: a rule reached through one of the connection's attributes wins
        # over a rule naming the connection.
        attribute_names = {str(a.get("name")) for a in attributes}
        linked_rules = {str(n) for a in attributes for n in a.get("access_request_rule_names") or []}
        by_attribute = [
            r
            for r in rules
            if r.get("name") in linked_rules or attribute_names & set(r.get("attributes") or [])
        ]
        by_name = [r for r in rules if connection in (r.get("connection_names") or [])]
        matching = by_attribute or by_name
        rule = matching[0] if matching else None
        return ConnectionAccessRules(
            connection=connection,
            access_control_enabled=plugin is not None,
            access_groups=access_groups,
            attribute_groups={
                str(a["name"]): [str(g) for g in a.get("access_control_group_names") or []]
                for a in attributes
                if a.get("access_control_group_names")
            },
            review_rule=None if rule is None else review_rule_from_body(rule),
            review_plugin_groups=[str(g) for g in conn.get("reviewers") or []],
        )

"""The hoop stand-in's server class: :class:`HoopStandIn` puts the resources (connections, users, sessions,
reviews, grants) behind one route table, one lock and one state file. The behaviour of each resource, and
the hoop source it mirrors, is in its own module; this one only wires them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from sandbox.faults import FaultPlan
from sandbox.hoop.api import Call
from sandbox.hoop.grants import Grants
from sandbox.hoop.identity_keys import IdentityKeys
from sandbox.hoop.routing import ALL_METHODS, DEFAULT_API_KEY, UVICORN_SEND, Routing, api_key_callers
from sandbox.hoop.service_identities import ServiceIdentities
from sandbox.hoop.users import Users


class HoopStandIn(Grants, Users, IdentityKeys, ServiceIdentities, Routing):
    """The hoop gateway, in process. See the package docstring for how to use it, and each resource's
    module for its behaviour and sources."""

    def __init__(
        self,
        *,
        state_file: Path | None = None,
        clock: Callable[[], datetime] | None = None,
        api_keys: dict[str, list[str]] | None = None,
        api_key_names: dict[str, str] | None = None,
    ) -> None:
        keys = api_keys if api_keys is not None else {DEFAULT_API_KEY: ["admin"]}
        self._api_keys = api_key_callers(keys, api_key_names)
        super().__init__(state_file=state_file, clock=clock)
        with self._lock:  # the configured keys are API keys too, listed by /api-keys as hoop lists its own
            for raw, caller in self._api_keys.items():
                if self._key("api_keys", caller.name) is None:
                    self._create_key("api_keys", caller.name, list(caller.groups), "", raw)
        self.api_key = next(iter(keys))
        self.calls: list[Call] = []
        self._faults = FaultPlan()
        routes = self._build_app()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            # uvicorn's own ``send`` (Starlette wraps it before a route sees it): dropping a connection
            # reaches the transport through it
            scope[UVICORN_SEND] = send
            await routes(scope, receive, send)

        self.app = app

    @property
    def api_url(self) -> str:
        return self.url + "/api"

    def _build_app(self) -> Starlette:
        route = self._route
        return Starlette(
            routes=[
                route("/api/sessions/provision", self._h_provision, ["POST"], admin=True, api_key_only=True),
                route("/api/sessions", self._h_list_sessions, ["GET"]),
                route("/api/sessions/{session_id}", self._h_get_session, ["GET"]),
                route("/api/sessions/{session_id}/kill", self._h_kill, ["POST"]),
                route("/api/reviews", self._h_list_reviews, ["GET"]),
                route("/api/reviews/{review_id}", self._h_get_review, ["GET"]),
                route("/api/reviews/{review_id}", self._h_put_review, ["PUT"]),
                route("/api/connections", self._h_list_connections, ["GET"]),
                route("/api/connections/{name_or_id}", self._h_get_connection, ["GET"]),
                route("/api/attributes", self._h_list_attributes, ["GET"], admin=True),
                route("/api/plugins/{name}", self._h_get_plugin, ["GET"], admin=True),
                route("/api/users", self._h_list_users, ["GET"], admin=True),
                route("/api/users/groups", self._h_list_groups, ["GET"], admin=True),
                route("/api/users/{email_or_id}", self._h_get_user, ["GET"], admin=True),
                route("/api/users/{email_or_id}", self._h_put_user, ["PUT"], admin=True),
                route("/api/access-requests/rules", self._h_list_rules, ["GET"], admin=True),
                *[route(path, handler, [method], admin=True) for path, handler, method in self.key_routes()],
                route("/api/{kind:api-keys|ai-agents}", self._h_list_keys, ["GET"], admin=True),
                route("/api/{kind:api-keys|ai-agents}", self._h_create_key, ["POST"], admin=True),
                route("/api/{kind:api-keys|ai-agents}/{name_or_id}", self._h_get_key, ["GET"], admin=True),
                route("/api/{kind:api-keys|ai-agents}/{name_or_id}", self._h_update_key, ["PUT"], admin=True),
                route(
                    "/api/{kind:api-keys|ai-agents}/{name_or_id}", self._h_revoke_key, ["DELETE"], admin=True
                ),
                *[
                    route(path, handler, [method], admin=admin)
                    for path, handler, method, admin in self.service_identity_routes()
                ],
                route("/api/_sandbox/connect", self._h_sandbox_connect, ["POST"], admin=True),
                route("/api/_sandbox/login", self._h_sandbox_login, ["POST"], admin=True),
                route("/api/_sandbox/reviews", self._h_sandbox_review, ["POST"], admin=True),
                # like gin without HandleMethodNotAllowed: anything else is a JSON 404
                route("/{path:path}", self._h_not_found, ALL_METHODS),
            ]
        )

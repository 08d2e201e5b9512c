"""hoop's non-human identities that authenticate with a key: API keys (``/api-keys``) and AI agents
(``/ai-agents``), as ``gateway/api/apikeys/apikeys.go``, ``gateway/api/aiagents/aiagents.go`` and
``gateway/models/apikey.go`` / ``aiagents.go`` have them (hoophq/hoop at e939597). Both are admin-only
(``gateway/api/server.go``: ``AdminOnlyAccessRole``) and behave alike:

- ``GET`` lists every key of the org, active and revoked — and answers JSON ``null`` when there is none
  (the handler appends to a nil slice); ``GET /{nameOrID}`` → 404 ``{"message": "resource not found"}``.
- ``POST`` creates one (``status: active``, ``created_by`` the caller's email — a key's name when a key
  calls); the raw key is answered once; a taken name → 409.
- ``PUT /{nameOrID}`` changes the name and/or the groups, active or revoked: groups left out keep theirs,
  ``"groups": []`` removes them all (``UpdateAPIKey`` deletes then inserts ``user_groups``).
- ``DELETE /{nameOrID}`` revokes (soft delete: ``status: revoked``, ``deactivated_at/by``) → 204; revoking a
  revoked key finds no *active* row → 404.
- Only an active key authenticates (``GetAPIKeyContext``: ``status = 'active'``), with its groups, and each
  use sets ``last_used_at`` (``UpdateAPIKeyLastUsed``).

The stand-in's configured keys (its ``api_keys``) are API keys too, named as given (``api_key_names``) or
``api-key-<n>``, so a listing shows grantflow's own key as hoop's would.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from sandbox.hoop.api import ID_NAMESPACE, Caller, HTTPError
from sandbox.hoop.clock import ts
from sandbox.hoop.state import HoopCore

KINDS = {"api-keys": "api_keys", "ai-agents": "ai_agents"}
NOUNS = {"api_keys": "api key", "ai_agents": "ai agent"}  # as apikeys.go and aiagents.go word their errors
ORG_ID = str(uuid.uuid5(ID_NAMESPACE, "org"))
_OMITTED = frozenset({"deactivated_by", "deactivated_at", "last_used_at"})


def key_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class IdentityKeys(HoopCore):
    """API keys and AI agents: stored under ``state["keys"][kind][id]``, authenticating by the key's hash."""

    def add_identity_key(
        self,
        kind: str,
        name: str,
        groups: Iterable[str] = (),
        *,
        created_by: str = "",
        raw: str | None = None,
    ) -> str:
        """Create an API key (``kind="api_keys"``) or AI agent (``"ai_agents"``) in process; returns the raw
        key, which authenticates until the key is revoked."""
        raw = raw or ("hpk_" if kind == "api_keys" else "hak_") + secrets.token_hex(16)
        with self._lock:
            self._create_key(kind, name, list(groups), created_by, raw)
            self._save()
        return raw

    def identity_key(self, kind: str, name: str) -> dict[str, Any]:
        with self._lock:
            found = self._key(kind, name)
            if found is None:
                raise KeyError(name)
            return self._render_key(found)

    def _keys(self, kind: str) -> dict[str, dict[str, Any]]:
        table: dict[str, dict[str, dict[str, Any]]] = self._state.setdefault("keys", {})
        return table.setdefault(kind, {})

    def _create_key(
        self, kind: str, name: str, groups: list[str], created_by: str, raw: str
    ) -> dict[str, Any]:
        if any(k["name"] == name for k in self._keys(kind).values()):
            raise HTTPError(409, f"an {NOUNS[kind]} with this name already exists")
        record: dict[str, Any] = {
            "id": str(uuid.uuid5(ID_NAMESPACE, f"{kind}:{raw}")),
            "name": name,
            "groups": list(dict.fromkeys(groups)),
            "status": "active",
            "created_by": created_by,
            "created_at": ts(self._clock()),
            "deactivated_by": None,
            "deactivated_at": None,
            "last_used_at": None,
            "masked_key": raw[:8] + "*" * (len(raw) - 8),  # models/apikey.go MaskAPIKey
            "key_hash": key_hash(raw),
        }
        self._keys(kind)[record["id"]] = record
        return record

    def _key(self, kind: str, name_or_id: str) -> dict[str, Any] | None:
        keys = self._keys(kind)
        return keys.get(name_or_id) or next((k for k in keys.values() if k["name"] == name_or_id), None)

    def _key_caller(self, raw: str) -> Caller | None:
        """An active key's caller (its name as the email, as ``GetAPIKeyContext`` has it); marks its use."""
        digest = key_hash(raw)
        for kind in KINDS.values():
            for record in self._keys(kind).values():
                if record["key_hash"] == digest and record["status"] == "active":
                    record["last_used_at"] = ts(self._clock())
                    return Caller(
                        kind="apikey",
                        id=record["id"],
                        name=record["name"],
                        email=record["name"],
                        groups=tuple(record["groups"]),
                    )
        return None

    @staticmethod
    def _render_key(record: dict[str, Any]) -> dict[str, Any]:
        # openapi/types.go APIKeyResponse: deactivated_by/_at and last_used_at are `omitempty` pointers
        shown = {k: v for k, v in record.items() if k != "key_hash" and not (v is None and k in _OMITTED)}
        return shown | {"org_id": ORG_ID}

    # ------------------------------------------------------------------ the API (admin only)

    def key_routes(self) -> list[tuple[str, Handler, str]]:
        """(path, handler, method) of both kinds' routes, each handler told its kind."""
        routes: list[tuple[str, Handler, str]] = []
        for segment in KINDS:
            for suffix, handler, method in (
                ("", self._h_list_keys, "GET"),
                ("", self._h_create_key, "POST"),
                ("/{name_or_id}", self._h_get_key, "GET"),
                ("/{name_or_id}", self._h_update_key, "PUT"),
                ("/{name_or_id}", self._h_revoke_key, "DELETE"),
            ):
                routes.append((f"/api/{segment}{suffix}", _with_kind(handler, segment), method))
        return routes

    def _h_list_keys(self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        records = sorted(self._keys(KINDS[params["kind"]]).values(), key=lambda k: k["created_at"])
        return 200, [self._render_key(r) for r in records] or None  # apikeys.go List: a nil slice is null

    def _h_get_key(self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        record = self._key(KINDS[params["kind"]], params["name_or_id"])
        if record is None:
            raise HTTPError(404, "resource not found")
        return 200, self._render_key(record)

    def _h_create_key(self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get("name"), str) or not body["name"]:
            raise HTTPError(400, "Key: 'APIKeyCreateRequest.Name' Error:Field validation for 'Name' failed")
        groups = body.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise HTTPError(400, "json: cannot unmarshal groups")
        kind = KINDS[params["kind"]]
        raw = ("hpk_" if kind == "api_keys" else "hak_") + secrets.token_hex(16)
        record = self._create_key(kind, body["name"], groups, caller.email or caller.name, raw)
        self._save()
        return 201, self._render_key(record) | {"key": raw}

    def _h_update_key(self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        if not isinstance(body, dict):
            raise HTTPError(400, "invalid request body")
        kind = KINDS[params["kind"]]
        record = self._key(kind, params["name_or_id"])
        if record is None:
            raise HTTPError(404, "resource not found")
        groups = body.get("groups")
        if groups is not None:  # apikeys.go Update: nil groups keep the existing ones; [] clears them
            if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
                raise HTTPError(400, "json: cannot unmarshal groups")
            record["groups"] = list(dict.fromkeys(groups))
        name = body.get("name")
        if isinstance(name, str) and name and name != record["name"]:
            if any(k["name"] == name for k in self._keys(kind).values()):
                raise HTTPError(409, f"an {NOUNS[kind]} with this name already exists")
            record["name"] = name
        self._save()
        return 200, self._render_key(record)

    def _h_revoke_key(self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        record = self._key(KINDS[params["kind"]], params["name_or_id"])
        if record is None or record["status"] != "active":  # RevokeAPIKey updates active rows only
            raise HTTPError(404, "resource not found")
        record.update(
            status="revoked", deactivated_by=caller.email or caller.name, deactivated_at=ts(self._clock())
        )
        self._save()
        return 204, None


Handler = Callable[[Caller, dict[str, str], dict[str, str], Any], Any]


def _with_kind(handler: Handler, segment: str) -> Handler:
    def bound(caller: Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        return handler(caller, {**params, "kind": segment}, query, body)

    return bound

"""hoop's API keys and AI agents (``/api-keys``, ``/ai-agents``): listing them for a campaign, and removing
a group or revoking one when a campaign says so — each change read back.

A listing may be JSON ``null`` (hoop's handler appends to a nil slice when there is none). ``PUT`` sends
the groups only (a name left out is kept); ``DELETE`` is hoop's soft revoke, and revoking a key already
revoked answers 404, which is read as done once a read shows it revoked.
"""

from __future__ import annotations

from typing import Any, Literal

from integrations.gateway import GatewayIdentityKey, GatewayNotFoundError, GatewayTransientError
from integrations.hoop.client import HoopClient, seg
from integrations.hoop.records import parse_time

KeyKind = Literal["api_keys", "ai_agents"]
_PATHS: dict[str, str] = {"api_keys": "/api-keys", "ai_agents": "/ai-agents"}


def _key(kind: str, body: dict[str, Any]) -> GatewayIdentityKey:
    return GatewayIdentityKey(
        kind=kind,
        id=str(body.get("id") or ""),
        name=str(body["name"]),
        groups=[str(g) for g in body.get("groups") or []],
        status=str(body.get("status") or ""),
        created_by=str(body.get("created_by") or "") or None,
        last_used_at=parse_time(body.get("last_used_at")),
    )


class HoopIdentityKeys(HoopClient):
    async def list_identity_keys(self, kind: KeyKind) -> list[GatewayIdentityKey]:
        body = self._json(await self._request("GET", _PATHS[kind]))
        return [_key(kind, item) for item in body or []]

    async def get_identity_key(self, kind: KeyKind, name: str) -> GatewayIdentityKey:
        return _key(kind, self._object(await self._request("GET", f"{_PATHS[kind]}/{seg(name)}"), kind, name))

    async def set_identity_key_groups(
        self, kind: KeyKind, name: str, groups: list[str]
    ) -> GatewayIdentityKey:
        """Replace the key's groups, then read it back: the groups must be exactly these."""
        await self._request("PUT", f"{_PATHS[kind]}/{seg(name)}", json={"groups": groups})
        after = await self.get_identity_key(kind, name)
        if sorted(after.groups) != sorted(groups):
            raise GatewayTransientError(
                f"hoop {kind} {name}: groups read back as {after.groups}, not {groups}"
            )
        return after

    async def revoke_identity_key(self, kind: KeyKind, name: str) -> GatewayIdentityKey:
        """Revoke the key (hoop's soft delete), then read it back revoked."""
        try:
            await self._request("DELETE", f"{_PATHS[kind]}/{seg(name)}", ok=(204,))
        except GatewayNotFoundError:
            pass  # already revoked (hoop finds no active row): the read below tells
        after = await self.get_identity_key(kind, name)
        if after.status != "revoked":
            raise GatewayTransientError(f"hoop {kind} {name}: still {after.status!r} after the revoke")
        return after

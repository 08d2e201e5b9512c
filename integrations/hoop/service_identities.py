"""hoop's service accounts (``/serviceaccounts``) and machine identities (``/machineidentities``): listing
them for a campaign, and writing one back when a campaign removes a group or a connection — each write read
back.

Both ``PUT``s replace the whole resource, so a change is always read, modified and written:

- a service account's ``PUT /serviceaccounts/{subject}`` sets the status and *all* the groups (a group left
  out is removed) and needs ``subject`` and ``status`` in the body. hoop has no read of one service account,
  so the read-back is the listing (JSON ``null`` when there is none). Its answer echoes the request, so it
  proves nothing.
- a machine identity's ``PUT /machineidentities/{name}`` sets name, description, ``connection_names`` and
  ``attributes`` (what is left out is cleared — a ``null`` ``connection_names`` even fails after revoking
  every credential, so a list is always sent); a connection no longer named loses its credential unless one
  of the identity's attributes still links it. An unknown name answers 400, not 404: a refusal is checked
  against a read before it is reported.
"""

from __future__ import annotations

from typing import Any

from integrations.gateway import (
    GatewayMachineIdentity,
    GatewayNotFoundError,
    GatewayRefusedError,
    GatewayServiceAccount,
    GatewayTransientError,
)
from integrations.hoop.client import HoopClient, seg


def _account(body: dict[str, Any]) -> GatewayServiceAccount:
    return GatewayServiceAccount(
        id=str(body.get("id") or ""),
        subject=str(body["subject"]),
        name=str(body.get("name") or ""),
        status=str(body.get("status") or ""),
        groups=[str(g) for g in body.get("groups") or []],
    )


def _identity(body: dict[str, Any], linked: dict[str, list[str]]) -> GatewayMachineIdentity:
    attributes = [str(a) for a in body.get("attributes") or []]
    return GatewayMachineIdentity(
        id=str(body.get("id") or ""),
        name=str(body["name"]),
        description=str(body.get("description") or ""),
        connection_names=[str(c) for c in body.get("connection_names") or []],
        attributes=attributes,
        attribute_connections=sorted({c for a in attributes for c in linked.get(a, [])}),
    )


class HoopServiceIdentities(HoopClient):
    """The service-account and machine-identity calls of ``HoopGateway``."""

    async def list_service_accounts(self) -> list[GatewayServiceAccount]:
        body = self._json(await self._request("GET", "/serviceaccounts"))
        return [_account(item) for item in body or [] if isinstance(item, dict)]

    async def find_service_account(self, subject: str) -> GatewayServiceAccount | None:
        return next((a for a in await self.list_service_accounts() if a.subject == subject), None)

    async def put_service_account(self, account: GatewayServiceAccount) -> GatewayServiceAccount:
        """Write the account's status and groups (all of them), then read it back from the listing: both
        must be exactly these."""
        body = {
            "subject": account.subject,
            "name": account.name,
            "status": account.status,
            "groups": list(account.groups),
        }
        await self._request("PUT", f"/serviceaccounts/{seg(account.subject)}", json=body)
        after = await self.find_service_account(account.subject)
        if after is None:
            raise GatewayNotFoundError(f"hoop service account {account.subject}: gone after the update")
        if sorted(after.groups) != sorted(account.groups) or after.status != account.status:
            raise GatewayTransientError(
                f"hoop service account {account.subject}: read back as {after.status} with groups "
                f"{after.groups}, not {account.status} with {account.groups}"
            )
        return after

    async def _attribute_links(self) -> dict[str, list[str]]:
        """Attribute name → the connections it links (``GET /attributes``)."""
        return {
            str(a["name"]): [str(c) for c in a.get("connection_names") or []]
            for a in await self._paged("/attributes")
            if a.get("name")
        }

    async def list_machine_identities(self) -> list[GatewayMachineIdentity]:
        body = self._json(await self._request("GET", "/machineidentities"))
        items = [item for item in body or [] if isinstance(item, dict)]
        linked = await self._attribute_links() if any(i.get("attributes") for i in items) else {}
        return [_identity(item, linked) for item in items]

    async def get_machine_identity(self, name: str) -> GatewayMachineIdentity:
        body = self._object(
            await self._request("GET", f"/machineidentities/{seg(name)}"), "machine identity", name
        )
        linked = await self._attribute_links() if body.get("attributes") else {}
        return _identity(body, linked)

    async def put_machine_identity(self, identity: GatewayMachineIdentity) -> GatewayMachineIdentity:
        """Write the identity whole (name, description, connections, attributes), then read it back: its
        connections must be exactly these."""
        body = {
            "name": identity.name,
            "description": identity.description,
            "connection_names": list(identity.connection_names),
            "attributes": list(identity.attributes),
        }
        try:
            await self._request("PUT", f"/machineidentities/{seg(identity.name)}", json=body)
        except GatewayRefusedError:
            await self.get_machine_identity(identity.name)  # an unknown name is a 400: a 404 here says so
            raise
        after = await self.get_machine_identity(identity.name)
        if sorted(after.connection_names) != sorted(identity.connection_names):
            raise GatewayTransientError(
                f"hoop machine identity {identity.name}: bound to {after.connection_names} after the "
                f"update, not {identity.connection_names}"
            )
        return after

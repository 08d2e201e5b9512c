"""Removing standing access (a group membership) where it is really granted, effective now, read back.

For groups the identity provider manages, the membership is removed in the IdP over SCIM *and* in hoop:
hoop overwrites a user's groups from the IdP at every login, so removing it in hoop alone would come back
at the next login, and removing it in the IdP alone would hold only from that login on (days away while
the person's hoop token lives). For gateway-local groups, only hoop. hoop's ``PUT /users`` replaces the
whole user: read, modify, write, read back. Then the sessions the group enabled are killed: those the
person has open on connections they reached with the group and no longer reach without it (hoop's
access-control gate, ``domain.access``); sessions on connections still reachable (another group, admin)
stay open. Which source applies is configured per group (``group_sources``); campaigns call this for
revoke decisions. Ledger: ``gateway.sessions_killed`` when connections were lost, then
``standing_access.revoked`` with both sides' read-backs.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.gateway_people import (
    GatewayWriteNotVerified,
    KilledSession,
    UserGroupChange,
    connections_lost,
    kill_open_sessions,
    remove_user_group,
)
from domain.identity import PersonRef
from integrations.gateway import Gateway, GatewayError, GatewayTransientError
from integrations.scim import ScimDirectory, ScimError, ScimTransientError
from store import Store


class GroupSource(StrEnum):
    IDP = "idp"
    GATEWAY = "gateway"


class RevokeMembershipInput(BaseModel):
    person: PersonRef
    group: str
    source: GroupSource
    reason: str
    subject: str
    """What the revocation belongs to (a campaign item id), for the ledger and idempotency."""


class RevokeMembershipResult(BaseModel):
    source: GroupSource
    removed: bool
    """False when the person was a member nowhere any more (already removed): still verified."""
    removed_in_idp: bool | None = None
    """None for a gateway-local group (the IdP is not asked)."""
    removed_in_gateway: bool = False
    connections_lost: list[str] = Field(default_factory=list)
    """Connections the person had sessions open on and no longer reaches."""
    sessions_killed: list[KilledSession] = Field(default_factory=list)


class StandingAccessActivities:
    def __init__(self, store: Store, gateway: Gateway, directory: ScimDirectory | None) -> None:
        self._store = store
        self._gateway = gateway
        self._directory = directory

    @activity.defn(name="revoke_group_membership")
    async def revoke_membership(self, inp: RevokeMembershipInput) -> RevokeMembershipResult:
        removed_in_idp: bool | None = None
        if inp.source is GroupSource.IDP:
            removed_in_idp = await self._revoke_in_idp(inp)  # durable first: the next login agrees
        try:
            in_gateway = await remove_user_group(self._gateway, inp.person.email, inp.group)
            lost, killed = await self._kill_sessions_lost(inp, in_gateway)
        except GatewayTransientError as exc:
            delay = timedelta(seconds=exc.retry_after) if exc.retry_after else None
            kind = "NotVerified" if isinstance(exc, GatewayWriteNotVerified) else "GatewayTransient"
            raise ApplicationError(exc.message, type=kind, next_retry_delay=delay) from exc
        except GatewayError as exc:
            raise ApplicationError(exc.message, type="GatewayRefused", non_retryable=True) from exc
        idp_after = await self._read_back_idp(inp) if inp.source is GroupSource.IDP else None
        result = RevokeMembershipResult(
            source=inp.source,
            removed=bool(removed_in_idp) or in_gateway.removed,
            removed_in_idp=removed_in_idp,
            removed_in_gateway=in_gateway.removed,
            connections_lost=lost,
            sessions_killed=killed,
        )
        await asyncio.to_thread(
            self._store.append_ledger,
            kind="standing_access.revoked",
            subject=inp.subject,
            actor="grantflow",
            channel=inp.source.value,
            data={
                "person": inp.person.email,
                "group": inp.group,
                "removed": result.removed,
                "reason": inp.reason,
                "idp": idp_after,
                "gateway": in_gateway.model_dump(),
                "connections_lost": lost,
                "sessions_killed": [k.model_dump() for k in killed],
            },
            idempotency_key=f"{inp.subject}:revoke:{inp.person.id}:{inp.group}",
        )
        return result

    async def _kill_sessions_lost(
        self, inp: RevokeMembershipInput, in_gateway: UserGroupChange
    ) -> tuple[list[str], list[KilledSession]]:
        """Kill the person's open sessions on the connections the group alone let them reach."""
        if not in_gateway.in_gateway:
            return [], []  # never signed in to hoop: no sessions
        open_on = {
            s.connection
            for s in await self._gateway.list_sessions(user=inp.person.email, status="open")
            if s.user_email.lower() == inp.person.email.lower()
        }
        lost = await connections_lost(self._gateway, in_gateway.groups_after, inp.group, open_on)
        if not lost:
            return [], []
        kills = await kill_open_sessions(self._gateway, inp.person.email, on=lost.__contains__)
        if kills.open_after:
            raise GatewayWriteNotVerified(
                f"sessions {', '.join(kills.open_after)} of {inp.person.email} are still open after the kill"
            )
        await asyncio.to_thread(
            self._store.append_ledger,
            kind="gateway.sessions_killed",
            subject=inp.subject,
            actor="grantflow",
            channel="gateway",
            data={
                "person": inp.person.email,
                "group": inp.group,
                "connections_lost": lost,
                **kills.model_dump(),
            },
            idempotency_key=f"{inp.subject}:revoke-kill:{inp.person.id}:{inp.group}",
        )
        return lost, kills.killed

    def _scim(self, inp: RevokeMembershipInput) -> ScimDirectory:
        if self._directory is None:
            raise ApplicationError(
                f"group {inp.group} is managed by the identity provider but no SCIM provider is configured",
                type="NotConfigured",
                non_retryable=True,
            )
        return self._directory

    async def _group_id(self, inp: RevokeMembershipInput) -> str:
        group_id = await asyncio.to_thread(self._store.group_provider_id, inp.group)
        if group_id is None:
            raise ApplicationError(
                f"group {inp.group} is unknown to the identity provider (not seen by identity sync)",
                type="UnknownGroup",
                non_retryable=True,
            )
        return group_id

    async def _revoke_in_idp(self, inp: RevokeMembershipInput) -> bool:
        directory = self._scim(inp)
        group_id = await self._group_id(inp)
        try:
            group = await directory.get_group(group_id)
            if inp.person.id not in group.member_ids:
                return False
            await directory.remove_group_member(group_id, inp.person.id)  # reads back itself
        except ScimError as exc:
            raise _scim_failure(exc) from exc
        return True

    async def _read_back_idp(self, inp: RevokeMembershipInput) -> dict[str, object]:
        """The IdP's group as read at the end, so the ledger shows both sides after the change."""
        directory = self._scim(inp)
        group_id = await self._group_id(inp)
        try:
            group = await directory.get_group(group_id)
        except ScimError as exc:
            raise _scim_failure(exc) from exc
        if inp.person.id in group.member_ids:
            raise ApplicationError(
                f"the identity provider lists {inp.person.email} in {inp.group} again", type="NotVerified"
            )
        return {"group_id": group_id, "member_after": False, "members_after": len(group.member_ids)}


def _scim_failure(exc: ScimError) -> ApplicationError:
    if isinstance(exc, ScimTransientError):
        delay = timedelta(seconds=exc.retry_after) if exc.retry_after is not None else None
        return ApplicationError(str(exc), type="ScimTransient", next_retry_delay=delay)
    return ApplicationError(str(exc), type="ScimPermanent", non_retryable=True)

"""Removing standing access (a group membership) where it is really granted, then reading it back.

For groups the identity provider manages, the membership is removed in the IdP over SCIM: hoop
overwrites a user's groups from the IdP at every login, so removing it in hoop alone would not stick.
For gateway-local groups, hoop's ``PUT /users`` replaces the whole user: read, modify, write, read back.
Which applies is configured per group (``group_sources``); campaigns call this for revoke decisions.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.identity import PersonRef
from integrations.gateway import Gateway, GatewayError, GatewayNotFoundError, GatewayTransientError
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
    """False when the person was no longer a member (already removed): still verified."""


class StandingAccessActivities:
    def __init__(self, store: Store, gateway: Gateway, directory: ScimDirectory | None) -> None:
        self._store = store
        self._gateway = gateway
        self._directory = directory

    @activity.defn(name="revoke_group_membership")
    async def revoke_membership(self, inp: RevokeMembershipInput) -> RevokeMembershipResult:
        if inp.source is GroupSource.IDP:
            removed = await self._revoke_in_idp(inp)
        else:
            removed = await self._revoke_in_gateway(inp)
        await asyncio.to_thread(
            self._store.append_ledger,
            kind="standing_access.revoked",
            subject=inp.subject,
            actor="grantflow",
            channel=inp.source.value,
            data={"person": inp.person.email, "group": inp.group, "removed": removed, "reason": inp.reason},
            idempotency_key=f"{inp.subject}:revoke:{inp.person.id}:{inp.group}",
        )
        return RevokeMembershipResult(source=inp.source, removed=removed)

    async def _revoke_in_idp(self, inp: RevokeMembershipInput) -> bool:
        if self._directory is None:
            raise ApplicationError(
                f"group {inp.group} is managed by the identity provider but no SCIM provider is configured",
                type="NotConfigured",
                non_retryable=True,
            )
        group_id = await asyncio.to_thread(self._store.group_provider_id, inp.group)
        if group_id is None:
            raise ApplicationError(
                f"group {inp.group} is unknown to the identity provider (not seen by identity sync)",
                type="UnknownGroup",
                non_retryable=True,
            )
        try:
            group = await self._directory.get_group(group_id)
            if inp.person.id not in group.member_ids:
                return False
            await self._directory.remove_group_member(group_id, inp.person.id)  # reads back itself
        except ScimTransientError as exc:
            delay = timedelta(seconds=exc.retry_after) if exc.retry_after is not None else None
            raise ApplicationError(str(exc), type="ScimTransient", next_retry_delay=delay) from exc
        except ScimError as exc:
            raise ApplicationError(str(exc), type="ScimPermanent", non_retryable=True) from exc
        return True

    async def _revoke_in_gateway(self, inp: RevokeMembershipInput) -> bool:
        try:
            user = await self._gateway.get_user(inp.person.email)
            if inp.group not in user.groups:
                return False
            # PUT /users replaces the whole user: send back everything we read, minus the group.
            await self._gateway.put_user(
                user.model_copy(update={"groups": [g for g in user.groups if g != inp.group]})
            )
            after = await self._gateway.get_user(inp.person.email)
        except GatewayNotFoundError:
            return False
        except GatewayTransientError as exc:
            delay = timedelta(seconds=exc.retry_after) if exc.retry_after else None
            raise ApplicationError(exc.message, type="GatewayTransient", next_retry_delay=delay) from exc
        except GatewayError as exc:
            raise ApplicationError(exc.message, type="GatewayRefused", non_retryable=True) from exc
        if inp.group in after.groups:
            raise ApplicationError(
                f"hoop still lists {inp.person.email} in {inp.group} after the update", type="NotVerified"
            )
        return True

"""Making a change to a person effective in the gateway *now*: their hoop status, their live sessions.

hoop reads a user's status and groups from its own database on every connect (``user is not active`` is
refused) and takes the IdP's groups only at the next login, so a leaver or a revoked group must also be
written to hoop, and the sessions already open must be killed: neither a status change nor a group change
ends a running session. Shared by the identity sync (leavers, re-activations) and standing-access
revocation; these helpers write nothing to the ledger and know nothing of Temporal — the activities do.

Every write is read back. Each helper is idempotent: run again after an uncertain failure it finds the
work done and does not repeat it (but still reads back).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pydantic import BaseModel, Field

from domain.access import evaluate_access
from integrations.gateway import Gateway, GatewayNotFoundError, GatewaySession, GatewayTransientError


class GatewayWriteNotVerified(GatewayTransientError):
    """hoop accepted a write but reading it back shows it did not hold (retry)."""


class UserStatusChange(BaseModel):
    email: str
    in_gateway: bool
    """False: the person never signed in to hoop (no user there, nothing to change)."""
    status_before: str | None = None
    status_after: str | None = None
    """As read back after the write."""
    written: bool = False


class UserGroupChange(BaseModel):
    email: str
    in_gateway: bool
    removed: bool = False
    groups_after: list[str] = Field(default_factory=list)
    """As read back after the write."""
    status_after: str | None = None


class KilledSession(BaseModel):
    id: str
    connection: str


class SessionKills(BaseModel):
    killed: list[KilledSession] = Field(default_factory=list)
    open_after: list[str] = Field(default_factory=list)
    """Ids of the person's sessions still open on the targeted connections after the kills (read back)."""


async def set_user_status(
    gateway: Gateway, email: str, status: str, *, only_from: Iterable[str] | None = None
) -> UserStatusChange:
    """Set a hoop user's status by read-modify-write of the whole user (``PUT /users`` replaces every
    field), then read it back. ``only_from``: change it only when the current status is one of these
    (re-activation leaves an ``invited`` user alone)."""
    try:
        user = await gateway.get_user(email)
    except GatewayNotFoundError:
        return UserStatusChange(email=email, in_gateway=False)
    allowed = None if only_from is None else set(only_from)
    if user.status == status or (allowed is not None and user.status not in allowed):
        return UserStatusChange(
            email=email, in_gateway=True, status_before=user.status, status_after=user.status
        )
    await gateway.put_user(user.model_copy(update={"status": status}))
    after = await gateway.get_user(email)
    if after.status != status:
        raise GatewayWriteNotVerified(f"hoop reports {email} as {after.status} after setting {status}")
    if set(after.groups) != set(user.groups):
        raise GatewayWriteNotVerified(
            f"hoop changed {email}'s groups while setting the status: {user.groups} → {after.groups}"
        )
    return UserStatusChange(
        email=email, in_gateway=True, status_before=user.status, status_after=after.status, written=True
    )


async def remove_user_group(gateway: Gateway, email: str, group: str) -> UserGroupChange:
    """Remove ``group`` from a hoop user (read-modify-write of the whole user), then read it back."""
    try:
        user = await gateway.get_user(email)
    except GatewayNotFoundError:
        return UserGroupChange(email=email, in_gateway=False)
    removed = False
    if group in user.groups:
        await gateway.put_user(user.model_copy(update={"groups": [g for g in user.groups if g != group]}))
        removed = True
    after = await gateway.get_user(email)
    if group in after.groups:
        raise GatewayWriteNotVerified(f"hoop still lists {email} in {group} after the update")
    if after.status != user.status:
        raise GatewayWriteNotVerified(
            f"hoop changed {email}'s status to {after.status} while removing {group}"
        )
    return UserGroupChange(
        email=email, in_gateway=True, removed=removed, groups_after=after.groups, status_after=after.status
    )


async def kill_open_sessions(
    gateway: Gateway, email: str, *, on: Callable[[str], bool] | None = None
) -> SessionKills:
    """Kill every open session of the person (on the connections ``on`` selects; all without it), then
    list again and report what is still open there. Call it *after* the change that stops new sessions
    (status inactive, group removed), so nothing opens behind the listing."""

    def targeted(session: GatewaySession) -> bool:
        # hoop's user filter is a LIKE: keep the person's own rows only.
        return session.user_email.lower() == email.lower() and (on is None or on(session.connection))

    sessions = [s for s in await gateway.list_sessions(user=email, status="open") if targeted(s)]
    for session in sessions:
        await gateway.kill_session(session.id)  # one already done counts as killed
    still_open = [s.id for s in await gateway.list_sessions(user=email, status="open") if targeted(s)]
    return SessionKills(
        killed=[KilledSession(id=s.id, connection=s.connection) for s in sessions], open_after=still_open
    )


async def connections_lost(
    gateway: Gateway, groups_after: Iterable[str], group: str, connections: Iterable[str]
) -> list[str]:
    """Of ``connections``, those a person with ``groups_after`` plus ``group`` reaches and without ``group``
    does not (hoop's access-control gate: plugin off, admin/auditor bypass, direct and attribute links).
    Computed from the groups *after* the removal, so a retry after the hoop write still finds them."""
    after = set(groups_after) - {group}
    lost: list[str] = []
    for connection in sorted(set(connections)):
        try:
            rules = await gateway.connection_access_rules(connection)
        except GatewayNotFoundError:
            continue  # the connection is gone: nothing reaches it
        if evaluate_access(after | {group}, rules).eligible and not evaluate_access(after, rules).eligible:
            lost.append(connection)
    return lost

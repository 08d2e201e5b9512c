"""Revoking standing access (a group membership) effective now, against scim2-server and the hoop stand-in
over HTTP: removed in the IdP and in hoop, sessions on connections lost killed, sessions on connections
still reachable left open, both sides read back and in the ledger."""

from __future__ import annotations

import uuid

import pytest

from activities.identity_sync import SyncInput, SyncReport
from activities.standing_access import GroupSource, RevokeMembershipInput, StandingAccessActivities
from sandbox.hoop import HoopAccessDenied
from tests.stack import Stack
from workflows.identity_sync import IdentitySyncWorkflow


async def sync(stack: Stack) -> SyncReport:
    return await stack.env.client.execute_workflow(
        IdentitySyncWorkflow.run,
        SyncInput(sync_id=""),
        id=f"sync-{uuid.uuid4().hex[:8]}",
        task_queue=stack.task_queue,
    )


def revoke(stack: Stack, email: str, group: str, source: GroupSource, subject: str) -> RevokeMembershipInput:
    return RevokeMembershipInput(
        person=stack.ref(email), group=group, source=source, reason="campaign: revoke", subject=subject
    )


async def test_revoking_an_idp_group_removes_it_in_both_and_kills_only_the_sessions_it_enabled(
    scim_stack: Stack,
) -> None:
    stack = scim_stack
    assert stack.scim is not None and stack.scim_server is not None
    await sync(stack)
    stack.hoop.add_connection("owners-db", access_groups=["db-owners"])  # only through db-owners
    stack.hoop.add_connection("shared-db", access_groups=["db-owners", "engineering"])  # also engineering
    lost = await stack.connect("bob@example.com", "owners-db")
    kept = await stack.connect("bob@example.com", "shared-db")
    carols = await stack.connect("carol@example.com", "owners-db")
    before = stack.hoop.user("bob@example.com")
    standing = StandingAccessActivities(stack.store, stack.gateway, stack.scim)

    result = await standing.revoke_membership(
        revoke(stack, "bob@example.com", "db-owners", GroupSource.IDP, "c-9")
    )

    assert result.removed and result.removed_in_idp and result.removed_in_gateway
    assert result.connections_lost == ["owners-db"]
    assert [(k.id, k.connection) for k in result.sessions_killed] == [(lost, "owners-db")]
    assert stack.hoop.session(lost)["status"] == "done"
    assert stack.hoop.session(kept)["status"] == "open"  # still reachable through engineering
    assert stack.hoop.session(carols)["status"] == "open"  # someone else's
    group = await stack.scim.get_group(stack.scim_server.group_id("db-owners"))
    bob = stack.ref("bob@example.com")
    assert bob.id not in group.member_ids  # the IdP: the next login will not bring it back
    after = stack.hoop.user("bob@example.com")
    assert after == {**before, "groups": [g for g in before["groups"] if g != "db-owners"]}  # hoop: now
    with pytest.raises(HoopAccessDenied):
        await stack.connect("bob@example.com", "owners-db")
    assert await stack.connect("bob@example.com", "shared-db")

    entries = stack.store.ledger_entries(subject="c-9")
    assert [e.kind for e in entries] == ["gateway.sessions_killed", "standing_access.revoked"]
    killed, revoked = (e.data for e in entries)
    assert killed["connections_lost"] == ["owners-db"] and killed["open_after"] == []
    assert revoked["idp"]["member_after"] is False  # read back from the IdP
    assert "db-owners" not in revoked["gateway"]["groups_after"]  # read back from hoop
    assert revoked["sessions_killed"] == [{"id": lost, "connection": "owners-db"}]

    again = await standing.revoke_membership(
        revoke(stack, "bob@example.com", "db-owners", GroupSource.IDP, "c-9")
    )
    assert not again.removed and again.sessions_killed == []  # idempotent, still verified


async def test_an_admin_keeps_every_connection_so_no_session_is_killed(scim_stack: Stack) -> None:
    stack = scim_stack
    await sync(stack)
    stack.hoop.add_connection("owners-db", access_groups=["db-owners"])
    dan = stack.hoop.user("dan@example.com")
    stack.hoop.add_user("dan@example.com", dan["name"], groups=[*dan["groups"], "admin"])
    session = await stack.connect("dan@example.com", "owners-db")
    standing = StandingAccessActivities(stack.store, stack.gateway, stack.scim)
    result = await standing.revoke_membership(
        revoke(stack, "dan@example.com", "db-owners", GroupSource.IDP, "c-10")
    )
    assert result.removed_in_gateway and result.connections_lost == [] and result.sessions_killed == []
    assert stack.hoop.session(session)["status"] == "open"
    assert [e.kind for e in stack.store.ledger_entries(subject="c-10")] == ["standing_access.revoked"]


async def test_revoking_a_gateway_local_group_kills_its_sessions_without_asking_the_idp(
    time_stack: Stack,
) -> None:
    stack = time_stack
    stack.hoop.add_connection("lab-db", access_groups=["lab"])
    judy = stack.hoop.user("judy@example.com")
    stack.hoop.add_user("judy@example.com", judy["name"], groups=[*judy["groups"], "lab"])
    session = await stack.connect("judy@example.com", "lab-db")
    standing = StandingAccessActivities(stack.store, stack.gateway, None)
    result = await standing.revoke_membership(
        revoke(stack, "judy@example.com", "lab", GroupSource.GATEWAY, "c-11")
    )
    assert result.removed_in_idp is None and result.removed_in_gateway
    assert [k.id for k in result.sessions_killed] == [session]
    assert stack.hoop.session(session)["status"] == "done"
    assert stack.hoop.user("judy@example.com")["groups"] == judy["groups"]


async def test_someone_who_never_signed_in_to_hoop_loses_the_idp_group_only(scim_stack: Stack) -> None:
    stack = scim_stack
    assert stack.scim is not None and stack.scim_server is not None
    await sync(stack)
    stack.scim_server.add_to_group("db-owners", "mallory@example.com")
    await sync(stack)
    standing = StandingAccessActivities(stack.store, stack.gateway, stack.scim)
    result = await standing.revoke_membership(
        revoke(stack, "mallory@example.com", "db-owners", GroupSource.IDP, "c-12")
    )
    assert result.removed_in_idp and not result.removed_in_gateway
    group = await stack.scim.get_group(stack.scim_server.group_id("db-owners"))
    assert stack.ref("mallory@example.com").id not in group.member_ids
    assert stack.store.ledger_entries(subject="c-12")[-1].data["gateway"]["in_gateway"] is False

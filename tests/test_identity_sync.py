"""Identity sync against scim2-server over HTTP: joiners, movers, leavers, groups, safety, and the leaver
loop end to end (grant revoked and session killed, pending request cancelled, ledger entries)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import ScheduleActionStartWorkflow, WorkflowFailureError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.identity_sync import IdentitySyncActivities, SyncInput, SyncReport
from activities.standing_access import GroupSource, RevokeMembershipInput, StandingAccessActivities
from domain.directory_sync import REPORT_DETAIL_LIMIT
from domain.requests import DecisionInput, EndReason, RequestStatus, Verdict
from integrations.scim import DirectoryUser, ScimDirectory, ScimError
from sandbox.hoop import HoopAccessDenied
from sandbox.scim import ScimDirectoryServer
from store import Store
from tests.stack import LEDGER_KEY, SCIM_TOKEN, Stack
from workflows.access_request import AccessRequestWorkflow
from workflows.identity_sync import IdentitySyncWorkflow


async def sync(stack: Stack, *, full: bool = False, dry_run: bool = False) -> SyncReport:
    return await stack.env.client.execute_workflow(
        IdentitySyncWorkflow.run,
        SyncInput(sync_id="", full=full, dry_run=dry_run),
        id=f"sync-{uuid.uuid4().hex[:8]}",
        task_queue=stack.task_queue,
    )


async def in_activity(fn: Callable[[SyncInput], Awaitable[SyncReport]], inp: SyncInput) -> SyncReport:
    """Run the sync's body as an activity would (it heartbeats), outside any workflow."""
    return await ActivityEnvironment().run(fn, inp)


def server(stack: Stack) -> ScimDirectoryServer:
    assert stack.scim_server is not None
    return stack.scim_server


async def test_first_full_sync_brings_everyone_and_their_groups(scim_stack: Stack) -> None:
    stack = scim_stack
    report = await sync(stack)
    assert report.applied and report.mode == "full"
    assert report.counts["joiners"] == len(stack.organisation.people) == 43
    alice = stack.store.find_person_by_email("alice@example.com")
    assert alice is not None and alice.id == server(stack).user_id("alice@example.com")  # the provider's id
    owners = {p.email for p in stack.store.group_members("db-owners")}
    assert owners == {"bob@example.com", "carol@example.com", "dan@example.com"}
    bob = stack.store.find_person_by_email("bob@example.com")
    ken = stack.store.find_person_by_email("ken@example.com")
    assert bob is not None and ken is not None and bob.manager_id == ken.id
    # Nothing changed since: a second sync is incremental and finds nothing.
    again = await sync(stack)
    assert again.mode == "incremental" and sum(again.counts.values()) == 0


async def test_leaver_loses_grant_session_and_pending_request_within_seconds(scim_stack: Stack) -> None:
    stack = scim_stack
    await sync(stack)
    active = await stack.start_request("alice@example.com", "pg-prod", "admin", timedelta(hours=4))
    await stack.wait_for(active, lambda v: v.approvers_resolved)
    for email in ("bob@example.com", "carol@example.com"):
        await active.execute_update(
            AccessRequestWorkflow.decide, DecisionInput(actor=stack.actor(email), verdict=Verdict.APPROVE)
        )
    await stack.wait_for(active, lambda v: v.status is RequestStatus.ACTIVE)
    session = await stack.connect("alice@example.com", "pg-prod-admin")
    pending = await stack.start_request("alice@example.com", "warehouse", "read", timedelta(hours=1))
    await stack.wait_for(pending, lambda v: v.approvers_resolved)
    # Store views must be current for the sync to find the requests.
    await stack.wait_for(active, lambda v: stack.store.get_request(v.id).status is RequestStatus.ACTIVE)  # type: ignore[union-attr]

    server(stack).deactivate("alice@example.com")
    loop = asyncio.get_running_loop()
    started = loop.time()
    report = await sync(stack)
    assert [(leaver.person.email, leaver.reason.value) for leaver in report.leavers] == [
        ("alice@example.com", "deactivated")
    ]
    ended = await active.result()
    cancelled = await pending.result()
    assert loop.time() - started < 5
    assert ended.status is RequestStatus.ENDED and ended.end_reason is EndReason.LEAVER
    assert stack.hoop.review(ended.grants[0].review_id)["status"] == "REVOKED"
    assert stack.hoop.session(session)["status"] == "done"
    assert cancelled.status is RequestStatus.CANCELLED
    for request_id, kind in ((ended.id, "request.ended"), (cancelled.id, "request.cancelled")):
        assert stack.store.ledger_entries(subject=request_id)[-1].kind == kind
    left = [e for e in stack.store.ledger_entries() if e.kind == "person.left"]
    assert [e.data["email"] for e in left] == ["alice@example.com"]
    alice = stack.store.find_person_by_email("alice@example.com")
    assert alice is not None and not alice.active


async def test_a_leaver_is_inactive_in_hoop_with_every_session_killed_and_active_again_when_back(
    scim_stack: Stack,
) -> None:
    stack = scim_stack
    await sync(stack)
    for name in ("team-db", "team-shell"):  # standing access for engineering, no review
        stack.hoop.add_connection(name, access_groups=["engineering"])
    alice_sessions = [
        await stack.connect("alice@example.com", c) for c in ("team-db", "team-shell", "team-db")
    ]
    bob_session = await stack.connect("bob@example.com", "team-db")
    before = stack.hoop.user("alice@example.com")

    server(stack).deactivate("alice@example.com")
    server(stack).deactivate("mallory@example.com")  # never signed in to hoop: nothing there to change
    report = await sync(stack)

    assert report.gateway is not None and report.gateway_error is None
    assert report.gateway.deactivated == ["alice@example.com"]
    assert report.gateway.never_signed_in == ["mallory@example.com"]
    assert sorted(report.gateway.sessions_killed["alice@example.com"]) == sorted(alice_sessions)
    after = stack.hoop.user("alice@example.com")
    assert after == {**before, "status": "inactive"}  # the whole user written back, only the status changed
    assert [stack.hoop.session(s)["status"] for s in alice_sessions] == ["done"] * 3
    assert stack.hoop.session(bob_session)["status"] == "open"  # someone else's session is left alone
    with pytest.raises(HoopAccessDenied, match="user is not active"):
        await stack.connect("alice@example.com", "team-db")

    alice = stack.ref("alice@example.com")
    entries = {e.kind: e for e in stack.store.ledger_entries(subject=alice.id)}
    assert {"person.left", "gateway.user_deactivated", "gateway.sessions_killed"} <= set(entries)
    deactivated = entries["gateway.user_deactivated"].data
    assert deactivated["written"] and deactivated["status_before"] == "active"
    assert deactivated["status_after"] == "inactive"  # read back
    killed = entries["gateway.sessions_killed"].data
    assert sorted(k["id"] for k in killed["killed"]) == sorted(alice_sessions) and killed["open_after"] == []
    mallory = stack.ref("mallory@example.com")
    absent = [
        e for e in stack.store.ledger_entries(subject=mallory.id) if e.kind == "gateway.user_deactivated"
    ]
    assert [e.data["in_gateway"] for e in absent] == [False]

    server(stack).set_active("alice@example.com", True)
    back = await sync(stack)
    assert [p.email for p in back.reactivated] == ["alice@example.com"]
    assert back.gateway is not None and back.gateway.reactivated == ["alice@example.com"]
    assert stack.hoop.user("alice@example.com") == before
    assert await stack.connect("alice@example.com", "team-db")
    reactivated = [
        e for e in stack.store.ledger_entries(subject=alice.id) if e.kind == "gateway.user_reactivated"
    ]
    assert [(e.data["written"], e.data["status_after"]) for e in reactivated] == [(True, "active")]


def _hoop_writes(stack: Stack) -> list[str]:
    return [f"{c.method} {c.path}" for c in stack.hoop.calls if c.method in ("PUT", "POST")]


async def test_nothing_is_written_to_hoop_by_a_dry_run_or_a_sync_the_guard_stopped(scim_stack: Stack) -> None:
    stack = scim_stack
    await sync(stack)
    stack.hoop.add_connection("team-db", access_groups=["engineering"])
    ivan = await stack.connect("ivan@example.com", "team-db")
    server(stack).deactivate("ivan@example.com")
    stack.hoop.clear_calls()
    dry = await sync(stack, dry_run=True)
    assert [leaver.person.email for leaver in dry.leavers] == ["ivan@example.com"] and dry.gateway is None
    assert _hoop_writes(stack) == []
    for email in ["judy", "gus", "hana", "ida", "jon"]:
        server(stack).deactivate(f"{email}@example.com")  # 6 of everyone: more than 10 %
    blocked = await sync(stack)
    assert not blocked.applied and blocked.gateway is None
    assert _hoop_writes(stack) == [] and stack.hoop.calls == []  # not even read
    assert stack.hoop.user("ivan@example.com")["status"] == "active"
    assert stack.hoop.session(ivan)["status"] == "open"
    # Without the guard's objection the same leaver is applied everywhere.
    for email in ["judy", "gus", "hana", "ida", "jon"]:
        server(stack).set_active(f"{email}@example.com", True)
    applied = await sync(stack)
    assert applied.gateway is not None and applied.gateway.deactivated == ["ivan@example.com"]
    assert stack.hoop.session(ivan)["status"] == "done"


async def test_a_gateway_refusing_the_leaver_is_escalated_and_requests_are_still_told(
    scim_stack: Stack,
) -> None:
    stack = scim_stack
    await sync(stack)
    pending = await stack.start_request("erin@example.com", "pg-prod", "read", timedelta(hours=1))
    await stack.wait_for(pending, lambda v: v.approvers_resolved)
    stack.hoop.fail_next("/users/", status=403, method="PUT")
    server(stack).deactivate("erin@example.com")
    report = await sync(stack)
    assert report.applied and report.gateway is None and report.gateway_error is not None
    assert (await pending.result()).status is RequestStatus.CANCELLED
    escalated = [
        e for e in stack.store.ledger_entries(subject="directory") if e.kind == "gateway.sync_escalated"
    ]
    assert len(escalated) == 1 and escalated[0].data["leavers"] == ["erin@example.com"]
    assert stack.hoop.user("erin@example.com")["status"] == "active"  # hoop refused: said so, not hidden


async def test_deletion_is_seen_by_a_full_sync_only(scim_stack: Stack) -> None:
    stack = scim_stack
    await sync(stack)
    server(stack).delete_user("judy@example.com")
    incremental = await sync(stack)
    assert incremental.mode == "incremental" and incremental.leavers == []
    full = await sync(stack, full=True)
    assert [(leaver.person.email, leaver.reason.value) for leaver in full.leavers] == [
        ("judy@example.com", "deleted")
    ]


async def test_movers_and_group_changes_and_joiners_who_may_approve_at_once(scim_stack: Stack) -> None:
    stack = scim_stack
    await sync(stack)
    request = await stack.start_request("alice@example.com", "pg-prod", "read", timedelta(hours=1))
    await stack.wait_for(request, lambda v: v.approvers_resolved)
    server(stack).set_manager("alice@example.com", "carol@example.com")
    server(stack).add_to_group("db-owners", "erin@example.com")
    report = await sync(stack)
    assert [m.person.email for m in report.movers] == ["alice@example.com"]
    assert [(g.group, len(g.added)) for g in report.group_changes] == [("db-owners", 1)]
    erin = stack.actor("erin@example.com")
    await stack.wait_for(request, lambda v: erin.person.id in {p.id for p in v.eligible_approvers})
    await request.execute_update(
        AccessRequestWorkflow.decide, DecisionInput(actor=erin, verdict=Verdict.APPROVE)
    )
    await stack.wait_for(request, lambda v: v.status is RequestStatus.ACTIVE)
    carol = stack.store.find_person_by_email("carol@example.com")
    alice = stack.store.find_person_by_email("alice@example.com")
    assert alice is not None and carol is not None and alice.manager_id == carol.id


async def test_mass_deactivation_stops_the_sync_and_applies_nothing(scim_stack: Stack) -> None:
    stack = scim_stack
    await sync(stack)
    for email in ["ivan", "judy", "gus", "hana", "ida", "jon"]:
        server(stack).deactivate(f"{email}@example.com")  # 6 of 43: more than 10 %
    dry = await sync(stack, dry_run=True)
    assert dry.counts["leavers"] == 6 and not dry.applied
    report = await sync(stack)
    assert not report.applied and report.blocked_reason is not None
    assert "6 of 43" in report.blocked_reason
    assert all(p.active for p in stack.store.list_people())
    assert [e.kind for e in stack.store.ledger_entries(subject="directory")][-1] == "directory.sync_blocked"


async def test_emptying_a_group_stops_the_sync(scim_stack: Stack) -> None:
    stack = scim_stack
    await sync(stack)
    for email in ("trent", "uma"):
        server(stack).remove_from_group("security-oncall", f"{email}@example.com")
    report = await sync(stack)
    assert not report.applied and "security-oncall" in (report.blocked_reason or "")
    assert {p.email for p in stack.store.group_members("security-oncall")} == {
        "trent@example.com",
        "uma@example.com",
    }


async def test_a_provider_failing_mid_sync_leaves_the_previous_state_intact(scim_stack: Stack) -> None:
    stack = scim_stack
    await sync(stack)
    before = stack.store.list_people()
    server(stack).deactivate("erin@example.com")
    activities = IdentitySyncActivities(stack.store, _small_pages(stack))
    server(stack).fail_page(2, status=500)
    with pytest.raises(ScimError):
        await in_activity(activities._sync, SyncInput(sync_id="s-fail", full=True))
    server(stack).drop_from_next_page(3)
    with pytest.raises(ScimError):
        await in_activity(activities._sync, SyncInput(sync_id="s-short", full=True))
    assert stack.store.list_people() == before  # nothing half-applied
    report = await in_activity(activities._sync, SyncInput(sync_id="s-ok", full=True))
    assert report.applied and [leaver.person.email for leaver in report.leavers] == ["erin@example.com"]


def _small_pages(stack: Stack) -> ScimDirectory:
    directory = ScimDirectory(server(stack).base_url, SCIM_TOKEN)
    original = directory.list_users

    async def paged(**kwargs: Any) -> list[DirectoryUser]:
        return await original(**{**kwargs, "page_size": 10})

    directory.list_users = paged  # type: ignore[method-assign]
    return directory


def empty_store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'empty.db'}", ledger_key=LEDGER_KEY, anchor_path=None)
    store.migrate()
    return store


async def test_a_provider_without_filters_gets_full_syncs(time_stack: Stack, tmp_path: Path) -> None:
    stack = time_stack
    store = empty_store(tmp_path)
    no_filters = ScimDirectoryServer(bearer_token=SCIM_TOKEN, filter_supported=False)
    directory = ScimDirectory(no_filters.start(), SCIM_TOKEN)
    try:
        no_filters.seed_organisation(stack.organisation)
        assert not (await directory.capabilities()).filter_supported
        activities = IdentitySyncActivities(store, directory)
        first = await in_activity(activities._sync, SyncInput(sync_id="nf-1"))
        second = await in_activity(activities._sync, SyncInput(sync_id="nf-2"))
        assert first.mode == second.mode == "full"  # decided from ServiceProviderConfig, not assumed
        assert second.applied and sum(second.counts.values()) == 0
    finally:
        await directory.aclose()
        no_filters.stop()
        store.close()


async def test_syncing_2500_people(tmp_path: Path) -> None:
    store = empty_store(tmp_path)
    big = ScimDirectoryServer(bearer_token=SCIM_TOKEN)
    directory = ScimDirectory(big.start(), SCIM_TOKEN)
    try:
        big.add_users(2500, prefix="user", domain="bulk.example.com")
        activities = IdentitySyncActivities(store, directory)
        report = await in_activity(activities._sync, SyncInput(sync_id="bulk", full=True))
        assert report.users_listed == 2500 and report.counts["joiners"] == 2500, report.counts
        assert report.applied, report.blocked_reason
        assert len(store.list_people()) == 2500
        # What travels back through Temporal names at most 200 joiners; the counts and the ledger have all.
        assert len(report.joiners) == REPORT_DETAIL_LIMIT and report.details_cut_short
        assert len(report.model_dump_json()) < 64 * 1024
        synced = store.ledger_entries(subject="directory")[-1]
        assert synced.kind == "directory.synced" and len(synced.data["joiners"]) == 2500
        big.deactivate("user00007@bulk.example.com")
        again = await in_activity(activities._sync, SyncInput(sync_id="bulk-2"))
        assert again.mode == "incremental"  # (within the watermark overlap, recent users are listed again)
        assert [leaver.person.email for leaver in again.leavers] == ["user00007@bulk.example.com"]
    finally:
        await directory.aclose()
        big.stop()
        store.close()


async def test_sync_without_a_provider_fails_clearly(time_stack: Stack) -> None:
    with pytest.raises(WorkflowFailureError) as info:
        await sync(time_stack)
    assert "no SCIM identity provider is configured" in str(info.value.cause.__cause__ or info.value.cause)


async def test_revoking_an_idp_managed_membership_in_the_idp_and_reading_it_back(scim_stack: Stack) -> None:
    stack = scim_stack
    await sync(stack)
    standing = StandingAccessActivities(stack.store, stack.gateway, stack.scim)
    bob = stack.ref("bob@example.com")
    result = await standing.revoke_membership(
        RevokeMembershipInput(
            person=bob, group="db-owners", source=GroupSource.IDP, reason="review", subject="c-1"
        )
    )
    assert result.removed
    assert stack.scim is not None
    group = await stack.scim.get_group(server(stack).group_id("db-owners"))
    assert bob.id not in group.member_ids
    again = await standing.revoke_membership(
        RevokeMembershipInput(
            person=bob, group="db-owners", source=GroupSource.IDP, reason="review", subject="c-1"
        )
    )
    assert not again.removed  # idempotent
    assert [e.kind for e in stack.store.ledger_entries(subject="c-1")] == ["standing_access.revoked"]


async def test_revoking_a_gateway_local_membership_in_hoop(time_stack: Stack) -> None:
    stack = time_stack
    standing = StandingAccessActivities(stack.store, stack.gateway, None)
    judy = stack.ref("judy@example.com")
    before = stack.hoop.user("judy@example.com")
    assert "analytics" in before["groups"]
    result = await standing.revoke_membership(
        RevokeMembershipInput(
            person=judy, group="analytics", source=GroupSource.GATEWAY, reason="r", subject="c-2"
        )
    )
    after = stack.hoop.user("judy@example.com")
    assert result.removed and "analytics" not in after["groups"] and "engineering" in after["groups"]
    assert after["name"] == before["name"] and after["status"] == before["status"]  # the rest kept


async def test_sync_schedules_are_created_once_and_follow_the_settings(dev_env: WorkflowEnvironment) -> None:
    from configuration.settings import Settings
    from worker import SYNC_SCHEDULES, ensure_sync_schedules

    client = dev_env.client
    try:
        await ensure_sync_schedules(client, Settings(sync_interval=timedelta(minutes=15)))
        await ensure_sync_schedules(client, Settings(sync_interval=timedelta(minutes=5)))  # idempotent update
        incremental = await client.get_schedule_handle("identity-sync-incremental").describe()
        full = await client.get_schedule_handle("identity-sync-full").describe()
        assert incremental.schedule.spec.intervals[0].every == timedelta(minutes=5)
        assert full.schedule.spec.intervals[0].every == timedelta(hours=24)
        action = full.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow) and action.workflow == "IdentitySyncWorkflow"
    finally:
        for schedule_id in SYNC_SCHEDULES:
            await client.get_schedule_handle(schedule_id).delete()

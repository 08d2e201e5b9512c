"""AccessRequestWorkflow on the time-skipping server, with the real activities, a SQLite store and the
hoop stand-in over HTTP (its clock is Temporal's). Every outcome of a request is driven here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from activities.gateway import KILL_ROUNDS
from domain.policy import BreakGlass
from domain.requests import (
    DecisionInput,
    EndInput,
    EndReason,
    ExtendInput,
    GatewayTimings,
    RequestStatus,
    RequestView,
    RetroReview,
    Verdict,
)
from grantflow.commands.requests import describe
from tests.stack import Stack
from workflows.access_request import AccessRequestWorkflow

Handle = WorkflowHandle[AccessRequestWorkflow, RequestView]


async def approve(stack: Stack, handle: Handle, email: str, reason: str = "ok") -> RequestView:
    return await handle.execute_update(
        AccessRequestWorkflow.decide,
        DecisionInput(actor=stack.actor(email), verdict=Verdict.APPROVE, reason=reason),
    )


async def deny(stack: Stack, handle: Handle, email: str, reason: str = "no") -> RequestView:
    return await handle.execute_update(
        AccessRequestWorkflow.decide,
        DecisionInput(actor=stack.actor(email), verdict=Verdict.DENY, reason=reason),
    )


async def refused(coro: object) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await coro  # type: ignore[misc]
    return str(info.value.cause)


async def ready(stack: Stack, handle: Handle) -> RequestView:
    """Wait until approvers are resolved (set-up is a few activities; no Temporal time passes)."""
    return await stack.wait_for(
        handle, lambda v: v.approvers_resolved or v.status is not RequestStatus.PENDING
    )


async def active(stack: Stack, handle: Handle) -> RequestView:
    return await stack.wait_for(handle, lambda v: v.status is RequestStatus.ACTIVE)


async def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (real time) for something an activity does after the state a test waited for."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def ledger_kinds(stack: Stack, request_id: str) -> list[str]:
    return [e.kind for e in stack.store.ledger_entries(subject=request_id)]


async def test_approved_by_quorum_then_ended_at_expiry_with_sessions_killed(time_stack: Stack) -> None:
    stack = time_stack
    handle = await stack.start_request("alice@example.com", "pg-prod", "admin", timedelta(hours=2))
    view = await ready(stack, handle)
    assert {p.email for p in view.eligible_approvers} == {
        "bob@example.com",
        "carol@example.com",
        "dan@example.com",
    }
    await eventually(lambda: len([m for m in stack.notifier.messages if m.event == "request_created"]) == 3)
    assert [m.recipient.email for m in stack.notifier.messages if m.event == "request_created"] == [
        "bob@example.com",
        "carol@example.com",
        "dan@example.com",
    ]
    assert all(
        m.link and "/review/" in m.link for m in stack.notifier.messages if m.event == "request_created"
    )

    view = await approve(stack, handle, "bob@example.com")
    assert view.status is RequestStatus.PENDING  # one of two
    await approve(stack, handle, "carol@example.com")
    view = await active(stack, handle)
    assert view.expires_at is not None and view.granted_at is not None
    grant = view.grants[0]
    review = stack.hoop.review(grant.review_id)
    assert review["status"] == "APPROVED" and review["type"] == "jit"
    # The expiry is the gateway's revoke_at, read back.
    assert view.expires_at == grant.revoke_at
    assert abs((view.expires_at - view.granted_at) - timedelta(hours=2)) < timedelta(seconds=5)

    # An hour in, alice connects: hoop gives the session its own deadline, connect time + 2 h, an hour
    # past the grant's end. Only grantflow's kill ends it on time.
    await stack.env.sleep(timedelta(hours=1))
    session_id = await stack.connect("alice@example.com", "pg-prod-admin")
    assert stack.hoop.session(session_id)["review"] is None  # hoop links it to no grant
    # A session bob holds through other means on another connection is left alone.
    standing = await stack.connect("bob@example.com", "pg-prod-ro")

    result = await handle.result()  # time skips to the expiry
    assert result.status is RequestStatus.ENDED and result.end_reason is EndReason.EXPIRED
    assert stack.hoop.review(grant.review_id)["status"] == "REVOKED"
    killed = stack.hoop.session(session_id)
    assert killed["status"] == "done"
    assert datetime.fromisoformat(killed["end_date"]) < view.expires_at + timedelta(minutes=1)  # killed
    assert stack.hoop.session(standing)["status"] == "open"
    assert result.sessions_used == result.sessions_killed == [session_id] and result.sessions_left_open == []
    stored = stack.store.get_request(view.id)
    assert stored is not None and stored.status is RequestStatus.ENDED
    kinds = ledger_kinds(stack, view.id)
    # hoop's gates are checked when the request is made and again before the grant is written.
    assert kinds[:3] == ["request.created", "access.checked", "approvers.resolved"]
    assert kinds.count("decision.approved") == 2
    assert kinds[-4:] == ["access.checked", "grant.written", "revocation.started", "request.ended"]
    ended = stack.store.ledger_entries(subject=view.id)[-1]
    assert ended.data["killed_session_ids"] == ended.data["sessions_used"] == [session_id]
    assert ended.data["sessions_left_open"] == []
    assert stack.store.verify_ledger().ok


async def test_refused_decisions_change_nothing(time_stack: Stack) -> None:
    stack = time_stack
    handle = await stack.start_request("alice@example.com", "pg-prod", "admin", timedelta(hours=1))
    await ready(stack, handle)
    before = await handle.query(AccessRequestWorkflow.view)

    msg = await refused(approve(stack, handle, "alice@example.com"))
    assert "cannot approve their own request" in msg
    msg = await refused(approve(stack, handle, "erin@example.com"))
    assert "erin@example.com is not an approver for pg-prod admin" in msg and "db-owners" in msg
    await approve(stack, handle, "bob@example.com")
    msg = await refused(approve(stack, handle, "bob@example.com"))
    assert "already approved" in msg
    msg = await refused(deny(stack, handle, "alice@example.com"))
    assert "own request" in msg

    after = await handle.query(AccessRequestWorkflow.view)
    assert after.status is RequestStatus.PENDING
    assert [d.approver.email for d in after.approvals] == ["bob@example.com"]
    assert after.denials == before.denials == []

    await approve(stack, handle, "carol@example.com")
    await active(stack, handle)
    msg = await refused(approve(stack, handle, "dan@example.com"))
    assert "already approved and ACTIVE" in msg
    await handle.execute_update(
        AccessRequestWorkflow.relinquish, EndInput(actor=stack.actor("alice@example.com"))
    )
    result = await handle.result()
    assert result.status is RequestStatus.ENDED and result.end_reason is EndReason.RELINQUISHED


async def test_one_eligible_deny_ends_the_request(time_stack: Stack) -> None:
    stack = time_stack
    handle = await stack.start_request("alice@example.com", "pg-prod", "admin", timedelta(hours=1))
    await ready(stack, handle)
    await approve(stack, handle, "bob@example.com")
    await deny(stack, handle, "carol@example.com", reason="not during the freeze")
    result = await handle.result()
    assert result.status is RequestStatus.DENIED
    assert result.denials[0].approver.email == "carol@example.com"
    assert result.denials[0].reason == "not during the freeze"
    assert result.grants == []
    assert stack.hoop.sessions(user_email="alice@example.com") == []
    assert stack.notifier.to("alice@example.com", "denied")
    assert "request.denied" in ledger_kinds(stack, result.id)


async def test_times_out_after_a_reminder(time_stack: Stack) -> None:
    stack = time_stack
    handle = await stack.start_request("alice@example.com", "pg-prod", "admin", timedelta(hours=1))
    await ready(stack, handle)
    await approve(stack, handle, "bob@example.com")
    result = await handle.result()  # 2h request_timeout, reminder 30m before
    assert result.status is RequestStatus.TIMED_OUT
    reminded = {m.recipient.email for m in stack.notifier.messages if m.event == "reminder"}
    assert reminded == {"carol@example.com", "dan@example.com"}  # only those who have not decided
    assert (
        result.ended_at is not None and result.timeout_at is not None and result.ended_at >= result.timeout_at
    )
    assert "request.timed_out" in ledger_kinds(stack, result.id)


async def test_cancel_while_pending(time_stack: Stack) -> None:
    stack = time_stack
    handle = await stack.start_request("alice@example.com", "pg-prod", "admin", timedelta(hours=1))
    await ready(stack, handle)
    msg = await refused(
        handle.execute_update(AccessRequestWorkflow.cancel, EndInput(actor=stack.actor("erin@example.com")))
    )
    assert "cannot cancel" in msg
    view = await handle.execute_update(
        AccessRequestWorkflow.cancel, EndInput(actor=stack.actor("alice@example.com"), reason="not needed")
    )
    assert view.status is RequestStatus.CANCELLED
    result = await handle.result()
    assert result.status is RequestStatus.CANCELLED and result.grants == []
    assert result.closed_reason == "cancelled by alice@example.com: not needed"
    assert "  why: cancelled by alice@example.com: not needed" in describe(result)


async def test_extension_within_and_beyond_the_cumulative_maximum(time_stack: Stack) -> None:
    stack = time_stack  # pg-prod admin: max 4h, cumulative 8h, extensions need 2 approvals
    handle = await stack.start_request("alice@example.com", "pg-prod", "admin", timedelta(hours=4))
    await ready(stack, handle)
    await approve(stack, handle, "bob@example.com")
    await approve(stack, handle, "carol@example.com")
    first = await active(stack, handle)
    assert first.expires_at is not None

    msg = await refused(
        handle.execute_update(
            AccessRequestWorkflow.extend,
            ExtendInput(actor=stack.actor("alice@example.com"), by=timedelta(hours=5)),
        )
    )
    assert "beyond the policy's cumulative maximum of 8h" in msg
    view = await handle.execute_update(
        AccessRequestWorkflow.extend,
        ExtendInput(actor=stack.actor("alice@example.com"), by=timedelta(hours=3)),
    )
    assert view.pending_extension is not None and view.expires_at == first.expires_at
    assert {m.recipient.email for m in stack.notifier.messages if m.event == "extension_requested"} == {
        "bob@example.com",
        "carol@example.com",
        "dan@example.com",
    }
    msg = await refused(approve(stack, handle, "alice@example.com"))
    assert "own request" in msg
    await approve(stack, handle, "dan@example.com")
    view = await approve(stack, handle, "bob@example.com")
    assert view.pending_extension is None
    assert view.expires_at == first.expires_at + timedelta(hours=3)
    assert view.granted_total == timedelta(hours=7)
    msg = await refused(
        handle.execute_update(
            AccessRequestWorkflow.extend,
            ExtendInput(actor=stack.actor("alice@example.com"), by=timedelta(hours=2)),
        )
    )
    assert "1h left" in msg

    result = await handle.result()
    assert result.status is RequestStatus.ENDED and result.end_reason is EndReason.EXPIRED
    # The extension went past the first grant's revoke_at: it was renewed in the gateway.
    assert len(result.grants) == 2
    assert result.ended_at is not None and result.ended_at >= first.expires_at + timedelta(hours=3)
    assert all(stack.hoop.review(g.review_id)["status"] == "REVOKED" for g in result.grants)
    assert "extension.applied" in ledger_kinds(stack, result.id)


async def test_extension_denied_keeps_access_until_the_original_expiry(time_stack: Stack) -> None:
    stack = time_stack
    handle = await stack.start_request("alice@example.com", "pg-prod", "admin", timedelta(hours=1))
    await ready(stack, handle)
    await approve(stack, handle, "bob@example.com")
    await approve(stack, handle, "carol@example.com")
    first = await active(stack, handle)
    await handle.execute_update(
        AccessRequestWorkflow.extend,
        ExtendInput(actor=stack.actor("alice@example.com"), by=timedelta(hours=1)),
    )
    view = await deny(stack, handle, "dan@example.com", reason="finish tomorrow")
    assert view.status is RequestStatus.ACTIVE and view.pending_extension is None
    result = await handle.result()
    assert result.end_reason is EndReason.EXPIRED and result.expires_at == first.expires_at


async def test_self_extension_applies_at_once(time_stack: Stack) -> None:
    stack = time_stack  # pg-prod read: self_extension, max 8h, cumulative 24h; erin is not on call
    handle = await stack.start_request("erin@example.com", "pg-prod", "read", timedelta(hours=8))
    await ready(stack, handle)
    await approve(stack, handle, "bob@example.com")
    first = await active(stack, handle)
    assert first.expires_at is not None
    view = await handle.execute_update(
        AccessRequestWorkflow.extend,
        ExtendInput(actor=stack.actor("erin@example.com"), by=timedelta(hours=8)),
    )
    assert view.pending_extension is None and view.expires_at == first.expires_at + timedelta(hours=8)
    result = await handle.result()
    assert result.end_reason is EndReason.EXPIRED


async def test_relinquish_and_revoke(time_stack: Stack) -> None:
    stack = time_stack
    handle = await stack.start_request("erin@example.com", "pg-prod", "read", timedelta(hours=4))
    await ready(stack, handle)
    await approve(stack, handle, "carol@example.com")
    view = await active(stack, handle)
    session = await stack.connect("erin@example.com", "pg-prod-ro")
    msg = await refused(
        handle.execute_update(AccessRequestWorkflow.revoke, EndInput(actor=stack.actor("alice@example.com")))
    )
    assert "only administrators and its approvers" in msg
    msg = await refused(
        handle.execute_update(
            AccessRequestWorkflow.relinquish, EndInput(actor=stack.actor("alice@example.com"))
        )
    )
    assert "cannot relinquish" in msg
    after = await handle.execute_update(
        AccessRequestWorkflow.revoke,
        EndInput(actor=stack.actor("dan@example.com"), reason="suspicious queries"),
    )
    assert after.status in (RequestStatus.REVOKING, RequestStatus.ENDED)
    result = await handle.result()
    assert result.end_reason is EndReason.REVOKED
    assert stack.hoop.session(session)["status"] == "done"
    assert result.ended_at is not None and view.expires_at is not None and result.ended_at < view.expires_at


async def test_ending_a_grant_kills_exactly_the_sessions_it_enabled_and_escalates_those_that_live_on(
    time_stack: Stack,
) -> None:
    stack = time_stack
    # hoop links no session to the grant that let it through: the request finds its sessions by person,
    # connection and time. Before the request, alice uses an older grant of her own (made in hoop).
    await stack.gateway.provision_grant(
        user_email="alice@example.com",
        connection="pg-prod-admin",
        duration_seconds=8 * 3600,
        correlation_id="old",
    )
    before_grant = await stack.connect("alice@example.com", "pg-prod-admin")
    await stack.env.sleep(timedelta(minutes=1))  # well beyond the clock-skew allowance
    stack.hoop.add_connection("scratch-db", access_groups=["engineering"])  # reached without a review

    handle = await stack.start_request("alice@example.com", "pg-prod", "admin", timedelta(hours=2))
    await ready(stack, handle)
    await approve(stack, handle, "bob@example.com")
    await approve(stack, handle, "carol@example.com")
    await active(stack, handle)
    await stack.gateway.provision_grant(
        user_email="erin@example.com",
        connection="pg-prod-admin",
        duration_seconds=3600,
        correlation_id="erin",
    )
    someone_elses = await stack.connect("erin@example.com", "pg-prod-admin")
    other_connection = await stack.connect("alice@example.com", "scratch-db")
    mine = await stack.connect("alice@example.com", "pg-prod-admin")
    on_another_gateway = await stack.connect("alice@example.com", "pg-prod-admin")
    stack.hoop.detach(on_another_gateway)  # hoop answers 204 to its kill, and it lives on

    await handle.execute_update(
        AccessRequestWorkflow.relinquish, EndInput(actor=stack.actor("alice@example.com"), reason="done")
    )
    result = await handle.result()

    # The request ends even though a session would not die; the approvers are told which.
    assert result.status is RequestStatus.ENDED and result.end_reason is EndReason.RELINQUISHED
    assert result.sessions_used == [mine, on_another_gateway]
    assert result.sessions_killed == [mine]
    assert result.sessions_left_open == [on_another_gateway]
    assert result.revocation_escalated
    status = {sid: stack.hoop.session(sid)["status"] for sid in stack.hoop.state_snapshot()["sessions"]}
    assert status[mine] == "done"
    assert status[on_another_gateway] == "open"
    # Another person's session, another connection's, and alice's own from before the grant: left alone.
    assert status[someone_elses] == status[other_connection] == status[before_grant] == "open"

    entries = stack.store.ledger_entries(subject=result.id)
    assert [e.kind for e in entries][-3:] == ["revocation.started", "sessions.kill_failed", "request.ended"]
    failed, ended = entries[-2].data, entries[-1].data
    assert failed["session_ids"] == [on_another_gateway] and failed["kill_rounds"] == KILL_ROUNDS
    assert failed["status"] == "REVOKING"
    assert ended["sessions_used"] == [mine, on_another_gateway]
    assert ended["killed_session_ids"] == [mine] and ended["sessions_left_open"] == [on_another_gateway]
    assert stack.store.verify_ledger().ok
    await eventually(lambda: bool(stack.notifier.to("bob@example.com", "revocation_escalated")))
    told = stack.notifier.to("bob@example.com", "revocation_escalated")[0]
    assert on_another_gateway in told.text and "stayed open" in told.subject
    kills = [c for c in stack.hoop.calls if c.method == "POST" and c.path.endswith("/kill")]
    assert {c.path.split("/")[-2] for c in kills} == {mine, on_another_gateway}

    # `grantflow request show` says which sessions were killed and which stayed open.
    shown = "\n".join(describe(result))
    assert f"killed: {mine}" in shown
    assert f"STILL OPEN after the kills (end them in hoop): {on_another_gateway}" in shown


async def test_auto_approve_for_on_call(time_stack: Stack) -> None:
    # frank is an engineer (eligible for pg-prod-ro, reviewed there) and in oncall, which pg-prod read
    # auto-approves. (dan, also oncall, is a db-owner: hoop lets db-owners in without a review.)
    stack = time_stack
    handle = await stack.start_request("frank@example.com", "pg-prod", "read", timedelta(hours=1))
    view = await active(stack, handle)
    assert view.auto_approved and view.approvals == []
    assert stack.notifier.to("bob@example.com", "request_created") == []
    result = await handle.result()
    assert result.end_reason is EndReason.EXPIRED
    assert "request.auto_approved" in ledger_kinds(stack, result.id)


async def test_break_glass_retro_review_denied_revokes_at_once(time_stack: Stack) -> None:
    stack = time_stack
    handle = await stack.start_request(
        "alice@example.com", "pg-prod", "admin", timedelta(hours=4), break_glass=True
    )
    view = await active(stack, handle)
    assert view.retro_review is RetroReview.PENDING and view.approvals == []
    await eventually(lambda: len([m for m in stack.notifier.messages if m.event == "retro_review"]) == 3)
    assert {m.recipient.email for m in stack.notifier.messages if m.event == "retro_review"} == {
        "bob@example.com",
        "carol@example.com",
        "dan@example.com",
    }
    session = await stack.connect("alice@example.com", "pg-prod-admin")
    await deny(stack, handle, "bob@example.com", reason="no incident")
    result = await handle.result()
    assert result.retro_review is RetroReview.DENIED and result.end_reason is EndReason.REVOKED
    assert stack.hoop.session(session)["status"] == "done"


async def test_break_glass_unanswered_retro_review_revokes_at_the_deadline(time_stack: Stack) -> None:
    stack = time_stack
    _, base = stack.policies.role("k8s-prod", "admin")
    policy = base.model_copy(
        update={
            "max_duration": timedelta(hours=8),
            "max_cumulative": timedelta(hours=8),
            "break_glass": BreakGlass(allowed=True, retro_review_within=timedelta(hours=3)),
        }
    )
    handle = await stack.start_request(
        "erin@example.com", "k8s-prod", "admin", timedelta(hours=8), break_glass=True, policy=policy
    )
    await active(stack, handle)
    await approve(stack, handle, "niaj@example.com")  # one of the two the policy needs
    result = await handle.result()
    assert result.retro_review is RetroReview.DENIED and result.end_reason is EndReason.REVOKED
    assert result.ended_at is not None and result.granted_at is not None
    assert timedelta(hours=3) <= result.ended_at - result.granted_at < timedelta(hours=3, minutes=5)
    assert "retro_review.unanswered" in ledger_kinds(stack, result.id)


async def test_break_glass_approved_by_quorum_keeps_access(time_stack: Stack) -> None:
    stack = time_stack
    handle = await stack.start_request(
        "alice@example.com", "pg-prod", "admin", timedelta(hours=4), break_glass=True
    )
    await active(stack, handle)
    await approve(stack, handle, "bob@example.com")
    view = await approve(stack, handle, "carol@example.com")
    assert view.retro_review is RetroReview.APPROVED
    result = await handle.result()
    assert result.end_reason is EndReason.EXPIRED and result.retro_review is RetroReview.APPROVED


async def test_break_glass_refused_when_the_policy_does_not_allow_it(time_stack: Stack) -> None:
    stack = time_stack
    handle = await stack.start_request(
        "erin@example.com", "pg-prod", "read", timedelta(hours=1), break_glass=True
    )
    result = await handle.result()
    assert result.status is RequestStatus.FAILED and "does not allow break-glass" in (
        result.failure_reason or ""
    )


async def test_grants_beyond_the_gateway_cap_are_renewed(time_stack: Stack) -> None:
    stack = time_stack  # warehouse read allows 7 days; hoop caps one grant at 48h
    handle = await stack.start_request("erin@example.com", "warehouse", "read", timedelta(days=5))
    await ready(stack, handle)
    await approve(stack, handle, "dina@example.com")
    first = await active(stack, handle)
    assert first.expires_at is not None and first.granted_at is not None
    assert first.grants[0].revoke_at - first.granted_at <= timedelta(hours=48, seconds=5)
    result = await handle.result()
    assert result.end_reason is EndReason.EXPIRED
    assert len(result.grants) == 3  # 48h + 48h + 24h
    # Each renewal was written before the previous grant lapsed: no gap in access.
    for earlier, later in zip(result.grants, result.grants[1:], strict=False):
        assert stack.hoop.review(later.review_id)["status"] == "REVOKED"
        assert later.revoke_at > earlier.revoke_at
        created = datetime.fromisoformat(
            stack.hoop.review(later.review_id)["created_at"].replace("Z", "+00:00")
        )
        assert created < earlier.revoke_at
    assert result.ended_at is not None and result.ended_at - first.granted_at >= timedelta(days=5)
    assert all(
        call.status in (200, 201, 202)
        for call in stack.hoop.calls
        if call.path.endswith("/sessions/provision")
    )


async def test_gateway_refusal_fails_with_a_reason(time_stack: Stack) -> None:
    stack = time_stack  # mallory has never signed in to hoop
    handle = await stack.start_request("mallory@example.com", "pg-prod", "read", timedelta(hours=1))
    await ready(stack, handle)
    await approve(stack, handle, "bob@example.com")
    result = await handle.result()
    assert result.status is RequestStatus.FAILED
    assert "never signed in" in (result.failure_reason or "")
    assert stack.notifier.to("mallory@example.com", "closed")
    assert "request.failed" in ledger_kinds(stack, result.id)


async def test_failing_revocation_shows_revoking_escalates_then_ends(time_stack: Stack) -> None:
    stack = time_stack
    timings = GatewayTimings(revoke_escalate_after=timedelta(minutes=5))
    handle = await stack.start_request(
        "erin@example.com", "pg-prod", "read", timedelta(hours=1), timings=timings
    )
    await ready(stack, handle)
    await approve(stack, handle, "bob@example.com")
    await active(stack, handle)
    session = await stack.connect("erin@example.com", "pg-prod-ro")
    stack.hoop.fail_next("/reviews/", status=503, count=10_000, method="PUT")
    await stack.env.sleep(timedelta(hours=1))
    # Retries back off on the server's timers: move time along until the escalation is due.
    for _ in range(20):
        view = await handle.query(AccessRequestWorkflow.view)
        if view.revocation_escalated:
            break
        assert view.status is RequestStatus.REVOKING
        await stack.env.sleep(timedelta(minutes=1))
    assert view.status is RequestStatus.REVOKING
    await eventually(lambda: bool(stack.notifier.to("bob@example.com", "revocation_escalated")))
    stack.hoop.clear_faults()
    result = await handle.result()
    assert result.status is RequestStatus.ENDED and result.end_reason is EndReason.EXPIRED
    assert result.revocation_attempts > 1
    assert stack.hoop.session(session)["status"] == "done"
    assert "revocation.escalated" in ledger_kinds(stack, result.id)


async def test_a_gateway_refusing_revocation_is_retried_escalated_and_never_dropped(
    time_stack: Stack,
) -> None:
    stack = time_stack  # e.g. grantflow's API key was rotated: hoop answers 403 until an operator fixes it
    timings = GatewayTimings(revoke_escalate_after=timedelta(minutes=5))
    handle = await stack.start_request(
        "erin@example.com", "pg-prod", "read", timedelta(hours=1), timings=timings
    )
    await ready(stack, handle)
    await approve(stack, handle, "bob@example.com")
    await active(stack, handle)
    stack.hoop.fail_next("/reviews/", status=403, count=10_000, method="PUT")
    await stack.env.sleep(timedelta(hours=1))
    for _ in range(20):
        view = await handle.query(AccessRequestWorkflow.view)
        if view.revocation_escalated:
            break
        assert view.status is RequestStatus.REVOKING
        await stack.env.sleep(timedelta(minutes=1))
    assert view.revocation_escalated and view.status is RequestStatus.REVOKING
    stack.hoop.clear_faults()
    result = await handle.result()
    assert result.status is RequestStatus.ENDED and result.end_reason is EndReason.EXPIRED
    assert stack.hoop.review(result.grants[0].review_id)["status"] == "REVOKED"


async def test_no_decision_or_cancel_is_taken_while_the_grant_is_being_written(time_stack: Stack) -> None:
    stack = time_stack
    handle = await stack.start_request("alice@example.com", "pg-prod", "admin", timedelta(hours=1))
    await ready(stack, handle)
    stack.hoop.fail_next("/sessions/provision", status=503, count=3)  # the grant takes a few attempts
    await approve(stack, handle, "bob@example.com")
    await approve(stack, handle, "carol@example.com")
    view = await handle.query(AccessRequestWorkflow.view)
    assert view.status is RequestStatus.PENDING  # the grant is still being retried: decided, not ACTIVE
    msg = await refused(deny(stack, handle, "dan@example.com"))
    assert "already decided" in msg
    msg = await refused(
        handle.execute_update(AccessRequestWorkflow.cancel, EndInput(actor=stack.actor("alice@example.com")))
    )
    assert "grant is being written" in msg
    view = await active(stack, handle)
    assert view.denials == []
    await handle.execute_update(
        AccessRequestWorkflow.relinquish, EndInput(actor=stack.actor("alice@example.com"))
    )
    assert (await handle.result()).end_reason is EndReason.RELINQUISHED


async def test_an_admin_cannot_approve_their_own_request_on_behalf_of_others(time_stack: Stack) -> None:
    stack = time_stack
    handle = await stack.start_request("bob@example.com", "pg-prod", "admin", timedelta(hours=1))
    await ready(stack, handle)
    on_behalf = DecisionInput(
        actor=stack.actor("carol@example.com", admin="bob@example.com"), verdict=Verdict.APPROVE
    )
    msg = await refused(handle.execute_update(AccessRequestWorkflow.decide, on_behalf))
    assert (
        "bob@example.com cannot decide on their own request, not even on behalf of carol@example.com" in msg
    )
    by_other_admin = DecisionInput(
        actor=stack.actor("carol@example.com", admin="grace@example.com"), verdict=Verdict.APPROVE
    )
    # another administrator may vote for carol only where the policy allows it
    msg = await refused(handle.execute_update(AccessRequestWorkflow.decide, by_other_admin))
    assert "grace@example.com may not decide on behalf of carol@example.com" in msg
    assert "allow_admin_on_behalf" in msg
    await handle.execute_update(AccessRequestWorkflow.cancel, EndInput(actor=stack.actor("bob@example.com")))
    await handle.result()
    _, policy = stack.policies.role("pg-prod", "admin")
    allowing = policy.model_copy(update={"allow_admin_on_behalf": True})
    handle = await stack.start_request(
        "bob@example.com", "pg-prod", "admin", timedelta(hours=1), policy=allowing
    )
    await ready(stack, handle)
    view = await handle.execute_update(AccessRequestWorkflow.decide, by_other_admin)
    assert (
        view.approvals[0].on_behalf_by is not None
        and view.approvals[0].on_behalf_by.email == "grace@example.com"
    )
    await handle.execute_update(AccessRequestWorkflow.cancel, EndInput(actor=stack.actor("bob@example.com")))
    await handle.result()


async def test_a_decision_made_on_another_stage_is_refused(time_stack: Stack) -> None:
    stack = time_stack
    handle = await stack.start_request(
        "alice@example.com", "pg-prod", "admin", timedelta(hours=4), break_glass=True
    )
    await active(stack, handle)
    await handle.execute_update(
        AccessRequestWorkflow.extend,
        ExtendInput(actor=stack.actor("alice@example.com"), by=timedelta(hours=1)),
    )
    stale = DecisionInput(actor=stack.actor("bob@example.com"), verdict=Verdict.APPROVE, stage="retro_review")
    msg = await refused(handle.execute_update(AccessRequestWorkflow.decide, stale))
    assert "made on the retro review" in msg and "now awaits a decision on its extension" in msg
    await handle.execute_update(AccessRequestWorkflow.revoke, EndInput(actor=stack.actor("dan@example.com")))
    assert (await handle.result()).end_reason is EndReason.REVOKED


async def test_a_quorum_that_cannot_be_reached_fails_at_once(time_stack: Stack) -> None:
    stack = time_stack
    _, base = stack.policies.role("pg-prod", "admin")
    policy = base.model_copy(update={"min_approvals": 4})  # db-owners has 3 members
    handle = await stack.start_request(
        "alice@example.com", "pg-prod", "admin", timedelta(hours=1), policy=policy
    )
    result = await handle.result()
    assert result.status is RequestStatus.FAILED
    assert "needs 4 approvals but only 3 eligible approver(s)" in (result.failure_reason or "")
    assert stack.notifier.to("alice@example.com", "closed")


async def test_access_lost_while_approvers_decide_is_checked_again_before_granting(time_stack: Stack) -> None:
    """alice leaves every group pg-prod-admin allows after asking: the quorum is reached, but the grant is
    not written (hoop would not let her in) and the request fails saying why."""
    stack = time_stack
    handle = await stack.start_request("alice@example.com", "pg-prod", "admin", timedelta(hours=1))
    await ready(stack, handle)
    await approve(stack, handle, "bob@example.com")
    stack.hoop.add_user("alice@example.com", "Alice Adams", groups=["contractors"])
    await approve(stack, handle, "carol@example.com")
    result = await handle.result()
    assert result.status is RequestStatus.FAILED and result.grants == []
    assert result.failure_reason is not None
    assert result.failure_reason.startswith(
        "before granting: alice@example.com is not eligible for pg-prod admin"
    )
    assert [c for c in stack.hoop.calls if c.path == "/api/sessions/provision"] == []
    refused = [e for e in stack.store.ledger_entries(subject=result.id) if e.kind == "request.refused"]
    assert len(refused) == 1 and refused[0].data["before_granting"] is True

"""Reviews that start in hoop: discovery opens one request per pending review, the request decides the
review in hoop (or mirrors a decision taken in hoop's own UI), and a jit review ends on time with its
sessions killed. On the time-skipping server with the real activities and the hoop stand-in (whose clock is
Temporal's); the ``ensure_hoop_discovery`` test runs on the dev server with real polling."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer

from configuration.settings import Settings
from domain.requests import (
    DecisionInput,
    EndInput,
    EndReason,
    ExtendInput,
    HoopReviewType,
    RequestStatus,
    RequestView,
    Verdict,
    hoop_request_id,
)
from sandbox.hoop import Call, PendingReview
from sandbox.seed import GRANTFLOW_GROUP
from tests.stack import Stack
from tests.test_replay import HISTORIES
from workflows.access_request import AccessRequestWorkflow
from workflows.hoop_decided import APPROVED_IN_HOOP, REJECTED_IN_HOOP
from workflows.hoop_reviews import (
    HOOP_DISCOVERY_WORKFLOW_ID,
    HoopDiscoveryInput,
    HoopReviewDiscoveryWorkflow,
    PollSummary,
    ensure_hoop_discovery,
)

Handle = WorkflowHandle[AccessRequestWorkflow, RequestView]
Discovery = WorkflowHandle[HoopReviewDiscoveryWorkflow, None]
# Polls are driven by poll_now: an interval longer than any test keeps timers out of the way.
NEVER = timedelta(days=30)


async def start_discovery(stack: Stack, *, settle: bool = True, **options: Any) -> Discovery:
    """A discovery of its own for the test; ``settle`` waits for its first poll, so each poll the test
    asks for sees exactly what the test did before it."""
    inp = HoopDiscoveryInput(**{"poll_interval": NEVER, **options})
    handle: Discovery = await stack.env.client.start_workflow(
        HoopReviewDiscoveryWorkflow.run,
        inp,
        id=f"hoop-discovery-{uuid.uuid4().hex[:8]}",
        task_queue=stack.task_queue,
    )
    if settle:
        await poll(handle)
    return handle


async def stop(handle: WorkflowHandle[Any, Any]) -> None:
    try:
        await handle.terminate("test over")
    except RPCError:
        pass  # already closed


@pytest_asyncio.fixture(loop_scope="session")
async def discovery(time_stack: Stack) -> AsyncIterator[Discovery]:
    handle = await start_discovery(time_stack)
    yield handle
    await stop(handle)


async def pending(stack: Stack, email: str, connection: str, **options: Any) -> PendingReview:
    """A review left PENDING in hoop (off the loop: the stand-in reads Temporal's clock), as the connection's
    access-request rule makes it. The seed has jit rules only; a ``onetime`` review (``hoop exec``) needs a
    command rule, made here like the jit one (same reviewers and force-approval group)."""

    def create() -> PendingReview:
        if options.get("type") == "onetime":
            jit = stack.hoop.state_snapshot()["rules"].get(f"{connection}-jit")
            if jit is not None:
                stack.hoop.add_access_rule(
                    f"{connection}-command",
                    access_type="command",
                    connection_names=[connection],
                    reviewers_groups=jit["reviewers_groups"],
                    force_approval_groups=jit["force_approval_groups"],
                    min_approvals=jit["min_approvals"],
                )
        return stack.hoop.create_pending_review(email, connection, **options)

    return await asyncio.to_thread(create)


def review_puts(stack: Stack, review_id: str) -> list[Call]:
    """The PUT /reviews/{id} calls hoop answered (injected failures included: the write may have happened)."""
    return [c for c in stack.hoop.calls if c.method == "PUT" and c.path == f"/api/reviews/{review_id}"]


async def poll(discovery: Discovery) -> PollSummary:
    return await discovery.execute_update(HoopReviewDiscoveryWorkflow.poll_now)


def request(stack: Stack, review: PendingReview) -> Handle:
    return stack.env.client.get_workflow_handle_for(
        AccessRequestWorkflow.run, hoop_request_id(review.review_id)
    )


async def finished(stack: Stack, handle: Handle, step: timedelta = timedelta(minutes=10)) -> RequestView:
    """The result of a request that waits for a timer. Discovery starts requests, so the test holds a
    handle got by id, and only handles from ``start_workflow`` let time skip while awaiting a result: skip
    it here, step by step. (A request that ends without a timer: ``handle.result()``. Keep discoveries
    polling on a short interval out of the way: every skipped interval is a poll.)"""
    while (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
        await stack.env.sleep(step)
    return await handle.result()


async def discovered(stack: Stack, review: PendingReview, timeout: float = 20.0) -> RequestView:
    """Wait (real time) until discovery has started the review's request and its approvers are known."""
    handle = request(stack, review)

    async def resolved() -> bool:
        try:
            return (await handle.query(AccessRequestWorkflow.view)).approvers_resolved
        except RPCError:  # not started yet
            return False

    await eventually(resolved, timeout=timeout)
    return await handle.query(AccessRequestWorkflow.view)


async def ready(stack: Stack, handle: Handle) -> RequestView:
    return await stack.wait_for(
        handle, lambda v: v.approvers_resolved or v.status is not RequestStatus.PENDING
    )


async def active(stack: Stack, handle: Handle) -> RequestView:
    return await stack.wait_for(handle, lambda v: v.status is RequestStatus.ACTIVE)


async def decide(stack: Stack, handle: Handle, email: str, verdict: Verdict, reason: str = "") -> RequestView:
    return await handle.execute_update(
        AccessRequestWorkflow.decide, DecisionInput(actor=stack.actor(email), verdict=verdict, reason=reason)
    )


async def decide_in_hoop_ui(stack: Stack, review: PendingReview, as_email: str, **body: Any) -> None:
    """A reviewer decides in hoop's own web UI, with their own hoop session (not grantflow's key)."""
    token = await asyncio.to_thread(stack.hoop.issue_user_token, as_email)
    async with httpx.AsyncClient(base_url=stack.hoop.api_url) as web:
        answer = await web.put(
            f"/reviews/{review.review_id}", json=body, headers={"Authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 200, answer.text


async def replays(handle: WorkflowHandle[Any, Any], name: str | None = None) -> None:
    """The run's history replays on the current code; with ``RECORD_HISTORIES=1`` it is also saved under
    ``tests/histories/`` (``name``), where ``test_replay.py`` replays it on every future change."""
    history = await handle.fetch_history()
    replayer = Replayer(
        workflows=[AccessRequestWorkflow, HoopReviewDiscoveryWorkflow], data_converter=pydantic_data_converter
    )
    await replayer.replay_workflow(history)
    if name is not None and os.environ.get("RECORD_HISTORIES") == "1":
        (HISTORIES / f"{name}.json").write_text(
            json.dumps(
                {"workflow_id": history.workflow_id, "history": json.loads(history.to_json())}, indent=1
            )
        )


async def cancel(stack: Stack, review: PendingReview) -> None:
    """End a request the test no longer needs the way a person would (terminating it while one of its
    activities runs leaves the time-skipping test server unable to skip time for the next tests)."""
    handle = request(stack, review)
    view = await ready(stack, handle)
    await handle.execute_update(
        AccessRequestWorkflow.cancel, EndInput(actor=stack.actor(view.requester.email))
    )
    await handle.result()


def hoop_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def ledger(stack: Stack, request_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e.kind, e.data) for e in stack.store.ledger_entries(subject=request_id)]


def kinds(stack: Stack, request_id: str) -> list[str]:
    return [kind for kind, _ in ledger(stack, request_id)]


def provisions(stack: Stack) -> int:
    return sum(1 for c in stack.hoop.calls if c.method == "POST" and c.path == "/api/sessions/provision")


async def eventually(condition: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0) -> None:
    """Wait (real time) until ``condition`` holds; it may be a coroutine function."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        met = condition()
        if not isinstance(met, bool):
            met = await met
        if met:
            return
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------------- jit


async def test_jit_review_approved_by_quorum_then_revoked_at_revoke_at_with_sessions_killed(
    time_stack: Stack, discovery: Discovery
) -> None:
    stack = time_stack
    review = await pending(stack, "alice@example.com", "pg-prod-admin", type="jit", duration_sec=3600)
    summary = await poll(discovery)
    assert summary.started == [review.review_id] and summary.pending == 1, summary

    handle = request(stack, review)
    view = await ready(stack, handle)
    assert view.status is RequestStatus.PENDING
    assert view.origin is not None and view.origin.review_id == review.review_id
    assert view.origin.review_type is HoopReviewType.JIT and view.origin.session_id == review.session_id
    assert (view.resource, view.role, view.connection) == ("pg-prod", "admin", "pg-prod-admin")
    assert view.requester.email == "alice@example.com" and view.requested_duration == timedelta(hours=1)
    assert view.required_approvals == 2

    def asked() -> set[str]:
        return {m.recipient.email for m in stack.notifier.messages if m.event == "request_created"}

    # approvers are told by an activity that runs after the view is ready: wait for it
    await eventually(lambda: asked() == {"bob@example.com", "carol@example.com", "dan@example.com"})

    await decide(stack, handle, "bob@example.com", Verdict.APPROVE)
    assert stack.hoop.review(review.review_id)["status"] == "PENDING"  # one of two: nothing in hoop yet
    await decide(stack, handle, "carol@example.com", Verdict.APPROVE)
    view = await active(stack, handle)
    in_hoop = stack.hoop.review(review.review_id)
    assert in_hoop["status"] == "APPROVED"
    # hoop's clock decides: the expiry is the review's revoke_at, read back.
    assert view.expires_at == hoop_time(in_hoop["revoke_at"])
    assert [g.review_id for g in view.grants] == [review.review_id]
    assert provisions(stack) == 0  # the person's own review is the grant
    # decided in hoop in ONE call, forced by grantflow's force-approval group (review.go doForcedReview)
    assert [c.json for c in review_puts(stack, review.review_id)] == [
        {"status": "APPROVED", "force_review": True}
    ]
    assert [g["group"] for g in in_hoop["review_groups_data"] if g["forced_review"]] == [GRANTFLOW_GROUP]
    # the view turns ACTIVE before the activity recording it has run: wait for the entry
    await eventually(lambda: "hoop.review_approved" in kinds(stack, view.id))
    approved_entry = dict(ledger(stack, view.id))["hoop.review_approved"]
    assert approved_entry["revoke_at"] == hoop_time(in_hoop["revoke_at"]).isoformat()  # read back, recorded

    # The review left PENDING because grantflow decided it: the signal discovery sends changes nothing.
    assert (await poll(discovery)).signalled == [review.review_id]
    assert (await handle.query(AccessRequestWorkflow.view)).outcome_note is None

    # Ten minutes in: hoop gives the session its own deadline (connect + the review's hour), past revoke_at.
    await stack.env.sleep(timedelta(minutes=10))
    session = await stack.connect("alice@example.com", "pg-prod-admin")
    assert stack.hoop.session(session)["review"] is None  # hoop does not link it to the review
    standing = await stack.connect("bob@example.com", "pg-prod-ro")  # not ours to cut

    result = await finished(stack, handle)  # time skips to revoke_at
    assert result.status is RequestStatus.ENDED and result.end_reason is EndReason.EXPIRED
    assert stack.hoop.review(review.review_id)["status"] == "REVOKED"
    assert stack.hoop.session(session)["status"] == "done"  # hoop would have left it open
    assert stack.hoop.session(standing)["status"] == "open"
    entries = ledger(stack, result.id)
    assert [k for k, _ in entries][-3:] == ["hoop.review_approved", "revocation.started", "request.ended"]
    approved = dict(entries)["hoop.review_approved"]
    assert approved["decided_in"] == "grantflow" and approved["review_id"] == review.review_id
    assert entries[-1][1]["killed_session_ids"] == entries[-1][1]["sessions_used"] == [session]
    assert stack.store.verify_ledger().ok
    await replays(handle, "hoop_jit_approved_then_expired")


async def test_an_approval_whose_answer_is_lost_is_read_back_and_never_sent_twice(
    time_stack: Stack, discovery: Discovery
) -> None:
    stack = time_stack  # pg-prod read: one approval
    review = await pending(stack, "erin@example.com", "pg-prod-ro", duration_sec=3600)
    await poll(discovery)
    handle = request(stack, review)
    await ready(stack, handle)
    # hoop writes the approval, then the answer is a 500 (as for an unknown review): unknown until read
    stack.hoop.fail_next(f"/reviews/{review.review_id}", 500, after_write=True, method="PUT")
    await decide(stack, handle, "bob@example.com", Verdict.APPROVE)
    view = await active(stack, handle)
    puts = review_puts(stack, review.review_id)
    assert [(c.json, c.status, c.injected) for c in puts] == [
        ({"status": "APPROVED", "force_review": True}, 500, True)
    ]
    in_hoop = stack.hoop.review(review.review_id)
    assert in_hoop["status"] == "APPROVED" and view.expires_at == hoop_time(in_hoop["revoke_at"])
    # the read-back decided: no second approval (which would have reset revoke_at) was ever sent
    assert len(review_puts(stack, review.review_id)) == 1
    # end it the ordinary way: a workflow terminated mid-activity stops time skipping for later tests
    await handle.execute_update(
        AccessRequestWorkflow.relinquish, EndInput(actor=stack.actor("erin@example.com"), reason="done")
    )
    assert (await handle.result()).end_reason is EndReason.RELINQUISHED


async def test_extending_a_hoop_jit_provisions_a_grant_swept_with_the_review(
    time_stack: Stack, discovery: Discovery
) -> None:
    stack = time_stack  # pg-prod read: one approval, self-extension; erin is not on call
    review = await pending(stack, "erin@example.com", "pg-prod-ro", duration_sec=3600)
    await poll(discovery)
    handle = request(stack, review)
    await ready(stack, handle)
    await decide(stack, handle, "bob@example.com", Verdict.APPROVE)
    first = await active(stack, handle)
    assert first.expires_at is not None
    view = await handle.execute_update(
        AccessRequestWorkflow.extend,
        ExtendInput(actor=stack.actor("erin@example.com"), by=timedelta(hours=1)),
    )
    assert view.expires_at == first.expires_at + timedelta(hours=1)
    result = await finished(stack, handle)
    assert result.end_reason is EndReason.EXPIRED
    assert len(result.grants) == 2 and provisions(stack) == 1  # renewed before the review's revoke_at
    assert result.grants[1].correlation_id == f"{result.id}:grant:0"
    assert all(stack.hoop.review(g.review_id)["status"] == "REVOKED" for g in result.grants)


# ---------------------------------------------------------------------- onetime


async def test_onetime_review_shows_the_command_and_ends_approved(
    time_stack: Stack, discovery: Discovery
) -> None:
    stack = time_stack
    command = "ALTER TABLE orders ADD COLUMN gift_note text"
    review = await pending(stack, "alice@example.com", "pg-prod-admin", type="onetime", command=command)
    assert (await poll(discovery)).started == [review.review_id]
    handle = request(stack, review)
    view = await ready(stack, handle)
    assert view.origin is not None and view.origin.review_type is HoopReviewType.ONETIME
    assert view.origin.command == command and view.command == command
    assert command in view.reason
    await eventually(lambda: len(stack.notifier.to("bob@example.com", "request_created")) == 1)
    assert command in stack.notifier.to("bob@example.com", "request_created")[0].text

    await decide(stack, handle, "bob@example.com", Verdict.APPROVE)
    await decide(stack, handle, "dan@example.com", Verdict.APPROVE)
    result = await handle.result()  # no timer: a onetime approval is terminal
    assert result.status is RequestStatus.APPROVED
    assert result.grants == [] and result.expires_at is None and result.ended_at is not None
    assert stack.hoop.review(review.review_id)["status"] == "APPROVED"
    assert provisions(stack) == 0
    stored = stack.store.get_request(result.id)
    assert stored is not None and stored.status is RequestStatus.APPROVED and stored.command == command
    assert kinds(stack, result.id)[-1] == "hoop.review_approved"
    await replays(handle, "hoop_onetime_approved")


# ---------------------------------------------------------------------- rejections in hoop


async def test_a_deny_rejects_the_review_in_hoop_with_the_reason(
    time_stack: Stack, discovery: Discovery
) -> None:
    stack = time_stack
    review = await pending(stack, "alice@example.com", "pg-prod-admin")
    await poll(discovery)
    handle = request(stack, review)
    await ready(stack, handle)
    await decide(stack, handle, "bob@example.com", Verdict.APPROVE)
    await decide(stack, handle, "carol@example.com", Verdict.DENY, reason="not during the freeze")
    result = await handle.result()
    assert result.status is RequestStatus.DENIED
    in_hoop = stack.hoop.review(review.review_id)
    assert in_hoop["status"] == "REJECTED"
    assert in_hoop["rejection_reason"] == "denied in grantflow by carol@example.com: not during the freeze"
    assert kinds(stack, result.id)[-2:] == ["request.denied", "hoop.review_rejected"]


async def test_a_timeout_rejects_the_review_in_hoop(time_stack: Stack, discovery: Discovery) -> None:
    stack = time_stack
    review = await pending(stack, "alice@example.com", "pg-prod-admin")
    await poll(discovery)
    handle = request(stack, review)
    await ready(stack, handle)
    result = await finished(stack, handle)  # pg-prod admin: 2h request timeout
    assert result.status is RequestStatus.TIMED_OUT
    in_hoop = stack.hoop.review(review.review_id)
    assert in_hoop["status"] == "REJECTED"
    assert in_hoop["rejection_reason"].startswith("timed out in grantflow: no decision within 2h")
    await replays(handle, "hoop_timed_out")


async def test_a_review_hoop_would_not_honour_is_rejected_in_hoop_and_nobody_is_asked(
    time_stack: Stack, discovery: Discovery
) -> None:
    """alice's review waits in hoop, but by the time grantflow sees it she is in no group pg-prod-admin's
    access control allows: approving it would let nobody in, so the request is refused and the review
    rejected in hoop saying why, before any approver is asked."""
    stack = time_stack
    review = await pending(stack, "alice@example.com", "pg-prod-admin")
    stack.hoop.add_user("alice@example.com", "Alice Adams", groups=["contractors"])
    await poll(discovery)
    result = await request(stack, review).result()
    assert result.status is RequestStatus.FAILED
    assert result.failure_reason is not None
    assert "alice@example.com is not eligible for pg-prod admin" in result.failure_reason
    in_hoop = stack.hoop.review(review.review_id)
    assert in_hoop["status"] == "REJECTED" and "not eligible" in in_hoop["rejection_reason"]
    assert not [m for m in stack.notifier.messages if m.event == "request_created"]
    assert "request.refused" in kinds(stack, result.id)


async def test_a_cancel_rejects_the_review_in_hoop(time_stack: Stack, discovery: Discovery) -> None:
    stack = time_stack
    review = await pending(stack, "alice@example.com", "pg-prod-admin", type="onetime", command="VACUUM")
    await poll(discovery)
    handle = request(stack, review)
    await ready(stack, handle)
    await handle.execute_update(
        AccessRequestWorkflow.cancel,
        EndInput(actor=stack.actor("alice@example.com"), reason="done another way"),
    )
    result = await handle.result()
    assert result.status is RequestStatus.CANCELLED
    assert stack.hoop.review(review.review_id)["rejection_reason"] == (
        "cancelled in grantflow by alice@example.com: done another way"
    )


# ---------------------------------------------------------------------- mirroring hoop's own UI


async def test_approved_in_hoops_own_ui_is_mirrored_and_tracked_to_its_end(
    time_stack: Stack, discovery: Discovery
) -> None:
    stack = time_stack
    review = await pending(stack, "alice@example.com", "pg-prod-admin", duration_sec=1800)
    await poll(discovery)
    handle = request(stack, review)
    await ready(stack, handle)
    await decide_in_hoop_ui(stack, review, "bob@example.com", status="APPROVED")
    assert (await poll(discovery)).signalled == [review.review_id]

    view = await active(stack, handle)
    assert view.outcome_note == APPROVED_IN_HOOP and view.approvals == []
    assert view.expires_at == hoop_time(stack.hoop.review(review.review_id)["revoke_at"])
    # the view turns ACTIVE before the activity recording it has run: wait for the entry
    await eventually(lambda: "hoop.review_approved" in kinds(stack, view.id))
    approved = dict(ledger(stack, view.id))["hoop.review_approved"]
    assert approved["decided_in"] == "hoop" and approved["note"] == APPROVED_IN_HOOP
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await decide(stack, handle, "carol@example.com", Verdict.APPROVE)
    assert "already approved and ACTIVE" in str(refused.value.cause)

    session = await stack.connect("alice@example.com", "pg-prod-admin")
    result = await finished(stack, handle)
    assert result.status is RequestStatus.ENDED and result.end_reason is EndReason.EXPIRED
    assert stack.hoop.review(review.review_id)["status"] == "REVOKED"
    assert stack.hoop.session(session)["status"] == "done"
    await replays(handle, "hoop_jit_approved_in_hoop")


async def test_rejected_in_hoops_own_ui_is_mirrored_as_denied(
    time_stack: Stack, discovery: Discovery
) -> None:
    stack = time_stack
    review = await pending(
        stack, "alice@example.com", "pg-prod-admin", type="onetime", command="DROP TABLE tmp"
    )
    await poll(discovery)
    handle = request(stack, review)
    await ready(stack, handle)
    await decide(stack, handle, "dan@example.com", Verdict.APPROVE)
    await decide_in_hoop_ui(
        stack, review, "carol@example.com", status="REJECTED", rejection_reason="use the migration pipeline"
    )
    await poll(discovery)
    result = await handle.result()
    assert result.outcome_note == f"{REJECTED_IN_HOOP}: use the migration pipeline"
    assert result.status is RequestStatus.DENIED
    denied = dict(ledger(stack, result.id))["request.denied"]
    assert denied["note"] == result.outcome_note and denied["reason"] == "use the migration pipeline"
    assert "hoop.review_rejected" not in kinds(stack, result.id)  # hoop decided; grantflow left it as is
    assert stack.hoop.review(review.review_id)["rejection_reason"] == "use the migration pipeline"


# ---------------------------------------------------------------------- discovery


async def test_discovery_is_idempotent_across_polls_and_restarts(time_stack: Stack) -> None:
    stack = time_stack
    jit = await pending(stack, "alice@example.com", "pg-prod-admin")
    onetime = await pending(stack, "erin@example.com", "pg-prod-ro", type="onetime", command="SELECT 1")
    first = await start_discovery(stack)  # its first poll starts both requests
    second: Discovery | None = None
    try:
        both = sorted([jit.review_id, onetime.review_id])
        state = await first.query(HoopReviewDiscoveryWorkflow.state)
        assert state.known_pending == both
        again = await poll(first)
        assert again.started == [] and again.pending == 2
        runs = {r.review_id: (await request(stack, r).describe()).run_id for r in (jit, onetime)}

        # A discovery started from scratch (no state) finds the running requests instead of new ones.
        await stop(first)
        second = await start_discovery(stack)
        assert (await second.query(HoopReviewDiscoveryWorkflow.state)).known_pending == both
        for review in (jit, onetime):
            assert (await request(stack, review).describe()).run_id == runs[review.review_id]
            assert kinds(stack, hoop_request_id(review.review_id)).count("request.created") == 1
        assert len(stack.store.list_requests(requester_id=stack.ref("alice@example.com").id)) == 1
    finally:
        await stop(first)
        if second is not None:
            await stop(second)
        for review in (jit, onetime):
            await cancel(stack, review)


async def test_reviews_grantflow_cannot_take(time_stack: Stack, discovery: Discovery) -> None:
    stack = time_stack
    await asyncio.to_thread(stack.hoop.add_connection, "legacy-mysql", reviewers=["dba"])
    await asyncio.to_thread(stack.hoop.add_user, "stranger@example.com", groups=["engineering"])
    no_policy = await pending(stack, "alice@example.com", "legacy-mysql")
    stranger = await pending(stack, "stranger@example.com", "pg-prod-admin")
    too_long = await pending(stack, "alice@example.com", "pg-prod-admin", duration_sec=8 * 3600)

    summary = await poll(discovery)
    assert summary.started == []
    assert summary.left_alone == [no_policy.review_id]
    assert sorted(summary.rejected) == sorted([stranger.review_id, too_long.review_id])
    # No policy: left to hoop, untouched, no request.
    assert stack.hoop.review(no_policy.review_id)["status"] == "PENDING"
    with pytest.raises(RPCError) as missing:
        await request(stack, no_policy).describe()
    assert missing.value.status is RPCStatusCode.NOT_FOUND
    # Not in the directory, or longer than the policy allows: rejected in hoop, saying why.
    rejected = stack.hoop.review(stranger.review_id)
    assert rejected["status"] == "REJECTED"
    assert (
        "stranger@example.com is not an active person in grantflow's directory"
        in rejected["rejection_reason"]
    )
    assert "allows at most 4h" in stack.hoop.review(too_long.review_id)["rejection_reason"]
    assert kinds(stack, hoop_request_id(stranger.review_id)) == ["hoop.review_rejected"]

    again = await poll(discovery)  # logged once: not admitted again while it stays pending
    assert again.left_alone == [] and again.rejected == [] and again.started == []
    state = await discovery.query(HoopReviewDiscoveryWorkflow.state)
    assert state.left_alone == [no_policy.review_id] and state.known_pending == []


async def test_one_open_jit_request_per_person_and_connection_but_several_commands(
    time_stack: Stack, discovery: Discovery
) -> None:
    stack = time_stack
    first = await pending(stack, "alice@example.com", "pg-prod-admin")
    second = await pending(stack, "alice@example.com", "pg-prod-admin")
    commands = [
        await pending(stack, "alice@example.com", "pg-prod-admin", type="onetime", command=f"SELECT {n}")
        for n in (1, 2)
    ]
    summary = await poll(discovery)
    assert summary.started == [first.review_id, *(c.review_id for c in commands)]
    assert summary.rejected == [second.review_id]
    assert stack.hoop.review(second.review_id)["rejection_reason"] == (
        f"alice@example.com already has request {hoop_request_id(first.review_id)} (PENDING) for "
        "pg-prod-admin in grantflow; use or extend that one instead of asking again in hoop"
    )
    for review in (first, *commands):
        await cancel(stack, review)


async def test_discovery_polls_on_its_interval_and_keeps_its_state_across_continue_as_new(
    time_stack: Stack,
) -> None:
    stack = time_stack
    review = await pending(stack, "alice@example.com", "pg-prod-admin")
    later = await pending(stack, "erin@example.com", "pg-prod-ro", type="onetime", command="SELECT 2")
    handle = await start_discovery(stack, settle=False, poll_interval=timedelta(seconds=15), polls_per_run=2)
    try:
        await discovered(stack, review)  # the first poll, at start
        first_run = (await handle.describe()).run_id
        # The second poll comes on the 15 s timer; after it (polls_per_run=2) the run continues as new.
        await stack.env.sleep(timedelta(seconds=20))
        await eventually(lambda: _run_changed(handle, first_run))
        state = await handle.query(HoopReviewDiscoveryWorkflow.state)
        assert state.known_pending == sorted([review.review_id, later.review_id])

        # The new run still knows the review was pending: a decision in hoop's UI reaches the request.
        await decide_in_hoop_ui(stack, review, "bob@example.com", status="REJECTED", rejection_reason="no")
        assert review.review_id in (await poll(handle)).signalled
        result = await request(stack, review).result()
        assert result.status is RequestStatus.DENIED and result.outcome_note == f"{REJECTED_IN_HOOP}: no"
        await replays(stack.env.client.get_workflow_handle(handle.id, run_id=first_run))
        await replays(handle)
    finally:
        await stop(handle)
        await cancel(stack, later)


async def _run_changed(handle: Discovery, run_id: str | None) -> bool:
    return (await handle.describe()).run_id != run_id


async def test_ensure_hoop_discovery_starts_once_and_polls_for_real(stack: Stack) -> None:
    """On the dev server, with a real 200 ms interval: started by the helper the worker calls."""
    settings = Settings(
        hoop_url=stack.hoop.url,
        task_queue=stack.task_queue,
        hoop_review_poll_interval=timedelta(milliseconds=200),
    )
    handle = await ensure_hoop_discovery(stack.env.client, settings)
    try:
        again = await ensure_hoop_discovery(stack.env.client, settings)
        assert handle.id == again.id == HOOP_DISCOVERY_WORKFLOW_ID
        assert (await handle.describe()).run_id == (await again.describe()).run_id

        review = await pending(stack, "erin@example.com", "pg-prod-ro", type="onetime", command="SELECT 1")
        req = request(stack, review)
        await discovered(stack, review)
        await decide(stack, req, "carol@example.com", Verdict.APPROVE)
        result = await req.result()
        assert result.status is RequestStatus.APPROVED
        assert stack.hoop.review(review.review_id)["status"] == "APPROVED"
    finally:
        await stop(handle)

"""What identity sync tells running requests, on the time-skipping server: leavers lose everything at
once, their undecided votes are withdrawn, joiners become eligible."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from domain.directory_sync import diff_directory, guard
from domain.identity import Person
from domain.requests import (
    ApproversChanged,
    DecisionInput,
    EndInput,
    EndReason,
    PersonLeft,
    RequestStatus,
    Verdict,
)
from tests.stack import Stack
from workflows.access_request import AccessRequestWorkflow


def left(stack: Stack, email: str) -> PersonLeft:
    return PersonLeft(person=stack.actor(email).person, reason="deactivated", sync_id="sync-1")


async def test_leaver_loses_active_grant_and_pending_request_at_once(time_stack: Stack) -> None:
    stack = time_stack
    active = await stack.start_request("alice@example.com", "pg-prod", "admin", timedelta(hours=4))
    await stack.wait_for(active, lambda v: v.approvers_resolved)
    for email in ("bob@example.com", "carol@example.com"):
        await active.execute_update(
            AccessRequestWorkflow.decide, DecisionInput(actor=stack.actor(email), verdict=Verdict.APPROVE)
        )
    view = await stack.wait_for(active, lambda v: v.status is RequestStatus.ACTIVE)
    session = await stack.connect("alice@example.com", "pg-prod-admin")
    pending = await stack.start_request("alice@example.com", "warehouse", "read", timedelta(hours=1))
    await stack.wait_for(pending, lambda v: v.approvers_resolved)

    await active.signal(AccessRequestWorkflow.person_left, left(stack, "alice@example.com"))
    await pending.signal(AccessRequestWorkflow.person_left, left(stack, "alice@example.com"))
    ended = await active.result()
    cancelled = await pending.result()

    assert ended.status is RequestStatus.ENDED and ended.end_reason is EndReason.LEAVER
    assert view.expires_at is not None and ended.ended_at is not None and ended.ended_at < view.expires_at
    assert stack.hoop.review(ended.grants[0].review_id)["status"] == "REVOKED"
    assert stack.hoop.session(session)["status"] == "done"
    assert cancelled.status is RequestStatus.CANCELLED and cancelled.grants == []
    assert cancelled.closed_reason is not None and cancelled.closed_reason.startswith("the requester left")
    ended_entry = stack.store.ledger_entries(subject=ended.id)[-1]
    assert ended_entry.kind == "request.ended" and ended_entry.data["end_reason"] == "leaver"
    assert ended_entry.channel == "scim"
    cancel_entry = stack.store.ledger_entries(subject=cancelled.id)[-1]
    assert cancel_entry.kind == "request.cancelled" and cancel_entry.data["leaver"] is True


async def test_votes_of_an_approver_who_leaves_before_quorum_are_withdrawn(time_stack: Stack) -> None:
    stack = time_stack
    handle = await stack.start_request("alice@example.com", "pg-prod", "admin", timedelta(hours=1))
    await stack.wait_for(handle, lambda v: v.approvers_resolved)
    await handle.execute_update(
        AccessRequestWorkflow.decide,
        DecisionInput(actor=stack.actor("bob@example.com"), verdict=Verdict.APPROVE),
    )
    await handle.signal(AccessRequestWorkflow.person_left, left(stack, "bob@example.com"))
    view = await stack.wait_for(
        handle, lambda v: "bob@example.com" not in {p.email for p in v.eligible_approvers}
    )
    assert view.approvals == [] and view.status is RequestStatus.PENDING
    # One more approval is not enough now: bob's vote no longer counts.
    view = await handle.execute_update(
        AccessRequestWorkflow.decide,
        DecisionInput(actor=stack.actor("carol@example.com"), verdict=Verdict.APPROVE),
    )
    assert view.status is RequestStatus.PENDING
    refused = await stack.env.client.get_workflow_handle(handle.id).query(AccessRequestWorkflow.view)
    assert [d.approver.email for d in refused.approvals] == ["carol@example.com"]
    await handle.execute_update(
        AccessRequestWorkflow.decide,
        DecisionInput(actor=stack.actor("dan@example.com"), verdict=Verdict.APPROVE),
    )
    await stack.wait_for(handle, lambda v: v.status is RequestStatus.ACTIVE)
    kinds = [e.kind for e in stack.store.ledger_entries(subject=handle.id)]
    assert "approver.left" in kinds
    withdrawn = next(e for e in stack.store.ledger_entries(subject=handle.id) if e.kind == "approver.left")
    assert withdrawn.data["withdrawn_votes"] == 1
    await handle.execute_update(AccessRequestWorkflow.relinquish, _end(stack, "alice@example.com"))
    await handle.result()


async def test_a_joiner_to_the_approver_group_may_approve_at_once(time_stack: Stack) -> None:
    stack = time_stack
    handle = await stack.start_request("alice@example.com", "pg-prod", "read", timedelta(hours=1))
    view = await stack.wait_for(handle, lambda v: v.approvers_resolved)
    erin = stack.actor("erin@example.com")
    eligible = [*view.eligible_approvers, erin.person]
    await handle.signal(
        AccessRequestWorkflow.approvers_changed, ApproversChanged(eligible=eligible, sync_id="s")
    )
    await stack.wait_for(handle, lambda v: "erin@example.com" in {p.email for p in v.eligible_approvers})
    for _ in range(200):  # the joiner is sent the request with a review link
        if any(m.recipient.email == "erin@example.com" and m.link for m in stack.notifier.messages):
            break
        await asyncio.sleep(0.02)
    await handle.execute_update(
        AccessRequestWorkflow.decide, DecisionInput(actor=erin, verdict=Verdict.APPROVE)
    )
    await stack.wait_for(handle, lambda v: v.status is RequestStatus.ACTIVE)
    assert any(m.recipient.email == "erin@example.com" and m.link for m in stack.notifier.messages)
    await handle.execute_update(AccessRequestWorkflow.relinquish, _end(stack, "alice@example.com"))
    await handle.result()


def _end(stack: Stack, email: str) -> EndInput:
    return EndInput(actor=stack.actor(email))


def _p(
    pid: str, email: str, *, active: bool = True, manager: str | None = None, groups: tuple[str, ...] = ()
) -> Person:
    return Person(id=pid, email=email, active=active, manager_id=manager, groups=groups)


def test_diff_sees_joiners_movers_leavers_and_group_changes() -> None:
    current = [
        _p("1", "a@x", groups=("g",)),
        _p("2", "b@x", manager="1", groups=("g",)),
        _p("3", "c@x"),
        _p("4", "d@x", active=False),
    ]
    incoming = [
        _p("1", "a@x"),
        _p("2", "b@x", manager="3"),
        _p("4", "d@x"),  # reactivated
        _p("5", "e@x"),  # new
    ]
    changes = diff_directory(current, incoming, {"g": ["1", "5"]}, full=True)
    assert {p.id for p in changes.joiners} == {"4", "5"}
    assert [(m.person.id, m.old_manager_id, m.new_manager_id) for m in changes.movers] == [("2", "1", "3")]
    assert [(leaver.person.id, leaver.reason.value) for leaver in changes.leavers] == [("3", "deleted")]
    assert [(g.group, g.added, g.removed) for g in changes.group_changes] == [("g", ["5"], ["2"])]
    assert changes.memberships == {"g": ["1", "5"]}

    incremental = diff_directory(current, [_p("2", "b@x", active=False)], {}, full=False)
    assert [(leaver.person.id, leaver.reason.value) for leaver in incremental.leavers] == [
        ("2", "deactivated")
    ]
    assert incremental.group_changes == []  # an incremental listing says nothing about unlisted groups


def test_guard_stops_mass_deactivation_and_emptied_groups() -> None:
    current = [_p(str(i), f"{i}@x", groups=("all",)) for i in range(20)]
    three_leave = diff_directory(
        current, [p.model_copy(update={"active": False}) for p in current[:3]], {}, full=False
    )
    reason = guard(three_leave, 20, 0.10)
    assert reason is not None and "3 of 20" in reason and "nothing was applied" in reason
    assert guard(three_leave, 20, 0.20) is None
    emptied = diff_directory(current, current, {"all": []}, full=False)
    reason = guard(emptied, 20, 0.5)
    assert reason is not None and "empty group(s) all" in reason
    assert guard(diff_directory(current, current, {}, full=False), 20, 0.10) is None

"""Replay tests: saved histories of long-lived workflows must replay on the current code.

A grant workflow lives as long as its grant (hours to weeks), so a deploy meets histories written by
the previous release. A change that alters the order of commands fails here. grantflow has not been
released yet, so no deployment runs an older history: a deliberate change regenerates the saved
histories (``RECORD_HISTORIES=1 pytest tests/test_replay.py tests/test_hoop_reviews.py``) instead of
adding ``workflow.patched`` branches. From the first release on, a change patches exactly what a released
version may have running (see the README's development section). The saved histories under
``tests/histories/`` are real runs, most of them decided through Updates as the edge sent decisions before
they became signalled commands (``signalled_extended`` is the edge's way now). Besides the plain
paths, they hold requests presented in every channel with a reminder, an approved extension, a renewal
past 48 h, break-glass with its retro review, and a leaver (``PRESENTED_RUNS``), and a campaign whose owner
extended its stage by an Update and then by a signalled command, and ended it by one (``CAMPAIGN_RUN``).
Runs continued as new are replayed by ``tests/test_bounded_history.py``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from domain.campaign_commands import ExtendInput as CampaignExtendInput
from domain.campaign_state import CampaignStatus
from domain.policy import RolePolicy
from domain.requests import (
    AccessRequestInput,
    DecisionInput,
    EndInput,
    EndReason,
    ExtendInput,
    PersonLeft,
    RequestAction,
    RequestCommand,
    RequestStatus,
    RequestView,
    RetroReview,
    Verdict,
)
from tests.stack import HOOP_KEY, LEDGER_KEY, LINK_SECRET, Stack
from tests.test_campaign_workflow import ANALYTICS, finished, synced, until_open
from tests.test_campaign_workflow import handle as campaign_handle
from workflows.access_request import AccessRequestWorkflow
from workflows.campaign import CampaignWorkflow

HISTORIES = Path(__file__).resolve().parent / "histories"
SAVED = sorted(HISTORIES.glob("*.json"))


@pytest.mark.parametrize("path", SAVED, ids=[p.stem for p in SAVED])
async def test_saved_history_replays_on_current_code(path: Path) -> None:
    data = json.loads(path.read_text())
    history = WorkflowHistory.from_json(data["workflow_id"], data["history"])
    replayer = Replayer(
        workflows=[AccessRequestWorkflow, CampaignWorkflow], data_converter=pydantic_data_converter
    )
    await replayer.replay_workflow(history)


UPDATE_AFTER_TIMED_OUT_TASK = HISTORIES / "sdk_defects" / "update_after_timed_out_task.json"


@pytest.mark.xfail(
    strict=True,
    raises=NondeterminismError,
    reason="SDK defect: an Update delivered to a worker that rebuilds the workflow after its task timed out "
    "is ordered after the task's activity results; replay orders it before them (nondeterminism error)",
)
async def test_an_update_delivered_after_a_timed_out_task_replays() -> None:
    """A real history from the reliability suite's worker-crashes scenario (``tests/reliability``): the
    worker was killed mid-task (event 101, task timed out); an extension (an Update) arrived meanwhile; the
    next worker, rebuilding the workflow, ran the activity results first (the ``notify`` at event 107) and
    accepted the Update after (108). Replaying the same history, the SDK accepts the Update first and fails
    with "Update machine does not handle this event: HistoryEvent(id: 107, ActivityTaskScheduled)": the
    workflow is stuck until an operator resets it, though hoop still ends the grant at its own expiry.
    grantflow's code is the same on both sides; the order is the SDK's (temporalio 1.35). The edge now sends
    decisions and actions as signals (``AccessRequestWorkflow.submit``), and a campaign owner's commands too
    (``CampaignWorkflow.owner_command``), which cannot meet this; the Update handlers remain for histories
    that hold Updates.
    Strict: once an SDK release replays this history, this test fails and says so."""
    data = json.loads(UPDATE_AFTER_TIMED_OUT_TASK.read_text())
    history = WorkflowHistory.from_json(data["workflow_id"], data["history"])
    replayer = Replayer(workflows=[AccessRequestWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


def test_histories_are_saved() -> None:
    assert {p.stem for p in SAVED} >= {
        "approved_then_relinquished",
        "denied",
        "signalled_extended",
        CAMPAIGN_RUN,
        *PRESENTED_RUNS,
    }


# The saved runs of requests presented in every channel, each with what a long-lived request meets.
PRESENTED_RUNS = (
    "presented_reminded_extended_renewed",  # a reminder, an approved extension, renewal past 48 h, expiry
    "break_glass_retro_approved",  # granted at once, retro review approved by quorum, relinquished
    "leaver_ended_active_access",  # the requester left while ACTIVE: revoked by identity sync
)


def _payload_text(node: object) -> str:
    """Every payload in a history, decoded (the JSON form carries them base64-encoded)."""
    if isinstance(node, dict):
        if "metadata" in node and "data" in node and isinstance(node["data"], str):
            return base64.b64decode(node["data"]).decode("utf-8", "replace")
        return "\n".join(_payload_text(v) for v in node.values())
    if isinstance(node, list):
        return "\n".join(_payload_text(v) for v in node)
    return ""


async def _record(stack: Stack, name: str, history: WorkflowHistory) -> None:
    if os.environ.get("RECORD_HISTORIES") == "1":
        HISTORIES.mkdir(exist_ok=True)
        (HISTORIES / f"{name}.json").write_text(
            json.dumps(
                {"workflow_id": history.workflow_id, "history": json.loads(history.to_json())}, indent=1
            )
        )


async def test_current_code_replays_its_own_history_and_keeps_secrets_out(time_stack: Stack) -> None:
    """Runs the main paths, replays them, and checks no secret reached Temporal's history."""
    stack = time_stack
    approved = await stack.start_request("alice@example.com", "pg-prod", "admin", timedelta(hours=1))
    await stack.wait_for(approved, lambda v: v.approvers_resolved)
    for email in ("bob@example.com", "carol@example.com"):
        await approved.execute_update(
            AccessRequestWorkflow.decide, DecisionInput(actor=stack.actor(email), verdict=Verdict.APPROVE)
        )
    await stack.wait_for(approved, lambda v: v.status is RequestStatus.ACTIVE)
    await approved.execute_update(
        AccessRequestWorkflow.relinquish, EndInput(actor=stack.actor("alice@example.com"))
    )
    await approved.result()

    denied = await stack.start_request("erin@example.com", "pg-prod", "read", timedelta(hours=1))
    await stack.wait_for(denied, lambda v: v.approvers_resolved)
    await denied.execute_update(
        AccessRequestWorkflow.decide,
        DecisionInput(actor=stack.actor("dan@example.com"), verdict=Verdict.DENY),
    )
    await denied.result()

    # Decisions and actions as the edge sends them now: commands signalled to the request.
    signalled = await stack.start_request("alice@example.com", "pg-prod", "admin", timedelta(hours=1))
    await stack.wait_for(signalled, lambda v: v.approvers_resolved)
    for email in ("bob@example.com", "carol@example.com"):
        await _send(signalled, _command(RequestAction.DECIDE, decision=_decide(stack, email)))
    await stack.wait_for(signalled, lambda v: v.status is RequestStatus.ACTIVE)
    extension = ExtendInput(actor=stack.actor("alice@example.com"), by=timedelta(minutes=30), reason="more")
    await _send(signalled, _command(RequestAction.EXTEND, extension=extension))
    for email in ("bob@example.com", "carol@example.com"):
        await _send(signalled, _command(RequestAction.DECIDE, decision=_decide(stack, email)))
    await stack.wait_for(
        signalled, lambda v: v.pending_extension is None and v.granted_total == timedelta(minutes=90)
    )
    await _send(
        signalled, _command(RequestAction.RELINQUISH, end=EndInput(actor=stack.actor("alice@example.com")))
    )
    assert (await signalled.result()).status is RequestStatus.ENDED

    replayer = Replayer(workflows=[AccessRequestWorkflow], data_converter=pydantic_data_converter)
    runs = (("approved_then_relinquished", approved), ("denied", denied), ("signalled_extended", signalled))
    for name, handle in runs:
        history = await handle.fetch_history()
        await replayer.replay_workflow(history)
        raw = _payload_text(json.loads(history.to_json()))
        assert "alice@example.com" in raw or "erin@example.com" in raw  # the decoding works
        for secret in (HOOP_KEY, LEDGER_KEY.decode(), LINK_SECRET):
            assert secret not in raw, f"a secret reached the history of {name}"
        assert "/review/" not in raw, "review links are credentials: they belong in activities only"
        await _record(stack, name, history)


Handle = WorkflowHandle[AccessRequestWorkflow, RequestView]


async def _start_presented(
    stack: Stack,
    requester: str,
    resource: str,
    role: str,
    duration: timedelta,
    *,
    break_glass: bool = False,
    policy: RolePolicy | None = None,
) -> Handle:
    """A request presented in Slack, Jira and email: the presentation activity is scheduled for every change
    as in production (this worker has no channel configured, so it reaches nobody)."""
    role_name, role_policy = stack.policies.role(resource, role)
    actor = stack.actor(requester)
    request_id = f"req-{uuid.uuid4().hex[:12]}"
    inp = AccessRequestInput(
        request_id=request_id,
        requester=actor.person,
        submitted_by=actor,
        resource=resource,
        role=role_name,
        policy=policy or role_policy,
        duration=duration,
        reason="INC-8",
        break_glass=break_glass,
        created_at=await stack.now(),
        timings=stack.timings,
        channels=["slack", "jira", "email"],
    )
    return await stack.env.client.start_workflow(
        AccessRequestWorkflow.run, inp, id=request_id, task_queue=stack.task_queue
    )


async def _ended(stack: Stack, handle: Handle, step: timedelta) -> RequestView:
    """The final view, letting Temporal's time run on in ``step``s until the request is over."""
    for _ in range(50):
        if (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED:
            return await handle.result()
        await stack.env.sleep(step)
    raise AssertionError(f"request {handle.id} did not end")


def _decide(stack: Stack, email: str, verdict: Verdict = Verdict.APPROVE) -> DecisionInput:
    return DecisionInput(actor=stack.actor(email), verdict=verdict, reason="ok")


def _command(action: RequestAction, **carried: DecisionInput | ExtendInput | EndInput) -> RequestCommand:
    return RequestCommand(
        id=f"cmd-{uuid.uuid4().hex}", action=action, refusal_kind=f"{action.value}.refused", **carried
    )


async def _send(handle: Handle, command: RequestCommand) -> None:
    """Signal ``command`` and wait for the request's answer; it must be carried out."""
    await handle.signal(AccessRequestWorkflow.submit, command)
    for _ in range(100):
        answer = await handle.query(AccessRequestWorkflow.answer, command.id)
        if answer is not None:
            assert answer.refusal is None, answer.refusal
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id} never answered {command.action.value}")


async def test_presented_requests_with_reminders_extensions_renewals_break_glass_and_leavers_replay(
    time_stack: Stack,
) -> None:
    stack = time_stack
    _, warehouse = stack.policies.role("warehouse", "read")
    asked = warehouse.model_copy(update={"self_extension": False, "reminder_before": timedelta(hours=12)})
    long = await _start_presented(
        stack, "erin@example.com", "warehouse", "read", timedelta(days=2), policy=asked
    )
    await stack.wait_for(long, lambda v: v.approvers_resolved)
    await stack.env.sleep(timedelta(hours=13))  # past the reminder
    await long.execute_update(AccessRequestWorkflow.decide, _decide(stack, "dina@example.com"))
    await stack.wait_for(long, lambda v: v.status is RequestStatus.ACTIVE)
    await long.execute_update(
        AccessRequestWorkflow.extend,
        ExtendInput(actor=stack.actor("erin@example.com"), by=timedelta(days=1), reason="migration"),
    )
    await long.execute_update(AccessRequestWorkflow.decide, _decide(stack, "dina@example.com"))
    long_view = await _ended(stack, long, timedelta(days=1))
    assert long_view.end_reason is EndReason.EXPIRED and len(long_view.grants) == 2  # renewed past 48 h
    assert long_view.granted_total == timedelta(days=3)
    assert any(m.event == "reminder" for m in stack.notifier.messages)

    glass = await _start_presented(
        stack, "alice@example.com", "pg-prod", "admin", timedelta(hours=4), break_glass=True
    )
    await stack.wait_for(glass, lambda v: v.status is RequestStatus.ACTIVE)
    for email in ("bob@example.com", "carol@example.com"):
        await glass.execute_update(AccessRequestWorkflow.decide, _decide(stack, email))
    await glass.execute_update(
        AccessRequestWorkflow.relinquish, EndInput(actor=stack.actor("alice@example.com"))
    )
    glass_view = await _ended(stack, glass, timedelta(minutes=1))
    assert glass_view.retro_review is RetroReview.APPROVED
    assert glass_view.end_reason is EndReason.RELINQUISHED

    leaver = await _start_presented(stack, "frank@example.com", "pg-prod", "read", timedelta(hours=2))
    await stack.wait_for(leaver, lambda v: v.status is RequestStatus.ACTIVE)  # auto-approved: on call
    await leaver.signal(
        AccessRequestWorkflow.person_left,
        PersonLeft(person=stack.ref("frank@example.com"), reason="deactivated", sync_id="sync-8"),
    )
    leaver_view = await _ended(stack, leaver, timedelta(minutes=1))
    assert leaver_view.end_reason is EndReason.LEAVER

    replayer = Replayer(workflows=[AccessRequestWorkflow], data_converter=pydantic_data_converter)
    for name, handle in zip(PRESENTED_RUNS, (long, glass, leaver), strict=True):
        history = await handle.fetch_history()
        activities = [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        ]
        assert "present_request" in activities, f"{name} was never presented"
        await replayer.replay_workflow(history)
        raw = _payload_text(json.loads(history.to_json()))
        for secret in (HOOP_KEY, LEDGER_KEY.decode(), LINK_SECRET):
            assert secret not in raw, f"a secret reached the history of {name}"
        assert "/review/" not in raw, "review links are credentials: they belong in activities only"
        await _record(stack, name, history)


CAMPAIGN_RUN = "campaign_extended_then_ended_by_signal"


async def test_a_campaign_commanded_by_an_update_and_by_signals_replays(scim_stack: Stack) -> None:
    """The owner's commands the way the edge sent them before (an Update) and sends them now (signalled
    commands, ``CampaignWorkflow.owner_command``), in one campaign that ends early and closes."""
    stack = scim_stack
    service = await synced(stack)
    margaret = stack.actor("margaret@example.com")
    record = await service.launch(ANALYTICS, margaret)
    await until_open(stack, record.id)
    campaign = campaign_handle(stack, record.id)
    await campaign.execute_update(
        CampaignWorkflow.extend,
        CampaignExtendInput(actor=margaret, by=timedelta(days=1), reason="holidays"),
    )
    assert "stage 1 now closes at" in await service.extend(record.id, margaret, timedelta(days=2), "more")
    assert "closing now" in await service.end_stage(record.id, margaret, "everyone answered")
    outcome = await finished(stack, record.id, after=timedelta(minutes=1))
    assert outcome.status is CampaignStatus.CLOSED

    history = await campaign.fetch_history()
    signalled = [e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")]
    assert [e.workflow_execution_signaled_event_attributes.signal_name for e in signalled] == [
        "owner_command",
        "owner_command",
    ]
    replayer = Replayer(workflows=[CampaignWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
    raw = _payload_text(json.loads(history.to_json()))
    assert "margaret@example.com" in raw  # the decoding works
    for secret in (HOOP_KEY, LEDGER_KEY.decode(), LINK_SECRET):
        assert secret not in raw, f"a secret reached the history of {CAMPAIGN_RUN}"
    await _record(stack, CAMPAIGN_RUN, history)

"""Decisions and actions reach a request as signalled commands (``RequestCommand``), answered by query.

A signal is durable the moment the server has it: a decision sent while no worker runs is carried out
when one starts, and the history it leaves replays. A command delivered twice is carried out once, and a
refusal the workflow makes itself (its state moved after the edge asked) is recorded by the workflow.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

import web.workflow_commands
from domain.requests import (
    COMMAND_ID,
    CommandAnswer,
    DecisionInput,
    RequestAction,
    RequestCommand,
    RequestStatus,
    RequestView,
    Verdict,
)
from tests.stack import Stack, start_stack
from tests.test_service import create_admin_request, make_service, refusals, wait_view
from web.service.errors import NotYetCarriedOut
from web.workflow_commands import recorded_answer
from workflows.access_request import AccessRequestWorkflow


@pytest_asyncio.fixture(loop_scope="session")
async def idle_stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    """The stack on the dev server with no worker running: each test starts and stops its own."""
    async with start_stack(dev_env, tmp_path, time_skipping=False, run_worker=False) as stack:
        # its own task queue: the stack's worker object (not running) already holds the stack's
        yield dataclasses.replace(stack, task_queue=f"tq-idle-{uuid.uuid4().hex}")


async def _idle(stack: Stack, request_id: str) -> None:
    """Until the request waits for its approvers with nothing in flight: a worker stopped mid-task leaves
    that task to time out (10 s) before another worker may take it."""
    handle = stack.env.client.get_workflow_handle(request_id)
    for _ in range(200):
        raw = (await handle.describe()).raw_description
        if not raw.HasField("pending_workflow_task") and not raw.pending_activities:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"request {request_id} never went idle")


def _approve(stack: Stack, email: str, command_id: str | None = None) -> RequestCommand:
    return RequestCommand(
        id=command_id or f"cmd-{uuid.uuid4().hex}",
        action=RequestAction.DECIDE,
        decision=DecisionInput(actor=stack.actor(email), verdict=Verdict.APPROVE, reason="ok"),
        refusal_kind="decision.refused",
        refusal_data={"verdict": "approve", "reason_given": "ok"},
    )


# Long: the second worker waits about 30 s for its first task, because the first one, stopped in this process
# over the same connection, leaves its long polls open on the server, which hands them the task first.
@pytest.mark.long
async def test_a_decision_sent_while_no_worker_runs_is_carried_out_when_one_starts(idle_stack: Stack) -> None:
    stack = idle_stack
    service = make_service(stack)
    async with stack.worker():
        request_id = await create_admin_request(stack, service)
        await _idle(stack, request_id)
    # No worker polls now. The edge's question (would you refuse?) goes unanswered; the decision is sent
    # anyway, and the caller is told it was delivered, not that it failed.
    service.answer_wait = 1.0
    with pytest.raises(NotYetCarriedOut, match="the decision was delivered but no worker"):
        await service.decide(request_id, stack.actor("bob@example.com"), Verdict.APPROVE, "ok")
    assert (await service.show(request_id)).approvals == []  # the store has not seen it yet

    service = make_service(stack)
    async with stack.worker():
        view = await wait_view(service, request_id, lambda v: len(v.approvals) == 1)
        assert [d.approver.email for d in view.approvals] == ["bob@example.com"]
        view = await service.decide(request_id, stack.actor("carol@example.com"), Verdict.APPROVE, "ok")
        assert view.status is RequestStatus.ACTIVE
        approved = [
            e for e in stack.store.ledger_entries(subject=request_id) if e.kind == "decision.approved"
        ]
        assert sorted(e.actor for e in approved) == ["bob@example.com", "carol@example.com"]

        handle = stack.env.client.get_workflow_handle(request_id)
        history = await handle.fetch_history()
    signalled = [e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")]
    assert len(signalled) == 2
    replayer = Replayer(workflows=[AccessRequestWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


async def test_a_command_delivered_twice_is_carried_out_once(idle_stack: Stack) -> None:
    stack = idle_stack
    service = make_service(stack)
    async with stack.worker():
        request_id = await create_admin_request(stack, service)
        handle = stack.env.client.get_workflow_handle_for(AccessRequestWorkflow.run, request_id)
        command = _approve(stack, "bob@example.com")
        await handle.signal(AccessRequestWorkflow.submit, command)
        await handle.signal(AccessRequestWorkflow.submit, command)
        answer = await _answer(handle, command.id)
        assert answer.refusal is None
        view = await wait_view(service, request_id, lambda v: len(v.approvals) == 1)
        await asyncio.sleep(0.5)  # room for a second copy to have been (wrongly) carried out
        assert len((await service.show(request_id)).approvals) == 1
    # The second copy was dropped, not refused as a second vote: nothing recorded as refused.
    assert refusals(stack, request_id, "decision.refused") == []
    assert [d.approver.email for d in view.approvals] == ["bob@example.com"]


async def test_a_refusal_the_workflow_makes_itself_is_answered_and_recorded(idle_stack: Stack) -> None:
    """The edge asks before sending; a command that reaches the workflow anyway (its state moved in between,
    here: sent without asking) is refused there, answered with the sentence and recorded in the ledger."""
    stack = idle_stack
    service = make_service(stack)
    async with stack.worker():
        request_id = await create_admin_request(stack, service)
        handle = stack.env.client.get_workflow_handle_for(AccessRequestWorkflow.run, request_id)
        own = _approve(stack, "alice@example.com")  # the requester
        await handle.signal(AccessRequestWorkflow.submit, own)
        answer = await _answer(handle, own.id)
        assert answer.refusal is not None and "own request" in answer.refusal
        assert answer.view.approvals == [] and answer.view.status is RequestStatus.PENDING
        recorded = refusals(stack, request_id, "decision.refused")
        assert len(recorded) == 1
        assert recorded[0].actor == "alice@example.com"
        assert recorded[0].data["refusal"] == answer.refusal
        assert recorded[0].data["verdict"] == "approve"
        assert recorded[0].data[COMMAND_ID] == own.id


async def test_decisions_are_answered_from_the_store_without_asking_the_workflow(
    idle_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workflow records a decision's outcome under the command's id, and the edge reads it from the
    store: with the query fallback switched off, approvals and a refusal the workflow makes itself are still
    answered, each with the request as it stood after it."""
    monkeypatch.setattr(web.workflow_commands, "QUERY_FALLBACK_AFTER", ())
    stack = idle_stack
    service = make_service(stack)
    async with stack.worker():
        request_id = await create_admin_request(stack, service)
        view = await service.decide(request_id, stack.actor("bob@example.com"), Verdict.APPROVE, "ok")
        assert [d.approver.email for d in view.approvals] == ["bob@example.com"]
        assert view.status is RequestStatus.PENDING

        # Refused by the workflow (sent without the edge's check): the refusal is read from the store too.
        handle = stack.env.client.get_workflow_handle_for(AccessRequestWorkflow.run, request_id)
        since = stack.store.ledger_head().seq
        own = _approve(stack, "alice@example.com")
        await handle.signal(AccessRequestWorkflow.submit, own)
        answer = await service._answer(handle, own, since)
        assert answer is not None and answer.refusal is not None and "own request" in answer.refusal

        # The deciding vote: answered from the store, then followed there until the grant is written.
        view = await service.decide(request_id, stack.actor("carol@example.com"), Verdict.APPROVE, "ok")
        assert view.status is RequestStatus.ACTIVE
    approved = [e for e in stack.store.ledger_entries(subject=request_id) if e.kind == "decision.approved"]
    assert len(approved) == 2
    assert all(e.data[COMMAND_ID].startswith("cmd-") for e in approved)
    assert len({e.data[COMMAND_ID] for e in approved}) == 2


async def test_an_outcome_the_store_does_not_show_is_asked_of_the_workflow_now_and_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker of an older release records outcomes without the command's id: the edge then asks the
    workflow, at the fallback moments only, and gives up (None) when neither answers in time."""
    monkeypatch.setattr(web.workflow_commands, "QUERY_FALLBACK_AFTER", (0.3, 0.6))
    reads = 0
    asked_at: list[float] = []
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def recorded() -> str | None:
        nonlocal reads
        reads += 1
        return None

    async def asked() -> str | None:
        asked_at.append(loop.time() - started)
        return "carried out" if len(asked_at) == 2 else None

    assert await recorded_answer(recorded, asked, wait=5.0) == "carried out"
    assert len(asked_at) == 2 and 0.3 <= asked_at[0] < asked_at[1] and asked_at[1] >= 0.6
    assert reads >= 5  # the store was read every STORE_POLL in between

    asked_at.clear()

    async def never() -> str | None:
        asked_at.append(loop.time() - started)
        return None

    started = loop.time()
    assert await recorded_answer(recorded, never, wait=1.0) is None
    assert len(asked_at) == 2


async def _answer(
    handle: WorkflowHandle[AccessRequestWorkflow, RequestView], command_id: str
) -> CommandAnswer:
    for _ in range(200):
        answer = await handle.query(AccessRequestWorkflow.answer, command_id)
        if answer is not None:
            return answer
        await asyncio.sleep(0.05)
    raise AssertionError(f"no answer to {command_id}")


async def test_commands_arriving_together_are_carried_out_one_after_another(idle_stack: Stack) -> None:
    """Two approvals of an extension and a second vote by one of the approvers, arriving together (as they
    do when a worker comes back to commands sent while it was down): each command is carried out to its
    end before the next starts, so the refusal of the repeated vote is recorded after the extension it
    arrived behind, whichever came first in the worker's task, and the history replays."""
    stack = idle_stack
    service = make_service(stack)
    async with stack.worker():
        request_id = await create_admin_request(stack, service)
        for approver in ("bob@example.com", "carol@example.com"):
            await service.decide(request_id, stack.actor(approver), Verdict.APPROVE, "ok")
        await wait_view(service, request_id, lambda v: v.status is RequestStatus.ACTIVE)
        await service.extend(request_id, stack.actor("alice@example.com"), "30m", "more")
        since = stack.store.ledger_head().seq
        handle = stack.env.client.get_workflow_handle_for(AccessRequestWorkflow.run, request_id)
        bob, carol, bob_again = (
            _approve(stack, email) for email in ("bob@example.com", "carol@example.com", "bob@example.com")
        )
        for command in (bob, carol, bob_again):
            await handle.signal(AccessRequestWorkflow.submit, command)
        answers = {command.id: await _answer(handle, command.id) for command in (bob, carol, bob_again)}
        history = await handle.fetch_history()
    assert answers[bob.id].refusal is None and answers[carol.id].refusal is None
    assert answers[bob_again.id].refusal is not None
    entries = [e for e in stack.store.ledger_entries(subject=request_id) if e.seq > since]
    carried = [(e.kind, e.data.get(COMMAND_ID)) for e in entries if e.data.get(COMMAND_ID)]
    # The deciding vote's own entry carries no id: the extension it applied names the command.
    assert carried == [
        ("decision.approved", bob.id),
        ("extension.applied", carol.id),
        ("decision.refused", bob_again.id),
    ]
    kinds = [e.kind for e in entries if e.kind.startswith(("decision.", "extension."))]
    assert kinds == ["decision.approved", "decision.approved", "extension.applied", "decision.refused"]
    replayer = Replayer(workflows=[AccessRequestWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)

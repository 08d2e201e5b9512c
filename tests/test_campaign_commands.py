"""A campaign owner's commands as signalled commands answered by query (``CampaignWorkflow.owner_command``):
the refusal rules, a command delivered twice carried out once, a refusal the workflow makes itself (its
state moved after the edge checked) answered and recorded in the ledger, and a command sent while no worker
runs carried out once one does."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowHandle

import web.campaign_service
from domain.campaign_commands import (
    CampaignCommand,
    CampaignCommandAnswer,
    CommandKind,
    CommandStanding,
    ExtendInput,
    OwnerCommand,
    Phase,
    command_refusal,
)
from domain.campaign_state import CampaignStatus
from domain.identity import Actor, PersonRef
from tests.stack import Stack
from tests.test_campaign_workflow import ANALYTICS, finished, handle, synced, until_open
from web.campaign_service import CampaignService
from web.service import Refused
from web.service.errors import NotYetCarriedOut
from workflows.campaign import CampaignResult, CampaignWorkflow

OWNER = "margaret@example.com"

# ------------------------------------------------------------------------------------------ the rules


def _actor(email: str, admin: str | None = None) -> Actor:
    return Actor(
        person=PersonRef(id=email.split("@")[0], email=email),
        channel="api",
        admin=PersonRef(id=admin.split("@")[0], email=admin) if admin else None,
    )


def _standing(**changes: Any) -> CommandStanding:
    base: dict[str, Any] = {
        "campaign_id": "cmp-1",
        "owner": OWNER,
        "phase": Phase.STAGE,
        "stage": 0,
        "stage_open": True,
    }
    return CommandStanding(**{**base, **changes})


OWNERS = OwnerCommand(actor=_actor(OWNER))
EXTEND_A_DAY = ExtendInput(actor=_actor(OWNER), by=timedelta(days=1))


@pytest.mark.parametrize(
    ("standing", "kind", "command", "sentence"),
    [
        (
            _standing(),
            CommandKind.END_STAGE,
            OwnerCommand(actor=_actor("ken@example.com")),
            "ken@example.com cannot end the open stage of campaign cmp-1: only its owner "
            "(margaret@example.com) or an administrator can",
        ),
        (_standing(phase=Phase.DONE), CommandKind.CANCEL, OWNERS, "campaign cmp-1 is already finished"),
        (
            _standing(phase=Phase.APPLY),
            CommandKind.CANCEL,
            OWNERS,
            "campaign cmp-1 is already applying its decisions",
        ),
        (
            _standing(),
            CommandKind.APPLY,
            OWNERS,
            "campaign cmp-1 is not waiting for its revocations to be applied",
        ),
        (
            _standing(phase=Phase.AWAIT_APPLY, stage_open=False),
            CommandKind.EXTEND,
            EXTEND_A_DAY,
            "campaign cmp-1 has no open review stage",
        ),
        (
            _standing(stage=1, ending_early=True),
            CommandKind.EXTEND,
            EXTEND_A_DAY,
            "stage 2 of campaign cmp-1 is already closing",
        ),
        (_standing(cancelling=True), CommandKind.END_STAGE, OWNERS, "campaign cmp-1 is being cancelled"),
        (
            _standing(),
            CommandKind.EXTEND,
            ExtendInput(actor=_actor(OWNER), by=timedelta(days=91)),
            "an extension of 91d is more than 90 days",
        ),
    ],
)
def test_each_rule_refuses_with_its_sentence(
    standing: CommandStanding, kind: CommandKind, command: OwnerCommand, sentence: str
) -> None:
    assert command_refusal(standing, kind, command) == sentence


def test_the_owner_and_administrators_may_command_an_open_campaign() -> None:
    assert command_refusal(_standing(), CommandKind.EXTEND, EXTEND_A_DAY) is None
    assert command_refusal(_standing(), CommandKind.CANCEL, OWNERS) is None
    on_behalf = OwnerCommand(actor=_actor("ken@example.com", admin="grace@example.com"))
    assert command_refusal(_standing(), CommandKind.END_STAGE, on_behalf) is None
    assert command_refusal(_standing(phase=Phase.AWAIT_APPLY), CommandKind.APPLY, OWNERS) is None


# ------------------------------------------------------------------------------------------ end to end

Handle = WorkflowHandle[CampaignWorkflow, CampaignResult]


def _command(kind: CommandKind, carried: OwnerCommand) -> CampaignCommand:
    return CampaignCommand.of(f"cmd-{uuid.uuid4().hex}", kind, carried)


async def _answered(campaign: Handle, command_id: str) -> CampaignCommandAnswer:
    """The workflow's answer to ``command_id`` (real time: only activities run meanwhile)."""
    for _ in range(200):
        answer = await campaign.query(CampaignWorkflow.answer, command_id)
        if answer is not None:
            return answer
        await asyncio.sleep(0.05)
    raise AssertionError(f"{campaign.id} never answered {command_id}")


def _entries(stack: Stack, campaign_id: str, kind: str) -> list[dict[str, Any]]:
    return [e.data for e in stack.store.ledger_entries(subject=campaign_id) if e.kind == kind]


async def _until(check: Callable[[], bool], what: str) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


async def test_a_command_delivered_twice_is_carried_out_once(scim_stack: Stack) -> None:
    stack = scim_stack
    service = await synced(stack)
    margaret = stack.actor(OWNER)
    record = await service.launch(ANALYTICS, margaret)
    await until_open(stack, record.id)
    campaign = handle(stack, record.id)
    before = (await campaign.query(CampaignWorkflow.state)).stage_closes_at
    assert before is not None
    extend = _command(
        CommandKind.EXTEND, ExtendInput(actor=margaret, by=timedelta(days=2), reason="holidays")
    )
    await campaign.signal(CampaignWorkflow.owner_command, extend)
    await campaign.signal(CampaignWorkflow.owner_command, extend)  # a client retrying after a lost reply
    answer = await _answered(campaign, extend.id)
    assert answer.refusal is None and "stage 1 now closes at" in answer.message
    state = await campaign.query(CampaignWorkflow.state)
    assert state.extensions == 1 and state.stage_closes_at == before + timedelta(days=2)
    await _until(lambda: bool(_entries(stack, record.id, "campaign.extended")), "the extension recorded")
    await asyncio.sleep(0.5)  # a second extension would be recorded by now
    assert [d["reason"] for d in _entries(stack, record.id, "campaign.extended")] == ["holidays"]

    moved = await service.extend(record.id, margaret, timedelta(days=1))  # a new command: carried out
    assert "stage 1 now closes at" in moved
    assert (await campaign.query(CampaignWorkflow.state)).extensions == 2
    await service.cancel(record.id, margaret, "test over")
    assert (await finished(stack, record.id, after=timedelta(seconds=1))).status is CampaignStatus.CANCELLED


async def test_a_refusal_the_workflow_makes_itself_is_answered_and_recorded(
    scim_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner extends the stage while an administrator ends it: the edge's check passes, the stage is
    ended before the extension arrives, and the workflow refuses it; the edge, given that answer, tells
    the owner why. The workflow records the refused attempt in the ledger before it answers — also when
    no edge is waiting any more (a command signalled on its own here), and once per command however often
    it arrives."""
    stack = scim_stack
    service = await synced(stack)
    margaret = stack.actor(OWNER)
    record = await service.launch(ANALYTICS, margaret)
    await until_open(stack, record.id)
    campaign = handle(stack, record.id)
    checked = service._workflow_refusal
    ended = _command(
        CommandKind.END_STAGE, OwnerCommand(actor=stack.actor("grace@example.com", admin="grace@example.com"))
    )

    async def stage_ended_after_the_check(*args: Any) -> str | None:
        sentence = await checked(*args)
        await campaign.signal(CampaignWorkflow.owner_command, ended)
        await _answered(campaign, ended.id)
        return sentence

    monkeypatch.setattr(service, "_workflow_refusal", stage_ended_after_the_check)
    with pytest.raises(Refused) as refused:
        await service.extend(record.id, margaret, timedelta(days=1), "one more week")
    closing = f"stage 1 of campaign {record.id} is already closing"
    assert str(refused.value) == closing
    state = await campaign.query(CampaignWorkflow.state)
    assert state.ended_early and state.extensions == 1  # the stage's end, not the extension
    assert [a.refusal for a in state.answers.values()] == [None, closing]
    assert [d["refusal"] for d in _entries(stack, record.id, "campaign.extend_refused")] == [closing]
    # Nobody waits for this one's answer; it arrives twice.
    late = _command(CommandKind.EXTEND, ExtendInput(actor=margaret, by=timedelta(days=2)))
    await campaign.signal(CampaignWorkflow.owner_command, late)
    await campaign.signal(CampaignWorkflow.owner_command, late)
    late_refusal = (await _answered(campaign, late.id)).refusal
    assert late_refusal in (closing, f"campaign {record.id} has no open review stage")  # closed by now
    refused_entries = [
        e for e in stack.store.ledger_entries(subject=record.id) if e.kind == "campaign.extend_refused"
    ]
    assert [(e.actor, e.channel, e.data["refusal"]) for e in refused_entries] == [
        (margaret.describe(), margaret.channel, closing),
        (margaret.describe(), margaret.channel, late_refusal),
    ]
    assert (await finished(stack, record.id, after=timedelta(minutes=1))).status is CampaignStatus.CLOSED


async def test_a_command_sent_while_no_worker_runs_is_carried_out_when_one_starts(
    scim_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The campaign runs on a task queue nobody polls yet: the edge's question (would you refuse?) goes
    unanswered, the cancel is sent anyway and the caller told it was delivered; the first worker to poll
    carries it out."""
    monkeypatch.setattr(web.campaign_service, "REFUSAL_CHECK_TIMEOUT", timedelta(seconds=1))
    await synced(scim_stack)
    stack = dataclasses.replace(scim_stack, task_queue=f"tq-idle-{uuid.uuid4().hex}")
    service = CampaignService(stack.env.client, stack.store, stack.task_queue)
    service.answer_wait = 1.0
    margaret = stack.actor(OWNER)
    record = await service.launch(ANALYTICS, margaret)
    # A stranger is refused from the stored campaign, with no worker to ask.
    with pytest.raises(Refused, match="only its owner"):
        await service.cancel(record.id, stack.actor("judy@example.com"))
    assert len(_entries(stack, record.id, "campaign.cancel_refused")) == 1
    with pytest.raises(NotYetCarriedOut, match="the cancellation was delivered but no worker"):
        await service.cancel(record.id, margaret, "wrong scope")
    async with stack.worker():
        campaign = handle(stack, record.id)
        outcome = await finished(stack, record.id, after=timedelta(seconds=1))
        assert outcome.status is CampaignStatus.CANCELLED
        answers = (await campaign.query(CampaignWorkflow.state)).answers
        assert [(a.refusal, a.message) for a in answers.values()] == [
            (None, f"campaign {record.id} is being cancelled; nothing will be revoked")
        ]
    cancelled = _entries(stack, record.id, "campaign.cancelled")
    assert [d.get("reason") for d in cancelled] == ["wrong scope"]
    assert len(_entries(stack, record.id, "campaign.cancel_refused")) == 1

"""CampaignWorkflow: one recertification campaign, from the snapshot to the last revocation applied.

    snapshot ─▶ stage 1: open, tell reviewers, remind at the spec's offsets, escalate at its escalation
                offset (reviewers with pending items, to their manager as of then), close at its deadline,
                settle (revokes end, the rest moves on) ─▶ … ─▶ last stage: close, the default decides
                what is left ─▶ apply the revocations (or wait for ``apply`` when auto-apply is off) ─▶ CLOSED
    cancel (owner or admin) at any point before applying ─▶ CANCELLED, nothing applied
    CLOSED or CANCELLED ─▶ reviewers and the owner told the outcome (page by page) ─▶ evidence bundle
    dry run: snapshot ─▶ DRY_RUN (who would be asked, what the deadline would revoke), nothing sent

The workflow holds the *process* — which stage is open, when it closes, which reminders went out, which
partitions are done — and never an item: the items, the decisions and the review tasks (one per reviewer
and stage) are in the store, worked on by activities in sixteen partitions, a few at a time (a sliding
window), so a campaign's history has the same size for a hundred items as for a million. Decisions go
from the edge straight to the store, which refuses them once their stage is closed; the edge then tells the
workflow how many it recorded (``decisions_recorded``, one signal per batch, never one per item).

History stays bounded: when it passes ``continue_as_new_after`` events the workflow continues as new
between two steps, carrying :class:`CampaignState`.

The owner (or an admin) can cancel, extend the open stage's deadline, end it now, or order the revocations
applied. Each arrives as a signal (``owner_command``, one ``CampaignCommand``), answered under its id by
the ``answer`` query; a signal is in the history as soon as the server has it, worker or no worker, and
replays in the order it was written. (They were Updates until an SDK defect showed that an Update accepted
while a timed-out workflow task waits for a worker can be ordered differently on replay, leaving the
workflow stuck; ``tests/histories/sdk_defects``. The Update handlers stay, so campaigns that received
Updates replay.) The rules are ``domain.campaign_commands.command_refusal``, which the ``refusal`` query
answers: the edge asks it first and records a refusal in the ledger; one the workflow makes itself (its
state moved in between) is recorded by the workflow (``campaign_record_refusal``) before it is answered.
What a command changes is recorded by the activities that carry it out (``campaign_move_deadline``,
``campaign_finish``).

Reviewers' Slack digests follow the decisions from every channel: ``decisions_recorded`` names the
reviewers of the items decided, and the open stage refreshes their digests in one activity
(``campaign_refresh_digests``), at most once every :data:`DIGEST_REFRESH_EVERY` (at once when none ran
lately) — a signal is durable (the edge has already written the decisions, and a signal
is accepted with no worker up), so a refresh is never lost to an edge restarting, and bursts of decisions
cost one activity, not one per item. A refresh that fails is given up after a few attempts: the decisions are
in the store, and the next refresh or reminder renders the digest from there. When a stage closes, its
digests are shown as closed (``campaign_close_digests``, page by page) before its items move on.

Escalation (``escalation`` in the spec, before each stage's deadline) runs once per stage, page by page of
reviewers (``campaign_escalate``); whom it reaches is resolved by the activity at that moment, never at
launch. An owner who ends the stage early skips it: the stage closes now. Delegations are recorded by the
edge, which signals ``delegated``; the open stage then has the delegates told and the digests moved
(``campaign_tell_delegates``, best effort, batched like digest refreshes).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from pydantic import AwareDatetime, BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.campaign_base import (
        CampaignRef,
        CommandRefusalInput,
        DeadlineInput,
        DigestPageInput,
        DigestRefreshInput,
        FinishInput,
        PartitionInput,
        PartitionResult,
        RegisterInput,
        ReviewerPageInput,
        SnapshotResult,
        StageInput,
        stage_deadlines,
    )
    from activities.campaign_handovers import Delegation, DelegationNoticeInput, EscalationInput
    from activities.campaign_outcomes import OutcomePageInput
    from activities.campaigns import CampaignActivities
    from domain.campaign_commands import (
        CampaignCommand,
        CampaignCommandAnswer,
        CommandKind,
        CommandStanding,
        ExtendInput,
        OwnerCommand,
        Phase,
        campaign_command_refusal,
        command_refusal,
    )
    from domain.campaign_spec import CampaignSpec
    from domain.campaign_state import CampaignStatus
    from domain.campaigns import PARTITIONS

from workflows.request_policies import Refused

CRITICAL_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
"""Snapshot, stages, settling and applying: retried until they succeed (each is idempotent)."""
EVIDENCE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=2), maximum_attempts=10
)
PARTITION_WINDOW = 4
"""Partitions worked on at once: enough to overlap the vendors' latency, few enough for small machines."""
CONTINUE_AS_NEW_AFTER = 5_000
DIGEST_REFRESH_EVERY = timedelta(seconds=5)
"""Reviewers' Slack digests are refreshed at most this often: decisions arriving meanwhile are batched
into the next refresh (one activity for many decisions and reviewers, never one per item)."""
DIGEST_REFRESH_BATCH = 50
"""Reviewers per refresh activity (about a minute of Slack's ``chat.update`` rate); more wait for the next."""
DIGEST_REFRESH_LIMIT = timedelta(minutes=1)
"""How long one refresh may hold up the stage (its deadline, a cancel), retries included."""
DIGEST_CLOSE_LIMIT = timedelta(minutes=10)
"""How long showing one page of a closed stage's digests as closed may take, retries included."""
DELEGATION_NOTICE_BATCH = 50
"""Delegations told per activity; more wait for the next."""
MAX_DELEGATIONS_DUE = 1_000
"""Delegations waiting to be told that the state holds; beyond it a delegate learns of their items from the
next reminder or escalation (the delegation itself is in the store and the ledger)."""
MAX_DIGESTS_DUE = 10_000
"""Reviewers waiting for a refresh that the state holds; beyond it a digest catches up at the next
reminder or decision (the decisions themselves are in the store)."""
OUTCOME_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=1), maximum_attempts=5
)
"""Best effort: telling the outcome is retried a few times (each page skips whoever it told already)."""
DIGEST_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30), maximum_attempts=3
)
"""Best effort: a digest that cannot be refreshed is left as it is (the decision is recorded)."""
ANSWERS_KEPT = 20
"""Answers to owner commands a campaign keeps (and carries across continue-as-new)."""


SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")


def campaign_workflow_id(campaign_id: str) -> str:
    return f"campaign-{campaign_id}"


def campaign_slug(name: str) -> str:
    words = "".join(c if c.isalnum() else " " for c in name.lower()).split()
    return "-".join(words)[:40] or "campaign"


class CampaignInput(BaseModel):
    campaign_id: str
    spec: CampaignSpec
    launched_at: AwareDatetime | None = Field(
        default=None, description="when the stages start counting; the workflow's own start when None"
    )
    dry_run: bool = False
    continue_as_new_after: int = Field(default=CONTINUE_AS_NEW_AFTER, ge=50)
    schedule_id: str = Field(
        default="", description="set by a Temporal Schedule's action: the run records itself"
    )
    spec_toml: str = Field(default="", description="a scheduled run's spec, as the schedule holds it")


class DecisionsRecorded(BaseModel):
    count: int = Field(ge=1)
    reviewers: list[str] = Field(
        default_factory=list,
        description="the reviewers (people or groups) of the items decided: their digests are refreshed "
        "(at most one per decision of the batch)",
    )


class CampaignState(BaseModel):
    """Everything a run hands to the next (continue-as-new)."""

    inp: CampaignInput
    phase: Phase = Phase.SNAPSHOT
    snapshot: SnapshotResult | None = None
    stage: int = 0
    stage_opened: bool = False
    stage_closes_at: AwareDatetime | None = None
    extended_by: timedelta = timedelta(0)
    extensions: int = 0
    extensions_recorded: int = 0
    deadline_moved_by: OwnerCommand | None = None
    ended_early: bool = False
    notice_cursor: str | None = ""
    reminders_done: int = 0
    reminder_cursor: str | None = ""
    escalated: bool = Field(default=False, description="the open stage's escalation has run")
    escalation_cursor: str = Field(default="", description="the escalation's next page of reviewers")
    delegations_due: list[Delegation] = Field(
        default_factory=list, description="delegations recorded at the edge whose delegates wait to be told"
    )
    stage_closed: bool = False
    partitions_done: list[str] = Field(default_factory=list)
    outcomes: dict[str, int] = Field(default_factory=dict)
    decisions_recorded: int = 0
    digests_due: list[str] = Field(
        default_factory=list, description="reviewers whose Slack digests wait for a refresh"
    )
    digests_refreshed_at: AwareDatetime | None = None
    digests_off: bool = Field(default=False, description="the worker posts no digests (this stage)")
    closing_digests_after: str | None = Field(
        default=None, description="the closed stage's digests shown as closed after this reviewer"
    )
    cancelled_by: OwnerCommand | None = None
    apply_ordered_by: OwnerCommand | None = None
    outcomes_cursor: str | None = Field(
        default="", description="the next page of reviewers told the campaign's outcome; None when done"
    )
    answers: dict[str, CampaignCommandAnswer] = Field(
        default_factory=dict,
        description="the answers to the latest owner commands, by command id, oldest first (at most "
        "ANSWERS_KEPT: the edge asks within seconds, and a campaign gets a few commands)",
    )


class CampaignResult(BaseModel):
    campaign_id: str
    status: CampaignStatus
    outcomes: dict[str, int]


@workflow.defn
class CampaignWorkflow:
    @workflow.init
    def __init__(self, start: CampaignInput | CampaignState) -> None:
        if isinstance(start, CampaignState):
            self._s = start
        else:  # the stages count from the workflow's clock, which the timers use too
            launched = start.launched_at or workflow.info().start_time
            self._s = CampaignState(inp=start.model_copy(update={"launched_at": launched}))
            if start.schedule_id:  # one campaign per scheduled run, named for its nominal time
                nominal = self._nominal_time() or launched
                campaign_id = f"cmp-{campaign_slug(start.spec.name)}-{nominal:%Y%m%d%H%M}"
                self._s.inp = self._s.inp.model_copy(update={"campaign_id": campaign_id})
        self._in_flight: set[str] = set()  # owner commands whose refusal is being recorded

    # ------------------------------------------------------------------ messages

    @workflow.query
    def state(self) -> CampaignState:
        return self._s

    @workflow.signal
    def decisions_recorded(self, batch: DecisionsRecorded) -> None:
        """The edge recorded ``count`` decisions in the store (one signal per batch)."""
        s = self._s
        s.decisions_recorded += batch.count
        due = set(s.digests_due)
        for reviewer in [] if s.digests_off else batch.reviewers:
            if reviewer not in due and len(s.digests_due) < MAX_DIGESTS_DUE:
                s.digests_due.append(reviewer)
                due.add(reviewer)

    @workflow.signal
    def delegated(self, delegation: Delegation) -> None:
        """The edge recorded a delegation in the store: its delegate is told by the open stage."""
        s = self._s
        if s.phase is Phase.STAGE and not s.stage_closed and len(s.delegations_due) < MAX_DELEGATIONS_DUE:
            s.delegations_due.append(delegation)

    @workflow.signal
    async def owner_command(self, command: CampaignCommand) -> None:
        """A command of the owner (or an administrator) from the edge: carried out, or refused with a
        sentence; either way answered under the command's id (``answer``). A command delivered twice (the
        same id) is carried out once. What it changes is changed before anything waits, so commands take
        effect in the order the history holds them; a refusal made here (the state moved after the edge
        asked) is recorded in the ledger before it is answered, so the refused attempt is on record
        whether or not the edge is still waiting."""
        s = self._s
        if command.id in s.answers or command.id in self._in_flight:
            return
        refusal = campaign_command_refusal(self._standing(), command)
        if refusal is None:
            assert command.carried is not None  # checked by the rules
            self._answered(
                command.id, CampaignCommandAnswer(message=self._carry_out(command.kind, command.carried))
            )
            return
        self._in_flight.add(command.id)
        try:
            actor = command.carried.actor if command.carried is not None else None
            if actor is not None:
                await workflow.execute_activity_method(
                    CampaignActivities.record_refusal,
                    CommandRefusalInput(
                        campaign_id=s.inp.campaign_id,
                        command_id=command.id,
                        kind=command.kind.value,
                        actor=actor,
                        refusal=refusal,
                    ),
                    start_to_close_timeout=timedelta(minutes=1),
                    retry_policy=CRITICAL_RETRY,
                )
        finally:
            self._in_flight.discard(command.id)
        workflow.logger.info("campaign %s: %s refused: %s", s.inp.campaign_id, command.kind.value, refusal)
        self._answered(command.id, CampaignCommandAnswer(refusal=refusal))

    def _answered(self, command_id: str, answer: CampaignCommandAnswer) -> None:
        s = self._s
        s.answers[command_id] = answer
        while len(s.answers) > ANSWERS_KEPT:
            del s.answers[next(iter(s.answers))]

    @workflow.query
    def answer(self, command_id: str) -> CampaignCommandAnswer | None:
        """The outcome of the owner command with this id, once carried out or refused; None before."""
        return self._s.answers.get(command_id)

    @workflow.query
    def refusal(self, command: CampaignCommand) -> str | None:
        """Why the campaign would refuse ``command`` now (None: it would be carried out); the edge asks
        before sending it, so refused attempts stay out of the history."""
        return campaign_command_refusal(self._standing(), command)

    def _standing(self) -> CommandStanding:
        s = self._s
        return CommandStanding(
            campaign_id=s.inp.campaign_id,
            owner=s.inp.spec.owner,
            phase=s.phase,
            stage=s.stage,
            stage_open=s.phase is Phase.STAGE and not s.stage_closed and s.stage_closes_at is not None,
            ending_early=s.ended_early,
            cancelling=s.cancelled_by is not None,
        )

    def _carry_out(self, kind: CommandKind, command: OwnerCommand) -> str:
        """The change a command makes (already checked by :func:`command_refusal`); the sentence saying
        what happens now."""
        if kind is CommandKind.CANCEL:
            return self._cancel(command)
        if kind is CommandKind.EXTEND:
            assert isinstance(command, ExtendInput)
            return self._extend(command)
        if kind is CommandKind.END_STAGE:
            return self._end_stage(command)
        return self._apply_ordered(command)

    def _cancel(self, command: OwnerCommand) -> str:
        self._s.cancelled_by = command
        return f"campaign {self._s.inp.campaign_id} is being cancelled; nothing will be revoked"

    def _extend(self, command: ExtendInput) -> str:
        s = self._s
        assert s.stage_closes_at is not None
        s.stage_closes_at = s.stage_closes_at + command.by
        s.extended_by += command.by
        s.extensions += 1
        s.deadline_moved_by = command
        return f"stage {s.stage + 1} now closes at {s.stage_closes_at.isoformat()}"

    def _end_stage(self, command: OwnerCommand) -> str:
        """The owner ends the open stage now (everyone has answered, or the review is called off early):
        it closes as at its deadline, so undecided items take the stage's course — the next stage's
        reviewer, or after the last stage the default decision."""
        s = self._s
        s.stage_closes_at = workflow.now()
        s.extensions += 1
        s.deadline_moved_by = command
        s.ended_early = True
        return f"stage {s.stage + 1} of campaign {s.inp.campaign_id} is closing now"

    def _apply_ordered(self, command: OwnerCommand) -> str:
        self._s.apply_ordered_by = command
        return f"campaign {self._s.inp.campaign_id}: the revocations are being applied"

    # The Updates below are how owner commands arrived before ``owner_command``; kept so the histories of
    # campaigns that received them replay. Their validators ask the same rules.

    @workflow.update
    def cancel(self, command: OwnerCommand) -> str:
        return self._cancel(command)

    @cancel.validator
    def _check_cancel(self, command: OwnerCommand) -> None:
        self._check(CommandKind.CANCEL, command)

    @workflow.update
    def extend(self, command: ExtendInput) -> str:
        return self._extend(command)

    @extend.validator
    def _check_extend(self, command: ExtendInput) -> None:
        self._check(CommandKind.EXTEND, command)

    @workflow.update
    def end_stage(self, command: OwnerCommand) -> str:
        return self._end_stage(command)

    @end_stage.validator
    def _check_end_stage(self, command: OwnerCommand) -> None:
        self._check(CommandKind.END_STAGE, command)

    @workflow.update
    def apply(self, command: OwnerCommand) -> str:
        return self._apply_ordered(command)

    @apply.validator
    def _check_apply(self, command: OwnerCommand) -> None:
        self._check(CommandKind.APPLY, command)

    def _check(self, kind: CommandKind, command: OwnerCommand) -> None:
        refusal = command_refusal(self._standing(), kind, command)
        if refusal is not None:
            raise Refused(refusal)

    # ------------------------------------------------------------------ the process

    @workflow.run
    async def run(self, start: CampaignInput | CampaignState) -> CampaignResult:
        s = self._s
        campaign_id = s.inp.campaign_id
        if s.phase is Phase.SNAPSHOT and s.inp.schedule_id:
            await self._critical(
                CampaignActivities.register,
                RegisterInput(
                    campaign_id=campaign_id,
                    spec_toml=s.inp.spec_toml,
                    workflow_id=workflow.info().workflow_id,
                    launched_at=self._launched_at(),
                    nominal_time=self._nominal_time(),
                    schedule_id=s.inp.schedule_id,
                ),
            )
        if s.phase is Phase.SNAPSHOT:
            s.snapshot = await workflow.execute_activity_method(
                CampaignActivities.snapshot,
                CampaignRef(campaign_id=campaign_id),
                start_to_close_timeout=timedelta(hours=2),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=CRITICAL_RETRY,
            )
            if s.inp.dry_run:
                return await self._finish(CampaignStatus.DRY_RUN)
            s.phase = Phase.STAGE
            s.stage_closes_at = self._deadlines()[0]
        while s.phase is Phase.STAGE:
            await self._run_stage()
            if s.cancelled_by is not None:
                return await self._finish(CampaignStatus.CANCELLED)
        if s.phase is Phase.AWAIT_APPLY:
            await workflow.wait_condition(
                lambda: s.apply_ordered_by is not None or s.cancelled_by is not None
            )
            if s.cancelled_by is not None:
                return await self._finish(CampaignStatus.CANCELLED)
            s.phase, s.partitions_done = Phase.APPLY, []
        if s.phase is Phase.APPLY:
            await self._each_partition(lambda p: self._apply(p))
        return await self._finish(CampaignStatus.CLOSED)

    @staticmethod
    def _nominal_time() -> datetime | None:
        """When a Temporal Schedule meant this run to start (its catch-up may start it later)."""
        return workflow.info().typed_search_attributes.get(SCHEDULED_START)

    def _launched_at(self) -> datetime:
        assert self._s.inp.launched_at is not None  # set in __init__
        return self._s.inp.launched_at

    def _deadlines(self) -> list[datetime]:
        return [d + self._s.extended_by for d in stage_deadlines(self._s.inp.spec, self._launched_at())]

    async def _run_stage(self) -> None:
        s = self._s
        campaign_id = s.inp.campaign_id
        assert s.stage_closes_at is not None
        if not s.stage_opened:
            await self._critical(
                CampaignActivities.open_stage,
                StageInput(campaign_id=campaign_id, stage=s.stage, closes_at=s.stage_closes_at),
            )
            s.stage_opened = True
        while s.notice_cursor is not None and s.cancelled_by is None:
            page = await self._tell("notice", s.notice_cursor, 0)
            s.notice_cursor = page
            self._continue_as_new_if_long()
        while not s.stage_closed and s.cancelled_by is None:
            if s.extensions_recorded < s.extensions:
                await self._critical(
                    CampaignActivities.move_deadline,
                    DeadlineInput(
                        campaign_id=campaign_id,
                        stage=s.stage,
                        closes_at=s.stage_closes_at,
                        extension=s.extensions,
                        ended_early=s.ended_early,
                        actor=s.deadline_moved_by.actor.describe() if s.deadline_moved_by else "",
                        reason=s.deadline_moved_by.reason if s.deadline_moved_by else "",
                    ),
                )
                s.extensions_recorded = s.extensions
            now = workflow.now()
            reminder_at = self._next_reminder()
            if reminder_at is not None and now >= reminder_at:
                while s.reminder_cursor is not None and s.cancelled_by is None:
                    s.reminder_cursor = await self._tell("reminder", s.reminder_cursor, s.reminders_done)
                    self._continue_as_new_if_long()
                s.reminders_done += 1
                s.reminder_cursor = ""
                continue
            escalation_at = self._escalation_at()
            if escalation_at is not None and now >= escalation_at:
                await self._escalate()
                continue
            if now >= s.stage_closes_at:
                break
            if s.delegations_due:
                await self._tell_delegates()
                continue
            digests_at = self._digests_due_at()
            if digests_at is not None and now >= digests_at:
                await self._refresh_digests()
                continue
            wake = min(s.stage_closes_at, reminder_at) if reminder_at is not None else s.stage_closes_at
            if digests_at is not None:
                wake = min(wake, digests_at)
            if escalation_at is not None:
                wake = min(wake, escalation_at)
            try:
                await workflow.wait_condition(
                    functools.partial(self._should_wake, s.extensions, digests_at is not None),
                    timeout=max((wake - now).total_seconds(), 0.05),
                )
            except TimeoutError:
                pass
            self._continue_as_new_if_long()
        if not s.stage_closed:
            await self._critical(
                CampaignActivities.close_stage,
                StageInput(campaign_id=campaign_id, stage=s.stage, closes_at=s.stage_closes_at),
            )
            s.stage_closed = True
            s.partitions_done = []
            s.closing_digests_after = ""
        while s.closing_digests_after is not None:  # before settling moves the items on
            s.closing_digests_after = await self._close_digests(s.closing_digests_after)
            self._continue_as_new_if_long()
        if s.cancelled_by is not None:
            return
        final = s.stage == len(s.inp.spec.stages) - 1
        await self._each_partition(lambda p: self._settle(p, final))
        if final:
            s.phase = Phase.APPLY if s.inp.spec.auto_apply else Phase.AWAIT_APPLY
            s.partitions_done = []
            return
        s.stage += 1
        s.digests_due, s.digests_off = [], False  # the new stage's digests are posted with its notice
        s.stage_closes_at = self._deadlines()[s.stage]
        s.stage_opened = s.stage_closed = s.ended_early = False
        s.notice_cursor, s.reminders_done, s.reminder_cursor = "", 0, ""
        s.escalated, s.escalation_cursor, s.delegations_due = False, "", []
        s.partitions_done = []
        self._continue_as_new_if_long()

    def _should_wake(self, extensions_seen: int, digests_waiting: bool = False) -> bool:
        """Before the next reminder or the deadline: a cancel, an extension, a history to cut short, or
        the first decisions whose digests need a refresh (later ones wait for the refresh timer)."""
        s = self._s
        return (
            s.cancelled_by is not None
            or s.extensions != extensions_seen
            or self._history_is_long()
            or (not digests_waiting and bool(s.digests_due))
            or bool(s.delegations_due)
        )

    def _digests_due_at(self) -> datetime | None:
        """When the waiting digests are refreshed: :data:`DIGEST_REFRESH_EVERY` after the last refresh (at
        once if there was none, or it was longer ago); None when none waits."""
        s = self._s
        if not s.digests_due:
            return None
        if s.digests_refreshed_at is None:
            return workflow.now()
        return s.digests_refreshed_at + DIGEST_REFRESH_EVERY

    async def _refresh_digests(self) -> None:
        s = self._s
        batch, s.digests_due = s.digests_due[:DIGEST_REFRESH_BATCH], s.digests_due[DIGEST_REFRESH_BATCH:]
        s.digests_refreshed_at = workflow.now()
        try:
            result = await workflow.execute_activity_method(
                CampaignActivities.refresh_digests,
                DigestRefreshInput(campaign_id=s.inp.campaign_id, stage=s.stage, reviewers=batch),
                schedule_to_close_timeout=DIGEST_REFRESH_LIMIT,
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=DIGEST_RETRY,
            )
            if not result.slack:  # no digests to keep current: no more refreshes this stage
                s.digests_off, s.digests_due = True, []
        except ActivityError as err:
            workflow.logger.warning(
                "campaign %s: digests of %d reviewers not refreshed: %s",
                s.inp.campaign_id,
                len(batch),
                err.cause or err,
            )
        self._continue_as_new_if_long()

    async def _close_digests(self, after: str) -> str | None:
        """One page of the closed stage's digests shown as closed; the next page's cursor, or None (also
        when it fails: best effort)."""
        s = self._s
        try:
            result = await workflow.execute_activity_method(
                CampaignActivities.close_digests,
                DigestPageInput(campaign_id=s.inp.campaign_id, stage=s.stage, after=after),
                schedule_to_close_timeout=DIGEST_CLOSE_LIMIT,
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=DIGEST_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning(
                "campaign %s: digests of stage %d not shown closed: %s",
                s.inp.campaign_id,
                s.stage + 1,
                err.cause or err,
            )
            return None
        return result.next_after

    def _stage_opened_at(self) -> datetime:
        s = self._s
        return self._deadlines()[s.stage - 1] if s.stage > 0 else self._launched_at()

    def _escalation_at(self) -> datetime | None:
        """When the open stage's escalation is due; None when it has none, has run, or the owner ended the
        stage early (it closes now: there is nobody to chase any more). An escalation that would fall
        before the stage opened (the spec and the launch refuse one) is skipped."""
        s = self._s
        before = s.inp.spec.escalation_before(s.stage)
        if before is None or s.escalated or s.ended_early:
            return None
        assert s.stage_closes_at is not None
        at = s.stage_closes_at - before
        return at if at > self._stage_opened_at() else None

    async def _escalate(self) -> None:
        """Escalate every page of the stage's reviewers with pending items (critical: retried until done,
        each page idempotent)."""
        s = self._s
        while not s.escalated and s.cancelled_by is None:
            result = await workflow.execute_activity_method(
                CampaignActivities.escalate,
                EscalationInput(campaign_id=s.inp.campaign_id, stage=s.stage, after=s.escalation_cursor),
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=CRITICAL_RETRY,
            )
            if result.next_after is None:
                s.escalated = True
            else:
                s.escalation_cursor = result.next_after
            self._continue_as_new_if_long()

    async def _tell_delegates(self) -> None:
        """Tell a batch of delegates (best effort: the delegation is in the store and the ledger, and the
        delegate's next reminder names their items)."""
        s = self._s
        batch = s.delegations_due[:DELEGATION_NOTICE_BATCH]
        s.delegations_due = s.delegations_due[DELEGATION_NOTICE_BATCH:]
        try:
            await workflow.execute_activity_method(
                CampaignActivities.tell_delegates,
                DelegationNoticeInput(campaign_id=s.inp.campaign_id, stage=s.stage, delegations=batch),
                schedule_to_close_timeout=DIGEST_REFRESH_LIMIT,
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=DIGEST_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning(
                "campaign %s: %d delegations not told: %s", s.inp.campaign_id, len(batch), err.cause or err
            )
        self._continue_as_new_if_long()

    def _next_reminder(self) -> datetime | None:
        """When the next reminder of the open stage is due; reminders that fell before the stage opened
        (an offset longer than the stage) are skipped, and so are all once the owner ended the stage early
        (its deadline is now: every reminder would look due, about a stage that is closing)."""
        s = self._s
        assert s.stage_closes_at is not None
        if s.ended_early:
            return None
        opened = self._stage_opened_at()
        times = sorted(s.stage_closes_at - offset for offset in s.inp.spec.reminders)
        times = [t for t in times if t > opened]
        return times[s.reminders_done] if s.reminders_done < len(times) else None

    async def _tell(self, kind: str, after: str, round_: int) -> str | None:
        s = self._s
        result = await workflow.execute_activity_method(
            CampaignActivities.tell_reviewers,
            ReviewerPageInput(
                campaign_id=s.inp.campaign_id,
                stage=s.stage,
                kind=kind,
                after=after,
                round=round_,
            ),
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=timedelta(minutes=1),
            retry_policy=CRITICAL_RETRY,
        )
        return result.next_after

    async def _settle(self, partition: str, final: bool) -> PartitionResult:
        s = self._s
        return await self._critical(
            CampaignActivities.settle_partition,
            PartitionInput(campaign_id=s.inp.campaign_id, stage=s.stage, partition=partition, final=final),
        )

    async def _apply(self, partition: str) -> PartitionResult:
        s = self._s
        return await self._critical(
            CampaignActivities.apply_partition,
            PartitionInput(campaign_id=s.inp.campaign_id, stage=s.stage, partition=partition, final=True),
        )

    async def _each_partition(self, work: Callable[[str], Awaitable[PartitionResult]]) -> None:
        """Every partition not done yet, at most :data:`PARTITION_WINDOW` at once."""
        s = self._s
        waiting = [p for p in PARTITIONS if p not in s.partitions_done]
        running: dict[asyncio.Task[PartitionResult], str] = {}
        while waiting or running:
            while waiting and len(running) < PARTITION_WINDOW:
                partition = waiting.pop(0)
                running[asyncio.ensure_future(work(partition))] = partition
            done, _ = await workflow.wait(list(running), return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                partition = running.pop(task)
                for outcome, count in task.result().counts.items():
                    s.outcomes[outcome] = s.outcomes.get(outcome, 0) + count
                s.partitions_done.append(partition)
        self._continue_as_new_if_long()

    async def _critical(self, activity: Callable[..., Awaitable[object]], arg: BaseModel) -> PartitionResult:
        result = await workflow.execute_activity_method(
            activity,
            arg,
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=CRITICAL_RETRY,
        )
        return result if isinstance(result, PartitionResult) else PartitionResult()

    async def _finish(self, status: CampaignStatus) -> CampaignResult:
        s = self._s
        command = s.cancelled_by
        outcomes = await workflow.execute_activity_method(
            CampaignActivities.finish,
            FinishInput(
                campaign_id=s.inp.campaign_id,
                status=status,
                actor=command.actor.describe() if command else "grantflow",
                reason=command.reason if command else "",
            ),
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=CRITICAL_RETRY,
        )
        if status is not CampaignStatus.DRY_RUN:
            # Before the bundle: its manifest anchors the ledger's head, so it covers the entry saying
            # who was told the outcome.
            await self._tell_outcomes(command)
            await self._write_evidence()
        s.phase = Phase.DONE
        await workflow.wait_condition(workflow.all_handlers_finished)
        return CampaignResult(campaign_id=s.inp.campaign_id, status=status, outcomes=outcomes)

    async def _tell_outcomes(self, command: OwnerCommand | None) -> None:
        """Reviewers (page by page) and the owner told how the campaign ended. Best effort: a page still
        failing after its retries ends the telling (the outcome is in the store, the ledger and the
        evidence). No continue-as-new here: a page of 200 reviewers costs a few events, so even a campaign
        of thousands of reviewers adds a few hundred."""
        s = self._s
        while s.outcomes_cursor is not None:
            try:
                result = await workflow.execute_activity_method(
                    CampaignActivities.tell_outcomes,
                    OutcomePageInput(
                        campaign_id=s.inp.campaign_id,
                        after=s.outcomes_cursor,
                        actor=command.actor.describe() if command else "",
                        reason=command.reason if command else "",
                    ),
                    start_to_close_timeout=timedelta(minutes=10),
                    heartbeat_timeout=timedelta(minutes=1),
                    retry_policy=OUTCOME_RETRY,
                )
            except ActivityError as err:
                workflow.logger.warning(
                    "campaign %s: outcome not told: %s", s.inp.campaign_id, err.cause or err
                )
                s.outcomes_cursor = None
                return
            s.outcomes_cursor = result.next_after

    async def _write_evidence(self) -> None:
        """The signed evidence bundle; retried for a while, then left to be asked for again (the campaign's
        outcome does not depend on it, and the ledger says what happened)."""
        try:
            await workflow.execute_activity_method(
                CampaignActivities.evidence,
                CampaignRef(campaign_id=self._s.inp.campaign_id),
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(minutes=5),
                retry_policy=EVIDENCE_RETRY,
            )
        except ActivityError as err:
            workflow.logger.error(
                "campaign %s: no evidence bundle: %s", self._s.inp.campaign_id, err.cause or err
            )

    def _history_is_long(self) -> bool:
        return workflow.info().get_current_history_length() >= self._s.inp.continue_as_new_after

    def _continue_as_new_if_long(self) -> None:
        if self._history_is_long() and workflow.all_handlers_finished():
            workflow.continue_as_new(self._s)

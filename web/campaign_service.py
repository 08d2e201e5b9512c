"""CampaignService: the one place every edge (REST API, CLI through it, the reviewer's web page, later Slack
and Jira digests) launches campaigns and records decisions on their items.

Launching validates the spec (every problem with its line), writes the campaign and starts
``CampaignWorkflow``. Deciding checks each decision against the item's assignment in its open stage
(``domain/campaign_decisions.py``: the assigned reviewer or a member of the reviewing group, never the
subject, a reason where the spec wants one), records the refused ones (store and ledger) and writes the rest
to the store in one transaction — which itself refuses a stage that closed meanwhile — and then tells the
workflow once for the batch. An item escalated to a reviewer's manager may be decided by that manager too
(``store/campaign_handovers.py``). Delegating hands a reviewer's items in the open stage to another
active person (never the item's subject, nor the delegator), recorded in the store and the ledger before the
workflow is told, which has the delegate told and the digests moved. Owner commands (cancel, extend, end
the stage, apply) are signalled to the workflow as commands with a fresh id and answered by its ``answer``
query (``domain/campaign_commands.py`` says why signals and not Updates): a stranger is refused from the
stored campaign, anything else the workflow would refuse is asked of it first (``refusal`` query), and a
refusal — here, or by the workflow itself when its state moved in between — comes back as a sentence and
is recorded in the ledger (``campaign.<command>_refused``; the workflow records its own). Once sent, a
command is durable: with no answer within ``answer_wait`` seconds the caller is told it was delivered and
will be carried out or refused when a worker runs. It trusts the caller's identity (the edges establish it)
and decides nothing the domain rules or the workflow decide.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

from pydantic import BaseModel, Field
from temporalio.client import (
    Client,
    WorkflowHandle,
)
from temporalio.service import RPCError, RPCStatusCode

from domain.campaign_commands import (
    CampaignCommand,
    CampaignCommandAnswer,
    CommandKind,
    ExtendInput,
    OwnerCommand,
    owner_refusal,
)
from domain.campaign_decisions import CampaignVerdict, ItemDecision, default_decision, refusal
from domain.campaign_report import RefusedAttempt
from domain.campaign_spec import CampaignSpec, CampaignSpecError, parse_campaign_spec
from domain.campaign_state import CampaignProgress, CampaignRecord, CampaignStatus, ItemOutcome
from domain.campaigns import Assignment, Reviewer
from domain.durations import PositiveDuration
from domain.identity import Actor, PersonRef
from store import Store, StoreError
from store.campaigns import CampaignConflict, StoredItem, spec_hash
from web.campaign_schedules import create_or_update
from web.service.errors import BadInput, NotFound, NotYetCarriedOut, Refused, ServiceError, Unavailable, short
from web.workflow_commands import ANSWER_WAIT, REFUSAL_CHECK_TIMEOUT, answer_to, refusal_of
from workflows.campaign import (
    CampaignInput,
    CampaignWorkflow,
    DecisionsRecorded,
    Delegation,
    campaign_workflow_id,
)

log = logging.getLogger("grantflow.web.campaigns")

MAX_SPEC_BYTES = 64 * 1024
MAX_DECISIONS_PER_CALL = 1000
MAX_REASON = 2000


class DecisionRequest(BaseModel):
    item_id: str = Field(min_length=1, max_length=64)
    verdict: CampaignVerdict
    reason: str = Field(default="", max_length=MAX_REASON)


class DelegateResult(BaseModel):
    delegate: str = Field(description="the email of the person the items were handed to")
    delegated: list[str] = Field(default_factory=list, description="the item ids handed over")
    refused: dict[str, str] = Field(default_factory=dict, description="item id → why it was not handed over")


class DecideResult(BaseModel):
    recorded: list[str] = Field(default_factory=list, description="the item ids decided")
    refused: dict[str, str] = Field(default_factory=dict, description="item id → why it was refused")


class PreviewReviewer(BaseModel):
    reviewer: str
    items: int


class PreviewItem(BaseModel):
    item_id: str
    subject: str
    access: str
    why: str


class CampaignPreview(BaseModel):
    """Who is asked in the first stage, and what the last deadline would revoke if nobody answered."""

    items: int
    reviewers: list[PreviewReviewer]
    unassigned: list[PreviewItem]
    would_revoke: list[PreviewItem]


class ScheduledCampaign(BaseModel):
    schedule_id: str
    updated: bool
    next_runs: list[datetime]


class CampaignStatusView(BaseModel):
    campaign: CampaignRecord
    progress: CampaignProgress


class CampaignService:
    answer_wait: float = ANSWER_WAIT

    def __init__(
        self, client: Client, store: Store, task_queue: str, *, history_limit: int | None = None
    ) -> None:
        self._client = client
        self._store = store
        self._task_queue = task_queue
        self._history_limit = history_limit

    async def _db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except CampaignConflict:
            raise
        except StoreError as exc:
            raise Unavailable(f"the store could not be reached: {short(exc)}") from exc

    async def campaign(self, campaign_id: str) -> CampaignRecord:
        """The campaign's record alone (no counting: the review page reads it on every view)."""
        return await self._campaign(campaign_id)

    async def _campaign(self, campaign_id: str) -> CampaignRecord:
        record: CampaignRecord | None = await self._db(self._store.campaign, campaign_id)
        if record is None:
            raise NotFound(f"there is no campaign {campaign_id}")
        return record

    # ------------------------------------------------------------------ launching

    async def launch(
        self,
        spec_text: str,
        actor: Actor,
        *,
        dry_run: bool = False,
        source: str = "campaign spec",
        continue_as_new_after: int | None = None,
    ) -> CampaignRecord:
        """Validate the spec, record the campaign and start its workflow; the record comes back at once
        (SNAPSHOTTING: the snapshot runs in the workflow)."""
        if len(spec_text.encode()) > MAX_SPEC_BYTES:
            raise BadInput(f"{source}: a campaign spec is at most {MAX_SPEC_BYTES // 1024} KiB")
        try:
            spec = parse_campaign_spec(spec_text, source)
        except CampaignSpecError as exc:
            raise BadInput(str(exc)) from None
        if spec.trigger is not None:  # it opens one campaign per event, never one over everyone now
            raise BadInput(f"{source}: has a [trigger]: register it with `grantflow campaign trigger`")
        now = datetime.now(UTC)
        if (problem := spec.escalation_problem(now)) is not None:  # a fixed deadline's stages, known now
            raise BadInput(f"{source}: {problem}")
        campaign_id = f"cmp-{uuid.uuid4().hex[:12]}"
        record = CampaignRecord(
            id=campaign_id,
            name=spec.name,
            owner=spec.owner,
            spec_toml=spec_text,
            spec_sha256=spec_hash(spec_text),
            status=CampaignStatus.SNAPSHOTTING,
            dry_run=dry_run,
            launched_at=now,
            deadline=spec.deadline,
            workflow_id=campaign_workflow_id(campaign_id),
            updated_at=now,
        )
        await self._db(self._store.create_campaign, record)
        await self._db(
            self._store.append_ledger,
            kind="campaign.launched",
            subject=campaign_id,
            actor=actor.describe(),
            channel=actor.channel,
            data={"name": spec.name, "spec_sha256": record.spec_sha256, "dry_run": dry_run},
            idempotency_key=f"{campaign_id}:launched",
        )
        inp = CampaignInput(campaign_id=campaign_id, spec=spec, dry_run=dry_run)
        limit = continue_as_new_after or self._history_limit
        if limit is not None:
            inp = inp.model_copy(update={"continue_as_new_after": limit})
        try:
            await self._client.start_workflow(
                CampaignWorkflow.run, inp, id=record.workflow_id, task_queue=self._task_queue
            )
        except RPCError as exc:
            raise Unavailable(
                f"campaign {campaign_id} was recorded but could not start: {short(exc)}"
            ) from exc
        return record

    async def schedule(
        self, spec_text: str, actor: Actor, *, source: str = "campaign spec"
    ) -> ScheduledCampaign:
        """Create or update the Temporal Schedule of a spec with a ``[schedule]``."""
        try:
            spec = parse_campaign_spec(spec_text, source)
        except CampaignSpecError as exc:
            raise BadInput(str(exc)) from None
        if spec.schedule is None:
            raise BadInput(f"{source}: has no [schedule] table: say when it runs (every, start, time_zone)")
        try:
            sid, updated = await create_or_update(self._client, spec, spec_text, self._task_queue)
            described = await self._client.get_schedule_handle(sid).describe()
        except RPCError as exc:
            raise Unavailable(f"Temporal could not be reached: {short(exc)}") from exc
        await self._db(
            self._store.append_ledger,
            kind="campaign.scheduled",
            subject=sid,
            actor=actor.describe(),
            channel=actor.channel,
            data={
                "name": spec.name,
                "spec_sha256": spec_hash(spec_text),
                "updated": updated,
            },
        )
        return ScheduledCampaign(
            schedule_id=sid, updated=updated, next_runs=list(described.info.next_action_times[:4])
        )

    # ------------------------------------------------------------------ deciding

    async def decide(
        self,
        campaign_id: str,
        decisions: Sequence[DecisionRequest],
        actor: Actor,
        *,
        stage: int | None = None,
    ) -> DecideResult:
        """Record what may be recorded; every refusal is answered per item and kept as evidence.

        ``stage`` (0-based): the stage the decider was shown (a Slack digest's button): an item that has
        moved on to another stage since is refused rather than decided for a stage its decider never saw."""
        if not decisions:
            raise BadInput("no decisions were given")
        if len(decisions) > MAX_DECISIONS_PER_CALL:
            raise BadInput(f"at most {MAX_DECISIONS_PER_CALL} decisions per call")
        record = await self._campaign(campaign_id)
        spec = parse_campaign_spec(record.spec_toml, f"campaign {campaign_id}")
        now = datetime.now(UTC)
        accepted: list[ItemDecision] = []
        result = DecideResult()
        items: dict[str, StoredItem] = await self._db(
            self._store.items_by_id, campaign_id, [d.item_id for d in decisions]
        )
        members: dict[str, list[str]] = {}  # reviewing group -> its members' ids, read once per call
        escalations: dict[str, PersonRef] = await self._db(self._store.escalations, campaign_id, list(items))
        for wanted in decisions:
            item = items.get(wanted.item_id)
            escalated = escalations.get(wanted.item_id)
            sentence = (
                _stage_refusal(stage, item.stage)
                if item is not None and stage is not None and item.stage != stage
                else await self._refusal(
                    record, spec, item, wanted, actor, members, escalated.id if escalated else None
                )
            )
            if sentence is not None:
                result.refused[wanted.item_id] = sentence
                continue
            assert item is not None
            accepted.append(
                ItemDecision(
                    item_id=item.id,
                    stage=item.stage,
                    verdict=wanted.verdict,
                    reason=wanted.reason.strip(),
                    actor=actor,
                    decided_at=now,
                )
            )
        if accepted:
            try:
                await self._db(self._store.record_decisions, campaign_id, accepted)
            except CampaignConflict as exc:  # the stage closed between the check and the write
                for decision in accepted:
                    result.refused[decision.item_id] = str(exc)
                accepted = []
        for item_id, sentence in result.refused.items():
            await self._refused(campaign_id, item_id, actor, sentence, now)
        if accepted:
            result.recorded = [d.item_id for d in accepted]
            await self._db(
                self._store.append_ledger,
                kind="campaign.decided",
                subject=campaign_id,
                actor=actor.describe(),
                channel=actor.channel,
                data={
                    "decisions": [
                        {
                            "item": d.item_id,
                            "stage": d.stage + 1,
                            "verdict": d.verdict,
                            "reason": d.reason,
                            # decided by the manager the item was escalated to, not by its reviewer
                            **(
                                {"as": "escalation"}
                                if self._by_escalation(items[d.item_id], escalations, actor)
                                else {}
                            ),
                        }
                        for d in accepted
                    ],
                    **actor.ledger_data(),
                },
            )
            reviewers = {r.id for d in accepted if (r := items[d.item_id].assignment.reviewer) is not None}
            # the digests of the managers the items were escalated to show them too
            reviewers |= {e.id for d in accepted if (e := escalations.get(d.item_id)) is not None}
            await self._tell_workflow(record, len(accepted), sorted(reviewers))
        return result

    async def _refusal(
        self,
        record: CampaignRecord,
        spec: CampaignSpec,
        item: StoredItem | None,
        wanted: DecisionRequest,
        actor: Actor,
        members: dict[str, list[str]],
        escalated_to: str | None = None,
    ) -> str | None:
        if item is None:
            return f"campaign {record.id} has no item {wanted.item_id}"
        if record.status is not CampaignStatus.OPEN:
            return f"campaign {record.id} is {record.status.value}: decisions are closed"
        if item.outcome.value != "open":
            return f"item {item.id} is already settled ({item.outcome.value})"
        reviewer = item.assignment.reviewer
        if reviewer is not None and reviewer.kind == "group" and reviewer.id not in members:
            members[reviewer.id] = [p.id for p in await self._db(self._store.group_members, reviewer.id)]
        stage_open = record.stage_open and item.stage == record.stage
        return refusal(
            item,
            item.assignment,
            actor,
            wanted.verdict,
            wanted.reason,
            spec,
            stage_open=stage_open,
            group_members=members.get(reviewer.id, []) if reviewer is not None else [],
            escalated_to=escalated_to,
        )

    @staticmethod
    def _by_escalation(item: StoredItem, escalations: dict[str, PersonRef], actor: Actor) -> bool:
        escalated = escalations.get(item.id)
        reviewer = item.assignment.reviewer
        return (
            escalated is not None
            and escalated.id == actor.person.id
            and (reviewer is None or reviewer.kind != "person" or reviewer.id != actor.person.id)
        )

    async def _refused(
        self, campaign_id: str, item_id: str, actor: Actor, sentence: str, at: datetime
    ) -> None:
        attempt = RefusedAttempt(
            item_id=item_id, actor=actor.describe(), channel=actor.channel, at=at, reason=sentence
        )
        await self._db(self._store.record_refusal, campaign_id, attempt)
        await self._db(
            self._store.append_ledger,
            kind="campaign.decision_refused",
            subject=campaign_id,
            actor=actor.describe(),
            channel=actor.channel,
            data={"item": item_id, "refusal": sentence, **actor.ledger_data()},
        )

    async def _tell_workflow(self, record: CampaignRecord, count: int, reviewers: list[str]) -> None:
        """Best effort: the decisions are in the store whatever happens here (the workflow reads them
        from there); the signal keeps its progress current and has the reviewers' digests refreshed."""
        try:
            handle = self._client.get_workflow_handle(record.workflow_id)
            batch = DecisionsRecorded(count=count, reviewers=reviewers)
            await handle.signal(CampaignWorkflow.decisions_recorded, batch)
        except RPCError:
            pass

    # ------------------------------------------------------------------ delegating

    async def delegate(
        self,
        campaign_id: str,
        to_email: str,
        actor: Actor,
        *,
        item_ids: Sequence[str] = (),
        reason: str = "",
    ) -> DelegateResult:
        """Hand the actor's items of the open stage to ``to_email``: the named ones, or (none named) every
        one they have not decided yet. The delegate reviews them instead of the delegator, who can no
        longer decide them; a decision already made on a named item stays until the delegate changes it.

        Refused as a whole, with the reason (and recorded in the ledger): a delegate who is not an active
        person in the directory, the delegator themself, no open stage, an administrator acting for a
        reviewer where the campaign does not allow it, nothing to hand over. Refused per item, the rest
        handed over: an item that is not the delegator's own in the open stage (another reviewer's, a
        group's, settled), or one about the delegate (nobody reviews their own access). When no item is
        handed over at all, the call is refused with every item's reason."""
        to = to_email.strip()
        if not to:
            raise BadInput("say whom to delegate to (an email)")
        if len(to) > 320:
            raise BadInput("the delegate's email is too long")
        if len(item_ids) > MAX_DECISIONS_PER_CALL:
            raise BadInput(f"at most {MAX_DECISIONS_PER_CALL} items per delegation")
        if len(reason) > MAX_REASON:
            raise BadInput(f"a reason is at most {MAX_REASON} characters")
        record = await self._campaign(campaign_id)
        spec = parse_campaign_spec(record.spec_toml, f"campaign {campaign_id}")
        who = actor.person.email
        if record.status is not CampaignStatus.OPEN or not record.stage_open:
            await self._delegation_refused(
                campaign_id, actor, to, f"campaign {campaign_id} has no open review stage", Refused
            )
        delegate = await self._db(self._store.find_person_by_email, to)
        if delegate is None:
            await self._delegation_refused(
                campaign_id,
                actor,
                to,
                f"{to} is not in the directory: items are delegated to an active person",
            )
        if not delegate.active:
            await self._delegation_refused(
                campaign_id,
                actor,
                to,
                f"{delegate.email} is no longer active: items are delegated to an active person",
            )
        if delegate.id == actor.person.id:
            await self._delegation_refused(campaign_id, actor, to, f"{who} cannot delegate items to themself")
        if actor.admin is not None and actor.admin.id != actor.person.id and not spec.allow_admin_on_behalf:
            await self._delegation_refused(
                campaign_id,
                actor,
                to,
                f"{actor.admin.email} may not delegate on behalf of {who}: this campaign does not allow "
                f"administrators to act for reviewers (allow_admin_on_behalf)",
                Refused,
            )
        refused: dict[str, str] = {}
        chosen: list[StoredItem] = []
        if item_ids:
            found: dict[str, StoredItem] = await self._db(
                self._store.items_by_id, campaign_id, list(item_ids)
            )
            for item_id in dict.fromkeys(item_ids):
                item = found.get(item_id)
                why = self._not_delegable(record, item, item_id, actor)
                if why is not None:
                    refused[item_id] = why
                elif item is not None:
                    chosen.append(item)
        else:
            after = ""
            while page := await self._db(
                self._store.items,
                campaign_id,
                after=after,
                reviewer_id=actor.person.id,
                stage=record.stage,
                outcome=ItemOutcome.OPEN,
            ):
                chosen += [i for i in page if i.verdict is None]
                after = page[-1].id
            if not chosen:
                await self._delegation_refused(
                    campaign_id,
                    actor,
                    to,
                    f"{who} has no undecided items in stage {record.stage + 1} of campaign {campaign_id} "
                    "to delegate",
                )
        for item in list(chosen):
            if item.subject.is_person and item.subject.id == delegate.id:
                refused[item.id] = (
                    f"{delegate.email} is the subject of this item ({item.access.describe()}): "
                    "nobody reviews their own access"
                )
                chosen.remove(item)
        if not chosen:
            sentence = "nothing was delegated: " + "; ".join(f"{k}: {v}" for k, v in refused.items())
            await self._delegation_refused(campaign_id, actor, to, sentence, Refused, items=refused)
        note = f"delegated by {actor.describe()} to {delegate.email}" + (
            f": {reason.strip()}" if reason.strip() else ""
        )
        assignments = {
            item.id: Assignment(
                stage=item.stage,
                reviewer=Reviewer(kind="person", id=delegate.id, name=delegate.email),
                via="delegated",
                notes=(*item.assignment.notes, note),
            )
            for item in chosen
        }
        try:
            await self._db(
                self._store.delegate_items, campaign_id, record.stage, actor.person.id, assignments
            )
        except CampaignConflict as exc:  # the stage closed, or an item moved, between the check and the write
            await self._delegation_refused(campaign_id, actor, to, str(exc), Refused)
        ids = list(assignments)
        await self._db(
            self._store.append_ledger,
            kind="campaign.delegated",
            subject=campaign_id,
            actor=actor.describe(),
            channel=actor.channel,
            data={
                "stage": record.stage + 1,
                "from": who,
                "from_id": actor.person.id,
                "to": delegate.email,
                "to_id": delegate.id,
                "items": ids,
                "reason": reason.strip(),
                **({"refused": refused} if refused else {}),
                **actor.ledger_data(),
            },
        )
        delegation = Delegation(
            delegation_id=uuid.uuid4().hex,
            delegator_id=actor.person.id,
            delegator_email=who,
            delegate_id=delegate.id,
            delegate_email=delegate.email,
            items=len(ids),
        )
        try:  # best effort, as for decisions: the delegate's next reminder names the items anyway
            await self._client.get_workflow_handle(record.workflow_id).signal(
                CampaignWorkflow.delegated, delegation
            )
        except RPCError:
            pass
        return DelegateResult(delegate=delegate.email, delegated=ids, refused=refused)

    @staticmethod
    def _not_delegable(
        record: CampaignRecord, item: StoredItem | None, item_id: str, actor: Actor
    ) -> str | None:
        """Why the actor cannot hand this item over, or None."""
        if item is None:
            return f"campaign {record.id} has no item {item_id}"
        if item.outcome is not ItemOutcome.OPEN or item.stage != record.stage:
            return f"item {item_id} is not open in stage {record.stage + 1}"
        reviewer = item.assignment.reviewer
        if reviewer is not None and reviewer.kind == "group":
            return (
                f"this item is reviewed by members of {reviewer.name}: one member cannot hand the group's "
                "item over"
            )
        if reviewer is None or reviewer.id != actor.person.id:
            name = reviewer.name if reviewer is not None else "nobody yet"
            return (
                f"this item is reviewed by {name}, not by {actor.person.email}: "
                "only its reviewer can delegate it"
            )
        return None

    async def _delegation_refused(
        self,
        campaign_id: str,
        actor: Actor,
        to: str,
        sentence: str,
        error: type[ServiceError] = BadInput,
        *,
        items: dict[str, str] | None = None,
    ) -> NoReturn:
        """Record a refused delegation in the ledger (auditors see attempts too), then refuse it."""
        await self._db(
            self._store.append_ledger,
            kind="campaign.delegation_refused",
            subject=campaign_id,
            actor=actor.describe(),
            channel=actor.channel,
            data={
                "to": to,
                "refusal": sentence,
                **({"items": items} if items else {}),
                **actor.ledger_data(),
            },
        )
        raise error(sentence)

    # ------------------------------------------------------------------ the owner's commands

    async def cancel(self, campaign_id: str, actor: Actor, reason: str = "") -> str:
        return await self._command(campaign_id, CommandKind.CANCEL, OwnerCommand(actor=actor, reason=reason))

    async def extend(self, campaign_id: str, actor: Actor, by: PositiveDuration, reason: str = "") -> str:
        return await self._command(
            campaign_id, CommandKind.EXTEND, ExtendInput(actor=actor, by=by, reason=reason)
        )

    async def end_stage(self, campaign_id: str, actor: Actor, reason: str = "") -> str:
        return await self._command(
            campaign_id, CommandKind.END_STAGE, OwnerCommand(actor=actor, reason=reason)
        )

    async def apply(self, campaign_id: str, actor: Actor) -> str:
        return await self._command(campaign_id, CommandKind.APPLY, OwnerCommand(actor=actor))

    async def _command(self, campaign_id: str, kind: CommandKind, order: OwnerCommand) -> str:
        """Refuse what the campaign would refuse (recorded in the ledger), else signal the command with a
        fresh id and wait for the workflow's answer: the sentence saying what happens now."""
        record = await self._campaign(campaign_id)
        handle = self._client.get_workflow_handle(record.workflow_id)
        command = CampaignCommand.of(f"cmd-{uuid.uuid4().hex}", kind, order)
        try:
            sentence = (
                _closed_sentence(record)
                if record.status.is_terminal
                else owner_refusal(campaign_id, record.owner, kind, order.actor)
            )
            if sentence is None:
                sentence = await self._workflow_refusal(handle, command)
            if sentence is None:
                await handle.signal(CampaignWorkflow.owner_command, command)
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND:
                raise Unavailable(f"Temporal could not be reached: {short(err)}") from err
            record = await self._campaign(campaign_id)  # the workflow has completed: say how it ended
            if not record.status.is_terminal:
                raise Unavailable(f"Temporal could not be reached: {short(err)}") from err
            sentence = _closed_sentence(record)
        if sentence is None:
            answer = await self._answer(handle, command.id)
            if answer is None:
                raise NotYetCarriedOut(
                    f"campaign {campaign_id}: the {kind.noun} was delivered but no worker has carried it out "
                    "yet; it will be carried out or refused when one runs (check with status)"
                )
            if answer.refusal is None:
                return answer.message
            # Refused by the workflow itself (its state moved after the check), which recorded it.
            raise Refused(answer.refusal)
        await self._db(
            self._store.append_ledger,
            kind=f"campaign.{kind.value}_refused",
            subject=campaign_id,
            actor=order.actor.describe(),
            channel=order.actor.channel,
            data={"refusal": sentence, **order.actor.ledger_data()},
        )
        raise Refused(sentence)

    async def _workflow_refusal(
        self, handle: WorkflowHandle[Any, Any], command: CampaignCommand
    ) -> str | None:
        return await refusal_of(handle, CampaignWorkflow.refusal, command, timeout=REFUSAL_CHECK_TIMEOUT)

    async def _answer(
        self, handle: WorkflowHandle[Any, Any], command_id: str
    ) -> CampaignCommandAnswer | None:
        return await answer_to(handle, CampaignWorkflow.answer, command_id, wait=self.answer_wait)

    # ------------------------------------------------------------------ reading

    async def status(self, campaign_id: str) -> CampaignStatusView:
        record = await self._campaign(campaign_id)
        progress = await self._db(self._store.progress, campaign_id, record.stage)
        return CampaignStatusView(campaign=record, progress=progress)

    async def items_for_reviewer(self, campaign_id: str, reviewer_id: str) -> list[StoredItem]:
        """The open stage's items a person reviews: their own, those of every group they are in, and those
        escalated to them."""
        record = await self._campaign(campaign_id)
        person = await self._db(self._store.get_person, reviewer_id)
        found: dict[str, StoredItem] = {}
        for owner in [reviewer_id, *(person.groups if person is not None else ())]:
            after = ""
            while page := await self._db(
                self._store.items, campaign_id, reviewer_id=owner, stage=record.stage, after=after
            ):
                found.update((i.id, i) for i in page)
                after = page[-1].id
        after = ""
        while page := await self._db(
            self._store.escalated_items, campaign_id, record.stage, reviewer_id, after=after
        ):
            found.update((i.id, i) for i in page)
            after = page[-1].id
        return [found[k] for k in sorted(found)]

    async def escalations(self, campaign_id: str, item_ids: Sequence[str]) -> dict[str, PersonRef]:
        """Item id → whom its escalation reached, for the named items whose escalation still holds."""
        found: dict[str, PersonRef] = await self._db(self._store.escalations, campaign_id, list(item_ids))
        return found

    async def evidence(self, campaign_id: str) -> dict[str, bytes]:
        """The signed evidence bundle the worker wrote when the campaign closed, byte for byte."""
        record = await self._campaign(campaign_id)
        files: dict[str, bytes] = await self._db(self._store.evidence, campaign_id)
        if not files:
            state = "is still " + record.status.value if not record.status.is_terminal else "has none"
            raise NotFound(
                f"campaign {campaign_id} {state}: its evidence bundle is written when it closes "
                "(see the ledger for why one is missing)"
            )
        return files

    async def campaigns(self, limit: int = 50) -> list[CampaignRecord]:
        records: list[CampaignRecord] = await self._db(self._store.list_campaigns, limit)
        return records

    async def items(
        self,
        campaign_id: str,
        *,
        after: str = "",
        reviewer: str | None = None,
        outcome: ItemOutcome | None = None,
        limit: int = 200,
    ) -> list[StoredItem]:
        """A page of a campaign's items; ``reviewer`` is a person's email (their items in the open stage)
        or a reviewing group's name."""
        record = await self._campaign(campaign_id)
        reviewer_id: str | None = None
        stage: int | None = None
        if reviewer:
            person = await self._db(self._store.find_person_by_email, reviewer)
            reviewer_id = person.id if person is not None else reviewer
            stage = record.stage
        items: list[StoredItem] = await self._db(
            self._store.items,
            campaign_id,
            after=after,
            limit=limit,
            reviewer_id=reviewer_id,
            stage=stage,
            outcome=outcome,
        )
        return items

    async def preview(self, campaign_id: str) -> CampaignPreview:
        """A dry run's answer (and any campaign's): who is asked in the first stage, and what the last
        deadline would revoke if nobody answered — from the stored items and the spec's default."""
        record = await self._campaign(campaign_id)
        spec = parse_campaign_spec(record.spec_toml, f"campaign {campaign_id}")
        per_reviewer: dict[str, int] = {}
        unassigned: list[PreviewItem] = []
        would_revoke: list[PreviewItem] = []
        total, after = 0, ""
        while page := await self._db(self._store.items, campaign_id, after=after):
            for item in page:
                total += 1
                who = item.assignment.reviewer
                entry = PreviewItem(
                    item_id=item.id, subject=item.subject.name, access=item.access.describe(), why=""
                )
                if who is None:
                    unassigned.append(entry.model_copy(update={"why": "; ".join(item.assignment.notes)}))
                else:
                    per_reviewer[who.name] = per_reviewer.get(who.name, 0) + 1
                verdict, basis = default_decision(item, spec)
                if verdict == "revoke":
                    would_revoke.append(entry.model_copy(update={"why": basis}))
            after = page[-1].id
        reviewers = [PreviewReviewer(reviewer=name, items=n) for name, n in per_reviewer.items()]
        return CampaignPreview(
            items=total,
            reviewers=sorted(reviewers, key=lambda r: (-r.items, r.reviewer)),
            unassigned=unassigned,
            would_revoke=would_revoke,
        )


def _closed_sentence(record: CampaignRecord) -> str:
    return f"campaign {record.id} is already {record.status.value}"


def _stage_refusal(shown: int, current: int) -> str:
    """Why a decision made for stage ``shown`` (0-based) does not count for an item now in ``current``."""
    if shown < current:
        return (
            f"this decision was made for stage {shown + 1}, which has closed: the item is in stage "
            f"{current + 1} now"
        )
    return (
        f"this decision was made for stage {shown + 1}, which the item has not reached: it is in stage "
        f"{current + 1}"
    )

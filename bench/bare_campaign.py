"""The campaign benchmark's baseline: a bare Temporal workflow of the same shape as ``CampaignWorkflow``,
making the same calls to hoop and the SCIM directory, and nothing else.

Same shape: a snapshot activity, a stage-open activity, reviewers told page by page (200 per activity, one
message each), a wait for the owner to end the stage (decisions arrive as one signal per reviewer's batch),
a stage-close activity, 16 settle and 16 apply partitions at most 4 at a time, a finish, the outcome told
page by page (one message per reviewer, one to the owner) and an evidence activity, and continue-as-new at
the same history length. Same stand-in calls: the snapshot reads hoop's
connections, access rules, users and keys and SCIM's users and groups through the same adapter, and pages
hoop's sessions; each revocation reads the SCIM group, removes the member (which reads back), rewrites the
hoop user, lists their open sessions and reads the SCIM group again. What it leaves out is what grantflow
adds: the store, the ledger, the population and reviewer rules, the evidence bundle.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.gateway_people import remove_user_group
    from activities.heartbeat import heartbeating
    from bench.organisation import OWNER
    from domain.identity import PersonRef
    from integrations.campaign_sources import HoopScimSources
    from integrations.gateway import Gateway
    from integrations.notify import Message
    from integrations.scim import ScimDirectory

PARTITIONS = tuple("0123456789abcdef")
PARTITION_WINDOW = 4
PAGE = 200
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))


def partition_of(email: str, group: str) -> str:
    return hashlib.sha256(f"{email}\0{group}".encode()).hexdigest()[0]


@dataclass
class BareItem:
    person_id: str
    email: str
    group: str
    reviewer: str
    kept: bool = False


@dataclass
class BareCampaign:
    """What grantflow keeps in its store, kept here in the worker's memory (the baseline has no store)."""

    items: dict[str, list[BareItem]] = field(default_factory=dict)
    group_ids: dict[str, str] = field(default_factory=dict)
    reviewers: list[str] = field(default_factory=list)
    revoked: int = 0


class BareInput(BaseModel):
    campaign_id: str
    continue_as_new_after: int


class BareState(BaseModel):
    inp: BareInput
    phase: str = "snapshot"
    notice_cursor: int | None = 0
    outcome_cursor: int | None = 0
    partitions_done: list[str] = []
    decisions: int = 0
    ended: bool = False


class PageInput(BaseModel):
    campaign_id: str
    page: int
    event: str = "campaign_notice"


class PartInput(BaseModel):
    campaign_id: str
    partition: str


class BareActivities:
    def __init__(
        self, gateway: Gateway, directory: ScimDirectory, notifier: object, campaigns: dict[str, BareCampaign]
    ) -> None:
        self._gateway = gateway
        self._directory = directory
        self._notifier = notifier
        self._campaigns = campaigns

    @activity.defn(name="bare_snapshot")
    async def snapshot(self, campaign_id: str) -> int:
        now = datetime.now(UTC)
        sources = HoopScimSources(self._gateway, self._directory, excluded_identities=("grantflow",))
        # heartbeats while reading, as grantflow's snapshot does (a large directory takes minutes)
        facts, _ = await heartbeating(sources.read_facts(now))
        await heartbeating(sources.read_usage(now - timedelta(days=365), now - timedelta(days=90), now))
        people = {p.email.lower(): p for p in facts.people}
        managers = {p.id: p.email for p in facts.people}
        campaign = BareCampaign()
        reviewers: set[str] = set()
        for member in facts.gateway_members:
            person = people.get(member.email.lower())
            for group in member.groups:
                if person is None or not group.startswith("team-"):
                    continue
                reviewer = managers.get(person.manager_id or "", "")
                reviewers.add(reviewer)
                item = BareItem(person.id, person.email, group, reviewer)
                campaign.items.setdefault(partition_of(person.email, group), []).append(item)
        for directory_group in await heartbeating(self._directory.list_groups()):
            campaign.group_ids[directory_group.display_name] = directory_group.id
        campaign.reviewers = sorted(reviewers)
        self._campaigns[campaign_id] = campaign
        return sum(len(items) for items in campaign.items.values())

    @activity.defn(name="bare_step")
    async def step(self, campaign_id: str) -> None:
        """Open stage, close stage, finish and evidence: nothing to do without a store."""

    @activity.defn(name="bare_tell")
    async def tell(self, inp: PageInput) -> int | None:
        reviewers = self._campaigns[inp.campaign_id].reviewers
        last = (inp.page + 1) * PAGE >= len(reviewers)
        recipients = reviewers[inp.page * PAGE : (inp.page + 1) * PAGE]
        if inp.event == "campaign_outcome" and last:
            recipients = [*recipients, OWNER]  # the owner's summary of the whole campaign comes last
        for email in recipients:
            await self._notifier.send(  # type: ignore[attr-defined]
                Message(
                    request_id=inp.campaign_id,
                    recipient=PersonRef(id=email, email=email),
                    event=inp.event,
                    subject="your access review",
                    text="",
                )
            )
        return None if last else inp.page + 1

    @activity.defn(name="bare_settle")
    async def settle(self, inp: PartInput) -> None:
        """grantflow settles each item in its store; the baseline has nothing to settle."""

    @activity.defn(name="bare_apply")
    async def apply(self, inp: PartInput) -> int:
        campaign = self._campaigns[inp.campaign_id]
        revoked = 0
        for item in campaign.items.get(inp.partition, []):
            if item.kept:
                continue
            group_id = campaign.group_ids[item.group]
            group = await self._directory.get_group(group_id)
            if item.person_id in group.member_ids:
                await self._directory.remove_group_member(group_id, item.person_id)
            await remove_user_group(self._gateway, item.email, item.group)
            await self._gateway.list_sessions(user=item.email, status="open")
            await self._directory.get_group(group_id)
            activity.heartbeat(item.email)
            revoked += 1
        campaign.revoked += revoked
        return revoked


@workflow.defn
class BareCampaignWorkflow:
    @workflow.init
    def __init__(self, start: BareInput | BareState) -> None:
        self._s = start if isinstance(start, BareState) else BareState(inp=start)

    @workflow.signal
    def decisions_recorded(self, count: int) -> None:
        self._s.decisions += count

    @workflow.update
    def end_stage(self) -> str:
        self._s.ended = True
        return "closing"

    @workflow.run
    async def run(self, start: BareInput | BareState) -> int:
        s = self._s
        cid = s.inp.campaign_id
        if s.phase == "snapshot":
            await self._call("bare_snapshot", cid)
            await self._call("bare_step", cid)
            s.phase = "stage"
        if s.phase == "stage":
            while s.notice_cursor is not None:
                page = PageInput(campaign_id=cid, page=s.notice_cursor)
                s.notice_cursor = await self._call("bare_tell", page)  # type: ignore[assignment]
                self._continue_as_new_if_long()
            while not s.ended:
                await workflow.wait_condition(lambda: s.ended or self._long())
                self._continue_as_new_if_long()
            await self._call("bare_step", cid)
            s.phase, s.partitions_done = "settle", []
        if s.phase == "settle":
            await self._each_partition("bare_settle")
            s.phase, s.partitions_done = "apply", []
        if s.phase == "apply":
            await self._each_partition("bare_apply")
        await self._call("bare_step", cid)  # finish
        while s.outcome_cursor is not None:
            page = PageInput(campaign_id=cid, page=s.outcome_cursor, event="campaign_outcome")
            s.outcome_cursor = await self._call("bare_tell", page)  # type: ignore[assignment]
            self._continue_as_new_if_long()
        await self._call("bare_step", cid)  # evidence
        await workflow.wait_condition(workflow.all_handlers_finished)
        return s.decisions

    async def _call(self, name: str, arg: object) -> object:
        return await workflow.execute_activity(
            name,
            arg,
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RETRY,
        )

    async def _each_partition(self, name: str) -> None:
        s = self._s
        waiting = [p for p in PARTITIONS if p not in s.partitions_done]
        running: dict[asyncio.Task[object], str] = {}
        while waiting or running:
            while waiting and len(running) < PARTITION_WINDOW:
                p = waiting.pop(0)
                part = PartInput(campaign_id=s.inp.campaign_id, partition=p)
                running[asyncio.ensure_future(self._call(name, part))] = p
            done, _ = await workflow.wait(list(running), return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                s.partitions_done.append(running.pop(task))
        self._continue_as_new_if_long()

    def _long(self) -> bool:
        return workflow.info().get_current_history_length() >= self._s.inp.continue_as_new_after

    def _continue_as_new_if_long(self) -> None:
        if self._long() and workflow.all_handlers_finished():
            workflow.continue_as_new(self._s)

"""The side effects of ``workflows/campaign.py``: the snapshot, the stages and telling reviewers here;
settling and applying in ``activities/campaign_settlement.py``; following the directory in
``activities/campaign_directory.py``; escalations and delegations in ``activities/campaign_handovers.py``;
telling reviewers and the owner how the campaign ended in ``activities/campaign_outcomes.py``;
what they share in ``activities/campaign_base.py``.

Every activity works on the store by campaign id and returns counts and cursors only: items never pass
through Temporal. Each is safe to run again after a crash or a lost reply — items are written by id, a
stage's tasks once per reviewer, decisions only by the store's own rules, revocations read back before an
item is marked revoked — so a retry finishes the work instead of repeating it. Items are worked on in
sixteen partitions (``domain.campaigns.partition``); the workflow runs a few at once.

What is decided here is only what the pure rules say (``domain/population.py``,
``domain/campaigns.py``, ``domain/campaign_decisions.py``): who is in the population, who reviews, what the
deadline decides. Reading hoop and SCIM is :class:`CampaignSources`' job
(``integrations/campaign_sources.py``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from temporalio import activity

from activities.campaign_base import (
    NOTICE_PAGE,
    WRITE_BATCH,
    CampaignBase,
    CampaignRef,
    CommandRefusalInput,
    DeadlineInput,
    DigestOutage,
    DigestPageInput,
    DigestRefreshInput,
    DigestRefreshResult,
    FactsPeople,
    FinishInput,
    RegisterInput,
    ReviewerPageInput,
    ReviewerPageResult,
    SnapshotResult,
    StageInput,
    UsageIndex,
)
from activities.campaign_directory import CampaignDirectory
from activities.campaign_evidence import CampaignEvidence
from activities.campaign_handovers import CampaignHandoverActivities
from activities.campaign_outcomes import CampaignOutcomeActivities
from activities.campaign_settlement import CampaignSettlement
from activities.heartbeat import heartbeating
from domain.campaign_report import Provenance
from domain.campaign_spec import parse_campaign_spec
from domain.campaign_state import CampaignRecord, CampaignStatus
from domain.campaigns import (
    Assignment,
    CampaignItem,
    Reviewer,
    assign_reviewer,
    population_hash,
)
from domain.population import build_population, keep_after_usage
from store.campaigns import spec_hash


class CampaignActivities(
    CampaignSettlement,
    CampaignDirectory,
    CampaignEvidence,
    CampaignHandoverActivities,
    CampaignOutcomeActivities,
    CampaignBase,
):
    """Every campaign activity, registered by the worker; each part lives in the module named for it."""

    @activity.defn(name="campaign_snapshot")
    async def snapshot(self, inp: CampaignRef) -> SnapshotResult:
        """Who can reach what now, with usage and recommendations, assigned to stage 1's reviewers."""
        spec, record = await self._spec(inp.campaign_id)
        if record.population_hash is None:  # a first attempt, or one that died before finishing: start clean
            await asyncio.to_thread(self._store.clear_items, inp.campaign_id)
        read_at = datetime.now(UTC)
        # Reading a large organisation takes minutes: heartbeat meanwhile, or the attempt times out and
        # starts over, for ever.
        facts, extracts = await heartbeating(self._sources.read_facts(read_at))
        activity.heartbeat("facts read")
        population = build_population(spec.scope, facts)
        threshold = spec.recommendation.revoke_if_unused_for
        previous = await asyncio.to_thread(
            self._store.previous_campaign_launch, record.name, record.launched_at
        )
        window_start = previous or read_at - threshold
        sessions, usage_extracts = await heartbeating(
            self._sources.read_usage(min(window_start, read_at - threshold), window_start, read_at)
        )
        key_use = {i.name: i.last_used_at for i in facts.identities if i.last_used_at is not None}
        usage = UsageIndex(sessions=sessions, key_last_used=key_use)
        activity.heartbeat("usage read")
        people = FactsPeople(facts)
        del facts, sessions  # what assignment needs is in ``people``; the rest is read, let it go
        # Scored and assigned a batch at a time, each batch written before the next is scored: a scored
        # item with its usage and assignment is several times the size of the population's item, so
        # holding them all would double the snapshot's memory. Only counts and which items stayed are kept.
        kept_flags = bytearray(len(population.items))
        kept_count = unassigned = 0
        reviewers: set[str] = set()
        batch: list[tuple[CampaignItem, Assignment]] = []
        for n, item in enumerate(population.items):
            if n % 5000 == 0:
                activity.heartbeat(f"{n} items scored")
            item_usage = usage.usage_for(item, window_start, read_at)
            if not keep_after_usage(item, item_usage, spec.scope):
                continue
            scored = CampaignItem.of(item.subject, item.access, item_usage, threshold)
            assignment = assign_reviewer(scored, 0, spec, people)
            kept_flags[n] = 1
            kept_count += 1
            if assignment.reviewer is None:
                unassigned += 1
            else:
                reviewers.add(assignment.reviewer.id)
            batch.append((scored, assignment))
            if len(batch) == WRITE_BATCH:
                await asyncio.to_thread(self._store.add_items, inp.campaign_id, batch)
                activity.heartbeat(f"{kept_count} items written")
                batch = []
        if batch:
            await asyncio.to_thread(self._store.add_items, inp.campaign_id, batch)
            activity.heartbeat(f"{kept_count} items written")
        del batch, people, usage
        # A scored item has its population item's id, subject and access: the hash is the same.
        kept = (item for item, flag in zip(population.items, kept_flags, strict=True) if flag)
        provenance = Provenance(
            extracted_at=read_at,
            sources=tuple(extracts + usage_extracts),
            population_hash=population_hash(kept),
            item_count=kept_count,
            connections=population.connections,
            notes=tuple(n.detail for n in population.notes),
        )
        del population, kept_flags
        await asyncio.to_thread(
            self._store.update_campaign,
            inp.campaign_id,
            read_at,
            population_hash=provenance.population_hash,
            item_count=kept_count,
            provenance_json=provenance.model_dump_json(),
        )
        await self._ledger(
            "campaign.snapshot",
            inp.campaign_id,
            "snapshot",
            {
                "items": kept_count,
                "reviewers": len(reviewers),
                "unassigned": unassigned,
                "population_hash": provenance.population_hash,
                "sources": [s.model_dump(mode="json") for s in provenance.sources],
            },
        )
        return SnapshotResult(
            items=kept_count, reviewers=len(reviewers), unassigned=unassigned, notes=list(provenance.notes)
        )

    @activity.defn(name="campaign_register")
    async def register(self, inp: RegisterInput) -> None:
        """Record a scheduled run's campaign (once: a retry finds it recorded)."""
        spec = parse_campaign_spec(inp.spec_toml, f"schedule {inp.schedule_id}")
        now = datetime.now(UTC)
        record = CampaignRecord(
            id=inp.campaign_id,
            name=spec.name,
            owner=spec.owner,
            spec_toml=inp.spec_toml,
            spec_sha256=spec_hash(inp.spec_toml),
            status=CampaignStatus.SNAPSHOTTING,
            launched_at=inp.launched_at,
            nominal_time=inp.nominal_time,
            workflow_id=inp.workflow_id,
            updated_at=now,
        )
        await asyncio.to_thread(self._store.create_campaign, record)
        await self._ledger(
            "campaign.launched",
            inp.campaign_id,
            "launched",
            {
                "name": spec.name,
                "spec_sha256": record.spec_sha256,
                "schedule": inp.schedule_id,
                "nominal_time": inp.nominal_time.isoformat() if inp.nominal_time else None,
            },
        )

    # ------------------------------------------------------------------ stages

    @activity.defn(name="campaign_open_stage")
    async def open_stage(self, inp: StageInput) -> int:
        now = datetime.now(UTC)
        await asyncio.to_thread(
            self._store.update_campaign,
            inp.campaign_id,
            now,
            status=CampaignStatus.OPEN,
            stage=inp.stage,
            stage_open=True,
            stage_closes_at=inp.closes_at,
            deadline=inp.closes_at,
        )
        tasks = await asyncio.to_thread(self._store.open_review_tasks, inp.campaign_id, inp.stage)
        await self._ledger(
            "campaign.stage_opened",
            inp.campaign_id,
            f"stage-{inp.stage}:opened",
            {"stage": inp.stage + 1, "closes_at": inp.closes_at.isoformat(), "review_tasks": tasks},
        )
        return tasks

    @activity.defn(name="campaign_close_stage")
    async def close_stage(self, inp: StageInput) -> None:
        """Refuse decisions from now on; the store checks it in each decision's own transaction."""
        await asyncio.to_thread(
            self._store.update_campaign, inp.campaign_id, datetime.now(UTC), stage_open=False
        )
        await self._ledger(
            "campaign.stage_closed", inp.campaign_id, f"stage-{inp.stage}:closed", {"stage": inp.stage + 1}
        )

    @activity.defn(name="campaign_move_deadline")
    async def move_deadline(self, inp: DeadlineInput) -> None:
        """An extension by the owner, or the stage ended early: the store's stage deadline (which the edge
        shows) and the ledger, naming who moved it."""
        await asyncio.to_thread(
            self._store.update_campaign,
            inp.campaign_id,
            datetime.now(UTC),
            stage_closes_at=inp.closes_at,
            deadline=inp.closes_at,
        )
        await self._ledger(
            "campaign.stage_ended_early" if inp.ended_early else "campaign.extended",
            inp.campaign_id,
            f"extension-{inp.extension}",
            {"stage": inp.stage + 1, "closes_at": inp.closes_at.isoformat(), "reason": inp.reason},
            actor=inp.actor or "grantflow",
        )

    @activity.defn(name="campaign_record_refusal")
    async def record_refusal(self, inp: CommandRefusalInput) -> None:
        """A refused owner command in the ledger, under the acting person and their channel (auditors see
        refused attempts as well as what was done)."""
        await asyncio.to_thread(
            self._store.append_ledger,
            kind=f"campaign.{inp.kind}_refused",
            subject=inp.campaign_id,
            actor=inp.actor.describe(),
            channel=inp.actor.channel,
            data={"refusal": inp.refusal, **inp.actor.ledger_data()},
            idempotency_key=f"{inp.campaign_id}:refused-{inp.command_id}",
        )

    @activity.defn(name="campaign_tell_reviewers")
    async def tell_reviewers(self, inp: ReviewerPageInput) -> ReviewerPageResult:
        """One page of reviewers told they have work (a notice at the start, reminders about pending items
        only later): an email with their signed link and, where Slack is configured, their digest — one
        DM per stage with the items and their buttons, which a reminder or a retry updates in place
        (``activities/campaign_digests.py``); where the spec asks for Jira, their digest issue
        (``activities/campaign_jira_digests.py``)."""
        spec, _ = await self._spec(inp.campaign_id)
        page = await asyncio.to_thread(
            self._store.reviewers_with_pending, inp.campaign_id, inp.stage, after=inp.after, limit=NOTICE_PAGE
        )
        told = 0
        down = DigestOutage()  # digest channels out for the rest of this page
        for reviewer_id, kind, name, pending in page:
            for person in await self._recipients(Reviewer(kind=kind, id=reviewer_id, name=name)):
                await self._send(inp, spec, person, pending, down)
                told += 1
            changes: dict[str, object] = (
                {"notified_at": datetime.now(UTC)}
                if inp.kind == "notice"
                else {"reminders_sent": inp.round + 1}
            )
            await asyncio.to_thread(
                self._store.mark_review_task, inp.campaign_id, inp.stage, reviewer_id, **changes
            )
            activity.heartbeat(reviewer_id)
        next_after = page[-1][0] if len(page) == NOTICE_PAGE else None
        return ReviewerPageResult(next_after=next_after, told=told)

    @activity.defn(name="campaign_refresh_digests")
    async def refresh_digests(self, inp: DigestRefreshInput) -> DigestRefreshResult:
        """Bring the Slack and Jira digests of the reviewers whose items were decided (from any channel) up
        to date in place; how many changed. Without Slack or Jira it says so (``slack=False``), and the
        workflow stops asking for the rest of the stage. Best effort: the decisions are in the store
        already, and the next refresh or reminder renders the digest from there again."""
        if self._digests is None and self._jira_digests is None:
            return DigestRefreshResult(slack=False)
        changed = await self._refresh_digests_of(inp.campaign_id, inp.stage, inp.reviewers)
        return DigestRefreshResult(changed=changed, slack=True)

    @activity.defn(name="campaign_close_digests")
    async def close_digests(self, inp: DigestPageInput) -> ReviewerPageResult:
        """A page of the closed stage's Slack digests shown as closed: no buttons any more, each item with
        what was decided or that it was not; and of its Jira digests: commented and moved to done. Best
        effort, as refreshes are; nothing to do without Slack or Jira. With both, the next page starts
        after the lesser of the two cursors (closing a digest again changes nothing)."""
        cursors: list[str | None] = []
        changed = 0
        for digests in (self._digests, self._jira_digests):
            if digests is None:
                continue
            cursor, count = await digests.close_page(
                inp.campaign_id, inp.stage, after=inp.after, limit=NOTICE_PAGE, progress=activity.heartbeat
            )
            cursors.append(cursor)
            changed += count
        more = [c for c in cursors if c is not None]
        return ReviewerPageResult(next_after=min(more) if more else None, told=changed)

    @activity.defn(name="campaign_finish")
    async def finish(self, inp: FinishInput) -> dict[str, int]:
        now = datetime.now(UTC)
        await asyncio.to_thread(
            self._store.update_campaign,
            inp.campaign_id,
            now,
            status=inp.status,
            stage_open=False,
            closed_at=now,
        )
        progress = await asyncio.to_thread(self._store.progress, inp.campaign_id, 0)
        await self._ledger(
            f"campaign.{inp.status.value.lower()}",
            inp.campaign_id,
            "finished",
            {"actor": inp.actor, "reason": inp.reason, "outcomes": progress.by_outcome},
        )
        return progress.by_outcome

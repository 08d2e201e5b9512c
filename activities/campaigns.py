"""The side effects of ``workflows/campaign.py``: snapshot, stages, telling reviewers, settling and applying.

Every activity works on the store by campaign id and returns counts and cursors only: items never pass
through Temporal. Each is safe to run again after a crash or a lost reply — items are written by id, a
stage's tasks once per reviewer, decisions only by the store's own rules, revocations read back before an
item is marked revoked — so a retry finishes the work instead of repeating it. Items are worked on in
sixteen partitions (``domain.campaigns.partition``); the workflow runs a few at once. All of one person's
items share a partition, so their revocations in hoop (whose ``PUT /users`` replaces the whole user) happen
one after the other, never in parallel.

What is decided here is only what the pure rules say (``domain/population.py``,
``domain/campaigns.py``, ``domain/campaign_decisions.py``): who is in the population, who reviews, what the
deadline decides. Reading hoop and SCIM is :class:`CampaignSources`' job
(``integrations/campaign_sources.py``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from pydantic import AwareDatetime, BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.standing_access import GroupSource, RevokeMembershipInput, StandingAccessActivities
from domain.campaign_decisions import ItemDecision, default_decision
from domain.campaign_report import Provenance, Revocation, SourceExtract
from domain.campaign_spec import CampaignSpec, parse_campaign_spec
from domain.campaign_state import CampaignStatus, ItemOutcome
from domain.campaigns import (
    Assignment,
    CampaignItem,
    ConnectionUsage,
    People,
    Reviewer,
    Usage,
    assign_reviewer,
    population_hash,
)
from domain.identity import Person, PersonRef
from domain.population import Facts, build_population, keep_after_usage
from domain.review_links import ReviewLinks
from integrations.notify import Message, Notifier
from store import Store
from store.campaigns import StoredItem

WRITE_BATCH = 500
NOTICE_PAGE = 200
GIVE_UP_AFTER_ATTEMPTS = 5
"""A partition's revocations still failing transiently after this many attempts get a remediation record."""


@dataclass(frozen=True)
class UsageIndex:
    """Sessions seen in the window, aggregated once per campaign (never one call per item)."""

    sessions: dict[tuple[str, str], ConnectionUsage] = field(default_factory=dict)
    """(identity name, lower case; connection) → last use and session count."""
    key_last_used: dict[str, datetime] = field(default_factory=dict)
    """API key name → hoop's ``last_used_at``."""

    def usage_for(self, item: CampaignItem, window_start: datetime, read_at: datetime) -> Usage:
        name = item.subject.name.lower()
        per_connection = tuple(
            self.sessions.get((name, c), ConnectionUsage(connection=c)) for c in item.access.connections
        )
        return Usage(
            window_start=window_start,
            read_at=read_at,
            per_connection=per_connection,
            key_last_used_at=self.key_last_used.get(item.subject.name),
        )


class CampaignSources(Protocol):
    """Reading the population's facts and usage from the gateway and the identity provider
    (``integrations.campaign_sources.HoopScimSources``)."""

    async def read_facts(self, read_at: datetime) -> tuple[Facts, list[SourceExtract]]: ...

    async def read_usage(
        self, since: datetime, count_from: datetime, read_at: datetime
    ) -> tuple[dict[tuple[str, str], ConnectionUsage], list[SourceExtract]]: ...


class StorePeople(People):
    """The directory as the store holds it now (identity sync keeps it current): movers and leavers are
    seen at the moment an item is assigned."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def person(self, person_id: str) -> Person | None:
        return self._store.get_person(person_id)

    def by_email(self, email: str) -> Person | None:
        return self._store.find_person_by_email(email)

    def members(self, group: str) -> Sequence[Person]:
        return self._store.group_members(group)


class FactsPeople(People):
    """The directory as the snapshot read it."""

    def __init__(self, facts: Facts) -> None:
        self._by_id = {p.id: p for p in facts.people}
        self._by_email = {p.email.lower(): p for p in facts.people}
        self._groups = facts.idp_groups

    def person(self, person_id: str) -> Person | None:
        return self._by_id.get(person_id)

    def by_email(self, email: str) -> Person | None:
        return self._by_email.get(email.lower())

    def members(self, group: str) -> Sequence[Person]:
        return [self._by_id[i] for i in self._groups.get(group, ()) if i in self._by_id]


class CampaignRef(BaseModel):
    campaign_id: str


class SnapshotResult(BaseModel):
    items: int
    reviewers: int
    unassigned: int = Field(description="items nobody independent could review")
    notes: list[str] = Field(default_factory=list)


class StageInput(BaseModel):
    campaign_id: str
    stage: int
    closes_at: AwareDatetime


class DeadlineInput(BaseModel):
    campaign_id: str
    stage: int
    closes_at: AwareDatetime
    extension: int = Field(description="how many extensions so far (for idempotency)")


class ReviewerPageInput(BaseModel):
    campaign_id: str
    stage: int
    kind: Literal["notice", "reminder"]
    after: str = ""
    round: int = Field(default=0, description="which reminder of the stage (for idempotency)")


class ReviewerPageResult(BaseModel):
    next_after: str | None
    told: int


class PartitionInput(BaseModel):
    campaign_id: str
    stage: int
    partition: str
    final: bool = False


class PartitionResult(BaseModel):
    counts: dict[str, int] = Field(default_factory=dict)


class FinishInput(BaseModel):
    campaign_id: str
    status: CampaignStatus
    actor: str = "grantflow"
    reason: str = ""


class CampaignActivities:
    def __init__(
        self,
        store: Store,
        sources: CampaignSources,
        revoker: StandingAccessActivities,
        notifier: Notifier,
        links: ReviewLinks | None,
    ) -> None:
        self._store = store
        self._sources = sources
        self._revoker = revoker
        self._notifier = notifier
        self._links = links

    async def _spec(self, campaign_id: str) -> tuple[CampaignSpec, datetime]:
        record = await asyncio.to_thread(self._store.campaign, campaign_id)
        if record is None:
            raise ApplicationError(
                f"campaign {campaign_id} does not exist", type="NotFound", non_retryable=True
            )
        return parse_campaign_spec(record.spec_toml, f"campaign {campaign_id}"), record.launched_at

    async def _ledger(self, kind: str, campaign_id: str, key: str, data: dict[str, object]) -> None:
        await asyncio.to_thread(
            self._store.append_ledger,
            kind=kind,
            subject=campaign_id,
            actor="grantflow",
            channel="system",
            data=data,
            idempotency_key=f"{campaign_id}:{key}",
        )

    # ------------------------------------------------------------------ snapshot

    @activity.defn(name="campaign_snapshot")
    async def snapshot(self, inp: CampaignRef) -> SnapshotResult:
        """Who can reach what now, with usage and recommendations, assigned to stage 1's reviewers."""
        spec, launched_at = await self._spec(inp.campaign_id)
        record = await asyncio.to_thread(self._store.campaign, inp.campaign_id)
        assert record is not None
        if record.population_hash is None:  # a first attempt, or one that died before finishing: start clean
            await asyncio.to_thread(self._store.clear_items, inp.campaign_id)
        read_at = datetime.now(UTC)
        facts, extracts = await self._sources.read_facts(read_at)
        activity.heartbeat("facts read")
        population = build_population(spec.scope, facts)
        threshold = spec.recommendation.revoke_if_unused_for
        previous = await asyncio.to_thread(self._store.previous_campaign_launch, record.name, launched_at)
        window_start = previous or read_at - threshold
        sessions, usage_extracts = await self._sources.read_usage(
            min(window_start, read_at - threshold), window_start, read_at
        )
        usage = UsageIndex(sessions=sessions)
        activity.heartbeat("usage read")
        people = FactsPeople(facts)
        kept: list[tuple[CampaignItem, Assignment]] = []
        for item in population.items:
            item_usage = usage.usage_for(item, window_start, read_at)
            if not keep_after_usage(item, item_usage, spec.scope):
                continue
            scored = CampaignItem.of(item.subject, item.access, item_usage, threshold)
            kept.append((scored, assign_reviewer(scored, 0, spec, people)))
        for start in range(0, len(kept), WRITE_BATCH):
            await asyncio.to_thread(self._store.add_items, inp.campaign_id, kept[start : start + WRITE_BATCH])
            activity.heartbeat(f"{start + WRITE_BATCH} items written")
        provenance = Provenance(
            extracted_at=read_at,
            sources=tuple(extracts + usage_extracts),
            population_hash=population_hash(item for item, _ in kept),
            item_count=len(kept),
            connections=population.connections,
            notes=tuple(n.detail for n in population.notes),
        )
        await asyncio.to_thread(
            self._store.update_campaign,
            inp.campaign_id,
            read_at,
            population_hash=provenance.population_hash,
            item_count=len(kept),
            provenance_json=provenance.model_dump_json(),
        )
        reviewers = {a.reviewer.id for _, a in kept if a.reviewer is not None}
        unassigned = sum(1 for _, a in kept if a.reviewer is None)
        await self._ledger(
            "campaign.snapshot",
            inp.campaign_id,
            "snapshot",
            {
                "items": len(kept),
                "reviewers": len(reviewers),
                "unassigned": unassigned,
                "population_hash": provenance.population_hash,
                "sources": [s.model_dump(mode="json") for s in provenance.sources],
            },
        )
        return SnapshotResult(
            items=len(kept), reviewers=len(reviewers), unassigned=unassigned, notes=list(provenance.notes)
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
        """An extension by the owner: the store's stage deadline (which the edge shows) and the ledger."""
        await asyncio.to_thread(
            self._store.update_campaign,
            inp.campaign_id,
            datetime.now(UTC),
            stage_closes_at=inp.closes_at,
            deadline=inp.closes_at,
        )
        await self._ledger(
            "campaign.extended",
            inp.campaign_id,
            f"extension-{inp.extension}",
            {"stage": inp.stage + 1, "closes_at": inp.closes_at.isoformat()},
        )

    @activity.defn(name="campaign_tell_reviewers")
    async def tell_reviewers(self, inp: ReviewerPageInput) -> ReviewerPageResult:
        """One page of reviewers told they have work (a notice at the start, reminders about pending items
        only later): an email with their signed link and, where Slack is configured, a DM with it."""
        spec, _ = await self._spec(inp.campaign_id)
        page = await asyncio.to_thread(
            self._store.reviewers_with_pending, inp.campaign_id, inp.stage, after=inp.after, limit=NOTICE_PAGE
        )
        told = 0
        for reviewer_id, kind, name, pending in page:
            for person in await self._recipients(Reviewer(kind=kind, id=reviewer_id, name=name)):
                await self._send(inp, spec, person, pending)
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

    async def _recipients(self, reviewer: Reviewer) -> list[PersonRef]:
        if reviewer.kind == "person":
            return [PersonRef(id=reviewer.id, email=reviewer.name)]
        members = await asyncio.to_thread(self._store.group_members, reviewer.id)
        return [m.ref for m in members if m.active]

    async def _send(
        self, inp: ReviewerPageInput, spec: CampaignSpec, person: PersonRef, pending: int
    ) -> None:
        link = self._links.campaign_url(inp.campaign_id, person.id) if self._links is not None else None
        items = f"{pending} item{'s' if pending != 1 else ''}"
        if inp.kind == "notice":
            subject = f"Access review: {spec.name} — {items} to review"
            text = (
                f"{spec.name}: please review the standing access of {items} (stage {inp.stage + 1} of "
                f"{len(spec.stages)}). For each, keep or revoke; at the deadline, "
                f"{_default_sentence(spec)}."
            )
        else:
            subject = f"Reminder: {spec.name} — {items} still to review"
            text = f"{spec.name}: {items} still wait for your decision (stage {inp.stage + 1})."
        message = Message(
            request_id=f"{inp.campaign_id}:{inp.stage}:{inp.kind}:{inp.round}",
            event=f"campaign_{inp.kind}",
            recipient=person,
            subject=subject,
            text=text,
            link=link,
        )
        try:
            await self._notifier.send(message)
        except Exception as exc:  # best effort: a reviewer's channel failing never stops the campaign
            activity.logger.warning("campaign %s: %s not told: %s", inp.campaign_id, person.email, exc)

    # ------------------------------------------------------------------ settling and applying

    @activity.defn(name="campaign_settle_partition")
    async def settle_partition(self, inp: PartitionInput) -> PartitionResult:
        """After a stage closed: revokes end an item's review; keeps and undecided items move to the next
        stage's reviewer — or, after the last stage, keeps are kept and the default decides the rest."""
        spec, _ = await self._spec(inp.campaign_id)
        people = StorePeople(self._store)
        counts: dict[str, int] = {}
        async for item in self._partition(inp, ItemOutcome.OPEN, stage=inp.stage):
            outcome = await self._settle(inp, spec, people, item)
            counts[outcome] = counts.get(outcome, 0) + 1
        return PartitionResult(counts=counts)

    async def _partition(
        self, inp: PartitionInput, outcome: ItemOutcome, *, stage: int | None = None
    ) -> AsyncIterator[StoredItem]:
        """The partition's items with ``outcome``, page by page (each page read after the previous one was
        worked on, so items it changed are not read again), with a heartbeat per item."""
        after = ""
        while page := await asyncio.to_thread(
            self._store.items,
            inp.campaign_id,
            after=after,
            stage=stage,
            outcome=outcome,
            partition=inp.partition,
        ):
            for item in page:
                yield item
                activity.heartbeat(item.id)
            after = page[-1].id

    async def _settle(self, inp: PartitionInput, spec: CampaignSpec, people: People, item: StoredItem) -> str:
        if item.verdict == "revoke":
            await asyncio.to_thread(self._store.set_outcome, inp.campaign_id, item.id, ItemOutcome.REVOKE)
            return "revoke"
        if not inp.final:
            assignment = assign_reviewer(item, inp.stage + 1, spec, people)
            await asyncio.to_thread(self._store.reassign, inp.campaign_id, item.id, assignment)
            return "next_stage"
        if item.verdict == "keep":
            await asyncio.to_thread(self._store.set_outcome, inp.campaign_id, item.id, ItemOutcome.KEPT)
            return "kept"
        verdict, basis = default_decision(item, spec)
        default = ItemDecision(
            item_id=item.id,
            stage=inp.stage,
            verdict=verdict,
            actor=None,
            decided_at=datetime.now(UTC),
            default=True,
            default_basis=basis,
        )
        await asyncio.to_thread(self._store.record_default, inp.campaign_id, default)
        outcome = ItemOutcome.KEPT if verdict == "keep" else ItemOutcome.REVOKE
        await asyncio.to_thread(self._store.set_outcome, inp.campaign_id, item.id, outcome, verdict=verdict)
        return f"default_{verdict}"

    @activity.defn(name="campaign_apply_partition")
    async def apply_partition(self, inp: PartitionInput) -> PartitionResult:
        """Apply the partition's revocations one item after the other, each read back; an item that cannot
        be revoked gets a remediation record and stays open in the evidence."""
        counts: dict[str, int] = {}
        async for item in self._partition(inp, ItemOutcome.REVOKE):
            revocation = await self._revoke(inp.campaign_id, item)
            outcome = ItemOutcome.REVOKED if revocation.status == "applied" else ItemOutcome.FAILED
            await asyncio.to_thread(
                self._store.set_outcome, inp.campaign_id, item.id, outcome, revocation=revocation
            )
            await self._ledger(
                f"campaign.item_{outcome.value}",
                inp.campaign_id,
                f"apply:{item.id}",
                {"item": item.id, "subject": item.subject.name, **revocation.model_dump(mode="json")},
            )
            counts[outcome.value] = counts.get(outcome.value, 0) + 1
        return PartitionResult(counts=counts)

    async def _revoke(self, campaign_id: str, item: StoredItem) -> Revocation:
        access, subject = item.access, item.subject
        if not subject.is_person or access.group is None:
            return _remediation(
                campaign_id,
                item,
                f"removing {subject.kind.value.replace('_', ' ')} access is not automated: remove "
                f"{subject.name}'s {access.describe()} in hoop by hand",
            )
        source = GroupSource.IDP if any(s.value == "scim" for s in access.sources) else GroupSource.GATEWAY
        request = RevokeMembershipInput(
            person=PersonRef(id=subject.id, email=subject.name),
            group=access.group,
            source=source,
            reason=f"campaign {campaign_id}: revoked",
            subject=f"{campaign_id}:{item.id}",
        )
        try:
            result = await self._revoker.revoke_membership(request)
        except ApplicationError as exc:
            if exc.non_retryable or activity.info().attempt >= GIVE_UP_AFTER_ATTEMPTS:
                return _remediation(campaign_id, item, exc.message)
            raise
        return Revocation(
            status="applied",
            systems=("scim", "hoop") if result.removed_in_idp is not None else ("hoop",),
            applied_at=datetime.now(UTC),
            read_back=(
                f"hoop: not in {access.group}"
                + ("; identity provider: not a member" if result.removed_in_idp is not None else "")
            ),
            sessions_killed=tuple(k.id for k in result.sessions_killed),
        )

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


def _remediation(campaign_id: str, item: CampaignItem, error: str) -> Revocation:
    return Revocation(
        status="remediation",
        systems=(),
        error=error,
        remediation=f"remediation record {campaign_id}:{item.id}",
    )


def _default_sentence(spec: CampaignSpec) -> str:
    return {
        "keep": "undecided access is kept",
        "revoke": "undecided access is revoked",
        "recommendation": "undecided access follows its recommendation",
    }[spec.default_decision.value]


def provenance_of(json_text: str | None) -> Provenance | None:
    return Provenance.model_validate(json.loads(json_text)) if json_text else None


def stage_deadlines(spec: CampaignSpec, launched_at: datetime) -> list[datetime]:
    """When each stage closes, from launch."""
    ends, at = [], launched_at
    for duration in spec.stage_durations(launched_at):
        at = at + duration
        ends.append(at)
    return ends

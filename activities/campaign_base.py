"""What the campaign activities share (``activities/campaigns.py`` composes them): the inputs and results
the workflow exchanges with them, the sources a snapshot reads, the directory as reviewer assignment sees
it, and the common steps — reading a campaign's spec, writing the ledger, telling a reviewer.

Nothing here runs as an activity by itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import AwareDatetime, BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.campaign_digests import SlackDigests
from activities.campaign_jira_digests import JiraDigests
from activities.standing_access import StandingAccessActivities
from domain.campaign_report import SourceExtract
from domain.campaign_spec import CampaignSpec, parse_campaign_spec
from domain.campaign_state import CampaignRecord, CampaignStatus, ItemOutcome
from domain.campaigns import (
    CampaignItem,
    ConnectionUsage,
    People,
    Reviewer,
    Usage,
)
from domain.directory_sync import Leaver, ManagerChange
from domain.identity import Actor, Person, PersonRef
from domain.population import Facts
from domain.review_links import ReviewLinks
from integrations.gateway import Gateway
from integrations.jira_tickets import JiraTickets, JiraTransientError
from integrations.notify import Message, Notifier
from integrations.slack import SlackChannel, SlackTransientError
from store import Store
from store.campaigns import StoredItem
from templates import template_environment

if TYPE_CHECKING:
    from sqlalchemy import Executable

WRITE_BATCH = 500
NOTICE_PAGE = 200
MAX_ITEMS_EMAILED = 25
"""Items a notice or reminder email lists one by one; the rest are on the web page (its link is in it)."""
DIGEST_ATTEMPTS = 6
"""Tries of one reviewer's digest in one channel while Slack or Jira fails transiently (a 429, a 503, a
dropped connection). Publishing is idempotent (it looks before it posts), and a digest given up after one
rate limit would reach its reviewer only with a reminder, and only if they still had items pending."""
DIGEST_PAUSE, DIGEST_PAUSE_MAX = 0.5, 10.0
"""The first pause between two tries when the vendor did not say how long (it doubles from there), and the
longest pause, whatever ``Retry-After`` asks (seconds)."""
DOWN_AFTER = 3
"""Reviewers in a row whose digest in a channel failed every one of its tries before the channel counts as
out for the rest of a page. One such reviewer is not an outage: a digest takes several calls, and with a
fifth of calls failing one reviewer in a hundred or so exhausts their tries; calling the channel out after
that one left the page's other reviewers a single try each, and a dozen ended the campaign without a
digest (tests/test_campaign_channels_e2e.py)."""


@dataclass
class DigestOutage:
    """The digest channels out for the rest of a page (or batch) of reviewers: a channel is out once
    :data:`DOWN_AFTER` reviewers in a row failed every try there, and each reviewer after that gets one
    try, so an outage never holds the page up. A digest that gets through brings its channel back."""

    failed_in_a_row: dict[str, int] = field(default_factory=dict)

    def attempts(self, channel: str) -> int:
        return 1 if self.failed_in_a_row.get(channel, 0) >= DOWN_AFTER else DIGEST_ATTEMPTS

    def failed(self, channel: str) -> None:
        self.failed_in_a_row[channel] = self.failed_in_a_row.get(channel, 0) + 1

    def got_through(self, channel: str) -> None:
        self.failed_in_a_row.pop(channel, None)


_EMAIL_TEXT = template_environment(autoescape=False)


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


class RegisterInput(BaseModel):
    """A scheduled run's campaign, recorded by the run itself (a Temporal Schedule starts it directly)."""

    campaign_id: str
    spec_toml: str
    workflow_id: str
    launched_at: AwareDatetime
    nominal_time: AwareDatetime | None
    schedule_id: str


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
    ended_early: bool = Field(default=False, description="the owner ended the stage now")
    actor: str = Field(default="", description="who moved the deadline (the owner or an administrator)")
    reason: str = ""


class CommandRefusalInput(BaseModel):
    """An owner command the workflow refused itself (its state moved after the edge asked): the ledger's
    ``campaign.<kind>_refused``, as the edge writes for the refusals it finds."""

    campaign_id: str
    command_id: str = Field(description="the command's id: one entry however often the activity runs")
    kind: str = Field(description="cancel, extend, end_stage or apply")
    actor: Actor
    refusal: str


class ReviewerPageInput(BaseModel):
    campaign_id: str
    stage: int
    kind: Literal["notice", "reminder"]
    after: str = ""
    round: int = Field(default=0, description="which reminder of the stage (for idempotency)")


class DigestRefreshInput(BaseModel):
    campaign_id: str
    stage: int
    reviewers: list[str] = Field(description="reviewer ids (people or groups) whose items were decided")


class DigestPageInput(BaseModel):
    campaign_id: str
    stage: int
    after: str = ""


class DigestRefreshResult(BaseModel):
    changed: int = 0
    slack: bool = Field(description="False: this worker posts no digests (Slack is not configured)")


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


class DirectoryChangesInput(BaseModel):
    sync_id: str
    leavers: list[Leaver] = Field(default_factory=list)
    movers: list[ManagerChange] = Field(default_factory=list)


class FollowResult(BaseModel):
    closed: int = 0
    rerouted: int = 0


class FinishInput(BaseModel):
    campaign_id: str
    status: CampaignStatus
    actor: str = "grantflow"
    reason: str = ""


class CampaignBase:
    """The collaborators and shared steps of every campaign activity."""

    def __init__(
        self,
        store: Store,
        sources: CampaignSources,
        revoker: StandingAccessActivities,
        notifier: Notifier,
        links: ReviewLinks | None,
        evidence_key: Ed25519PrivateKey | None = None,
        gateway: Gateway | None = None,
        tickets: Callable[[], JiraTickets] | None = None,
        slack: SlackChannel | None = None,
    ) -> None:
        self._store = store
        self._sources = sources
        self._revoker = revoker
        self._notifier = notifier
        self._links = links
        self._evidence_key = evidence_key
        self._gateway = gateway  # for non-human identities' keys (people go through the revoker)
        self._tickets = tickets  # Jira, for remediation tickets (blocking: call from a thread)
        # Slack: each reviewer's digest (one DM per stage, kept up to date); the notifier then emails only
        self._digests = SlackDigests(store, slack, links) if slack is not None else None
        # Jira: each reviewer's digest issue, for campaigns whose spec lists "jira" in its channels
        self._jira_digests = JiraDigests(store, tickets) if tickets is not None else None

    async def _spec(self, campaign_id: str) -> tuple[CampaignSpec, CampaignRecord]:
        record = await asyncio.to_thread(self._store.campaign, campaign_id)
        if record is None:
            raise ApplicationError(
                f"campaign {campaign_id} does not exist", type="NotFound", non_retryable=True
            )
        return parse_campaign_spec(record.spec_toml, f"campaign {campaign_id}"), record

    async def _ledger(
        self,
        kind: str,
        campaign_id: str,
        key: str,
        data: dict[str, object],
        actor: str = "grantflow",
        with_record: Executable | None = None,
    ) -> None:
        """Append a campaign's evidence; ``with_record`` (see ``Store.append_ledger``) commits the record
        it is evidence of with it."""
        await asyncio.to_thread(
            self._store.append_ledger,
            kind=kind,
            subject=campaign_id,
            actor=actor,
            channel="system",
            data=data,
            idempotency_key=f"{campaign_id}:{key}",
            with_record=with_record,
        )

    async def _recipients(self, reviewer: Reviewer) -> list[PersonRef]:
        if reviewer.kind == "person":
            return [PersonRef(id=reviewer.id, email=reviewer.name)]
        members = await asyncio.to_thread(self._store.group_members, reviewer.id)
        return [m.ref for m in members if m.active]

    async def _send(
        self,
        inp: ReviewerPageInput,
        spec: CampaignSpec,
        person: PersonRef,
        pending: int,
        down: DigestOutage | None = None,
    ) -> None:
        """One email listing the person's pending items of the stage (the first :data:`MAX_ITEMS_EMAILED`,
        then "and N more on the web page") with their signed link — never one email per item — and their
        Slack digest. ``pending`` is the reviewer's count, used when the person's own listing finds none.
        ``down``: the digest channels out for this page (:class:`DigestOutage`); None: one try each."""
        link = self._links.campaign_url(inp.campaign_id, person.id) if self._links is not None else None
        listed, found = await self._pending_items(inp.campaign_id, inp.stage, person.id)
        count = found or pending
        rendered = _EMAIL_TEXT.get_template(f"email/campaign_{inp.kind}.txt.j2").render(
            campaign_name=spec.name,
            stage=inp.stage + 1,
            stages=len(spec.stages),
            default_sentence=spec.default_decision.sentence,
            pending=count,
            items=listed,
            left_out=count - len(listed),
            link=link,
        )
        subject, _, text = rendered.partition("\n")
        message = Message(
            request_id=f"{inp.campaign_id}:{inp.stage}:{inp.kind}:{inp.round}",
            event=f"campaign_{inp.kind}",
            recipient=person,
            subject=subject.strip(),
            text=text.lstrip("\n"),
            link=link,
        )
        try:
            if "email" in spec.channels:
                await self._notifier.send(message)
        except Exception as exc:  # best effort: a reviewer's channel failing never stops the campaign
            activity.logger.warning("campaign %s: %s not told: %s", inp.campaign_id, person.email, exc)
        if self._jira_digests is not None and "jira" in spec.channels:
            try:
                jira_digests = self._jira_digests
                await self._publish_digest(
                    "jira",
                    lambda: jira_digests.publish(
                        inp.campaign_id,
                        inp.stage,
                        person,
                        reminder_round=inp.round if inp.kind == "reminder" else None,
                    ),
                    down,
                )
            except Exception as exc:  # best effort, as below
                activity.logger.warning(
                    "campaign %s: %s has no Jira digest: %s", inp.campaign_id, person.email, exc
                )
        if self._digests is not None and "slack" in spec.channels:
            try:
                slack_digests = self._digests
                await self._publish_digest(
                    "slack",
                    lambda: slack_digests.publish(
                        inp.campaign_id, inp.stage, person, reminder=inp.kind == "reminder"
                    ),
                    down,
                )
            except Exception as exc:  # best effort, as above: the email carries the link
                activity.logger.warning(
                    "campaign %s: %s has no Slack digest: %s", inp.campaign_id, person.email, exc
                )

    async def _publish_digest(
        self, channel: str, publish: Callable[[], Awaitable[object]], down: DigestOutage | None
    ) -> None:
        """Publish one reviewer's digest, tried again after a transient failure (up to
        :data:`DIGEST_ATTEMPTS` times, pausing as ``Retry-After`` asks, else backing off from
        :data:`DIGEST_PAUSE`), or once where ``down`` says the channel is out (or is None). The last
        failure is raised."""
        attempts = 1 if down is None else down.attempts(channel)
        for attempt in range(1, attempts + 1):
            try:
                await publish()
            except (SlackTransientError, JiraTransientError) as exc:
                if attempt == attempts:
                    if down is not None:
                        down.failed(channel)
                    raise
                activity.heartbeat(f"{channel} digest: try {attempt + 1}")
                pause = exc.retry_after if exc.retry_after else DIGEST_PAUSE * 2 ** (attempt - 1)
                await asyncio.sleep(min(DIGEST_PAUSE_MAX, pause))
            else:
                if down is not None:
                    down.got_through(channel)
                return

    async def _pending_items(
        self, campaign_id: str, stage: int, person_id: str
    ) -> tuple[list[StoredItem], int]:
        """The first :data:`MAX_ITEMS_EMAILED` undecided items the person reviews in the stage (their own
        and their groups', as the digest shows; never their own access) and how many there are."""
        person = await asyncio.to_thread(self._store.get_person, person_id)
        listed: dict[str, StoredItem] = {}
        count = 0
        for holder in dict.fromkeys([person_id, *(person.groups if person is not None else ())]):
            after = ""
            while page := await asyncio.to_thread(
                self._store.items,
                campaign_id,
                reviewer_id=holder,
                stage=stage,
                after=after,
                outcome=ItemOutcome.OPEN,
            ):
                for item in page:
                    if item.verdict is not None or (item.subject.is_person and item.subject.id == person_id):
                        continue
                    count += 1
                    if len(listed) < MAX_ITEMS_EMAILED:
                        listed[item.id] = item
                after = page[-1].id
        return [listed[k] for k in sorted(listed)], count

    async def _refresh_digests_of(self, campaign_id: str, stage: int, reviewer_ids: Sequence[str]) -> int:
        """Bring the Slack and Jira digests of these reviewers (people, or every member of a group) up to
        date in place; how many changed (0 without Slack or Jira)."""
        if self._digests is None and self._jira_digests is None:
            return 0
        people: dict[str, PersonRef] = {}
        for reviewer_id in dict.fromkeys(reviewer_ids):
            for person in await self._recipients(await self._reviewer(reviewer_id)):
                people.setdefault(person.id, person)
            activity.heartbeat(reviewer_id)
        changed = 0
        if self._jira_digests is not None:
            changed += await self._jira_digests.refresh(
                campaign_id, stage, list(people.values()), progress=activity.heartbeat
            )
        if self._digests is not None:
            changed += await self._digests.refresh(
                campaign_id, stage, list(people.values()), progress=activity.heartbeat
            )
        return changed

    async def _open_items(
        self,
        campaign_id: str,
        *,
        subject_id: str | None = None,
        reviewer_id: str | None = None,
        stage: int | None = None,
    ) -> list[StoredItem]:
        """A campaign's open items about a subject or held by a reviewer (few: one person's share)."""
        found: list[StoredItem] = []
        after = ""
        while page := await asyncio.to_thread(
            self._store.items,
            campaign_id,
            after=after,
            outcome=ItemOutcome.OPEN,
            subject_id=subject_id,
            reviewer_id=reviewer_id,
            stage=stage,
        ):
            found += page
            after = page[-1].id
        return found

    async def _reviewer(self, reviewer_id: str) -> Reviewer:
        person = await asyncio.to_thread(self._store.get_person, reviewer_id)
        if person is not None:
            return Reviewer(kind="person", id=person.id, name=person.email)
        return Reviewer(kind="group", id=reviewer_id, name=reviewer_id)


def stage_deadlines(spec: CampaignSpec, launched_at: datetime) -> list[datetime]:
    """When each stage closes, from launch."""
    ends, at = [], launched_at
    for duration in spec.stage_durations(launched_at):
        at = at + duration
        ends.append(at)
    return ends

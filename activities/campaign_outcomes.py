"""Telling people how a campaign ended: each reviewer about their own items, the owner about the whole
campaign — once the campaign is CLOSED (its revocations applied) or CANCELLED.

Each item ends in one of these (:func:`outcome_category`):

- ``kept`` / ``revoked``: a reviewer's decision, carried out (a revocation read back);
- ``defaulted``: nobody decided it, so the deadline's default did (kept or revoked);
- ``failed``: the revocation could not be applied; the remediation ticket the settlement opened (or its
  record without Jira) says who removes the access by hand;
- ``unchanged``: the campaign was cancelled before it was carried out (nothing is revoked).

**Channels.** An email to everyone with an address (``templates/email/campaign_outcome.txt.j2``): the counts,
the first :data:`MAX_ITEMS_LISTED` items (failed ones first, with their ticket) and "and N more on the web
page". In Slack nothing new is posted: the reviewer's *last* digest (the latest stage they had one for) is
updated in place to show the outcome (``templates/slack/campaign_outcome.json.j2``). One more DM per
reviewer at the end of a campaign they already have a digest for would be noise; the digest they last
looked at is where they look for what became of their answers. In Jira, likewise nothing new is opened: a
reviewer with a digest issue gets one comment on their last one (``templates/jira/campaign_outcome.j2``,
without the signed link). The owner has no digest: email only.

**Reviewers.** A reviewer is whoever holds an item now (the reviewer of the stage it ended in), a
group's active members each on their own account; of a cancelled campaign, only reviewers who were sent a
notice (nobody hears of a review only to learn it was called off). A person is told once about every item
they reviewed, their own and their groups'. The owner gets the campaign's summary even when they also
reviewed (then they get their reviewer's summary too: the two say different things).

**Idempotent.** The work goes page by page of reviewers (:data:`NOTICE_PAGE`), the workflow keeping the
cursor, so a campaign of 100 000 items makes small activities and a short history. Each person told is
recorded in the store (``campaign_digests``, channel :data:`OUTCOME_CHANNEL`, the message's Message-ID)
once their email went out, and skipped by a retry: a page retried after a crash re-sends nothing it had
sent (at most the one message in flight when it crashed, with the same Message-ID, which mail clients
fold). The Jira comment is recorded the same way (channel :data:`JIRA_OUTCOME_CHANNEL`) and, should
that record be lost, is recognised on the issue by its text (``JiraTickets.comment`` never posts the same
comment twice): a retry never comments twice. After the last page the owner is told and the ledger gets
``campaign.outcomes_told`` with the counts.
Best effort throughout: a channel failing is logged and never fails the campaign.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from temporalio import activity

from activities.campaign_base import NOTICE_PAGE, CampaignBase, ReviewerPageResult
from domain.campaign_spec import CampaignSpec
from domain.campaign_state import CampaignRecord, CampaignStatus, ItemOutcome
from domain.campaigns import Reviewer
from domain.identity import PersonRef
from integrations.notify import Message
from store.campaigns import DigestHandle, StoredItem
from templates import template_environment

OUTCOME_STAGE = -1
"""The stage under which outcome messages are recorded: they are about the campaign, not one stage."""
OUTCOME_CHANNEL = "email-outcome"
"""A reviewer's outcome email, recorded once sent (so a retry skips them)."""
OWNER_OUTCOME_CHANNEL = "email-outcome-owner"
"""The owner's outcome email, recorded once sent."""
JIRA_OUTCOME_CHANNEL = "jira-outcome"
"""A reviewer's outcome comment on their last Jira digest issue, recorded once posted (a retry skips it)."""
MAX_ITEMS_LISTED = 25
"""Items an outcome email names one by one; the rest are counted ("and N more on the web page")."""
CATEGORIES = ("kept", "revoked", "defaulted", "failed", "unchanged")

_TEXT = template_environment(autoescape=False)


class OutcomePageInput(BaseModel):
    campaign_id: str
    after: str = Field(default="", description="the page of reviewers after this reviewer id")
    actor: str = Field(default="", description="who cancelled the campaign, when it was cancelled")
    reason: str = ""


def outcome_category(outcome: ItemOutcome, defaulted: bool) -> str:
    """What became of an item, as its reviewer and owner read it (see the module docstring)."""
    if outcome is ItemOutcome.FAILED:
        return "failed"
    if outcome in (ItemOutcome.KEPT, ItemOutcome.REVOKED):
        if defaulted:
            return "defaulted"
        return "kept" if outcome is ItemOutcome.KEPT else "revoked"
    return "unchanged"  # open, or decided to revoke but never applied: the campaign was cancelled


@dataclass
class OutcomeLine:
    item_id: str
    subject: str
    access: str
    category: str
    detail: str = ""


@dataclass
class Tally:
    """Counts by category and the items an email lists (failed ones first)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    failed: list[OutcomeLine] = field(default_factory=list)
    others: list[OutcomeLine] = field(default_factory=list)

    def add(self, item: StoredItem, defaulted: bool) -> None:
        self.counts[outcome_category(item.outcome, defaulted)] += 1
        self.mention(item, defaulted)

    def mention(self, item: StoredItem, defaulted: bool) -> None:
        """Name the item in the email, while there is room (failed items have their own room)."""
        category = outcome_category(item.outcome, defaulted)
        if category == "failed" and any(line.item_id == item.id for line in self.failed):
            return  # already listed among the failed
        detail = ""
        if category == "failed" and item.revocation is not None:
            detail = item.revocation.remediation or item.revocation.error or ""
        elif category == "defaulted":
            detail = "kept" if item.outcome is ItemOutcome.KEPT else "revoked"
        line = OutcomeLine(item.id, item.subject.name, item.access.describe(), category, detail)
        target = self.failed if category == "failed" else self.others
        if len(target) < MAX_ITEMS_LISTED:
            target.append(line)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def listed(self) -> list[OutcomeLine]:
        return (self.failed + self.others)[:MAX_ITEMS_LISTED]


def _message_id(campaign_id: str, role: str, person_id: str) -> str:
    return f"{campaign_id}:outcome:{role}:{person_id}"


class CampaignOutcomeActivities(CampaignBase):
    @activity.defn(name="campaign_tell_outcomes")
    async def tell_outcomes(self, inp: OutcomePageInput) -> ReviewerPageResult:
        """One page of reviewers told how their items ended; after the last page the owner, and the ledger
        (``campaign.outcomes_told``). ``told`` counts the people told by this call."""
        spec, record = await self._spec(inp.campaign_id)
        page = await asyncio.to_thread(
            self._store.item_reviewers, inp.campaign_id, after=inp.after, limit=NOTICE_PAGE
        )
        told = 0
        heard: set[str] = set()
        if record.status is CampaignStatus.CANCELLED:
            heard = await asyncio.to_thread(
                self._store.notified_reviewers, inp.campaign_id, [r[0] for r in page]
            )
        for reviewer_id, kind, name in page:
            if record.status is CampaignStatus.CANCELLED and reviewer_id not in heard:
                continue
            reviewer = Reviewer(kind="group" if kind == "group" else "person", id=reviewer_id, name=name)
            for person in await self._recipients(reviewer):
                told += await self._tell_reviewer_outcome(inp, spec, record, person)
            activity.heartbeat(reviewer_id)
        if len(page) == NOTICE_PAGE:
            return ReviewerPageResult(next_after=page[-1][0], told=told)
        told += await self._tell_owner_outcome(inp, spec, record)
        by_category = await self._campaign_counts(inp.campaign_id)
        reviewers_told = await asyncio.to_thread(
            self._store.count_digests, inp.campaign_id, OUTCOME_STAGE, OUTCOME_CHANNEL
        )
        owner_told = await asyncio.to_thread(
            self._store.count_digests, inp.campaign_id, OUTCOME_STAGE, OWNER_OUTCOME_CHANNEL
        )
        await self._ledger(
            "campaign.outcomes_told",
            inp.campaign_id,
            "outcomes_told",
            {
                "status": record.status.value,
                "items": by_category,
                "reviewers_told": reviewers_told,
                "owner_told": bool(owner_told),
            },
        )
        return ReviewerPageResult(next_after=None, told=told)

    async def _tell_reviewer_outcome(
        self, inp: OutcomePageInput, spec: CampaignSpec, record: CampaignRecord, person: PersonRef
    ) -> int:
        """Email the person their summary, show it on their last Slack digest and comment it on their last
        Jira digest issue, unless a previous attempt did; 1 when they were told now."""
        sent = await asyncio.to_thread(
            self._store.digest, inp.campaign_id, OUTCOME_STAGE, person.id, OUTCOME_CHANNEL
        )
        if sent is not None:
            return 0
        tally = await self._reviewer_tally(inp.campaign_id, person.id)
        if tally.total == 0:
            return 0
        message_id = _message_id(inp.campaign_id, "reviewer", person.id)
        context = self._context(inp, spec, record, tally, person, owner=False)
        await self._show_on_last_digest(inp.campaign_id, spec, person, context)
        await self._comment_on_last_jira_digest(inp.campaign_id, spec, person, context)
        if not await self._email(inp.campaign_id, message_id, person, context):
            return 0
        await self._mark_told(inp.campaign_id, person, OUTCOME_CHANNEL, message_id)
        return 1

    async def _tell_owner_outcome(
        self, inp: OutcomePageInput, spec: CampaignSpec, record: CampaignRecord
    ) -> int:
        owner_person = await asyncio.to_thread(self._store.find_person_by_email, spec.owner)
        owner = owner_person.ref if owner_person is not None else PersonRef(id=spec.owner, email=spec.owner)
        sent = await asyncio.to_thread(
            self._store.digest, inp.campaign_id, OUTCOME_STAGE, owner.id, OWNER_OUTCOME_CHANNEL
        )
        if sent is not None:
            return 0
        tally = await self._campaign_tally(inp.campaign_id)
        message_id = _message_id(inp.campaign_id, "owner", owner.id)
        context = self._context(inp, spec, record, tally, owner, owner=True)
        if not await self._email(inp.campaign_id, message_id, owner, context):
            return 0
        await self._mark_told(inp.campaign_id, owner, OWNER_OUTCOME_CHANNEL, message_id)
        return 1

    async def _campaign_counts(self, campaign_id: str) -> dict[str, int]:
        """Items by category over the whole campaign, in one aggregate query."""
        counts = dict.fromkeys(CATEGORIES, 0)
        for (outcome, defaulted), n in (
            await asyncio.to_thread(self._store.outcome_counts, campaign_id)
        ).items():
            counts[outcome_category(ItemOutcome(outcome), defaulted)] += n
        return counts

    async def _campaign_tally(self, campaign_id: str) -> Tally:
        """The whole campaign's counts (one aggregate query, whatever its size) and the items the owner's
        email lists: every failed one it has room for, then the first others."""
        tally = Tally(counts=await self._campaign_counts(campaign_id))
        for outcome in (ItemOutcome.FAILED, None):
            page = await asyncio.to_thread(
                self._store.items, campaign_id, outcome=outcome, limit=MAX_ITEMS_LISTED
            )
            defaulted_ids = await asyncio.to_thread(
                self._store.defaulted_among, campaign_id, [i.id for i in page]
            )
            for item in page:
                tally.mention(item, item.id in defaulted_ids)
        return tally

    async def _reviewer_tally(self, campaign_id: str, person_id: str) -> Tally:
        """The person's items (their own as reviewer and their groups'), never their own access."""
        person = await asyncio.to_thread(self._store.get_person, person_id)
        tally = Tally()
        for holder in [person_id, *(person.groups if person is not None else ())]:
            after = ""
            while page := await asyncio.to_thread(
                self._store.items, campaign_id, reviewer_id=holder, after=after
            ):
                mine = [i for i in page if not (i.subject.is_person and i.subject.id == person_id)]
                defaulted = await asyncio.to_thread(
                    self._store.defaulted_among, campaign_id, [i.id for i in mine]
                )
                for item in mine:
                    tally.add(item, item.id in defaulted)
                after = page[-1].id
        return tally

    def _context(
        self,
        inp: OutcomePageInput,
        spec: CampaignSpec,
        record: CampaignRecord,
        tally: Tally,
        person: PersonRef,
        *,
        owner: bool,
    ) -> dict[str, Any]:
        link = self._links.campaign_url(inp.campaign_id, person.id) if self._links is not None else None
        return {
            "campaign_id": inp.campaign_id,
            "campaign_name": spec.name,
            "cancelled": record.status is CampaignStatus.CANCELLED,
            "cancelled_by": inp.actor,
            "cancel_reason": inp.reason,
            "owner": owner,
            "counts": tally.counts,
            "total": tally.total,
            "listed": tally.listed,
            "left_out": tally.total - len(tally.listed),
            "link": link,
        }

    async def _email(
        self, campaign_id: str, message_id: str, person: PersonRef, context: dict[str, Any]
    ) -> bool:
        rendered = _TEXT.get_template("email/campaign_outcome.txt.j2").render(recipient=person, **context)
        subject, _, text = rendered.partition("\n")
        message = Message(
            request_id=message_id,
            event="campaign_outcome",
            recipient=person,
            subject=subject.strip(),
            text=text.lstrip("\n"),
            link=context["link"],
        )
        try:
            await self._notifier.send(message)
        except Exception as exc:  # best effort: a channel failing never stops the campaign
            activity.logger.warning(
                "campaign %s: %s not told the outcome: %s", campaign_id, person.email, exc
            )
            return False
        return True

    async def _show_on_last_digest(
        self, campaign_id: str, spec: CampaignSpec, person: PersonRef, context: dict[str, Any]
    ) -> None:
        """The person's latest Slack digest, updated in place to show the outcome (no new message)."""
        if self._digests is None:
            return
        for stage in reversed(range(len(spec.stages))):
            handle = await asyncio.to_thread(self._store.digest, campaign_id, stage, person.id, "slack")
            if handle is not None:
                break
        else:
            return
        try:
            await self._digests.show_outcome(handle, context)
        except Exception as exc:  # best effort: the email says the same
            activity.logger.warning(
                "campaign %s: the digest of %s does not show the outcome: %s", campaign_id, person.email, exc
            )

    async def _comment_on_last_jira_digest(
        self, campaign_id: str, spec: CampaignSpec, person: PersonRef, context: dict[str, Any]
    ) -> None:
        """The outcome commented once on the person's latest Jira digest issue (no new issue)."""
        if self._jira_digests is None:
            return
        commented = await asyncio.to_thread(
            self._store.digest, campaign_id, OUTCOME_STAGE, person.id, JIRA_OUTCOME_CHANNEL
        )
        if commented is not None:
            return
        for stage in reversed(range(len(spec.stages))):
            handle = await asyncio.to_thread(self._store.digest, campaign_id, stage, person.id, "jira")
            if handle is not None:
                break
        else:
            return
        try:
            await self._jira_digests.comment_outcome(handle, context)
        except Exception as exc:  # best effort: the email says the same
            activity.logger.warning(
                "campaign %s: the Jira digest %s does not show the outcome of %s: %s",
                campaign_id,
                handle.conversation,
                person.email,
                exc,
            )
            return
        await self._mark_told(campaign_id, person, JIRA_OUTCOME_CHANNEL, handle.conversation)

    async def _mark_told(self, campaign_id: str, person: PersonRef, channel: str, message_id: str) -> None:
        marker = DigestHandle(
            campaign_id=campaign_id,
            stage=OUTCOME_STAGE,
            reviewer_id=person.id,
            channel=channel,
            conversation=person.email,
            message_ts=message_id,
            shown=hashlib.sha256(message_id.encode()).hexdigest(),
        )
        await asyncio.to_thread(self._store.save_digest, marker, datetime.now(UTC))

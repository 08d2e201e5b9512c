"""Reviewers' campaign digests in Slack: one DM per reviewer and stage, posted with the stage's notice,
refreshed in place by reminders, after decisions from any channel and after the organisation moved items
(an identity sync), shown as closed — without buttons — when the stage closes, and, once the campaign
ended, the reviewer's last digest replaced by the outcome of their items
(``activities/campaign_outcomes.py``).

A digest shows every item the reviewer reviews in the stage (their own and their groups', as the web page
does), rendered by :func:`integrations.slack.campaign_digest.render_digest`. Its place (DM channel + ts) is
kept in the store (``campaign_digests``, keyed by campaign, stage, reviewer and channel), so:

- telling a reviewer again (a retried notice, a reminder, a person in two reviewing groups) updates the
  digest instead of posting another; a notice whose store write was lost is found again by
  :meth:`SlackChannel.ensure_posted`'s metadata key ``<campaign>:digest:<stage>:<person>``;
- a refresh updates only digests that were posted, and only when what they show changed (a fingerprint
  of the rendering, the review link left out: it is signed anew at each rendering).

Best effort throughout: a digest that cannot be posted or updated is logged by the caller; decisions live
in the store whatever happens to a digest. A person without a Slack account gets no digest (their email
carries the link).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from domain.campaign_spec import parse_campaign_spec
from domain.campaign_state import CampaignRecord, CampaignStatus, ItemOutcome
from domain.identity import PersonRef
from domain.review_links import ReviewLinks
from integrations.slack import MessageRef, SlackChannel, SlackNotFoundError
from integrations.slack.blocks import render_blocks
from integrations.slack.campaign_digest import Digest, DigestItem, render_digest
from store import Store
from store.campaigns import DigestHandle, StoredItem

SLACK = "slack"

log = logging.getLogger("grantflow.campaigns.digests")


def digest_key(campaign_id: str, stage: int, person_id: str) -> str:
    """The metadata key of a reviewer's digest (what a retry looks for before posting)."""
    return f"{campaign_id}:digest:{stage}:{person_id}"


def _fingerprint(digest: Digest, link: str | None) -> str:
    rendered = json.dumps([digest.text, digest.blocks], sort_keys=True, ensure_ascii=False)
    if link:
        rendered = rendered.replace(link, "<review link>")
    return hashlib.sha256(rendered.encode()).hexdigest()


def _own(item: StoredItem, person_id: str) -> bool:
    return item.subject.is_person and item.subject.id == person_id


def escalation_note(item: StoredItem, reader_id: str, escalations: dict[str, PersonRef]) -> str:
    """What the item's escalation means to the reader of a digest (Slack's or Jira's): to the manager it
    reached, theirs to decide because its reviewer did not; to its reviewer, shared with that manager (both
    may decide it until the stage closes). "" when it was not escalated, or the escalation no longer holds
    (``escalations``: ``store.escalations`` of the digest's items)."""
    escalated_to = escalations.get(item.id)
    reviewer = item.assignment.reviewer
    if escalated_to is None or reviewer is None:
        return ""
    if escalated_to.id == reader_id and reviewer.id != reader_id:
        return f"Escalated to you: {reviewer.name} has not decided it."
    return f"Escalated to {escalated_to.email}, who may decide it too."


async def campaign_record(store: Store, campaign_id: str) -> CampaignRecord:
    """The campaign a digest is about; ``LookupError`` when it does not exist."""
    record = await asyncio.to_thread(store.campaign, campaign_id)
    if record is None:
        raise LookupError(f"campaign {campaign_id} does not exist")
    return record


async def update_each(
    campaign_id: str,
    handles: Sequence[DigestHandle],
    update: Callable[[DigestHandle], Awaitable[DigestHandle | None]],
    *,
    what: str,
    action: str,
    progress: Callable[[str], None] | None,
    logger: logging.Logger,
) -> int:
    """``update`` each digest (Slack's or Jira's) in turn; one failing never keeps the others from their
    turn (it is logged as "the <what> of <reviewer> not <action>"). How many now show something else than
    before (an update returning None — the message is gone, or nobody to show it to — changed nothing)."""
    changed = 0
    for handle in handles:
        if progress is not None:
            progress(handle.reviewer_id)
        try:
            after = await update(handle)
        except Exception as exc:
            logger.warning(
                "campaign %s: the %s of %s not %s: %s",
                campaign_id,
                what,
                handle.reviewer_id,
                action,
                exc,
                extra={"campaign_id": campaign_id},
            )
            continue
        changed += after is not None and after.shown != handle.shown
    return changed


async def reviewer_items(store: Store, campaign_id: str, stage: int, person_id: str) -> list[StoredItem]:
    """Every open item the person reviews in the stage, in id order — their own, their groups' and those
    escalated to them — except their own access (nobody reviews that; the web page says so if they look).
    What every channel's digest shows; an item closed meanwhile (its subject left) is gone from it."""
    person = await asyncio.to_thread(store.get_person, person_id)
    found: dict[str, StoredItem] = {}

    def add(page: list[StoredItem]) -> None:
        found.update((i.id, i) for i in page if not (i.subject.is_person and i.subject.id == person_id))

    for owner in [person_id, *(person.groups if person is not None else ())]:
        after = ""
        while page := await asyncio.to_thread(
            store.items, campaign_id, reviewer_id=owner, stage=stage, after=after, outcome=ItemOutcome.OPEN
        ):
            add(page)
            after = page[-1].id
    after = ""
    while page := await asyncio.to_thread(store.escalated_items, campaign_id, stage, person_id, after=after):
        add(page)
        after = page[-1].id
    return [found[k] for k in sorted(found)]


class SlackDigests:
    """Posting and refreshing reviewers' digests through one Slack bot."""

    def __init__(self, store: Store, slack: SlackChannel, links: ReviewLinks | None) -> None:
        self._store = store
        self._slack = slack
        self._links = links

    async def publish(
        self, campaign_id: str, stage: int, person: PersonRef, *, reminder: bool = False
    ) -> DigestHandle | None:
        """Post the reviewer's digest of ``stage``, or bring the one posted up to date (a reminder says
        so in it); None when the person has no Slack account."""
        known = await asyncio.to_thread(self._store.digest, campaign_id, stage, person.id, SLACK)
        if known is not None:
            return await self._refresh(known, person, reminder=reminder)
        user = await self._slack.user_id_for_email(person.email)
        if user is None:
            return None
        record = await campaign_record(self._store, campaign_id)
        digest, link = await self._render(record, stage, person, reminder=reminder)
        ref, posted_now = await self._slack.ensure_posted(
            user,
            digest.text,
            digest.blocks,
            key=digest_key(campaign_id, stage, person.id),
            metadata={"campaign_id": campaign_id, "stage": stage},
        )
        if not posted_now:  # an earlier attempt posted it: it may show an older state
            await self._slack.update(ref, digest.text, digest.blocks)
        handle = DigestHandle(
            campaign_id=campaign_id,
            stage=stage,
            reviewer_id=person.id,
            channel=SLACK,
            conversation=ref.channel,
            message_ts=ref.ts,
            shown=_fingerprint(digest, link),
        )
        await asyncio.to_thread(self._store.save_digest, handle, datetime.now(UTC))
        return handle

    async def refresh(
        self,
        campaign_id: str,
        stage: int,
        people: Sequence[PersonRef],
        progress: Callable[[str], None] | None = None,
    ) -> int:
        """Bring the digests of ``people`` up to date (those that were posted); how many changed. One
        digest failing does not keep the others from being updated (it is logged)."""
        by_id = {p.id: p for p in people}
        handles = await asyncio.to_thread(self._store.digests, campaign_id, stage, list(by_id), SLACK)

        async def refresh(handle: DigestHandle) -> DigestHandle | None:
            return await self._refresh(handle, by_id[handle.reviewer_id])

        return await update_each(
            campaign_id, handles, refresh, what="digest", action="refreshed", progress=progress, logger=log
        )

    async def close_page(
        self,
        campaign_id: str,
        stage: int,
        *,
        after: str,
        limit: int,
        progress: Callable[[str], None] | None = None,
    ) -> tuple[str | None, int]:
        """Show a page of the stage's digests as closed (no buttons; what was decided, what was not); the
        cursor of the next page (None after the last) and how many changed."""
        page = await asyncio.to_thread(
            self._store.digests_page, campaign_id, stage, SLACK, after=after, limit=limit
        )

        async def close(handle: DigestHandle) -> DigestHandle | None:
            person = await asyncio.to_thread(self._store.get_person, handle.reviewer_id)
            return await self._refresh(handle, person.ref) if person is not None else None

        changed = await update_each(
            campaign_id, page, close, what="digest", action="closed", progress=progress, logger=log
        )
        return (page[-1].reviewer_id if len(page) == limit else None), changed

    async def show_outcome(self, handle: DigestHandle, context: dict[str, Any]) -> DigestHandle | None:
        """Replace a reviewer's last digest with how the campaign ended for their items
        (``templates/slack/campaign_outcome.json.j2``, ``context`` as the outcome email's), in place: one
        update, never a new message. Unchanged when it shows that already; None when its reader deleted it."""
        text, blocks = render_blocks("campaign_outcome", **context)
        shown = _fingerprint(Digest(text=text, blocks=blocks, shown=(), pending=0), context.get("link"))
        if shown == handle.shown:
            return handle
        try:
            await self._slack.update(
                MessageRef(channel=handle.conversation, ts=handle.message_ts), text, blocks
            )
        except SlackNotFoundError:
            return None
        updated = handle.model_copy(update={"shown": shown})
        await asyncio.to_thread(self._store.save_digest, updated, datetime.now(UTC))
        return updated

    async def _refresh(
        self, handle: DigestHandle, person: PersonRef, *, reminder: bool = False
    ) -> DigestHandle | None:
        record = await campaign_record(self._store, handle.campaign_id)
        digest, link = await self._render(record, handle.stage, person, reminder=reminder)
        shown = _fingerprint(digest, link)
        if shown == handle.shown:
            return handle
        try:
            await self._slack.update(
                MessageRef(channel=handle.conversation, ts=handle.message_ts), digest.text, digest.blocks
            )
        except SlackNotFoundError:
            return None  # deleted by its reader: nothing left to keep up to date
        updated = handle.model_copy(update={"shown": shown})
        await asyncio.to_thread(self._store.save_digest, updated, datetime.now(UTC))
        return updated

    async def _render(
        self, record: CampaignRecord, stage: int, person: PersonRef, *, reminder: bool
    ) -> tuple[Digest, str | None]:
        spec = parse_campaign_spec(record.spec_toml, f"campaign {record.id}")
        items = await reviewer_items(self._store, record.id, stage, person.id)
        verdicts = await asyncio.to_thread(
            self._store.stage_verdicts, record.id, stage, [i.id for i in items]
        )
        escalations = await asyncio.to_thread(self._store.escalations, record.id, [i.id for i in items])
        link = self._links.campaign_url(record.id, person.id) if self._links is not None else None
        digest = render_digest(
            campaign_id=record.id,
            campaign_name=record.name,
            stage=stage,
            stages=len(spec.stages),
            closes_at=record.stage_closes_at if record.stage == stage else None,
            default_sentence=spec.default_decision.sentence,
            items=[
                DigestItem(
                    item=i, verdict=verdicts.get(i.id), escalation=escalation_note(i, person.id, escalations)
                )
                for i in items
            ],
            reasons_required=spec.reasons_required,
            open_=record.status is CampaignStatus.OPEN and record.stage == stage and record.stage_open,
            reminder=reminder,
            link=link,
        )
        return digest, link

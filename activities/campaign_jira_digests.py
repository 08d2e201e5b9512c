"""Reviewers' campaign digests in Jira, for campaigns whose spec lists ``"jira"`` in ``channels``: one issue
per reviewer and stage (never one per item), opened with the stage's notice, assigned to the reviewer (their
Jira account found by email, as request tickets' approvers are), due at the stage's deadline, its
description listing their items (``integrations/jira_campaign_digest.py``). The reviewer decides by
commenting on it (the Jira edge, ``web/jira/campaign_digests.py``).

Its place (the issue key) is kept in the store (``campaign_digests``, channel ``jira``), so a retried
notice or a reminder updates the issue instead of opening another; a notice whose store write was lost
finds the issue by its label (``grantflow-<campaign>:digest:<stage>:<person>``,
``JiraTickets.open_ticket`` searches before creating). A reminder comments the items still pending (once
per reminder round: the same comment is never posted twice). Decisions from any channel refresh the
description (:meth:`JiraDigests.refresh`, from the workflow's ``campaign_refresh_digests``); so do items
changing hands (``activities/campaign_handovers.py``, ``activities/campaign_directory.py``): the person
they reach gets their issue at once (opened, or updated in place), the one they leave has it refreshed,
and an escalated item says on both issues who else may decide it. At the stage's close the issue is
commented and moved by the ``Close`` transition of ``jira_transitions`` where its workflow offers it from
where the issue is (otherwise only the comment says it); once the campaign ended, the reviewer's last issue
is commented with how their items ended (:meth:`JiraDigests.comment_outcome`, once).

Best effort throughout, as Slack digests are: decisions live in the store whatever happens to an issue.
The Jira client blocks: every call runs in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from activities.campaign_digests import campaign_record, escalation_note, reviewer_items, update_each
from domain.campaign_spec import parse_campaign_spec
from domain.campaign_state import CampaignRecord, CampaignStatus
from domain.identity import PersonRef
from integrations.jira_campaign_digest import (
    JiraDigestRow,
    digest_label_id,
    digest_summary,
    render_description,
    render_outcome_comment,
)
from integrations.jira_tickets import JiraTickets, JiraWorkflowError
from store import Store
from store.campaigns import DigestHandle

JIRA = "jira"
CLOSE_TRANSITION = "Close"
"""The transition (a name in ``jira_transitions``) that moves a digest issue to done at the stage's close."""

MAX_IDS_COMMENTED = 50
"""Item ids a reminder or closing comment names one by one."""

log = logging.getLogger("grantflow.campaigns.jira_digests")


def _ids(item_ids: Sequence[str]) -> str:
    """Item ids for a comment: the first :data:`MAX_IDS_COMMENTED`, then how many more."""
    shown = ", ".join(item_ids[:MAX_IDS_COMMENTED])
    more = len(item_ids) - MAX_IDS_COMMENTED
    return shown + (f" and {more} more" if more > 0 else "")


def _fingerprint(description: str) -> str:
    return hashlib.sha256(" ".join(description.split()).encode()).hexdigest()


class JiraDigests:
    """Opening, refreshing and closing reviewers' digest issues through the worker's Jira tickets."""

    def __init__(self, store: Store, tickets: Callable[[], JiraTickets]) -> None:
        self._store = store
        self._tickets = tickets

    async def publish(
        self, campaign_id: str, stage: int, person: PersonRef, *, reminder_round: int | None = None
    ) -> DigestHandle | None:
        """Open the reviewer's issue of ``stage`` (or find the one opened) and bring its description up to
        date; a reminder (``reminder_round``) comments the items still pending. None when the person has
        no Jira account."""
        jira = await asyncio.to_thread(self._tickets)
        known = await asyncio.to_thread(self._store.digest, campaign_id, stage, person.id, JIRA)
        record = await campaign_record(self._store, campaign_id)
        description, pending = await self._render(record, stage, person.id)
        if known is None:
            account = await asyncio.to_thread(jira.account_id_for_email, person.email)
            if account is None:
                return None
            spec = parse_campaign_spec(record.spec_toml, f"campaign {campaign_id}")
            closes_at = record.stage_closes_at if record.stage == stage else None
            key = await asyncio.to_thread(
                lambda: jira.open_ticket(
                    label=digest_label_id(campaign_id, stage, person.id),
                    summary=digest_summary(record.name, stage, len(spec.stages), person.email),
                    description=description,
                    assignee_account_id=account,
                    fields={"duedate": closes_at.date().isoformat()} if closes_at is not None else None,
                )
            )
            known = DigestHandle(
                campaign_id=campaign_id,
                stage=stage,
                reviewer_id=person.id,
                channel=JIRA,
                conversation=key,
                message_ts="",
            )
        handle = await self._show(jira, known, description)
        if reminder_round is not None and pending:
            text = (
                f"Reminder {reminder_round + 1} of stage {stage + 1}: {len(pending)} item"
                f"{'s' if len(pending) != 1 else ''} still wait for your decision: {_ids(pending)}."
            )
            await asyncio.to_thread(jira.comment, handle.conversation, text)
        return handle

    async def refresh(
        self,
        campaign_id: str,
        stage: int,
        people: Sequence[PersonRef],
        progress: Callable[[str], None] | None = None,
    ) -> int:
        """Bring the issues of ``people`` up to date (those opened); how many changed. One failing does not
        keep the others from being updated (it is logged)."""
        handles = await asyncio.to_thread(
            self._store.digests, campaign_id, stage, [p.id for p in people], JIRA
        )
        if not handles:
            return 0
        jira = await asyncio.to_thread(self._tickets)
        record = await campaign_record(self._store, campaign_id)

        async def refresh(handle: DigestHandle) -> DigestHandle:
            description, _ = await self._render(record, stage, handle.reviewer_id)
            return await self._show(jira, handle, description)

        return await update_each(
            campaign_id,
            handles,
            refresh,
            what="Jira digest",
            action="refreshed",
            progress=progress,
            logger=log,
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
        """A page of the closed stage's issues shown as closed, commented and moved to done where the
        workflow allows; the cursor of the next page (None after the last) and how many changed."""
        page = await asyncio.to_thread(
            self._store.digests_page, campaign_id, stage, JIRA, after=after, limit=limit
        )
        if not page:
            return None, 0
        jira = await asyncio.to_thread(self._tickets)
        record = await campaign_record(self._store, campaign_id)

        async def close(handle: DigestHandle) -> DigestHandle:
            description, pending = await self._render(record, stage, handle.reviewer_id)
            shown = await self._show(jira, handle, description)
            text = f"Stage {stage + 1} closed: decisions on these items are no longer accepted." + (
                f" Undecided: {_ids(pending)} (the deadline's default decides them)."
                if pending
                else " Every item was decided."
            )
            await asyncio.to_thread(jira.comment, handle.conversation, text)
            try:
                await asyncio.to_thread(jira.transition, handle.conversation, CLOSE_TRANSITION)
            except (JiraWorkflowError, ValueError) as exc:  # not offered from here, or not configured
                log.info("campaign %s: %s left where it is: %s", campaign_id, handle.conversation, exc)
            return shown

        changed = await update_each(
            campaign_id, page, close, what="Jira digest", action="closed", progress=progress, logger=log
        )
        return (page[-1].reviewer_id if len(page) == limit else None), changed

    async def comment_outcome(self, handle: DigestHandle, context: dict[str, Any]) -> bool:
        """Comment how the campaign ended for the reviewer's items on their issue ``handle`` (their last),
        ``context`` as the outcome email's; False when that comment is there already (a retry)."""
        jira = await asyncio.to_thread(self._tickets)
        text = render_outcome_comment(context)
        return await asyncio.to_thread(jira.comment, handle.conversation, text)

    async def _show(self, jira: JiraTickets, handle: DigestHandle, description: str) -> DigestHandle:
        """Write ``description`` on the issue unless the store says it shows that already."""
        shown = _fingerprint(description)
        if shown == handle.shown:
            return handle
        await asyncio.to_thread(jira.update_description, handle.conversation, description)
        updated = handle.model_copy(update={"shown": shown})
        await asyncio.to_thread(self._store.save_digest, updated, datetime.now(UTC))
        return updated

    async def _render(self, record: CampaignRecord, stage: int, person_id: str) -> tuple[str, list[str]]:
        """The description as it should read now, and the ids of the items still pending."""
        spec = parse_campaign_spec(record.spec_toml, f"campaign {record.id}")
        items = await reviewer_items(self._store, record.id, stage, person_id)
        verdicts = await asyncio.to_thread(
            self._store.stage_verdicts, record.id, stage, [i.id for i in items]
        )
        escalations = await asyncio.to_thread(self._store.escalations, record.id, [i.id for i in items])
        rows = [
            JiraDigestRow(
                item=i, verdict=verdicts.get(i.id), escalation=escalation_note(i, person_id, escalations)
            )
            for i in items
        ]
        description = render_description(
            campaign_name=record.name,
            stage=stage,
            stages=len(spec.stages),
            closes_at=record.stage_closes_at if record.stage == stage else None,
            default_sentence=spec.default_decision.sentence,
            rows=rows,
            reasons_required=spec.reasons_required,
            open_=record.status is CampaignStatus.OPEN and record.stage == stage and record.stage_open,
        )
        return description, [r.item.id for r in rows if r.verdict is None]

"""Open campaigns follow the organisation: what an identity sync saw (leavers, manager changes) reaches the
items — items about a leaver close as revoked by the leaver flow, a leaver's open items and a mover's
manager-reviewed items go to whoever reviews them now — each in the ledger, and each new reviewer told.

The digests follow at once, in every channel the campaign uses: each new reviewer is told as a stage's
notice tells (email, and their Slack digest and Jira digest issue of the stage posted or updated in place),
and whoever the items left — their earlier reviewer, and the manager an item had been escalated to (the
escalation lapses when the item moves) — has their digests refreshed so the items leave them. Best effort:
a digest that cannot be updated is logged, never fails the sync.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from temporalio import activity

from activities.campaign_base import (
    CampaignBase,
    DigestOutage,
    DirectoryChangesInput,
    FollowResult,
    ReviewerPageInput,
    StorePeople,
)
from domain.campaign_report import Revocation
from domain.campaign_spec import CampaignSpec, parse_campaign_spec
from domain.campaign_state import CampaignStatus, ItemOutcome
from domain.campaigns import (
    People,
    assign_reviewer,
)
from store.campaigns import StoredItem


class CampaignDirectory(CampaignBase):
    @activity.defn(name="campaign_follow_directory")
    async def follow_directory(self, inp: DirectoryChangesInput) -> FollowResult:
        """The organisation changed during open campaigns (an identity sync saw it): items *about* a leaver
        close as revoked by the leaver flow, without asking anyone; a leaver's open items go to the next
        reviewer (or the fallback); a mover's items reviewed by their manager go to the new manager — each
        in the ledger, and each new reviewer told. Idempotent: only open items are touched."""
        result = FollowResult()
        open_campaigns = await asyncio.to_thread(self._store.list_campaigns, 1000, status=CampaignStatus.OPEN)
        people = StorePeople(self._store)
        for campaign in open_campaigns:
            spec = parse_campaign_spec(campaign.spec_toml, f"campaign {campaign.id}")
            told: set[str] = set()
            left: set[str] = set()  # reviewers whose items closed or moved away: their digests shrink
            down = DigestOutage()  # digest channels out for this campaign
            for leaver in inp.leavers:
                for item in await self._open_items(campaign.id, subject_id=leaver.person.id):
                    left |= await self._escalated_to(campaign.id, item)
                    revocation = Revocation(
                        status="applied",
                        systems=("leaver flow",),
                        applied_at=datetime.now(UTC),
                        read_back=f"{leaver.person.email} left ({leaver.reason.value}): the identity sync "
                        "ended their access in the gateway",
                    )
                    await asyncio.to_thread(
                        self._store.set_outcome,
                        campaign.id,
                        item.id,
                        ItemOutcome.REVOKED,
                        revocation=revocation,
                    )
                    await self._ledger(
                        "campaign.item_closed_leaver",
                        campaign.id,
                        f"{inp.sync_id}:leaver:{item.id}",
                        {"item": item.id, "subject": leaver.person.email, "reason": leaver.reason.value},
                    )
                    result.closed += 1
                    if item.assignment.reviewer is not None:
                        left.add(item.assignment.reviewer.id)
                for item in await self._open_items(
                    campaign.id, reviewer_id=leaver.person.id, stage=campaign.stage
                ):
                    told |= await self._reroute(
                        campaign.id, spec, people, item, inp.sync_id, "reviewer left", left
                    )
            for mover in inp.movers:
                for item in await self._open_items(
                    campaign.id, subject_id=mover.person.id, stage=campaign.stage
                ):
                    if item.assignment.via == "manager":
                        told |= await self._reroute(
                            campaign.id, spec, people, item, inp.sync_id, "manager changed", left
                        )
            result.rerouted += len(told)
            if told:
                await asyncio.to_thread(self._store.open_review_tasks, campaign.id, campaign.stage)
                for reviewer in told:
                    page = ReviewerPageInput(
                        campaign_id=campaign.id, stage=campaign.stage, kind="notice", round=0
                    )
                    pending = len(
                        await self._open_items(campaign.id, reviewer_id=reviewer, stage=campaign.stage)
                    )
                    for person in await self._recipients(await self._reviewer(reviewer)):
                        await self._send(page, spec, person, pending, down)
            try:  # best effort, as telling is
                await self._refresh_digests_of(campaign.id, campaign.stage, sorted(left - told))
            except Exception as exc:
                activity.logger.warning("campaign %s: digests not refreshed: %s", campaign.id, exc)
        return result

    async def _reroute(
        self,
        campaign_id: str,
        spec: CampaignSpec,
        people: People,
        item: StoredItem,
        sync_id: str,
        why: str,
        left: set[str],
    ) -> set[str]:
        """Assign ``item`` again as of now; the new reviewer's id when it changed (the earlier one, and the
        manager it had been escalated to, are added to ``left``)."""
        assignment = assign_reviewer(item, item.stage, spec, people)
        before = item.assignment.reviewer
        after = assignment.reviewer
        if after is not None and before is not None and after.id == before.id:
            return set()
        left |= await self._escalated_to(campaign_id, item)  # read before the move ends the escalation
        await asyncio.to_thread(self._store.reassign, campaign_id, item.id, assignment)
        if before is not None:
            left.add(before.id)
        await self._ledger(
            "campaign.item_rerouted",
            campaign_id,
            f"{sync_id}:reroute:{item.id}",
            {
                "item": item.id,
                "why": why,
                "from": before.name if before else None,
                "to": after.name if after else None,
                "via": assignment.via,
                "notes": list(assignment.notes),
            },
        )
        return {after.id} if after is not None else set()

    async def _escalated_to(self, campaign_id: str, item: StoredItem) -> set[str]:
        """The manager the open item is escalated to (its digests list it too), while the escalation holds."""
        escalations = await asyncio.to_thread(self._store.escalations, campaign_id, [item.id])
        return {escalations[item.id].id} if item.id in escalations else set()

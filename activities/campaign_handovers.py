"""Campaign items changing hands within a stage, as the campaign's workflow drives it: escalating the pending
items of reviewers who have not answered, and telling the people items were delegated to.

**Escalation.** At the spec's ``escalation`` offset before a stage's deadline, every reviewer of the stage
who still has *undecided* items is escalated — a reviewer who decided everything is never. The person it
reaches is resolved *now*, from the directory the identity sync keeps in the store (a manager changed since
launch is the new one): the reviewer's manager, or — when the reviewer is a group, has no manager, or their
manager is unknown or inactive — the campaign's owner. An item about that person themselves goes to the
owner instead (nobody reviews their own access); when nobody independent is left, the item stays with its
reviewer alone and the ledger says so (``campaign.escalation_unresolved``).

What auditors expect, and what this does: the escalation **adds** the manager as a decider of those items
and leaves the reviewer in place. The reviewer stays accountable for their share (they may still decide until
the stage closes, and a decision names whoever made it), and the manager can make sure an answer is given
without the review silently changing hands. Each escalation is recorded in the store (per item, with the
reviewer it was escalated from: it lapses when the item is delegated or re-routed) and in the ledger
(``campaign.escalated``: stage, reviewer, manager, how the manager was resolved, items). The manager is sent
the items (email with their signed review link, their Slack digest, which now lists the escalated items
with buttons, and — for a campaign in Jira — their Jira digest issue of the stage, opened or updated in
place); the reviewer is told their items were escalated and to whom, and their digests say so.

**Delegation** is decided and recorded at the edge (``web/campaign_service.py``); the workflow then runs
:meth:`CampaignHandoverActivities.tell_delegates`: the delegate is told (email with their link) and their
digests posted (Slack's, and Jira's for a campaign in Jira), and the delegator's digests refreshed so the
items leave them.

Both are safe to run again: escalations are written once per item and stage, ledger entries once per key,
digests are updated in place, and messages carry the same key on a retry.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from pydantic import BaseModel, Field
from temporalio import activity

from activities.campaign_base import NOTICE_PAGE, CampaignBase, DigestOutage, ReviewerPageResult
from domain.campaign_spec import CampaignSpec
from domain.campaigns import Reviewer
from domain.identity import Person, PersonRef
from integrations.notify import Message
from store.campaigns import StoredItem


class EscalationInput(BaseModel):
    campaign_id: str
    stage: int
    after: str = Field(default="", description="the page of reviewers after this reviewer id")


class Delegation(BaseModel):
    """Items a reviewer handed to someone else (recorded by the edge; the workflow has them told)."""

    delegation_id: str = Field(description="unique per delegation: the key of the messages it sends")
    delegator_id: str
    delegator_email: str
    delegate_id: str
    delegate_email: str
    items: int = Field(ge=1)


class DelegationNoticeInput(BaseModel):
    campaign_id: str
    stage: int
    delegations: list[Delegation]


class EscalationTarget(BaseModel):
    """Whom a reviewer's pending items are escalated to, and how that person was found."""

    person: Person
    via: str = Field(description="'manager' or 'owner'")
    why: str = Field(default="", description="why not the reviewer's manager, when it is the owner")


def _about(item: StoredItem, person: Person) -> bool:
    return item.subject.is_person and item.subject.id == person.id


def _items(n: int) -> str:
    return f"{n} item{'s' if n != 1 else ''}"


class CampaignHandoverActivities(CampaignBase):
    @activity.defn(name="campaign_escalate")
    async def escalate(self, inp: EscalationInput) -> ReviewerPageResult:
        """Escalate one page of the stage's reviewers who still have undecided items (see the module
        docstring); ``told`` counts the escalations made."""
        spec, _ = await self._spec(inp.campaign_id)
        page = await asyncio.to_thread(
            self._store.reviewers_with_pending, inp.campaign_id, inp.stage, after=inp.after, limit=NOTICE_PAGE
        )
        owner = await asyncio.to_thread(self._store.find_person_by_email, spec.owner)
        escalated = 0
        down = DigestOutage()  # digest channels out for this page
        for reviewer_id, kind, name, _count in page:
            reviewer = Reviewer(kind="group" if kind == "group" else "person", id=reviewer_id, name=name)
            pending = [
                i
                for i in await self._open_items(inp.campaign_id, reviewer_id=reviewer_id, stage=inp.stage)
                if i.verdict is None
            ]
            if pending:
                escalated += await self._escalate_reviewer(inp, spec, reviewer, pending, owner, down)
            activity.heartbeat(reviewer_id)
        next_after = page[-1][0] if len(page) == NOTICE_PAGE else None
        return ReviewerPageResult(next_after=next_after, told=escalated)

    async def _target(self, reviewer: Reviewer, owner: Person | None) -> EscalationTarget | None:
        """The reviewer's manager as the directory has it now, else the campaign's owner; None when neither
        is someone other than the reviewer."""
        why = f"{reviewer.name} is a group, which has no manager"
        if reviewer.kind == "person":
            person = await asyncio.to_thread(self._store.get_person, reviewer.id)
            manager = (
                await asyncio.to_thread(self._store.get_person, person.manager_id)
                if person is not None and person.manager_id
                else None
            )
            if manager is not None and manager.active and manager.id != reviewer.id:
                return EscalationTarget(person=manager, via="manager")
            if manager is not None:
                why = f"{reviewer.name}'s manager {manager.email} is inactive"
            else:
                why = f"{reviewer.name} has no manager in the directory"
        if owner is not None and owner.active and owner.id != reviewer.id:
            return EscalationTarget(person=owner, via="owner", why=why)
        return None

    async def _escalate_reviewer(
        self,
        inp: EscalationInput,
        spec: CampaignSpec,
        reviewer: Reviewer,
        pending: list[StoredItem],
        owner: Person | None,
        down: DigestOutage,
    ) -> int:
        target = await self._target(reviewer, owner)
        by_target: dict[str, tuple[EscalationTarget, list[StoredItem]]] = {}
        unresolved: dict[str, str] = {}
        for item in pending:
            chosen = target
            if chosen is not None and _about(item, chosen.person):
                # Nobody reviews their own access: the owner takes this one, if they are someone else.
                why = f"the item is about {chosen.person.email}"
                chosen = (
                    EscalationTarget(person=owner, via="owner", why=why)
                    if owner is not None
                    and owner.active
                    and owner.id != reviewer.id
                    and not _about(item, owner)
                    else None
                )
            if chosen is None:
                unresolved[item.id] = (
                    f"nobody independent of {reviewer.name} and of {item.subject.name} to escalate to"
                )
                continue
            by_target.setdefault(chosen.person.id, (chosen, []))[1].append(item)
        now = datetime.now(UTC)
        for chosen, items in by_target.values():
            manager = chosen.person
            ids = [i.id for i in items]
            await asyncio.to_thread(
                self._store.record_escalation, inp.campaign_id, inp.stage, reviewer.id, manager.ref, ids, now
            )
            await asyncio.to_thread(
                self._store.mark_review_task, inp.campaign_id, inp.stage, reviewer.id, escalated_to=manager.id
            )
            await self._ledger(
                "campaign.escalated",
                inp.campaign_id,
                f"stage-{inp.stage}:escalated:{reviewer.id}:{manager.id}",
                {
                    "stage": inp.stage + 1,
                    "reviewer": reviewer.name,
                    "reviewer_id": reviewer.id,
                    "manager": manager.email,
                    "manager_id": manager.id,
                    "via": chosen.via,
                    "why": chosen.why,
                    "items": ids,
                },
            )
            await self._tell_escalation(inp, spec, reviewer, manager, len(ids), down)
        if unresolved:
            await self._ledger(
                "campaign.escalation_unresolved",
                inp.campaign_id,
                f"stage-{inp.stage}:unresolved:{reviewer.id}",
                {
                    "stage": inp.stage + 1,
                    "reviewer": reviewer.name,
                    "reviewer_id": reviewer.id,
                    "items": unresolved,
                },
            )
        return len(by_target)

    async def _tell_escalation(
        self,
        inp: EscalationInput,
        spec: CampaignSpec,
        reviewer: Reviewer,
        manager: Person,
        count: int,
        down: DigestOutage,
    ) -> None:
        """The manager: the items and their link (and their Slack digest and, for a campaign in Jira, their
        Jira digest issue, which list them now); the reviewer (each member of a reviewing group): that their
        items were escalated, and to whom, and their Slack and Jira digests refreshed to say it. Best
        effort, as every message of a campaign."""
        key = f"{inp.campaign_id}:{inp.stage}:escalation:{reviewer.id}"
        deadline = (
            f"stage {inp.stage + 1} of {len(spec.stages)} closes soon; then {spec.default_decision.sentence}"
        )
        to_manager = Message(
            request_id=key,
            event="campaign_escalation",
            recipient=manager.ref,
            subject=f"Escalated to you: {spec.name} — {_items(count)} {reviewer.name} has not reviewed",
            text=(
                f"{spec.name}: {reviewer.name} has not decided {_items(count)} yet, and they were "
                f"escalated to you. You may keep or revoke them yourself (so may {reviewer.name}); "
                f"{deadline}."
            ),
            link=self._link(inp.campaign_id, manager.ref),
        )
        await self._deliver(inp.campaign_id, to_manager)
        if self._digests is not None:
            try:
                await self._digests.publish(inp.campaign_id, inp.stage, manager.ref)
            except Exception as exc:  # best effort: the email carries the link
                activity.logger.warning(
                    "campaign %s: %s has no Slack digest of the escalation: %s",
                    inp.campaign_id,
                    manager.email,
                    exc,
                )
        await self._publish_jira_digest(inp.campaign_id, inp.stage, spec, manager.ref, down)
        reviewers = await self._recipients(reviewer)
        for person in reviewers:
            await self._deliver(
                inp.campaign_id,
                Message(
                    request_id=key,
                    event="campaign_escalated",
                    recipient=person,
                    subject=f"{spec.name}: {_items(count)} still pending were escalated to {manager.email}",
                    text=(
                        f"{spec.name}: {_items(count)} you review had no decision yet, so they were "
                        f"escalated to {manager.email}, who may now decide them. You still can until the "
                        "stage closes; "
                        f"{deadline}."
                    ),
                    link=self._link(inp.campaign_id, person),
                ),
            )
        try:  # the reviewer's digests (Slack's and Jira's) now say who else may decide those items
            await self._refresh_digests_of(inp.campaign_id, inp.stage, [reviewer.id])
        except Exception as exc:  # best effort: the email says it
            activity.logger.warning(
                "campaign %s: the digests of %s do not show the escalation: %s",
                inp.campaign_id,
                reviewer.name,
                exc,
            )

    @activity.defn(name="campaign_tell_delegates")
    async def tell_delegates(self, inp: DelegationNoticeInput) -> int:
        """Tell each delegate what was handed to them (email with their link, their Slack digest and, for a
        campaign in Jira, their Jira digest issue posted or brought up to date) and take the items off each
        delegator's digests; how many were told."""
        spec, _ = await self._spec(inp.campaign_id)
        await asyncio.to_thread(self._store.open_review_tasks, inp.campaign_id, inp.stage)
        down = DigestOutage()  # digest channels out for this batch
        for delegation in inp.delegations:
            delegate = PersonRef(id=delegation.delegate_id, email=delegation.delegate_email)
            pending = len(await self._open_items(inp.campaign_id, reviewer_id=delegate.id, stage=inp.stage))
            await self._deliver(
                inp.campaign_id,
                Message(
                    request_id=f"{inp.campaign_id}:{inp.stage}:delegation:{delegation.delegation_id}",
                    event="campaign_delegation",
                    recipient=delegate,
                    subject=(
                        f"Access review: {spec.name} — {delegation.delegator_email} delegated "
                        f"{_items(delegation.items)} to you"
                    ),
                    text=(
                        f"{spec.name}: {delegation.delegator_email} handed {_items(delegation.items)} to "
                        f"you to review (stage {inp.stage + 1} of {len(spec.stages)}; you have "
                        f"{_items(pending)} in all). For each, keep or revoke; at the deadline, "
                        f"{spec.default_decision.sentence}."
                    ),
                    link=self._link(inp.campaign_id, delegate),
                ),
            )
            if self._digests is not None:
                try:
                    await self._digests.publish(inp.campaign_id, inp.stage, delegate)
                except Exception as exc:  # best effort: the email carries the link
                    activity.logger.warning(
                        "campaign %s: the Slack digest of delegation %s not posted: %s",
                        inp.campaign_id,
                        delegation.delegation_id,
                        exc,
                    )
            await self._publish_jira_digest(inp.campaign_id, inp.stage, spec, delegate, down)
            try:  # the delegator's digests (Slack's and Jira's) no longer list the items
                await self._refresh_digests_of(inp.campaign_id, inp.stage, [delegation.delegator_id])
            except Exception as exc:  # best effort, as above
                activity.logger.warning(
                    "campaign %s: the delegator's digests of delegation %s not refreshed: %s",
                    inp.campaign_id,
                    delegation.delegation_id,
                    exc,
                )
            activity.heartbeat(delegation.delegation_id)
        return len(inp.delegations)

    async def _publish_jira_digest(
        self, campaign_id: str, stage: int, spec: CampaignSpec, person: PersonRef, down: DigestOutage
    ) -> None:
        """Open the person's Jira digest issue of the stage, or bring theirs up to date, for a campaign in
        Jira. Best effort: a failure is logged (the email carries the link)."""
        if self._jira_digests is None or "jira" not in spec.channels:
            return
        jira_digests = self._jira_digests
        try:
            await self._publish_digest("jira", lambda: jira_digests.publish(campaign_id, stage, person), down)
        except Exception as exc:
            activity.logger.warning("campaign %s: %s has no Jira digest: %s", campaign_id, person.email, exc)

    def _link(self, campaign_id: str, person: PersonRef) -> str | None:
        return self._links.campaign_url(campaign_id, person.id) if self._links is not None else None

    async def _deliver(self, campaign_id: str, message: Message) -> None:
        try:
            await self._notifier.send(message)
        except Exception as exc:  # best effort: a channel failing never stops the campaign
            activity.logger.warning(
                "campaign %s: %s not told (%s): %s", campaign_id, message.recipient.email, message.event, exc
            )

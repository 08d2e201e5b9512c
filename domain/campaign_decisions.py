"""Who may decide a campaign item, and what the deadline decides for the items nobody decided — pure rules.

The edge (REST API, CLI, web review page, and later Slack and Jira digests) checks every decision with
:func:`refusal` against the item's assignment for the open stage before writing it to the store; a refusal
is a sentence shown as is to the person and recorded in the ledger as a refused attempt. A decision may be
changed until its stage closes (the last one counts). At the deadline, :func:`default_decision` decides what
was left open, and the decision is marked as a default so the evidence never passes it off as a review.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.campaign_spec import CampaignSpec, DefaultDecision
from domain.campaigns import Assignment, CampaignItem
from domain.identity import Actor

CampaignVerdict = Literal["keep", "revoke"]


class ItemDecision(BaseModel):
    """One decision on one item in one stage, as recorded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    item_id: str
    stage: int
    verdict: CampaignVerdict
    reason: str = ""
    actor: Actor | None = Field(description="who decided; None for a default at the deadline")
    decided_at: datetime
    default: bool = Field(default=False, description="applied at the deadline, nobody decided")
    default_basis: str = Field(default="", description="why the default is what it is")


def refusal(
    item: CampaignItem,
    assignment: Assignment,
    actor: Actor,
    verdict: CampaignVerdict,
    reason: str,
    spec: CampaignSpec,
    *,
    stage_open: bool,
    group_members: Collection[str] = (),
    escalated_to: str | None = None,
) -> str | None:
    """Why ``actor`` may not decide ``item`` now, or None. ``group_members`` are the person ids of the
    reviewing group, when the item is reviewed by a group; ``escalated_to`` is the person id of whom the
    item's escalation reached (the reviewer's manager, or the owner), who may decide it as the reviewer
    may."""
    who = actor.person.email
    subject = item.subject
    if not stage_open:
        return (
            f"stage {assignment.stage + 1} of this campaign is closed; "
            "decisions on its items are no longer accepted"
        )
    if subject.is_person and actor.person.id == subject.id:
        return f"{who} cannot review their own access ({item.access.describe()})"
    if subject.is_person and actor.admin is not None and actor.admin.id == subject.id:
        return f"{actor.admin.email} cannot review their own access, not even on behalf of {who}"
    reviewer = assignment.reviewer
    if reviewer is None:
        return "nobody independent could be found to review this item; the campaign owner must assign it"
    # An escalation makes its manager (or the owner) a decider of the item beside its reviewer.
    if escalated_to is None or actor.person.id != escalated_to:
        if reviewer.kind == "person" and actor.person.id != reviewer.id:
            return f"this item is reviewed by {reviewer.name}, not by {who}"
        if reviewer.kind == "group" and actor.person.id not in group_members:
            return f"this item is reviewed by members of {reviewer.name}; {who} is not one"
    if actor.admin is not None and actor.admin.id != actor.person.id and not spec.allow_admin_on_behalf:
        return (
            f"{actor.admin.email} may not decide on behalf of {who}: this campaign does not allow "
            f"administrators to decide for reviewers (allow_admin_on_behalf); {who} decides with their own "
            "account"
        )
    if spec.reason_required(verdict) and not reason.strip():
        return f"a reason is required to {verdict} access in this campaign"
    return None


def default_decision(item: CampaignItem, spec: CampaignSpec) -> tuple[CampaignVerdict, str]:
    """The verdict for an item still undecided at the deadline, and the sentence saying why."""
    if spec.default_decision is DefaultDecision.KEEP:
        return "keep", "nobody decided by the deadline; the campaign keeps undecided access"
    if spec.default_decision is DefaultDecision.REVOKE:
        return "revoke", "nobody decided by the deadline; the campaign revokes undecided access"
    rec = item.recommendation
    if rec is None:
        return "keep", "nobody decided by the deadline and there was no usage to recommend on; kept"
    return rec.verdict, f"nobody decided by the deadline; the recommendation applies ({rec.sentence})"


def final_verdict(decisions: Collection[ItemDecision]) -> ItemDecision | None:
    """The decision that counts for an item: the last one of the last stage decided (a later stage
    reviews what the earlier one kept; a revoke in any stage ends the item's review)."""
    ordered = sorted(decisions, key=lambda d: (d.stage, d.decided_at))
    for decision in ordered:
        if decision.verdict == "revoke" and decision is _last_in_stage(ordered, decision.stage):
            return decision
    return ordered[-1] if ordered else None


def _last_in_stage(ordered: list[ItemDecision], stage: int) -> ItemDecision:
    return [d for d in ordered if d.stage == stage][-1]

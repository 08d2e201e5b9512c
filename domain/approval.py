"""Who may decide what on a request, and when a request is decided — pure functions.

The workflow's Update validators call these with the state they hold; they cannot do I/O, so
eligibility is resolved once by an activity and kept in workflow state. Every refusal is a sentence a
person understands, because it is shown as is in the CLI, the web page, Slack and Jira, and written
to the ledger as a refused attempt.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from domain.durations import format_duration
from domain.identity import Actor
from domain.requests import Decision, RequestCommand, RequestStatus, RequestView, RetroReview, Verdict


class Stage(StrEnum):
    """What a decision made now would decide."""

    REQUEST = "request"
    EXTENSION = "extension"
    RETRO_REVIEW = "retro_review"


def open_stage(view: RequestView) -> Stage | None:
    """The stage open for decisions, or None when nothing awaits a decision."""
    if view.status is RequestStatus.PENDING:
        decided = (
            view.auto_approved
            or view.break_glass
            or view.outcome_note is not None  # decided outside grantflow (in hoop's own UI)
            or any(d.stage == Stage.REQUEST.value for d in view.denials)
            or quorum_reached(view, Stage.REQUEST)
        )
        return None if decided else Stage.REQUEST
    if view.status is RequestStatus.ACTIVE:
        if view.pending_extension is not None:
            return Stage.EXTENSION
        if view.break_glass and view.retro_review is RetroReview.PENDING:
            return Stage.RETRO_REVIEW
    return None


def voter_id(view: RequestView, decision: Decision) -> str:
    """Whose vote a decision is towards N of M: the administrator's when one cast it on behalf of an
    approver under a policy that allows it (however many approvers they voted for, they are one person),
    else the approver's. Without ``allow_admin_on_behalf`` no such vote is recorded any more; those kept
    from before count as they did then, per approver."""
    if decision.on_behalf_by is not None and view.policy.allow_admin_on_behalf:
        return decision.on_behalf_by.id
    return decision.approver.id


def approvals_counted(view: RequestView, stage: Stage) -> int:
    """The distinct people whose approvals count towards the stage's quorum (see :func:`voter_id`)."""
    return len({voter_id(view, d) for d in votes_in_stage(view, stage) if d.verdict is Verdict.APPROVE})


def admin_on_behalf_refusal(view: RequestView, actor: Actor) -> str | None:
    """Why an administrator may not decide on behalf of someone else here, or None (not on behalf of
    anyone, or the policy allows it)."""
    if actor.admin is None or actor.admin.id == actor.person.id or view.policy.allow_admin_on_behalf:
        return None
    return (
        f"{actor.admin.email} may not decide on behalf of {actor.person.email}: the policy for "
        f"{view.resource} {view.role} does not allow administrators to vote for approvers "
        f"(allow_admin_on_behalf); {actor.person.email} decides with their own account"
    )


def votes_in_stage(view: RequestView, stage: Stage) -> list[Decision]:
    if stage is Stage.EXTENSION:
        return list(view.pending_extension.approvals) if view.pending_extension else []
    return [d for d in view.approvals if d.stage == stage.value]


def _not_eligible(view: RequestView, who: str) -> str:
    return (
        f"{who} is not an approver for {view.resource} {view.role}: "
        f"approvers need {view.policy.describe_approvers()}"
    )


def decision_refusal(
    view: RequestView,
    eligible_ids: set[str] | None,
    actor: Actor,
    verdict: Verdict,
    stage_decided: str | None = None,
    *,
    admin_rule: bool = True,
) -> str | None:
    """Why this decision must be refused, or None if it may be recorded.

    ``stage_decided`` is the stage the person saw when deciding (a review page, a Slack button): a
    decision meant for the request must not count towards an extension that opened meanwhile.
    ``admin_rule`` False leaves out :func:`admin_on_behalf_refusal` (a workflow replaying decisions
    accepted before that rule existed)."""
    who = actor.person.email
    stage = open_stage(view)
    if stage is None:
        if view.status is RequestStatus.ACTIVE:
            return f"request {view.id} is already approved and ACTIVE; there is nothing to decide"
        if view.status is RequestStatus.PENDING:
            if view.outcome_note is not None:
                return f"request {view.id} is already decided ({view.outcome_note}); decisions are closed"
            return f"request {view.id} is already decided; decisions are closed"
        return f"request {view.id} is already {view.status.value}; decisions are closed"
    if stage_decided is not None and stage_decided != stage.value:
        return (
            f"this decision was made on the {stage_decided.replace('_', ' ')}, but request {view.id} "
            f"now awaits a decision on its {stage.value.replace('_', ' ')}; look at it again and decide"
        )
    if eligible_ids is None:
        return f"request {view.id} is still being set up; try again in a moment"
    if actor.person.id == view.requester.id:
        if verdict is Verdict.APPROVE:
            return f"{who} cannot approve their own request"
        return f"{who} cannot decide on their own request; cancel or relinquish it instead"
    if actor.admin is not None and actor.admin.id == view.requester.id:
        return f"{actor.admin.email} cannot decide on their own request, not even on behalf of {who}"
    if actor.person.id not in eligible_ids:
        return _not_eligible(view, who)
    if admin_rule and (on_behalf := admin_on_behalf_refusal(view, actor)) is not None:
        return on_behalf
    if any(d.approver.id == actor.person.id for d in votes_in_stage(view, stage)):
        return f"{who} has already approved this {stage.value.replace('_', ' ')}; each approver counts once"
    return None


def quorum_reached(view: RequestView, stage: Stage) -> bool:
    return approvals_counted(view, stage) >= view.policy.min_approvals


def is_requester_or_admin(view: RequestView, actor: Actor) -> bool:
    return actor.is_admin or actor.person.id == view.requester.id


def extension_refusal(view: RequestView, actor: Actor, by: timedelta) -> str | None:
    if view.status is not RequestStatus.ACTIVE:
        return f"request {view.id} is {view.status.value}; only ACTIVE access can be extended"
    if not is_requester_or_admin(view, actor):
        return f"{actor.person.email} cannot extend {view.requester.email}'s access"
    if view.pending_extension is not None:
        return f"an extension of request {view.id} already awaits approval"
    policy = view.policy
    if view.extensions_requested >= policy.max_extensions:
        if policy.max_extensions == 0:
            return (
                f"the policy for {view.resource} {view.role} allows no extensions; request new access instead"
            )
        return (
            f"request {view.id} has asked for {view.extensions_requested} extension(s), the most the policy "
            f"for {view.resource} {view.role} allows (max_extensions); request new access instead"
        )
    if by < policy.extension_step:
        return (
            f"an extension of {format_duration(by)} is too short: the policy for {view.resource} {view.role} "
            f"extends by at least {format_duration(policy.extension_step)} (min_extension)"
        )
    limit = policy.cumulative_limit
    if view.granted_total + by > limit:
        left = max(limit - view.granted_total, timedelta(0))
        return (
            f"extending by {format_duration(by)} would bring the total to "
            f"{format_duration(view.granted_total + by)}, beyond the policy's cumulative maximum of "
            f"{format_duration(limit)} ({format_duration(left) if left else 'nothing'} left)"
        )
    return None


def end_refusal(view: RequestView, actor: Actor, action: str, eligible_ids: set[str] | None) -> str | None:
    """Why relinquish, cancel or revoke must be refused, or None."""
    if action == "cancel":
        if view.status is not RequestStatus.PENDING:
            return f"request {view.id} is {view.status.value}; only PENDING requests can be cancelled"
        if open_stage(view) is None:
            return (
                f"request {view.id} is already approved and its grant is being written; "
                "relinquish it once it is ACTIVE"
            )
        if not is_requester_or_admin(view, actor):
            return f"{actor.person.email} cannot cancel {view.requester.email}'s request"
        return None
    if view.status is not RequestStatus.ACTIVE:
        verb = "relinquished" if action == "relinquish" else "revoked"
        return f"request {view.id} is {view.status.value}; only ACTIVE access can be {verb}"
    if action == "relinquish":
        if not is_requester_or_admin(view, actor):
            return (
                f"{actor.person.email} cannot relinquish {view.requester.email}'s access; revoke it instead"
            )
        return None
    if action == "revoke":
        if actor.is_admin or (eligible_ids is not None and actor.person.id in eligible_ids):
            return None
        return f"{actor.person.email} cannot revoke this access: only administrators and its approvers can"
    raise ValueError(f"unknown action {action!r}")


def command_refusal(view: RequestView, eligible_ids: set[str] | None, command: RequestCommand) -> str | None:
    """Why a request in the state ``view`` shows, with ``eligible_ids`` as its eligible set, would refuse
    ``command`` (None: it would be carried out). The workflow's ``refusal`` query and the edge's check of
    the stored view both ask this."""
    if command.decision is not None:
        decision = command.decision
        return decision_refusal(view, eligible_ids, decision.actor, decision.verdict, decision.stage)
    if command.extension is not None:
        return extension_refusal(view, command.extension.actor, command.extension.by)
    assert command.end is not None, f"command {command.id} carries nothing"
    return end_refusal(view, command.end.actor, command.action.value, eligible_ids)

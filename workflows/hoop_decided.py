"""HoopDecided: the strategy of a request opened for a review pending in hoop (its ``origin``).

Such a request goes through the same policy, quorum and validators as any other (``access_request``), but
is decided *in hoop* instead of provisioning a grant:

    PENDING ──quorum──▶ review APPROVED in hoop ──▶ APPROVED (onetime: terminal, no timer)
                                                └─▶ ACTIVE (jit: until hoop's revoke_at) ──▶ … ENDED
       ├─ deny / timeout / cancel / failure ─▶ the review is REJECTED in hoop, with a reason saying so
       ├─ approved in hoop's own UI ─────────▶ mirrored: ACTIVE / APPROVED with a note
       └─ rejected in hoop's own UI ─────────▶ mirrored: DENIED with a note

A ``jit`` review ends through the normal revocation (``GrantHolder``: the review is revoked and the
sessions it enabled are killed; hoop does neither at ``revoke_at``). Extending it provisions grants as
usual (the newest grant wins in hoop), swept at the end with the review.

While the request waits for approvers, discovery's ``hoop_review_changed`` signal (or the timeout) makes
it read the review (``look``): a decision taken in hoop's own UI is mirrored. Its state while pending is
one frozen ``HoopWatch``, replaced on change.

It never writes a grant, never counts votes and never ends the request itself: it tells the request how
to go on (``Look``, ``Concluded``) and the request runs its own phases.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.hoop_reviews import HoopDecisionInput, HoopReviewActivities
    from domain.durations import format_duration
    from domain.hoop_reviews import HoopReview
    from domain.requests import (
        AccessRequestInput,
        EndInput,
        EndReason,
        GrantSegment,
        HoopReviewChanged,
        HoopReviewOrigin,
        HoopReviewType,
        RequestStatus,
        RequestView,
    )
    from workflows.grant_holder import GrantHolder
    from workflows.request_ledger import RequestLedger, approvers_who_decided
    from workflows.request_policies import (
        CRITICAL_RETRY,
        GRANT_DEADLINE,
        HOOP_READ_RETRY,
        HOOP_RECHECK,
        cause_message,
    )

APPROVED_IN_HOOP = "approved in hoop's own UI"
REJECTED_IN_HOOP = "rejected in hoop's own UI"


class Look(enum.Enum):
    """What looking at the review while approvers decide found."""

    NOTHING = enum.auto()  # go on waiting (or time out)
    AGAIN = enum.auto()  # a read was attempted before the timeout: go round the wait once more
    APPROVED = enum.auto()  # approved in hoop's own UI (mirrored)
    REJECTED = enum.auto()  # rejected in hoop's own UI (mirrored)


class Concluded(enum.Enum):
    """How the request goes on once the review is approved (or found decided) in hoop."""

    FINISHED = enum.auto()  # terminal already (onetime APPROVED, or FAILED): finish
    DENIED = enum.auto()  # rejected in hoop just before grantflow approved it: close DENIED
    ACTIVE = enum.auto()  # jit: hold the access until its end, then revoke it


@dataclass(frozen=True, slots=True)
class HoopWatch:
    """The review as the pending request knows it."""

    changed: bool = False  # discovery saw the review leave PENDING: read it
    recheck_at: datetime | None = None  # reading it failed: try again then
    checked_at_timeout: bool = False  # the look once more before timing out was taken
    deciding: bool = False  # grantflow is deciding the review itself
    mirrored: HoopReview | None = None  # decided in hoop's own UI, as read back


class HoopDecided:
    """Decides one request's review in hoop, or mirrors the decision taken there."""

    def __init__(
        self,
        origin: HoopReviewOrigin,
        inp: AccessRequestInput,
        view: RequestView,
        ledger: RequestLedger,
        grant: GrantHolder,
    ) -> None:
        self.origin = origin
        self._input = inp
        self._view = view  # the request's one view object, changed in place by the workflow
        self._ledger = ledger
        self._grant = grant
        self.watch = HoopWatch()

    @property
    def mirrored(self) -> HoopReview | None:
        """The review as read back when it was decided in hoop's own UI (None: decided here, or not yet)."""
        return self.watch.mirrored

    # ------------------------------------------------------------------ while approvers decide

    def review_changed(self, inp: HoopReviewChanged) -> None:
        """Discovery saw the review leave PENDING: read it at the next turn of the wait for approvers;
        ignored once grantflow decides the review itself."""
        if inp.review_id != self.origin.review_id:
            return
        if self._view.status is not RequestStatus.PENDING or self.watch.deciding or self._view.outcome_note:
            return
        self.watch = replace(self.watch, changed=True)

    async def look(self, now: datetime, timeout_at: datetime) -> Look:
        """Read the review when discovery said it changed, when a failed read is due again, and once more
        before the request times out (it may have been decided in hoop)."""
        if self.watch.recheck_at is not None and now >= self.watch.recheck_at:
            self.watch = replace(self.watch, recheck_at=None, changed=True)
        timed_out = now >= timeout_at
        if not (self.watch.changed or (timed_out and not self.watch.checked_at_timeout)):
            return Look.NOTHING
        self.watch = replace(self.watch, checked_at_timeout=timed_out, changed=False)
        if await self._read_decision():
            mirrored = self.watch.mirrored
            return Look.REJECTED if mirrored is not None and mirrored.status == "REJECTED" else Look.APPROVED
        return Look.NOTHING if timed_out else Look.AGAIN

    def wake_by(self, deadline: datetime) -> datetime:
        """The wait for approvers wakes by then at the latest (a failed read is due again)."""
        recheck_at = self.watch.recheck_at
        return deadline if recheck_at is None else min(deadline, recheck_at)

    async def _read_decision(self) -> bool:
        """Read the review; True when it was decided in hoop's own UI (then mirrored: ``mirrored`` and
        ``outcome_note`` set, which closes decisions here). A failed read is tried again later."""
        try:
            review = await workflow.execute_activity_method(
                HoopReviewActivities.read,
                self.origin.review_id,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=HOOP_READ_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning("hoop review %s not read: %s", self.origin.review_id, err.cause)
            self.watch = replace(self.watch, recheck_at=workflow.now() + HOOP_RECHECK)
            return False
        if review.status == "PENDING":
            return False
        self.watch = replace(self.watch, mirrored=review)
        if review.status == "REJECTED":
            self._view.outcome_note = _rejected_in_hoop(review)
        elif review.status == "REVOKED":
            self._view.outcome_note = f"{APPROVED_IN_HOOP}, and revoked there"
        else:
            self._view.outcome_note = APPROVED_IN_HOOP
        return True

    # ------------------------------------------------------------------ approved

    async def conclude(self) -> Concluded:
        """Approved here (quorum or policy) or in hoop's UI: approve the review in hoop, then end
        ``APPROVED`` (onetime) or go on ``ACTIVE`` until hoop's ``revoke_at`` (jit)."""
        origin, view, ledger = self.origin, self._view, self._ledger
        review = self.watch.mirrored
        if review is None:
            self.watch = replace(self.watch, deciding=True)
            try:
                review = await workflow.execute_activity_method(
                    HoopReviewActivities.approve,
                    self._decision_input(),
                    start_to_close_timeout=timedelta(seconds=60),
                    schedule_to_close_timeout=GRANT_DEADLINE,
                    retry_policy=CRITICAL_RETRY,
                )
            except ActivityError as err:
                reason = f"approving review {origin.review_id} in hoop failed: {cause_message(err)}"
                await ledger.fail(reason, notify=True)
                return Concluded.FINISHED
            if review.status == "REJECTED":  # rejected in hoop's UI just before grantflow approved it
                self.watch = replace(self.watch, mirrored=review)
                view.outcome_note = _rejected_in_hoop(review)
                return Concluded.DENIED
            if review.status not in ("APPROVED", "REVOKED"):
                # grantflow approves with force_review: only a member of the review's force-approval groups
                # decides it (hoop's plain per-group count would stall a key in too many groups).
                force = ", ".join(review.force_approval_groups) or (
                    "none on the review: set the connection's force_approve_groups"
                )
                reason = (
                    f"grantflow approved review {origin.review_id} but hoop still shows it {review.status}: "
                    f"grantflow's hoop API key must be in the review's force-approval groups ({force})"
                )
                await ledger.fail(reason, notify=True)
                return Concluded.FINISHED
        mirrored = self.watch.mirrored is not None
        actor = "hoop" if mirrored else "grantflow"
        data: dict[str, Any] = {
            "review_id": origin.review_id,
            "review_type": origin.review_type.value,
            "decided_in": "hoop" if mirrored else "grantflow",
        }
        if view.outcome_note:
            data["note"] = view.outcome_note
        now = workflow.now()
        if origin.review_type is HoopReviewType.ONETIME:
            view.status = RequestStatus.APPROVED
            view.ended_at = now
            await ledger.record("hoop.review_approved", actor=actor, channel="hoop", data=data)
            await ledger.notify(
                "closed", [view.requester, *approvers_who_decided(view)], note=view.outcome_note or ""
            )
            return Concluded.FINISHED
        # jit: hoop's clock decides the expiry; the sessions opened under the review end with it.
        revoke_at = review.revoke_at or now + view.requested_duration
        view.status = RequestStatus.ACTIVE
        view.granted_at = now
        view.granted_total = review.access_duration or view.requested_duration
        view.expires_at = revoke_at
        view.grants.append(
            GrantSegment(
                session_id=origin.session_id,
                review_id=origin.review_id,
                correlation_id="",
                revoke_at=revoke_at,
            )
        )
        self._grant.adopt_review()
        data.update(revoke_at=revoke_at.isoformat(), expires_at=revoke_at.isoformat())
        await ledger.record("hoop.review_approved", actor=actor, channel="hoop", data=data)
        if review.status == "REVOKED":
            self._grant.request_end(EndReason.REVOKED, "hoop", "revoked in hoop's own UI", "hoop")
        await ledger.notify("active", [view.requester], note=view.outcome_note or "")
        return Concluded.ACTIVE

    # ------------------------------------------------------------------ not approved

    def denied_data(self) -> dict[str, Any]:
        """The ledger data of a request closed DENIED because the review was rejected in hoop's UI."""
        assert self.watch.mirrored is not None
        return {
            "note": self._view.outcome_note,
            "review_id": self.watch.mirrored.id,
            "reason": self.watch.mirrored.rejection_reason or "",
        }

    async def reject(self, status: RequestStatus, cancel: EndInput | None) -> None:
        """Reject the review in hoop, saying why the request ended ``status`` (critical: retried until hoop
        answers). A permanent refusal is recorded, never raised: the request has already ended."""
        origin = self.origin
        reason = self._rejection_reason(status, cancel)
        try:
            review = await workflow.execute_activity_method(
                HoopReviewActivities.reject,
                self._decision_input(reason),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=CRITICAL_RETRY,
            )
        except ActivityError as err:
            await self._ledger.record(
                "hoop.review_reject_failed",
                channel="hoop",
                data={"review_id": origin.review_id, "reason": reason, "error": cause_message(err)},
            )
            return
        await self._ledger.record(
            "hoop.review_rejected",
            channel="hoop",
            data={"review_id": origin.review_id, "reason": reason, "hoop_status": review.status},
        )

    def _rejection_reason(self, status: RequestStatus, cancel: EndInput | None) -> str:
        """The sentence hoop shows the person when grantflow rejects their review."""
        view = self._view
        if status is RequestStatus.DENIED and view.denials:
            denial = view.denials[0]
            why = f": {denial.reason}" if denial.reason else ""
            return f"denied in grantflow by {denial.approver.email}{why}"
        if status is RequestStatus.TIMED_OUT:
            timeout = format_duration(self._input.policy.request_timeout)
            return f"timed out in grantflow: no decision within {timeout}; ask again if still needed"
        if status is RequestStatus.CANCELLED:
            if cancel is not None:
                why = f": {cancel.reason}" if cancel.reason else ""
                return f"cancelled in grantflow by {cancel.actor.describe()}{why}"
            return "cancelled in grantflow: the requester left the organisation"
        return f"grantflow could not decide this review: {view.failure_reason or status.value}"

    def _decision_input(self, reason: str = "") -> HoopDecisionInput:
        return HoopDecisionInput(
            request_id=self._view.id,
            review_id=self.origin.review_id,
            review_type=self.origin.review_type,
            user_email=self._view.requester.email,
            connection=self._view.connection,
            reason=reason,
        )


def _rejected_in_hoop(review: HoopReview) -> str:
    """The outcome note of a review rejected in hoop's own UI, with the reviewer's reason: the requester
    and the approvers see it in every channel (nobody denied in grantflow, so nothing else says why)."""
    reason = (review.rejection_reason or "").strip()
    return f"{REJECTED_IN_HOOP}: {reason}" if reason else REJECTED_IN_HOOP

"""AccessRequestWorkflow: one just-in-time access request from asking to the end of the access.

    PENDING ──quorum──▶ ACTIVE ──expiry / relinquish / revoke──▶ REVOKING ──verified──▶ ENDED
       │                  ▲ (auto-approve and break-glass skip PENDING)
       ├─ one eligible deny ─▶ DENIED
       ├─ request_timeout ───▶ TIMED_OUT
       ├─ cancel ────────────▶ CANCELLED
       └─ gateway refuses ───▶ FAILED (failure_reason says what to do)

A request opened for a review pending in hoop (``origin``, see ``workflows/hoop_reviews.py``) goes through
the same policy, quorum and validators, but is decided *in hoop* instead of provisioning a grant:

    PENDING ──quorum──▶ review APPROVED in hoop ──▶ APPROVED (onetime: terminal, no timer)
                                                └─▶ ACTIVE (jit: until hoop's revoke_at) ──▶ … ENDED
       ├─ deny / timeout / cancel / failure ─▶ the review is REJECTED in hoop, with a reason saying so
       ├─ approved in hoop's own UI ─────────▶ mirrored: ACTIVE / APPROVED with a note
       └─ rejected in hoop's own UI ─────────▶ mirrored: DENIED with a note

A hoop ``jit`` request ends through the normal revocation (the review is revoked and the sessions it
enabled are killed: hoop does neither at ``revoke_at``). Extending it provisions grants as usual (the
newest grant wins in hoop), swept at the end with the review. All of it applies only to requests with
an ``origin``.

Invariants:
- Decisions arrive as Updates. Validators refuse (with a sentence) anyone not in the eligible set held in
  state, the requester, a second vote by the same identity, and anything after the stage closed; a
  refused update writes nothing to history. The edge records refusals in the ledger.
- The expiry is the gateway's: ``expires_at`` is read back from the grant the gateway reports.
- The end is never dropped: revocation is retried until the gateway confirms it; if that takes longer
  than ``revoke_escalate_after`` the approvers are told, and the request shows ``REVOKING`` meanwhile.
  The sessions the grant enabled (the person's on the connection since the grant began: hoop links none
  to the grant) are killed and read back; any still open after a few kills are named to the approvers
  (``sessions.kill_failed``, ``revocation_escalated``) and the request ends, recording them in its view.
- Every transition is saved to the store with one ledger entry, serialised by a lock so the store sees
  them in order, each with an idempotency key derived from the workflow id, the run id and a step number
  and the hash of its content (the same key with other content is an error).
- The history stays bounded: the policy caps extensions (``min_extension``, ``max_extensions``), and an
  ACTIVE request whose history reaches ``CONTINUE_AS_NEW_AFTER`` events continues as new between two
  steps of its active phase, once every update handler has finished, carrying its state (``CarriedOver``:
  the view, the eligible set, the grants' correlation ids, the ledger step, the channels' handles).
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ConfigDict, Field

    from activities.access_check import AccessCheckActivities, CheckAccessInput
    from activities.directory import ApproverResolution, DirectoryActivities, ResolveApproversInput
    from activities.gateway import (
        GATEWAY_REFUSED,
        KILL_ROUNDS,
        GatewayActivities,
        GrantInput,
        RevokeInput,
        RevokeResult,
        grant_correlation_id,
    )
    from activities.hoop_reviews import HoopDecisionInput, HoopReviewActivities
    from activities.notifications import NotificationActivities, NotifyInput
    from activities.records import LedgerEvent, RecordActivities, RecordInput, event_content_hash
    from domain.approval import (
        Stage,
        decision_refusal,
        end_refusal,
        extension_refusal,
        open_stage,
        quorum_reached,
    )
    from domain.channels import ChannelState, PresentInput
    from domain.durations import format_duration
    from domain.identity import Actor, PersonRef
    from domain.requests import (
        AccessRequestInput,
        ApproversChanged,
        Decision,
        DecisionInput,
        EndInput,
        EndReason,
        ExtendInput,
        GrantSegment,
        HoopReviewChanged,
        HoopReviewOrigin,
        HoopReviewType,
        PendingExtension,
        PersonLeft,
        RequestStatus,
        RequestView,
        RetroReview,
        Verdict,
        initial_view,
    )

if TYPE_CHECKING:
    from integrations.hoop import HoopReview

# Critical side effects are retried until they succeed or fail permanently.
CRITICAL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30)
)
# Presenting in Slack/Jira/email is best effort too, but people rely on it: retry generously.
PRESENT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=20
)
# A presentation that gave up on transient failures keeps what it did and is tried again, after a pause,
# with the people it was to ask: a few rounds at most, so a long outage never holds a request open.
PRESENT_ROUNDS = 3
PRESENT_ROUND_PAUSE = timedelta(minutes=1)
# Notifications are best effort: a few tries, then logged and forgotten.
BEST_EFFORT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
# How long a request waits for hoop's configuration to be readable before it is FAILED (nobody is asked
# to approve access nobody could check).
ACCESS_CHECK_DEADLINE = timedelta(minutes=10)
# How long an approved request waits for the gateway to accept a grant before it is FAILED.
GRANT_DEADLINE = timedelta(hours=1)
# Smallest step of the re-armable timers, so a clock skew cannot make the loop spin.
MIN_WAIT = timedelta(milliseconds=50)
# Reading a review to mirror it: a few tries, then again after HOOP_RECHECK (the request keeps waiting).
HOOP_READ_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)
HOOP_RECHECK = timedelta(seconds=30)
# An ACTIVE request whose history has this many events continues as new (the state carried over):
# every run stays well under Temporal's limits and replays fast, however long the access lives.
CONTINUE_AS_NEW_AFTER = 1000
APPROVED_IN_HOOP = "approved in hoop's own UI"
REJECTED_IN_HOOP = "rejected in hoop's own UI"


class CarriedOver(BaseModel):
    """An ACTIVE request's state, carried into the run that continues it (``continue_as_new``)."""

    model_config = ConfigDict(extra="forbid")  # never mistaken for an AccessRequestInput, nor one for it

    input: AccessRequestInput
    view: RequestView
    eligible: list[str]
    correlation_ids: list[str]
    step: int  # ledger idempotency keys go on from here
    channels: ChannelState
    present_pending: bool = False
    present_ask: list[PersonRef] = Field(default_factory=list)
    present_remind: list[PersonRef] = Field(default_factory=list)
    present_rounds: int = 0
    hoop_origin: bool = False
    hoop_review_granted: bool = False


class Refused(ApplicationError):
    """A decision or action refused with a reason a person understands."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, type="Refused", non_retryable=True)


@workflow.defn
class AccessRequestWorkflow:
    @workflow.init
    def __init__(self, start: AccessRequestInput | CarriedOver) -> None:
        carried = start if isinstance(start, CarriedOver) else None
        inp = start.input if isinstance(start, CarriedOver) else start
        self._input = inp
        self._view = initial_view(inp)
        self._eligible: set[str] | None = None
        self._cancel: EndInput | None = None
        self._requester_left: PersonLeft | None = None
        self._end: tuple[EndReason, str, str, str] | None = None  # reason, actor, channel, note
        self._active_changed = False
        self._correlation_ids: list[str] = []
        self._record_lock = asyncio.Lock()
        self._step = 0
        # Presenting the request in Slack, Jira and email runs beside the process, newest view first.
        # A request made in a Jira intake issue adopts that issue as its ticket.
        self._channels = ChannelState(jira_key=inp.jira_key)
        self._present_pending = False
        self._present_ask: list[PersonRef] = []
        self._present_remind: list[PersonRef] = []
        self._presenter: asyncio.Task[None] | None = None
        self._present_rounds = 0  # presentations given up and tried again (PRESENT_ROUNDS at most)
        self._closing = False
        self._presenting = False  # a presentation activity is in flight
        self._new_run_wanted = False  # the history is long: continue as new once idle
        # A request for a hoop review (set in run).
        self._hoop: HoopReviewOrigin | None = None
        self._hoop_changed = False  # discovery saw the review leave PENDING: read it
        self._hoop_recheck_at: datetime | None = None  # reading it failed: try again then
        self._hoop_checked_at_timeout = False
        self._hoop_deciding = False  # grantflow is deciding the review itself
        self._hoop_mirrored: HoopReview | None = None  # decided in hoop's own UI, as read back
        self._hoop_review_granted = False  # the jit review is APPROVED: revoke it at the end
        if carried is not None:  # a continued run of an ACTIVE request: where the last one stopped
            self._view = carried.view
            self._eligible = set(carried.eligible)
            self._correlation_ids = list(carried.correlation_ids)
            self._step = carried.step
            self._channels = carried.channels
            self._present_pending = carried.present_pending
            self._present_ask = list(carried.present_ask)
            self._present_remind = list(carried.present_remind)
            self._present_rounds = carried.present_rounds
            self._hoop = inp.origin if carried.hoop_origin else None
            self._hoop_review_granted = carried.hoop_review_granted

    # ------------------------------------------------------------------ run

    @workflow.run
    async def run(self, start: AccessRequestInput | CarriedOver) -> RequestView:
        """``start`` is the request's input, or (in a run continuing an ACTIVE request) its carried state."""
        if isinstance(start, CarriedOver):
            return await self._resume_active()
        inp = start
        if inp.origin is not None:
            self._hoop = inp.origin
        if inp.channels:
            self._presenter = asyncio.create_task(self._present_loop())
        await self._record(
            "request.created",
            actor=inp.submitted_by,
            data={
                "resource": inp.resource,
                "role": inp.role,
                "connection": inp.policy.connection,
                "duration": format_duration(inp.duration),
                "reason": inp.reason,
                "break_glass": inp.break_glass,
                "policy": inp.policy.model_dump(mode="json"),
            },
        )
        if not await self._check_access(before_granting=False):
            await self._reject_in_hoop_after_failure()
            return await self._finish()
        resolution = await self._resolve_approvers()
        if resolution is None:
            await self._reject_in_hoop_after_failure()
            return await self._finish()

        if inp.break_glass:
            if not inp.policy.break_glass.allowed:
                self._fail(f"the policy for {inp.resource} {inp.role} does not allow break-glass access")
                await self._record("request.failed", data={"failure_reason": self._view.failure_reason})
                await self._reject_in_hoop_after_failure()
                return await self._finish()
            self._view.retro_review = RetroReview.PENDING
        elif resolution.auto_approve_group is not None:
            self._view.auto_approved = True
            self._view.decided_at = workflow.now()
            await self._record("request.auto_approved", data={"group": resolution.auto_approve_group})
        else:
            eligible, needed = len(self._view.eligible_approvers), self._view.required_approvals
            if eligible < needed:
                groups = ", ".join(inp.policy.approver_groups)
                self._fail(
                    f"the policy for {inp.resource} {inp.role} needs {needed} approvals but only {eligible} "
                    f"eligible approver(s) exist in {groups} (the requester never counts); ask the group's "
                    "owners to add approvers, then request again"
                )
                await self._record("request.failed", data={"failure_reason": self._view.failure_reason})
                await self._notify("closed", [self._view.requester])
                await self._reject_in_hoop_after_failure()
                return await self._finish()
            await self._notify("request_created", self._view.eligible_approvers, with_review_link=True)
            self._present(ask=self._view.eligible_approvers)
            outcome = await self._await_decision()
            if outcome is not None:
                return await self._close(outcome)
            self._view.decided_at = workflow.now()

        # Group memberships and hoop's rules may have changed while approvers decided: a grant hoop would
        # not honour (or that nobody needs) is not written.
        if self._hoop_mirrored is None and not await self._check_access(before_granting=True):
            await self._reject_in_hoop_after_failure()
            return await self._finish()
        if self._hoop is not None:
            return await self._conclude_in_hoop(self._hoop)
        if not await self._grant_first_segment():
            return await self._finish()
        if self._view.break_glass:
            await self._notify("retro_review", self._view.eligible_approvers, with_review_link=True)
            self._present(ask=self._view.eligible_approvers)
        await self._stay_active()
        await self._revoke_and_end()
        return await self._finish()

    async def _resume_active(self) -> RequestView:
        """The rest of an ACTIVE request, in a new run (``_continue_as_new_if_long``)."""
        if self._input.channels:
            self._presenter = asyncio.create_task(self._present_loop())
        await self._stay_active()
        await self._revoke_and_end()
        return await self._finish()

    # ------------------------------------------------------------------ phases

    async def _check_access(self, *, before_granting: bool) -> bool:
        """hoop's two gates for the requester (``domain.access``): True when a JIT grant is what they need.
        Otherwise the request is FAILED with the sentence saying why (not eligible: the groups that would
        make them so; no review needed: they already have access) and nobody is asked or granted anything.
        A gateway that cannot be read for ``ACCESS_CHECK_DEADLINE`` fails the request the same way."""
        view = self._view
        what = f"{view.resource} {view.role}"
        try:
            verdict = await workflow.execute_activity_method(
                AccessCheckActivities.check_access,
                CheckAccessInput(person=view.requester, connection=view.connection),
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=ACCESS_CHECK_DEADLINE,
                retry_policy=CRITICAL_RETRY,
            )
        except ActivityError as err:
            self._fail(
                f"could not check {view.requester.email}'s access to {what} in hoop: {_cause_message(err)}"
            )
            await self._record("request.failed", data={"failure_reason": view.failure_reason})
            await self._notify("closed", [view.requester])
            return False
        view.access_check = verdict
        refusal = verdict.refusal(view.requester.email, what)
        if refusal is None:
            await self._record(
                "access.checked",
                data={"before_granting": before_granting, **verdict.model_dump(mode="json")},
            )
            return True
        self._fail(f"before granting: {refusal}" if before_granting else refusal)
        await self._record(
            "request.refused",
            data={
                "failure_reason": view.failure_reason,
                "before_granting": before_granting,
                **verdict.model_dump(mode="json"),
            },
        )
        await self._notify("closed", [view.requester])
        return False

    async def _resolve_approvers(self) -> ApproverResolution | None:
        try:
            resolution = await workflow.execute_activity_method(
                DirectoryActivities.resolve_approvers,
                ResolveApproversInput(
                    request_id=self._view.id,
                    requester=self._view.requester,
                    approver_groups=list(self._input.policy.approver_groups),
                    auto_approve_groups=list(self._input.policy.auto_approve_groups),
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=CRITICAL_RETRY,
            )
        except ActivityError as err:
            self._fail(_cause_message(err))
            await self._record("request.failed", data={"failure_reason": self._view.failure_reason})
            return None
        self._eligible = {p.id for p in resolution.eligible}
        self._view.eligible_approvers = list(resolution.eligible)
        if resolution.auto_approve_group is not None and not self._input.break_glass:
            # Said together with the approvers, so that nobody reading the view in between (the edge
            # answering the requester) is told the request waits for an approval it will never need.
            self._view.auto_approved = True
        self._view.approvers_resolved = True
        await self._record(
            "approvers.resolved",
            data={
                "eligible": [p.email for p in resolution.eligible],
                "required": self._view.required_approvals,
            },
        )
        return resolution

    async def _await_decision(self) -> RequestStatus | None:
        """Wait for quorum (None), or a deny, cancel or timeout (the status to close with). For a hoop
        review, a decision taken in hoop's own UI also ends the wait (``_hoop_mirrored`` is then set)."""
        view = self._view
        assert view.timeout_at is not None
        reminder_before = self._input.policy.reminder_before
        reminder_at = view.timeout_at - reminder_before if reminder_before else None
        while True:
            if view.denials:
                return RequestStatus.DENIED
            if self._cancel is not None or self._requester_left is not None:
                return RequestStatus.CANCELLED
            if quorum_reached(view, Stage.REQUEST):
                return None
            now = workflow.now()
            if self._hoop is not None:
                if self._hoop_recheck_at is not None and now >= self._hoop_recheck_at:
                    self._hoop_recheck_at, self._hoop_changed = None, True
                timed_out = now >= view.timeout_at
                if self._hoop_changed or (timed_out and not self._hoop_checked_at_timeout):
                    # Before timing out, look once more: the review may have been decided in hoop.
                    self._hoop_checked_at_timeout = timed_out
                    self._hoop_changed = False
                    if await self._read_hoop_decision(self._hoop):
                        rejected = (
                            self._hoop_mirrored is not None and self._hoop_mirrored.status == "REJECTED"
                        )
                        return RequestStatus.DENIED if rejected else None
                    if not timed_out:
                        continue
            if now >= view.timeout_at:
                return RequestStatus.TIMED_OUT
            deadline = view.timeout_at
            if reminder_at is not None:
                if now >= reminder_at:
                    reminder_at = None
                    voted = {d.approver.id for d in view.approvals}
                    waiting = [p for p in view.eligible_approvers if p.id not in voted]
                    await self._notify("reminder", waiting, with_review_link=True)
                    # Reminders reach approvers where they were asked (a new Slack DM, an email).
                    self._present(remind=waiting)
                    continue
                deadline = reminder_at
            if self._hoop_recheck_at is not None:
                deadline = min(deadline, self._hoop_recheck_at)
            await self._wait(
                lambda: (
                    bool(view.denials)
                    or self._cancel is not None
                    or self._requester_left is not None
                    or quorum_reached(view, Stage.REQUEST)
                    or self._hoop_changed
                ),
                deadline - now,
            )

    async def _grant_first_segment(self) -> bool:
        """Write the grant; True once ACTIVE, False when the gateway refused (the request is FAILED)."""
        duration = self._view.requested_duration
        try:
            segment = await self._write_grant(min(duration, self._input.timings.max_grant))
        except ActivityError as err:
            self._fail(_cause_message(err))
            await self._record("request.failed", data={"failure_reason": self._view.failure_reason})
            await self._notify("closed", [self._view.requester])
            # A grant may exist although the call failed (created before a 500, or a lost reply): take
            # it away. The revocation retries until the gateway confirms, like any other.
            swept = await self._execute_revoke(start_to_close=timedelta(seconds=60))
            self._note_sessions(swept)
            await self._record(
                "grant.swept",
                data={"correlation_ids": list(self._correlation_ids), **_sessions_data(swept)},
            )
            if swept.sessions_left_open:
                await self._escalate_sessions_left_open(swept)
            return False
        now = workflow.now()
        view = self._view
        view.status = RequestStatus.ACTIVE
        view.granted_at = now
        view.granted_total = duration
        # The gateway enforces its own revoke_at; when one grant covers the whole duration, that is the
        # expiry. Longer access is renewed segment by segment up to the intended end.
        view.expires_at = segment.revoke_at if duration <= self._input.timings.max_grant else now + duration
        await self._record(
            "grant.written",
            data={
                "session_id": segment.session_id,
                "review_id": segment.review_id,
                "correlation_id": segment.correlation_id,
                "revoke_at": segment.revoke_at.isoformat(),
                "expires_at": view.expires_at.isoformat(),
                "auto_approved": view.auto_approved,
                "break_glass": view.break_glass,
            },
        )
        await self._notify("active", [view.requester])
        return True

    async def _stay_active(self) -> None:
        """Hold the grant until its end: renew segments, apply extensions, close the retro review."""
        view = self._view
        timings = self._input.timings
        lead = min(timings.renewal_lead, timings.max_grant / 2)
        retro_deadline = (
            view.granted_at + self._input.policy.break_glass.retro_review_within
            if view.break_glass and view.granted_at is not None
            else None
        )
        while self._end is None:
            assert view.expires_at is not None
            if self._requester_left is not None:  # left while the grant was being written
                self._end_for_leaver(self._requester_left)
                break
            now = workflow.now()
            if now >= view.expires_at:
                self._request_end(EndReason.EXPIRED, "grantflow", "")
                break
            self._continue_as_new_if_long()
            wake = view.expires_at
            if retro_deadline is not None and view.retro_review is RetroReview.PENDING:
                if now >= retro_deadline:
                    view.retro_review = RetroReview.DENIED
                    await self._record(
                        "retro_review.unanswered", data={"deadline": retro_deadline.isoformat()}
                    )
                    self._end = (
                        EndReason.REVOKED,
                        "grantflow",
                        "system",
                        "break-glass retro-review unanswered",
                    )
                    break
                wake = min(wake, retro_deadline)
            last = view.grants[-1]
            if last.revoke_at < view.expires_at:
                renew_at = last.revoke_at - lead
                if now >= renew_at:
                    await self._renew()
                    continue
                wake = min(wake, renew_at)
            self._active_changed = False
            await self._wait(
                lambda: self._end is not None or self._active_changed or self._idle_for_new_run(), wake - now
            )

    def _continue_as_new_if_long(self) -> None:
        """An ACTIVE request can live for weeks (a renewal every ``max_grant``, extensions, every change
        presented in every channel): once its history is long, the rest continues in a new run carrying
        the state (``CarriedOver``). Only between steps of ``_stay_active`` and only when idle: no update or
        signal handler running and no presentation in flight, so nothing is lost or done twice. Never
        waited for: when busy, the active loop is woken once idle (``_idle_for_new_run``) and comes back
        here, so a slow channel never delays an expiry or a renewal."""
        info = workflow.info()
        long = info.get_current_history_length() >= CONTINUE_AS_NEW_AFTER
        if not long and not info.is_continue_as_new_suggested():
            return
        self._new_run_wanted = True
        if not self._idle_for_new_run():
            return
        workflow.continue_as_new(
            CarriedOver(
                input=self._input,
                view=self._view,
                eligible=sorted(self._eligible or ()),
                correlation_ids=list(self._correlation_ids),
                step=self._step,
                channels=self._channels,
                present_pending=self._present_pending,
                present_ask=self._present_ask,
                present_remind=self._present_remind,
                present_rounds=self._present_rounds,
                hoop_origin=self._hoop is not None,
                hoop_review_granted=self._hoop_review_granted,
            )
        )

    def _idle_for_new_run(self) -> bool:
        return self._new_run_wanted and workflow.all_handlers_finished() and not self._presenting

    async def _renew(self) -> None:
        view = self._view
        assert view.expires_at is not None
        target = view.expires_at
        remaining = target - workflow.now()
        covers = remaining <= self._input.timings.max_grant
        try:
            segment = await self._write_grant(min(remaining, self._input.timings.max_grant), end_at=target)
        except ActivityError as err:
            reason = _cause_message(err)
            view.failure_reason = f"renewing the grant failed: {reason}"
            await self._record("grant.renewal_failed", data={"reason": reason})
            self._request_end(EndReason.REVOKED, "grantflow", view.failure_reason)
            return
        if covers and view.expires_at == target:  # an extension applied meanwhile wins
            view.expires_at = segment.revoke_at
        await self._record(
            "grant.renewed",
            data={
                "session_id": segment.session_id,
                "review_id": segment.review_id,
                "revoke_at": segment.revoke_at.isoformat(),
                "expires_at": view.expires_at.isoformat(),
            },
        )

    async def _write_grant(self, duration: timedelta, *, end_at: datetime | None = None) -> GrantSegment:
        segment_no = len(self._correlation_ids)
        self._correlation_ids.append(grant_correlation_id(self._view.id, segment_no))
        segment = await workflow.execute_activity_method(
            GatewayActivities.grant,
            GrantInput(
                request_id=self._view.id,
                segment=segment_no,
                user_email=self._view.requester.email,
                connection=self._view.connection,
                duration_seconds=max(1, math.ceil(duration.total_seconds())),  # never end early
                end_at=end_at,
            ),
            start_to_close_timeout=timedelta(seconds=60),
            schedule_to_close_timeout=GRANT_DEADLINE,
            retry_policy=CRITICAL_RETRY,
        )
        self._view.grants.append(segment)
        return segment

    async def _revoke_and_end(self) -> None:
        assert self._end is not None
        reason, actor, channel, note = self._end
        view = self._view
        view.status = RequestStatus.REVOKING
        await self._record(
            "revocation.started", actor=actor, channel=channel, data={"reason": reason, "note": note}
        )
        handle = workflow.start_activity_method(
            GatewayActivities.revoke,
            self._revoke_input(),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=CRITICAL_RETRY,
        )
        escalate_after = self._input.timings.revoke_escalate_after
        done, _ = await workflow.wait([handle], timeout=escalate_after.total_seconds())
        if not done:
            view.revocation_escalated = True
            await self._record("revocation.escalated", data={"after": format_duration(escalate_after)})
            await self._notify(
                "revocation_escalated",
                view.eligible_approvers,
                note=f"revocation has not succeeded for {format_duration(escalate_after)}",
            )
        result = await handle
        view.revocation_attempts = result.attempt
        self._note_sessions(result)
        if result.sessions_left_open:  # the grant is revoked, but some of what it enabled lives on
            await self._escalate_sessions_left_open(result)
        view.status = RequestStatus.ENDED
        view.end_reason = reason
        view.ended_at = workflow.now()
        await self._record(
            "request.ended",
            actor=actor,
            channel=channel,
            data={
                "end_reason": reason.value,
                "note": note,
                "revoked_review_ids": result.revoked_review_ids,
                **_sessions_data(result),
                "attempts": result.attempt,
            },
        )
        await self._notify("closed", [view.requester, *self._approvers_who_decided()], note=note)

    def _note_sessions(self, result: RevokeResult) -> None:
        """The sessions the grant enabled, as the revocation found and left them, on the view."""
        view = self._view
        view.sessions_used = list(result.sessions_seen)
        view.sessions_killed = list(result.killed_session_ids)
        view.sessions_left_open = list(result.sessions_left_open)

    async def _escalate_sessions_left_open(self, result: RevokeResult) -> None:
        """Sessions hoop still lists open after every kill (it answers 204 for a session living on another
        gateway process): told to the approvers like a revocation that does not succeed. The request still
        ends; the ledger and the view name the sessions for whoever ends them in hoop."""
        view = self._view
        view.revocation_escalated = True
        left = result.sessions_left_open
        await self._record("sessions.kill_failed", data={"session_ids": left, "kill_rounds": KILL_ROUNDS})
        await self._notify(
            "revocation_escalated",
            view.eligible_approvers,
            note=f"{len(left)} session(s) stayed open after {KILL_ROUNDS} kills: {', '.join(left)}",
        )

    async def _execute_revoke(self, start_to_close: timedelta) -> Any:
        return await workflow.execute_activity_method(
            GatewayActivities.revoke,
            self._revoke_input(),
            start_to_close_timeout=start_to_close,
            retry_policy=CRITICAL_RETRY,
        )

    def _revoke_input(self) -> RevokeInput:
        view = self._view
        granted_review = self._hoop if self._hoop_review_granted else None
        # hoop links no session to the grant that let it through: the grant's sessions are the person's on
        # the connection since the access could first be used. For a hoop review that is when the request
        # was opened (the review was pending until then), and the session that asked for it is named. For a
        # grant grantflow writes, when it was decided (break-glass: made): the first grant is attempted
        # right after, and one whose reply was lost exists before ``granted_at``.
        since = view.created_at if self._hoop is not None else view.decided_at or view.created_at
        return RevokeInput(
            request_id=view.id,
            user_email=view.requester.email,
            connection=view.connection,
            correlation_ids=list(self._correlation_ids),
            review_ids=[granted_review.review_id] if granted_review is not None else [],
            sessions_since=since,
            session_ids=[granted_review.session_id] if granted_review is not None else [],
        )

    async def _close(self, status: RequestStatus) -> RequestView:
        view = self._view
        view.status = status
        view.ended_at = workflow.now()
        actor: str | Actor = "grantflow"
        channel: str | None = None
        data: dict[str, Any] = {}
        if status is RequestStatus.CANCELLED and self._cancel is not None:
            actor = self._cancel.actor
            data["reason"] = self._cancel.reason
            view.closed_reason = f"cancelled by {self._cancel.actor.describe()}" + (
                f": {self._cancel.reason}" if self._cancel.reason else ""
            )
        elif status is RequestStatus.CANCELLED and self._requester_left is not None:
            actor = "identity sync"
            data = {"reason": f"the requester left ({self._requester_left.reason})", "leaver": True}
            channel = "scim"
            view.closed_reason = data["reason"]
        elif status is RequestStatus.DENIED and view.denials:
            denial = view.denials[0]
            data = {"by": denial.approver.email, "reason": denial.reason}
        elif status is RequestStatus.DENIED and self._hoop_mirrored is not None:
            actor, channel = "hoop", "hoop"
            data = {
                "note": view.outcome_note,
                "review_id": self._hoop_mirrored.id,
                "reason": self._hoop_mirrored.rejection_reason or "",
            }
        await self._record(f"request.{status.value.lower()}", actor=actor, channel=channel, data=data)
        if self._hoop is not None and self._hoop_mirrored is None:
            await self._reject_in_hoop(self._hoop, self._hoop_rejection_reason(status))
        if self._hoop_mirrored is not None:  # the denials are empty: say where it was decided
            await self._notify("closed", [view.requester], note=view.outcome_note or "")
            return await self._finish()
        template = "denied" if status is RequestStatus.DENIED else "closed"
        await self._notify(template, [view.requester])
        return await self._finish()

    async def _finish(self) -> RequestView:
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._presenter is not None:  # the final state reaches every channel before we end
            self._closing = True
            await self._presenter
        return self._view

    # ------------------------------------------------------------------ hoop reviews (origin)

    async def _read_hoop_decision(self, origin: HoopReviewOrigin) -> bool:
        """Read the review; True when it was decided in hoop's own UI (then mirrored: ``_hoop_mirrored``
        and ``outcome_note`` set, which closes decisions here). A failed read is tried again later."""
        try:
            review = await workflow.execute_activity_method(
                HoopReviewActivities.read,
                origin.review_id,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=HOOP_READ_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning("hoop review %s not read: %s", origin.review_id, err.cause)
            self._hoop_recheck_at = workflow.now() + HOOP_RECHECK
            return False
        if review.status == "PENDING":
            return False
        self._hoop_mirrored = review
        if review.status == "REJECTED":
            self._view.outcome_note = _rejected_in_hoop(review)
        elif review.status == "REVOKED":
            self._view.outcome_note = f"{APPROVED_IN_HOOP}, and revoked there"
        else:
            self._view.outcome_note = APPROVED_IN_HOOP
        return True

    def _hoop_decision_input(self, origin: HoopReviewOrigin, reason: str = "") -> HoopDecisionInput:
        return HoopDecisionInput(
            request_id=self._view.id,
            review_id=origin.review_id,
            review_type=origin.review_type,
            user_email=self._view.requester.email,
            connection=self._view.connection,
            reason=reason,
        )

    async def _conclude_in_hoop(self, origin: HoopReviewOrigin) -> RequestView:
        """Approved here (quorum or policy) or in hoop's UI: approve the review in hoop, then end
        ``APPROVED`` (onetime) or hold ``ACTIVE`` until hoop's ``revoke_at`` (jit)."""
        view = self._view
        review = self._hoop_mirrored
        if review is None:
            self._hoop_deciding = True
            try:
                review = await workflow.execute_activity_method(
                    HoopReviewActivities.approve,
                    self._hoop_decision_input(origin),
                    start_to_close_timeout=timedelta(seconds=60),
                    schedule_to_close_timeout=GRANT_DEADLINE,
                    retry_policy=CRITICAL_RETRY,
                )
            except ActivityError as err:
                self._fail(f"approving review {origin.review_id} in hoop failed: {_cause_message(err)}")
                await self._record("request.failed", data={"failure_reason": view.failure_reason})
                await self._notify("closed", [view.requester])
                return await self._finish()
            if review.status == "REJECTED":  # rejected in hoop's UI just before grantflow approved it
                self._hoop_mirrored = review
                view.outcome_note = _rejected_in_hoop(review)
                return await self._close(RequestStatus.DENIED)
            if review.status not in ("APPROVED", "REVOKED"):
                # grantflow approves with force_review: only a member of the review's force-approval groups
                # decides it (hoop's plain per-group count would stall a key in too many groups).
                force = ", ".join(review.force_approval_groups) or (
                    "none on the review: set the connection's force_approve_groups"
                )
                self._fail(
                    f"grantflow approved review {origin.review_id} but hoop still shows it {review.status}: "
                    f"grantflow's hoop API key must be in the review's force-approval groups ({force})"
                )
                await self._record("request.failed", data={"failure_reason": view.failure_reason})
                await self._notify("closed", [view.requester])
                return await self._finish()
        mirrored = self._hoop_mirrored is not None
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
            await self._record("hoop.review_approved", actor=actor, channel="hoop", data=data)
            await self._notify(
                "closed", [view.requester, *self._approvers_who_decided()], note=view.outcome_note or ""
            )
            return await self._finish()
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
        self._hoop_review_granted = True
        data.update(revoke_at=revoke_at.isoformat(), expires_at=revoke_at.isoformat())
        await self._record("hoop.review_approved", actor=actor, channel="hoop", data=data)
        if review.status == "REVOKED":
            self._request_end(EndReason.REVOKED, "hoop", "revoked in hoop's own UI", "hoop")
        await self._notify("active", [view.requester], note=view.outcome_note or "")
        await self._stay_active()
        await self._revoke_and_end()
        return await self._finish()

    def _hoop_rejection_reason(self, status: RequestStatus) -> str:
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
            if self._cancel is not None:
                why = f": {self._cancel.reason}" if self._cancel.reason else ""
                return f"cancelled in grantflow by {self._cancel.actor.describe()}{why}"
            return "cancelled in grantflow: the requester left the organisation"
        return f"grantflow could not decide this review: {view.failure_reason or status.value}"

    async def _reject_in_hoop(self, origin: HoopReviewOrigin, reason: str) -> None:
        """Reject the review in hoop (critical: retried until hoop answers). A permanent refusal is
        recorded, never raised: the request has already ended."""
        try:
            review = await workflow.execute_activity_method(
                HoopReviewActivities.reject,
                self._hoop_decision_input(origin, reason),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=CRITICAL_RETRY,
            )
        except ActivityError as err:
            await self._record(
                "hoop.review_reject_failed",
                channel="hoop",
                data={"review_id": origin.review_id, "reason": reason, "error": _cause_message(err)},
            )
            return
        await self._record(
            "hoop.review_rejected",
            channel="hoop",
            data={"review_id": origin.review_id, "reason": reason, "hoop_status": review.status},
        )

    async def _reject_in_hoop_after_failure(self) -> None:
        if self._hoop is not None:
            await self._reject_in_hoop(self._hoop, self._hoop_rejection_reason(RequestStatus.FAILED))

    @workflow.signal
    def hoop_review_changed(self, inp: HoopReviewChanged) -> None:
        """Discovery saw this request's review leave PENDING in hoop. Read it (in the run loop) to mirror a
        decision taken in hoop's own UI; ignored once grantflow decided the review itself."""
        origin = self._input.origin
        if origin is None or inp.review_id != origin.review_id:
            return
        if self._view.status is not RequestStatus.PENDING or self._hoop_deciding or self._view.outcome_note:
            return
        self._hoop_changed = True

    # ------------------------------------------------------------------ channels (Slack, Jira, email)

    def _present(self, ask: list[PersonRef] | None = None, remind: list[PersonRef] | None = None) -> None:
        """Ask these people to decide, remind those (if any) and bring every channel up to date, in the
        background."""
        if self._presenter is None:
            return
        self._present_pending = True
        self._present_ask = _queued(self._present_ask, ask or [])
        self._present_remind = _queued(self._present_remind, remind or [])

    async def _present_loop(self) -> None:
        """One presentation at a time, always of the newest view: a burst of changes is coalesced, and an
        older view can never overwrite a newer one in Slack or Jira. Best effort: a channel that stays
        down after generous retries is logged and skipped, never failing the request."""
        while True:
            await workflow.wait_condition(lambda: self._present_pending or self._closing)
            if not self._present_pending:
                return
            self._present_pending = False
            ask, self._present_ask = self._present_ask, []
            remind, self._present_remind = self._present_remind, []
            self._presenting = True
            try:
                self._channels = await workflow.execute_activity(
                    "present_request",
                    PresentInput(view=self._view, ask=ask, remind=remind, state=self._channels),
                    result_type=ChannelState,
                    start_to_close_timeout=timedelta(seconds=60),
                    schedule_to_close_timeout=timedelta(minutes=30),  # never holds the request open
                    heartbeat_timeout=timedelta(seconds=30),
                    retry_policy=PRESENT_RETRY,
                )
            except ActivityError as err:
                workflow.logger.warning(
                    "request %s not presented in every channel: %s", self._view.id, err.cause
                )
                if self._resume_presentation(err, ask, remind):
                    try:  # a pause before the next round, cut short when the request closes
                        await workflow.wait_condition(
                            lambda: self._closing, timeout=PRESENT_ROUND_PAUSE.total_seconds()
                        )
                    except TimeoutError:
                        pass
            finally:
                self._presenting = False

    def _resume_presentation(self, err: ActivityError, ask: list[PersonRef], remind: list[PersonRef]) -> bool:
        """After a presentation gave up: keep what it did (the channel state its last attempt carried in
        the error: the messages it posted are then kept up to date, the ticket it opened is not opened
        twice) and, when it gave up on transient failures, queue another round with the people it was
        to ask. True when a round was queued."""
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.details and isinstance(cause.details[0], dict):
            try:
                self._channels = ChannelState.model_validate(cause.details[0])
            except ValueError:
                pass  # not a state: keep the one from before
        if isinstance(cause, ApplicationError) and cause.non_retryable:
            return False  # refused: another round would be refused again
        if self._present_rounds >= PRESENT_ROUNDS:
            return False
        self._present_rounds += 1
        self._present_ask = _queued(ask, self._present_ask)
        self._present_remind = _queued(remind, self._present_remind)
        self._present_pending = True
        return True

    # ------------------------------------------------------------------ updates and queries

    @workflow.query
    def view(self) -> RequestView:
        return self._view

    @workflow.update
    async def decide(self, inp: DecisionInput) -> RequestView:
        refusal = decision_refusal(self._view, self._eligible, inp.actor, inp.verdict, inp.stage)
        if refusal is not None:  # state may have moved between validation and handling
            raise Refused(refusal)
        stage = open_stage(self._view)
        assert stage is not None
        view = self._view
        decision = Decision(
            approver=inp.actor.person,
            verdict=inp.verdict,
            reason=inp.reason,
            channel=inp.actor.channel,
            on_behalf_by=inp.actor.admin,
            at=workflow.now(),
            stage=stage.value,
        )
        kind = "decision.approved" if inp.verdict is Verdict.APPROVE else "decision.denied"
        data: dict[str, Any] = {"stage": stage.value, "reason": inp.reason}
        if stage is Stage.EXTENSION:
            assert view.pending_extension is not None
            extension = view.pending_extension
            if inp.verdict is Verdict.APPROVE:
                extension.approvals.append(decision)
                if quorum_reached(view, Stage.EXTENSION):
                    await self._record(kind, actor=inp.actor, data=data)
                    await self._apply_extension(extension.by, inp.actor, extension.reason)
                    return view
            else:
                view.denials.append(decision)
                view.pending_extension = None
                data["extension_denied"] = format_duration(extension.by)
        elif inp.verdict is Verdict.APPROVE:
            view.approvals.append(decision)
            if stage is Stage.RETRO_REVIEW and quorum_reached(view, Stage.RETRO_REVIEW):
                view.retro_review = RetroReview.APPROVED
                data["retro_review"] = "approved"
                self._active_changed = True
        else:
            view.denials.append(decision)
            if stage is Stage.RETRO_REVIEW:
                view.retro_review = RetroReview.DENIED
                self._request_end(EndReason.REVOKED, inp.actor, "break-glass retro-review denied")
        await self._record(kind, actor=inp.actor, data=data)
        return view

    @decide.validator
    def _validate_decide(self, inp: DecisionInput) -> None:
        refusal = decision_refusal(self._view, self._eligible, inp.actor, inp.verdict, inp.stage)
        if refusal is not None:
            raise Refused(refusal)

    @workflow.update
    async def extend(self, inp: ExtendInput) -> RequestView:
        refusal = extension_refusal(self._view, inp.actor, inp.by)
        if refusal is not None:
            raise Refused(refusal)
        self._view.extensions_requested += 1  # counted whatever the approvers decide: bounds the history
        if self._input.policy.self_extension:
            await self._apply_extension(inp.by, inp.actor, inp.reason)
            return self._view
        self._view.pending_extension = PendingExtension(
            by=inp.by, requested_at=workflow.now(), reason=inp.reason
        )
        await self._record(
            "extension.requested", actor=inp.actor, data={"by": format_duration(inp.by), "reason": inp.reason}
        )
        await self._notify("extension_requested", self._view.eligible_approvers, with_review_link=True)
        self._present(ask=self._view.eligible_approvers)
        return self._view

    @extend.validator
    def _validate_extend(self, inp: ExtendInput) -> None:
        refusal = extension_refusal(self._view, inp.actor, inp.by)
        if refusal is not None:
            raise Refused(refusal)

    async def _apply_extension(self, by: timedelta, actor: Actor, reason: str) -> None:
        view = self._view
        assert view.expires_at is not None
        if view.pending_extension is not None:  # keep who approved the extension visible
            view.approvals.extend(view.pending_extension.approvals)
        view.pending_extension = None
        view.expires_at = view.expires_at + by
        view.granted_total = view.granted_total + by
        self._active_changed = True
        await self._record(
            "extension.applied",
            actor=actor,
            data={"by": format_duration(by), "expires_at": view.expires_at.isoformat(), "reason": reason},
        )

    @workflow.update
    async def relinquish(self, inp: EndInput) -> RequestView:
        return await self._handle_end("relinquish", inp)

    @relinquish.validator
    def _validate_relinquish(self, inp: EndInput) -> None:
        self._validate_end("relinquish", inp)

    @workflow.update
    async def revoke(self, inp: EndInput) -> RequestView:
        return await self._handle_end("revoke", inp)

    @revoke.validator
    def _validate_revoke(self, inp: EndInput) -> None:
        self._validate_end("revoke", inp)

    @workflow.update
    async def cancel(self, inp: EndInput) -> RequestView:
        return await self._handle_end("cancel", inp)

    @cancel.validator
    def _validate_cancel(self, inp: EndInput) -> None:
        self._validate_end("cancel", inp)

    def _validate_end(self, action: str, inp: EndInput) -> None:
        refusal = end_refusal(self._view, inp.actor, action, self._eligible)
        if refusal is not None:
            raise Refused(refusal)

    async def _handle_end(self, action: str, inp: EndInput) -> RequestView:
        self._validate_end(action, inp)
        if action == "cancel":
            self._cancel = inp
            await workflow.wait_condition(lambda: self._view.status is not RequestStatus.PENDING)
        else:
            reason = EndReason.RELINQUISHED if action == "relinquish" else EndReason.REVOKED
            self._request_end(reason, inp.actor, inp.reason)
            await workflow.wait_condition(lambda: self._view.status is not RequestStatus.ACTIVE)
        return self._view

    def _request_end(self, reason: EndReason, actor: Actor | str, note: str, channel: str = "system") -> None:
        if self._end is None:
            if isinstance(actor, Actor):
                self._end = (reason, actor.describe(), actor.channel, note)
            else:
                self._end = (reason, actor, channel, note)

    def _end_for_leaver(self, left: PersonLeft) -> None:
        self._request_end(
            EndReason.LEAVER,
            "identity sync",
            f"{left.person.email} left the organisation ({left.reason})",
            "scim",
        )

    # ------------------------------------------------------------------ identity sync signals

    @workflow.signal
    async def person_left(self, inp: PersonLeft) -> None:
        """A leaver loses everything now: their access ends, their pending request is cancelled, and
        votes they cast on a stage that has not reached quorum are withdrawn."""
        view = self._view
        if inp.person.id == view.requester.id:
            if self._requester_left is None and not view.status.is_terminal:
                self._requester_left = inp
                if view.status is RequestStatus.ACTIVE:
                    self._end_for_leaver(inp)
            return
        if self._eligible is None or inp.person.id not in self._eligible:
            return
        self._eligible.discard(inp.person.id)
        view.eligible_approvers = [p for p in view.eligible_approvers if p.id != inp.person.id]
        withdrawn = self._withdraw_votes(inp.person.id)
        await self._record(
            "approver.left",
            actor="identity sync",
            channel="scim",
            data={"approver": inp.person.email, "reason": inp.reason, "withdrawn_votes": withdrawn},
        )

    @workflow.signal
    async def approvers_changed(self, inp: ApproversChanged) -> None:
        """Membership of the approver groups changed: joiners may approve at once, people who moved out
        may not (their votes on an undecided stage are withdrawn)."""
        view = self._view
        if self._eligible is None or view.status.is_terminal:
            return
        new = {p.id: p for p in inp.eligible if p.id != view.requester.id}
        added = [p for pid, p in new.items() if pid not in self._eligible]
        removed = [p for p in view.eligible_approvers if p.id not in new]
        if not added and not removed:
            return
        self._eligible = set(new)
        view.eligible_approvers = sorted(new.values(), key=lambda p: p.email)
        withdrawn = sum(self._withdraw_votes(p.id) for p in removed)
        await self._record(
            "approvers.updated",
            actor="identity sync",
            channel="scim",
            data={
                "added": [p.email for p in added],
                "removed": [p.email for p in removed],
                "withdrawn_votes": withdrawn,
            },
        )
        if added and open_stage(view) is not None:
            event = "extension_requested" if view.pending_extension else "request_created"
            await self._notify(event, added, with_review_link=True)
            self._present(ask=added)

    def _withdraw_votes(self, person_id: str) -> int:
        """Remove a person's approvals from the open stage unless it already reached quorum."""
        view = self._view
        stage = open_stage(view)
        if stage is None or quorum_reached(view, stage):
            return 0
        if stage is Stage.EXTENSION:
            assert view.pending_extension is not None
            before = len(view.pending_extension.approvals)
            view.pending_extension.approvals = [
                d for d in view.pending_extension.approvals if d.approver.id != person_id
            ]
            return before - len(view.pending_extension.approvals)
        before = len(view.approvals)
        view.approvals = [
            d for d in view.approvals if not (d.approver.id == person_id and d.stage == stage.value)
        ]
        return before - len(view.approvals)

    # ------------------------------------------------------------------ helpers

    def _fail(self, reason: str) -> None:
        self._view.status = RequestStatus.FAILED
        self._view.failure_reason = reason
        self._view.ended_at = workflow.now()

    def _approvers_who_decided(self) -> list[PersonRef]:
        seen: dict[str, PersonRef] = {}
        for d in [*self._view.approvals, *self._view.denials]:
            seen.setdefault(d.approver.id, d.approver)
        return list(seen.values())

    async def _wait(self, condition: Any, timeout: timedelta) -> None:
        try:
            await workflow.wait_condition(condition, timeout=max(timeout, MIN_WAIT))
        except TimeoutError:
            pass

    async def _record(
        self,
        kind: str,
        *,
        actor: Actor | str = "grantflow",
        channel: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        async with self._record_lock:
            self._step += 1
            self._view.updated_at = workflow.now()
            account: dict[str, str] = {}
            if isinstance(actor, Actor):
                actor_text, channel = actor.describe(), channel or actor.channel
                account = actor.ledger_data()
            else:
                actor_text = actor
            event = LedgerEvent(
                kind=kind,
                actor=actor_text,
                channel=channel or "system",
                data={"status": self._view.status.value, **(data or {}), **account},
            )
            self._present()
            info = workflow.info()
            await workflow.execute_activity_method(
                RecordActivities.record,
                RecordInput(
                    view=self._view,
                    event=event,
                    # The run id keeps a run started by a Temporal reset (steps counted again) from
                    # colliding with the entries of the run it replaced.
                    idempotency_key=f"{info.workflow_id}:{info.run_id}:{self._step}",
                    content_hash=event_content_hash(self._view.id, event),
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=CRITICAL_RETRY,
            )

    async def _notify(
        self, event: str, recipients: list[PersonRef], *, with_review_link: bool = False, note: str = ""
    ) -> None:
        if not recipients:
            return
        try:
            await workflow.execute_activity_method(
                NotificationActivities.notify,
                NotifyInput(
                    event=event,
                    view=self._view,
                    recipients=recipients,
                    with_review_link=with_review_link,
                    note=note,
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=BEST_EFFORT_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning("notification %s for %s not sent: %s", event, self._view.id, err.cause)


def _sessions_data(result: RevokeResult) -> dict[str, list[str]]:
    """What the ledger says of the sessions a grant enabled when it is taken away."""
    return {
        "sessions_used": result.sessions_seen,
        "killed_session_ids": result.killed_session_ids,
        "sessions_left_open": result.sessions_left_open,
    }


def _queued(first: list[PersonRef], then: list[PersonRef]) -> list[PersonRef]:
    """``first``, then those of ``then`` not in it: each person once, in order."""
    people: dict[str, PersonRef] = {}
    for person in [*first, *then]:
        people.setdefault(person.id, person)
    return list(people.values())


def _rejected_in_hoop(review: HoopReview) -> str:
    """The outcome note of a review rejected in hoop's own UI, with the reviewer's reason: the requester
    and the approvers see it in every channel (nobody denied in grantflow, so nothing else says why)."""
    reason = (review.rejection_reason or "").strip()
    return f"{REJECTED_IN_HOOP}: {reason}" if reason else REJECTED_IN_HOOP


def _cause_message(err: ActivityError) -> str:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        if cause.type == GATEWAY_REFUSED:
            return f"the gateway refused: {cause.message}"
        return cause.message
    if cause is not None and "Timeout" in type(cause).__name__:
        return "the gateway did not accept the grant in time; try again later"
    return str(cause or err)

"""GrantHolder: an approved request's access, from the first grant to the verified end.

It writes the grant (``max_grant`` at most per segment), renews it segment by segment up to the intended
end, waits for that end (expiry, relinquish, revoke, a leaver, an unanswered break-glass retro review),
then revokes it and the sessions it enabled. The expiry is the gateway's: ``expires_at`` is read back from
the grant the gateway reports. The end is never dropped: revocation is retried until the gateway confirms
it; if that takes longer than ``revoke_escalate_after`` the approvers are told, and the request shows
``REVOKING`` meanwhile. The sessions the grant enabled (the person's on the connection since the grant
began: hoop links none to the grant) are killed and read back; any still open after a few kills are named
to the approvers and the request ends, recording them in its view.

For a request decided in hoop (``hoop_decided``), the APPROVED jit review is the grant: it is adopted here
(``adopt_review``) and revoked at the end like any grant.

It never decides whether access is granted (the request does, before calling ``first_segment``) and
never continues the workflow as new itself: ``hold`` asks the request between two of its steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.gateway import (
        KILL_ROUNDS,
        GatewayActivities,
        GrantInput,
        RevokeInput,
        RevokeResult,
        grant_correlation_id,
    )
    from domain.durations import format_duration
    from domain.identity import Actor
    from domain.requests import (
        AccessRequestInput,
        EndReason,
        GrantSegment,
        HoopReviewOrigin,
        PersonLeft,
        RequestStatus,
        RequestView,
        RetroReview,
    )
    from workflows.request_ledger import RequestLedger, approvers_who_decided
    from workflows.request_policies import CRITICAL_RETRY, GRANT_DEADLINE, cause_message, wait_at_most


@dataclass(frozen=True, slots=True)
class EndRequested:
    """Why and by whom the access is to end: the first request to end it wins."""

    reason: EndReason
    actor: str
    channel: str
    note: str


class GrantHolder:
    """The grants of one request: their correlation ids (carried across continue-as-new) and its end."""

    def __init__(
        self,
        inp: AccessRequestInput,
        view: RequestView,
        ledger: RequestLedger,
        *,
        correlation_ids: list[str] | None = None,
        hoop_review: HoopReviewOrigin | None = None,
        review_granted: bool = False,
    ) -> None:
        self._input = inp
        self._view = view  # the request's one view object, changed in place by the workflow
        self._ledger = ledger
        self.correlation_ids: list[str] = list(correlation_ids or [])
        self.hoop_review = hoop_review  # the review in hoop the request was opened for, if any
        self.review_granted = review_granted  # that review (jit) is APPROVED: revoke it at the end
        self.end: EndRequested | None = None
        self._changed = False  # an extension or a retro review changed what the active phase waits for

    # ------------------------------------------------------------------ the end

    def request_end(self, reason: EndReason, actor: Actor | str, note: str, channel: str = "system") -> None:
        if self.end is None:
            if isinstance(actor, Actor):
                self.end = EndRequested(reason, actor.describe(), actor.channel, note)
            else:
                self.end = EndRequested(reason, actor, channel, note)

    def end_for_leaver(self, left: PersonLeft) -> None:
        self.request_end(
            EndReason.LEAVER,
            "identity sync",
            f"{left.person.email} left the organisation ({left.reason})",
            "scim",
        )

    def changed(self) -> None:
        """The expiry or the retro review changed: the active phase plans its timers again."""
        self._changed = True

    def adopt_review(self) -> None:
        """The request's jit review is APPROVED in hoop: it is the grant, revoked at the end."""
        self.review_granted = True

    # ------------------------------------------------------------------ granting

    async def first_segment(self) -> bool:
        """Write the grant; True once ACTIVE, False when the gateway refused (the request is FAILED)."""
        duration = self._view.requested_duration
        try:
            segment = await self._write(min(duration, self._input.timings.max_grant))
        except ActivityError as err:
            await self._ledger.fail(cause_message(err), notify=True)
            # A grant may exist although the call failed (created before a 500, or a lost reply): take
            # it away. The revocation retries until the gateway confirms, like any other.
            swept = await workflow.execute_activity_method(
                GatewayActivities.revoke,
                self._revoke_input(),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=CRITICAL_RETRY,
            )
            self._note_sessions(swept)
            await self._ledger.record(
                "grant.swept",
                data={"correlation_ids": list(self.correlation_ids), **_sessions_data(swept)},
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
        await self._ledger.record(
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
        await self._ledger.notify("active", [view.requester])
        return True

    async def hold(
        self,
        requester_left: Callable[[], PersonLeft | None],
        continue_as_new_if_long: Callable[[], None],
        idle_for_new_run: Callable[[], bool],
    ) -> None:
        """Hold the grant until its end: renew segments, apply extensions, close the retro review. The
        request tells whether its requester left, and continues as new between two steps of this loop
        when its history is long (``continue_as_new_if_long``); ``idle_for_new_run`` wakes the wait."""
        view = self._view
        timings = self._input.timings
        lead = min(timings.renewal_lead, timings.max_grant / 2)
        retro_deadline = (
            view.granted_at + self._input.policy.break_glass.retro_review_within
            if view.break_glass and view.granted_at is not None
            else None
        )
        while self.end is None:
            assert view.expires_at is not None
            left = requester_left()
            if left is not None:  # left while the grant was being written
                self.end_for_leaver(left)
                break
            now = workflow.now()
            if now >= view.expires_at:
                self.request_end(EndReason.EXPIRED, "grantflow", "")
                break
            continue_as_new_if_long()
            wake = view.expires_at
            if retro_deadline is not None and view.retro_review is RetroReview.PENDING:
                if now >= retro_deadline:
                    view.retro_review = RetroReview.DENIED
                    await self._ledger.record(
                        "retro_review.unanswered", data={"deadline": retro_deadline.isoformat()}
                    )
                    self.end = EndRequested(
                        EndReason.REVOKED, "grantflow", "system", "break-glass retro-review unanswered"
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
            self._changed = False
            await wait_at_most(
                lambda: self.end is not None or self._changed or idle_for_new_run(), wake - now
            )

    async def _renew(self) -> None:
        view = self._view
        assert view.expires_at is not None
        target = view.expires_at
        remaining = target - workflow.now()
        covers = remaining <= self._input.timings.max_grant
        try:
            segment = await self._write(min(remaining, self._input.timings.max_grant), end_at=target)
        except ActivityError as err:
            reason = cause_message(err)
            view.failure_reason = f"renewing the grant failed: {reason}"
            await self._ledger.record("grant.renewal_failed", data={"reason": reason})
            self.request_end(EndReason.REVOKED, "grantflow", view.failure_reason)
            return
        if covers and view.expires_at == target:  # an extension applied meanwhile wins
            view.expires_at = segment.revoke_at
        await self._ledger.record(
            "grant.renewed",
            data={
                "session_id": segment.session_id,
                "review_id": segment.review_id,
                "revoke_at": segment.revoke_at.isoformat(),
                "expires_at": view.expires_at.isoformat(),
            },
        )

    async def _write(self, duration: timedelta, *, end_at: datetime | None = None) -> GrantSegment:
        segment_no = len(self.correlation_ids)
        self.correlation_ids.append(grant_correlation_id(self._view.id, segment_no))
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

    # ------------------------------------------------------------------ revoking

    async def revoke_and_end(self) -> None:
        assert self.end is not None
        reason, actor, channel, note = self.end.reason, self.end.actor, self.end.channel, self.end.note
        view = self._view
        view.status = RequestStatus.REVOKING
        # The revocation is scheduled first, in the same workflow task as its ledger record: at an expiry
        # every round trip through Temporal before the gateway call is time the access outlives its end.
        handle = workflow.start_activity_method(
            GatewayActivities.revoke,
            self._revoke_input(),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=CRITICAL_RETRY,
        )
        await self._ledger.record(
            "revocation.started", actor=actor, channel=channel, data={"reason": reason, "note": note}
        )
        escalate_after = self._input.timings.revoke_escalate_after
        done, _ = await workflow.wait([handle], timeout=escalate_after.total_seconds())
        if not done:
            view.revocation_escalated = True
            await self._ledger.record("revocation.escalated", data={"after": format_duration(escalate_after)})
            await self._ledger.notify(
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
        await self._ledger.record(
            "request.ended",
            actor=actor,
            channel=channel,
            data={
                "end_reason": reason.value,
                "note": note,
                "revoked_review_ids": result.revoked_review_ids,
                **_sessions_data(result),
                "attempts": result.attempt,
                # the scheduled end and the verified revocation, for the lag operators watch
                "expires_at": view.expires_at.isoformat() if view.expires_at is not None else None,
                "ended_at": view.ended_at.isoformat(),
            },
        )
        await self._ledger.notify("closed", [view.requester, *approvers_who_decided(view)], note=note)

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
        await self._ledger.record(
            "sessions.kill_failed", data={"session_ids": left, "kill_rounds": KILL_ROUNDS}
        )
        await self._ledger.notify(
            "revocation_escalated",
            view.eligible_approvers,
            note=f"{len(left)} session(s) stayed open after {KILL_ROUNDS} kills: {', '.join(left)}",
        )

    def _revoke_input(self) -> RevokeInput:
        view = self._view
        granted_review = self.hoop_review if self.review_granted else None
        # hoop links no session to the grant that let it through: the grant's sessions are the person's on
        # the connection since the access could first be used. For a hoop review that is when the request
        # was opened (the review was pending until then), and the session that asked for it is named. For a
        # grant grantflow writes, when it was decided (break-glass: made): the first grant is attempted
        # right after, and one whose reply was lost exists before ``granted_at``.
        since = view.created_at if self.hoop_review is not None else view.decided_at or view.created_at
        return RevokeInput(
            request_id=view.id,
            user_email=view.requester.email,
            connection=view.connection,
            correlation_ids=list(self.correlation_ids),
            review_ids=[granted_review.review_id] if granted_review is not None else [],
            sessions_since=since,
            session_ids=[granted_review.session_id] if granted_review is not None else [],
        )


def _sessions_data(result: RevokeResult) -> dict[str, list[str]]:
    """What the ledger says of the sessions a grant enabled when it is taken away."""
    return {
        "sessions_used": result.sessions_seen,
        "killed_session_ids": result.killed_session_ids,
        "sessions_left_open": result.sessions_left_open,
    }

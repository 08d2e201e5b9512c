"""Reviews that start in hoop: finding them, opening one request per review, deciding them in hoop.

A person who runs ``hoop connect`` (``jit``) or ``hoop exec`` (``onetime``) on a connection that needs a
review leaves a PENDING review in hoop. ``HoopReviewDiscoveryWorkflow`` lists those reviews and hands the
new ones to :meth:`HoopReviewActivities.admit`, which opens one ``AccessRequestWorkflow`` per review under
grantflow's policy for the connection; that workflow decides the review in hoop through
:meth:`~HoopReviewActivities.approve`, :meth:`~HoopReviewActivities.reject` and
:meth:`~HoopReviewActivities.read`.

Invariants:

- **One request per review, ever.** Its id is ``hoop-<review id>`` (``hoop_request_id``) and it is started
  with ``id_conflict_policy=USE_EXISTING`` (a running one is returned as is) and
  ``id_reuse_policy=REJECT_DUPLICATE`` (a closed one is never started again), so a retried admission, a
  second poll and a restarted discovery all find the same request.
- **Which reviews grantflow takes** is decided by the pure function :func:`hoop_intake`: a connection no
  policy covers is left to hoop; a requester who is not an active person in the directory, or a ``jit``
  review longer than the policy allows, is rejected in hoop with a sentence saying why. A ``jit`` review
  then reserves the request's (person, connection) slot in the store, like any request: a person who
  already has an open request there is pointed to it instead (at most one grant per person and
  connection). Every rejection made here is written to the ledger under the request id it would have had.
- **Deciding is idempotent, and decides as hoop counts**: the review is read before it is decided, and
  approved with ``force_review`` by grantflow's key (a member of the force-approval groups), in one call; a
  review already APPROVED is never approved again (hoop would reset its ``revoke_at``), so a retry after
  an uncertain failure (a 5xx after the write) sends no second approval. Rejecting one already REJECTED
  is success. The review is always read back and returned, so the workflow decides what the outcome
  means (rejected in hoop meanwhile, approved with this ``revoke_at``).
- **A ``onetime`` review's command** is read from its session's detail at admission
  (``session_command``): hoop's session list blanks it.
- Rejecting a ``jit`` review also kills the sessions opened under it: hoop accepts rejecting an APPROVED
  review, which blocks new sessions only.

Errors: transient gateway errors are retried (after ``Retry-After``); permanent ones fail the activity
without retry (``GatewayRefused``) so the workflow can say what went wrong.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol, runtime_checkable

from pydantic import BaseModel
from temporalio import activity
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from activities.gateway import gateway_application_error
from domain.durations import format_duration
from domain.identity import Actor, Person
from domain.policy import PolicySet
from domain.requests import (
    AccessRequestInput,
    GatewayTimings,
    HoopReviewOrigin,
    HoopReviewType,
    hoop_request_id,
    initial_view,
)
from integrations.gateway import (
    GatewayError,
    GatewayNotFoundError,
    GatewayPermanentError,
    GatewayRefusedError,
    GatewaySession,
)
from integrations.hoop import HoopPendingReview, HoopReview
from store import SlotTaken, Store

log = logging.getLogger("grantflow.hoop_reviews")

# The name AccessRequestWorkflow is registered under (importing it here would be circular).
ACCESS_REQUEST_WORKFLOW = "AccessRequestWorkflow"
# A reason longer than this is cut in the request (the whole command stays in ``origin.command``).
MAX_REASON_COMMAND = 1000
# A onetime review grants no time: its request carries this nominal duration, never used for a grant.
ONETIME_NOMINAL_DURATION = timedelta(minutes=1)


@runtime_checkable
class HoopReviewGateway(Protocol):
    """What deciding hoop-originated reviews needs from the gateway (``HoopGateway`` provides it)."""

    async def list_pending_reviews(self) -> list[HoopPendingReview]: ...

    async def session_command(self, session_id: str) -> str | None: ...

    async def get_review(self, review_id: str) -> HoopReview: ...

    async def decide_review(self, review_id: str, *, approve: bool, reason: str = "") -> None: ...

    async def list_sessions(
        self, *, user: str | None = None, connection: str | None = None, status: str | None = None
    ) -> list[GatewaySession]: ...

    async def kill_session(self, session_id: str) -> None: ...


class Admission(StrEnum):
    STARTED = "started"
    """A request decides the review (newly started, or already running)."""
    REJECTED = "rejected"
    """grantflow rejected the review in hoop (the reason says why)."""
    LEFT_ALONE = "left_alone"
    """Left to hoop: no policy covers the connection, its request already ended, or hoop refused us."""


class AdmitInput(BaseModel):
    reviews: list[HoopPendingReview]
    task_queue: str
    """Where the request workflows run (the discovery workflow's own task queue)."""
    channels: list[str] = []
    timings: GatewayTimings = GatewayTimings()


class AdmitOutcome(BaseModel):
    review_id: str
    connection: str
    admission: Admission
    reason: str = ""


class HoopDecisionInput(BaseModel):
    request_id: str
    review_id: str
    review_type: HoopReviewType
    user_email: str
    connection: str
    reason: str = ""
    """For a rejection: the sentence hoop shows the person (``rejection_reason``)."""


class HoopIntake(BaseModel):
    """What to do with a review seen PENDING for the first time (see :func:`hoop_intake`)."""

    admission: Admission
    reason: str = ""
    request: AccessRequestInput | None = None


def hoop_intake(
    review: HoopPendingReview,
    policies: PolicySet,
    person: Person | None,
    *,
    now: datetime,
    timings: GatewayTimings,
    channels: list[str],
) -> HoopIntake:
    """The request a pending hoop review becomes, or why grantflow leaves or rejects it. Pure."""
    found = policies.for_connection(review.connection)
    if found is None:
        return HoopIntake(
            admission=Admission.LEFT_ALONE,
            reason=f"no grantflow policy covers connection {review.connection}; the review is left to hoop",
        )
    resource, role, policy = found
    if review.type not in (HoopReviewType.JIT.value, HoopReviewType.ONETIME.value):
        return HoopIntake(
            admission=Admission.LEFT_ALONE,
            reason=f"grantflow does not decide hoop reviews of type {review.type!r}; left to hoop",
        )
    review_type = HoopReviewType(review.type)
    if person is None or not person.active:
        return HoopIntake(
            admission=Admission.REJECTED,
            reason=(
                f"{review.user_email} is not an active person in grantflow's directory, so this "
                f"{review_type.value} review for {review.connection} cannot be approved; ask an "
                "administrator to add you to the directory, then ask again"
            ),
        )
    if review_type is HoopReviewType.JIT:
        duration = review.access_duration
        if duration <= timedelta(0):
            return HoopIntake(
                admission=Admission.REJECTED,
                reason=f"the review asks for no access duration; ask again for {review.connection} with one",
            )
        if duration > policy.max_duration:
            return HoopIntake(
                admission=Admission.REJECTED,
                reason=(
                    f"the review asks for {format_duration(duration)} of access to {review.connection}, but "
                    f"grantflow's policy for {resource} {role} allows at most "
                    f"{format_duration(policy.max_duration)}; ask again for "
                    f"{format_duration(policy.max_duration)} or less"
                ),
            )
        reason = f"asked in hoop for {format_duration(duration)} of access to {review.connection}"
    else:
        duration = ONETIME_NOMINAL_DURATION
        command = (review.command or "").strip()
        if len(command) > MAX_REASON_COMMAND:
            command = command[:MAX_REASON_COMMAND] + "…"
        reason = f"asked in hoop to run one command on {review.connection}: {command or '(no command shown)'}"
    request_id = hoop_request_id(review.review_id)
    return HoopIntake(
        admission=Admission.STARTED,
        request=AccessRequestInput(
            request_id=request_id,
            requester=person.ref,
            submitted_by=Actor(person=person.ref, channel="hoop"),
            resource=resource,
            role=role,
            policy=policy,
            duration=duration,
            reason=reason,
            created_at=now,
            timings=timings,
            channels=list(channels),
            origin=HoopReviewOrigin(
                review_id=review.review_id,
                review_type=review_type,
                session_id=review.session_id,
                command=review.command,
            ),
        ),
    )


class HoopReviewActivities:
    def __init__(self, gateway: HoopReviewGateway | None, store: Store, policies: PolicySet | None) -> None:
        """``gateway`` None (a gateway that cannot list reviews) or ``policies`` None (none loaded) make
        discovery fail with a sentence saying so; the worker passes both."""
        self._gateway = gateway
        self._store = store
        self._policies = policies

    def _hoop(self) -> HoopReviewGateway:
        if self._gateway is None:
            raise ApplicationError(
                "the configured gateway cannot list or decide hoop reviews",
                type="NotConfigured",
                non_retryable=True,
            )
        return self._gateway

    # ------------------------------------------------------------------ discovery

    @activity.defn(name="list_pending_hoop_reviews")
    async def list_pending(self) -> list[HoopPendingReview]:
        """Every review PENDING in hoop, oldest first."""
        try:
            return await self._hoop().list_pending_reviews()
        except GatewayError as exc:
            raise gateway_application_error(exc, "listing pending hoop reviews") from exc

    @activity.defn(name="admit_hoop_reviews")
    async def admit(self, inp: AdmitInput) -> list[AdmitOutcome]:
        """Open one request per review (or reject it in hoop, or leave it to hoop). Safe to repeat."""
        if self._policies is None:
            raise ApplicationError(
                "no policies are loaded in this worker; hoop reviews cannot be admitted",
                type="NotConfigured",
                non_retryable=True,
            )
        client = activity.client()
        now = activity.info().current_attempt_scheduled_time
        outcomes = []
        for review in inp.reviews:
            if review.type == HoopReviewType.ONETIME.value and review.command is None:
                try:
                    command = await self._hoop().session_command(review.session_id)
                except GatewayNotFoundError:
                    outcomes.append(
                        AdmitOutcome(
                            review_id=review.review_id,
                            connection=review.connection,
                            admission=Admission.LEFT_ALONE,
                            reason=f"the session {review.session_id} of this onetime review is gone in hoop",
                        )
                    )
                    continue
                except GatewayError as exc:
                    raise gateway_application_error(
                        exc, f"reading the command of hoop review {review.review_id}"
                    ) from exc
                review = review.model_copy(update={"command": command})
            person = await asyncio.to_thread(self._store.find_person_by_email, review.user_email)
            intake = hoop_intake(
                review, self._policies, person, now=now, timings=inp.timings, channels=inp.channels
            )
            request = intake.request
            if intake.admission is Admission.STARTED and request is not None:
                try:
                    # A jit review is a grant: at most one open per person and connection. A onetime
                    # review grants nothing, and a person may well have several commands waiting.
                    if request.origin is not None and request.origin.review_type is HoopReviewType.JIT:
                        await asyncio.to_thread(self._store.reserve_request, initial_view(request))
                except SlotTaken as taken:
                    intake = HoopIntake(
                        admission=Admission.REJECTED,
                        reason=(
                            f"{review.user_email} already has request {taken.existing_request_id} "
                            f"({taken.existing_status}) for {review.connection} in grantflow; use or extend "
                            "that one instead of asking again in hoop"
                        ),
                    )
                else:
                    try:
                        await client.start_workflow(
                            ACCESS_REQUEST_WORKFLOW,
                            request,
                            id=request.request_id,
                            task_queue=inp.task_queue,
                            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                        )
                    except WorkflowAlreadyStartedError:
                        stored = await asyncio.to_thread(self._store.get_request, request.request_id)
                        status = stored.status.value if stored is not None else "closed"
                        intake = HoopIntake(
                            admission=Admission.LEFT_ALONE,
                            reason=(
                                f"request {request.request_id} for this review already ended ({status}) "
                                "but the review is still pending in hoop; decide it in hoop"
                            ),
                        )
            if intake.admission is Admission.REJECTED:
                intake = await self._reject_at_admission(review, intake)
            outcomes.append(
                AdmitOutcome(
                    review_id=review.review_id,
                    connection=review.connection,
                    admission=intake.admission,
                    reason=intake.reason,
                )
            )
        return outcomes

    async def _reject_at_admission(self, review: HoopPendingReview, intake: HoopIntake) -> HoopIntake:
        request_id = hoop_request_id(review.review_id)
        try:
            await self._hoop().decide_review(review.review_id, approve=False, reason=intake.reason)
        except GatewayPermanentError as exc:
            return HoopIntake(
                admission=Admission.LEFT_ALONE,
                reason=f"grantflow could not reject the review in hoop ({exc.message}); why: {intake.reason}",
            )
        except GatewayError as exc:
            raise gateway_application_error(exc, f"rejecting hoop review {review.review_id}") from exc
        await asyncio.to_thread(
            self._store.append_ledger,
            kind="hoop.review_rejected",
            subject=request_id,
            actor="grantflow",
            channel="hoop",
            data={
                "review_id": review.review_id,
                "review_type": review.type,
                "requester": review.user_email,
                "connection": review.connection,
                "reason": intake.reason,
                "at_admission": True,
            },
            idempotency_key=f"{request_id}:admission",
        )
        return intake

    # ------------------------------------------------------------------ deciding (AccessRequestWorkflow)

    @activity.defn(name="read_hoop_review")
    async def read(self, review_id: str) -> HoopReview:
        try:
            return await self._hoop().get_review(review_id)
        except GatewayError as exc:
            raise gateway_application_error(exc, f"reading hoop review {review_id}") from exc

    @activity.defn(name="approve_hoop_review")
    async def approve(self, inp: HoopDecisionInput) -> HoopReview:
        """Approve the review in hoop as grantflow's key and return it as read back. Already APPROVED is
        success; a review hoop will not approve (rejected in its UI meanwhile) is returned as it is."""
        hoop = self._hoop()
        try:
            try:
                await hoop.decide_review(inp.review_id, approve=True)
            except GatewayRefusedError as exc:
                log.info("hoop review %s not approved: %s", inp.review_id, exc.message)
            return await hoop.get_review(inp.review_id)
        except GatewayError as exc:
            raise gateway_application_error(exc, f"approving hoop review {inp.review_id}") from exc

    @activity.defn(name="reject_hoop_review")
    async def reject(self, inp: HoopDecisionInput) -> HoopReview:
        """Reject the review in hoop with ``inp.reason`` and return it as read back. Already REJECTED (or
        REVOKED, or gone) is success. For ``jit``, sessions opened under the review are killed."""
        hoop = self._hoop()
        doing = f"rejecting hoop review {inp.review_id}"
        try:
            try:
                await hoop.decide_review(inp.review_id, approve=False, reason=inp.reason)
            except GatewayNotFoundError:
                return HoopReview(id=inp.review_id, type=inp.review_type.value, status="REJECTED")
            except GatewayRefusedError:
                current = await hoop.get_review(inp.review_id)
                if current.status not in ("REJECTED", "REVOKED"):
                    raise
            if inp.review_type is HoopReviewType.JIT:
                for session in await hoop.list_sessions(user=inp.user_email, connection=inp.connection):
                    if session.status == "open" and session.review_id == inp.review_id:
                        await hoop.kill_session(session.id)
            return await hoop.get_review(inp.review_id)
        except GatewayError as exc:
            raise gateway_application_error(exc, doing) from exc

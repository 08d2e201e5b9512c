"""Writing grants to the gateway and taking them away again.

Gateway errors are translated here into Temporal retry behaviour: transient ones are retried (after
the gateway's ``Retry-After`` when it sends one), permanent ones fail the activity without retry so
the workflow can say what went wrong. Idempotency: the correlation id is derived from the request id
and the grant segment, and the adapter looks for an earlier grant under it before writing a new one.
"""

from __future__ import annotations

import math
from datetime import timedelta

from pydantic import AwareDatetime, BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.requests import GrantSegment
from integrations.gateway import (
    Gateway,
    GatewayError,
    GatewayPermanentError,
    GatewayTransientError,
)

GATEWAY_REFUSED = "GatewayRefused"


class GrantInput(BaseModel):
    request_id: str
    segment: int
    user_email: str
    connection: str
    duration_seconds: int
    """The grant's length; with ``end_at``, the most it may be."""
    end_at: AwareDatetime | None = None
    """For renewals: the grant ends here however late a retried attempt runs (never past the approved end)."""


class RevokeInput(BaseModel):
    request_id: str
    user_email: str
    connection: str
    correlation_ids: list[str]
    """Every correlation id a grant was attempted under, so even a grant whose reply was lost is found."""
    review_ids: list[str] = []
    """jit reviews the request holds that grantflow did not provision (the hoop review a request started
    from): revoked too, and sessions opened under them killed."""


class RevokeResult(BaseModel):
    revoked_review_ids: list[str]
    killed_session_ids: list[str]
    attempt: int


def grant_correlation_id(request_id: str, segment: int) -> str:
    return f"{request_id}:grant:{segment}"


def gateway_application_error(exc: GatewayError, doing: str) -> ApplicationError:
    """A gateway error as the activity raises it: transient ones retried (after ``Retry-After``),
    permanent ones not (``GatewayRefused``)."""
    if isinstance(exc, GatewayTransientError):
        delay = timedelta(seconds=exc.retry_after) if exc.retry_after else None
        return ApplicationError(f"{doing}: {exc.message}", type="GatewayTransient", next_retry_delay=delay)
    if isinstance(exc, GatewayPermanentError):
        return ApplicationError(f"{exc.message}", type=GATEWAY_REFUSED, non_retryable=True)
    return ApplicationError(f"{doing}: {exc.message}", type="GatewayError")


class GatewayActivities:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    @activity.defn(name="grant_access")
    async def grant(self, inp: GrantInput) -> GrantSegment:
        correlation_id = grant_correlation_id(inp.request_id, inp.segment)
        duration = inp.duration_seconds
        if inp.end_at is not None:
            # Temporal's clock (the attempt's scheduled time), so retries shorten the grant, never extend it.
            left = (inp.end_at - activity.info().current_attempt_scheduled_time).total_seconds()
            duration = max(1, min(duration, math.ceil(left)))
        try:
            grant = await self._gateway.provision_grant(
                user_email=inp.user_email,
                connection=inp.connection,
                duration_seconds=duration,
                correlation_id=correlation_id,
            )
        except GatewayError as exc:
            raise gateway_application_error(exc, f"granting {inp.connection} to {inp.user_email}") from exc
        if grant.revoke_at is None:
            raise ApplicationError("the gateway returned a grant without revoke_at", type="GatewayTransient")
        return GrantSegment(
            session_id=grant.session_id,
            review_id=grant.review_id,
            correlation_id=correlation_id,
            revoke_at=grant.revoke_at,
        )

    @activity.defn(name="revoke_access")
    async def revoke(self, inp: RevokeInput) -> RevokeResult:
        """Revoke every grant made for the request, kill the sessions opened under them, read both back.

        Only sessions opened under one of this request's reviews are killed: a session the person
        holds through standing access is not ours to cut. Any failure, including a read-back that
        still shows access, raises so the activity is retried (the workflow escalates if it lasts)."""
        doing = f"revoking {inp.connection} from {inp.user_email}"
        try:
            ours: set[str] = set()
            for review_id in inp.review_ids:
                ours.add(review_id)
                # Reads the review back: one already REVOKED counts as revoked, anything else raises.
                await self._gateway.revoke_grant(review_id)
            for correlation_id in inp.correlation_ids:
                for grant in await self._gateway.find_grants(correlation_id=correlation_id):
                    ours.add(grant.review_id)
                    if grant.status == "APPROVED":
                        await self._gateway.revoke_grant(grant.review_id)
            killed = []
            for session in await self._gateway.list_sessions(user=inp.user_email, connection=inp.connection):
                if session.status == "open" and session.review_id in ours:
                    await self._gateway.kill_session(session.id)
                    killed.append(session.id)
            # Read back: nothing of ours may still be approved or open.
            still_granted = [
                g.review_id
                for cid in inp.correlation_ids
                for g in await self._gateway.find_grants(correlation_id=cid)
                if g.status == "APPROVED"
            ]
            still_open = [
                s.id
                for s in await self._gateway.list_sessions(user=inp.user_email, connection=inp.connection)
                if s.status == "open" and s.review_id in ours
            ]
        except GatewayError as exc:
            # Never give up on a revocation: even a "permanent" refusal (a rotated API key, a group taken
            # from grantflow's key) is retried until an operator fixes it; the workflow escalates meanwhile.
            error = gateway_application_error(exc, doing)
            raise ApplicationError(
                error.message, type=error.type, next_retry_delay=error.next_retry_delay, non_retryable=False
            ) from exc
        if still_open or still_granted:
            raise ApplicationError(
                f"{doing}: read-back still shows access (approved reviews {still_granted}, "
                f"open sessions {still_open})",
                type="RevocationNotVerified",
            )
        return RevokeResult(
            revoked_review_ids=sorted(ours),
            killed_session_ids=killed,
            attempt=activity.info().attempt,
        )

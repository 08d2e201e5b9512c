"""Writing grants to the gateway and taking them away again.

Gateway errors are translated here into Temporal retry behaviour: transient ones are retried (after
the gateway's ``Retry-After`` when it sends one), permanent ones fail the activity without retry so
the workflow can say what went wrong. Idempotency: the correlation id is derived from the request id
and the grant segment, and the adapter looks for an earlier grant under it before writing a new one.

Ending a grant takes away what it enabled. hoop links a session opened under a jit grant to nothing (its
``review`` is null), so the sessions a grant enabled are the person's sessions on the connection that
started since the grant began (less ``SESSION_CLOCK_SKEW``), found by time and matched exactly. Each open
one is killed and read back; hoop answers 204 even when the session lives on another gateway process and
stays open, so a kill is repeated a few rounds (``KILL_ROUNDS``) and the sessions still open are returned
for the workflow to escalate, never retried forever. The sessions killed are reported even when the
attempt that killed them was lost with its worker: every kill is heartbeated with the list so far
(``KilledSoFar``), Temporal hands the last heartbeat to the retry, and the retry, which finds those sessions
already done, reports them as killed.
"""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta

from pydantic import AwareDatetime, BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.requests import GrantSegment
from integrations.gateway import (
    Gateway,
    GatewayError,
    GatewayNotFoundError,
    GatewayPermanentError,
    GatewaySession,
    GatewayTransientError,
)

GATEWAY_REFUSED = "GatewayRefused"
# A session that started this much before the grant began still counts as one it enabled: grantflow's
# (Temporal's) clock and hoop's differ a little. Wider would reach sessions that predate the grant.
SESSION_CLOCK_SKEW = timedelta(seconds=5)
# Rounds of kill-then-read-back for sessions hoop still lists open after a kill (it answers 204 for a
# session living on another gateway process, or a stale row). The ones open after the last round are
# returned (the workflow escalates): a session that will not die must not hold the revocation forever.
KILL_ROUNDS = 3
# The pause between two rounds, for hoop to close what it was asked to (heartbeating meanwhile).
KILL_ROUND_WAIT = timedelta(seconds=2)


class KilledSoFar(BaseModel):
    """The heartbeat of a revocation: the sessions it has killed so far (earlier attempts' included)."""

    killed: list[str]


def _killed_by_earlier_attempts() -> set[str]:
    """The sessions an earlier attempt of this activity killed, from the last heartbeat it sent."""
    killed: set[str] = set()
    for detail in activity.info().heartbeat_details:
        if isinstance(detail, dict) and isinstance(detail.get("killed"), list):
            killed.update(str(session_id) for session_id in detail["killed"])
    return killed


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
    from): revoked too."""
    sessions_since: AwareDatetime | None = None
    """When the request's access could first have been used (when grantflow decided to grant, just before
    its first attempt, or the opening of a request for a hoop review): the person's sessions on the
    connection started since (less ``SESSION_CLOCK_SKEW``) are the ones it enabled, and are killed. None:
    no session is looked for."""
    session_ids: list[str] = []
    """Sessions known to be the request's whenever they started (the session that asked for a hoop
    review, which goes live under it once approved): killed too when open before the revocation (hoop
    marks a revoked review's own session done, live or not)."""


class RevokeResult(BaseModel):
    revoked_review_ids: list[str]
    killed_session_ids: list[str]
    """Sessions that were open and were ended by the kill."""
    attempt: int
    sessions_seen: list[str] = []
    """Every session the grant enabled (open or already ended), oldest first."""
    sessions_left_open: list[str] = []
    """Sessions still open after ``KILL_ROUNDS`` kills (hoop answered 204 but they live on): escalated."""


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
    def __init__(self, gateway: Gateway, *, kill_round_wait: timedelta = KILL_ROUND_WAIT) -> None:
        self._gateway = gateway
        self._kill_round_wait = kill_round_wait

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
        """Revoke every grant made for the request, kill the sessions the grant enabled, read both back.

        The sessions are the person's on the connection started since ``inp.sessions_since`` (less the
        clock skew), matched exactly by the adapter, whatever their review (hoop links none to the grant),
        plus ``inp.session_ids``. Any gateway failure, and a review still approved on read-back, raises so
        the activity is retried (the workflow escalates if it lasts); sessions still open after
        ``KILL_ROUNDS`` kills are returned in ``sessions_left_open`` instead."""
        doing = f"revoking {inp.connection} from {inp.user_email}"
        try:
            ours: set[str] = set()
            grant_records: set[str] = set()  # the sessions provisioning wrote: grants, never connected
            # Read before revoking: hoop marks a revoked review's own session done, live or not.
            named_open = await self._open_sessions(inp.session_ids)
            for review_id in inp.review_ids:
                ours.add(review_id)
                # Reads the review back: one already REVOKED counts as revoked, anything else raises.
                await self._gateway.revoke_grant(review_id)
            for correlation_id in inp.correlation_ids:
                for grant in await self._gateway.find_grants(correlation_id=correlation_id):
                    ours.add(grant.review_id)
                    grant_records.add(grant.session_id)
                    if grant.status == "APPROVED":
                        await self._gateway.revoke_grant(grant.review_id)
            # Revoked first, so no new session can open under the grant while its sessions are killed.
            used = await self._sessions_enabled(inp, grant_records, named_open)
            killed_before = _killed_by_earlier_attempts() & {s.id for s in used}
            killed_now, left_open = await self._kill(
                [s.id for s in used if s.status == "open"], killed_before
            )
            killed = [s.id for s in used if s.id in killed_before or s.id in killed_now]
            still_granted = [
                g.review_id
                for cid in inp.correlation_ids
                for g in await self._gateway.find_grants(correlation_id=cid)
                if g.status == "APPROVED"
            ]
        except GatewayError as exc:
            # Never give up on a revocation: even a "permanent" refusal (a rotated API key, a group taken
            # from grantflow's key) is retried until an operator fixes it; the workflow escalates meanwhile.
            error = gateway_application_error(exc, doing)
            raise ApplicationError(
                error.message, type=error.type, next_retry_delay=error.next_retry_delay, non_retryable=False
            ) from exc
        if still_granted:
            raise ApplicationError(
                f"{doing}: read-back still shows access (approved reviews {still_granted})",
                type="RevocationNotVerified",
            )
        return RevokeResult(
            revoked_review_ids=sorted(ours),
            killed_session_ids=killed,
            attempt=activity.info().attempt,
            sessions_seen=[s.id for s in used],
            sessions_left_open=left_open,
        )

    async def _open_sessions(self, session_ids: list[str]) -> list[GatewaySession]:
        open_ones = []
        for session_id in session_ids:
            try:
                session = await self._gateway.get_session(session_id)
            except GatewayNotFoundError:
                continue
            if session.status == "open":
                open_ones.append(session)
        return open_ones

    async def _sessions_enabled(
        self, inp: RevokeInput, grant_records: set[str], named_open: list[GatewaySession]
    ) -> list[GatewaySession]:
        """The person's sessions the grant enabled, oldest first: started since the window opened, and
        the named ones that were open before the revocation (whatever hoop shows for them now). Not the
        sessions that only record a grant or a review (hoop marks them done when the review is revoked):
        those provisioning wrote (``grant_records``), the named ones that were not open, ``ready`` ones."""
        records = grant_records | set(inp.session_ids)
        found: dict[str, GatewaySession] = {s.id: s for s in named_open}
        if inp.sessions_since is not None:
            since = inp.sessions_since - SESSION_CLOCK_SKEW
            for s in await self._gateway.list_sessions(
                user=inp.user_email, connection=inp.connection, since=since
            ):
                if s.id not in records and s.status != "ready":
                    found.setdefault(s.id, s)
        return sorted(found.values(), key=lambda s: (s.start_date is None, s.start_date, s.id))

    async def _kill(self, session_ids: list[str], killed_before: set[str]) -> tuple[list[str], list[str]]:
        """Kill these sessions and read each back, up to ``KILL_ROUNDS`` rounds for those still open.
        Returns (killed, still open). Each kill is heartbeated with every session killed so far, those of
        earlier attempts (``killed_before``) included, for a retry to report."""
        killed: list[str] = []
        left = list(session_ids)
        for round_no in range(1, KILL_ROUNDS + 1):
            if not left:
                break
            if round_no > 1:
                activity.heartbeat(f"kill round {round_no}: {len(left)} session(s) still open")
                await asyncio.sleep(self._kill_round_wait.total_seconds())
            still_open = []
            for session_id in left:
                try:
                    await self._gateway.kill_session(session_id)
                    if (await self._gateway.get_session(session_id)).status == "open":
                        still_open.append(session_id)
                    else:
                        killed.append(session_id)
                except GatewayNotFoundError:
                    killed.append(session_id)  # gone: nothing left to end
                activity.heartbeat(KilledSoFar(killed=sorted(killed_before.union(killed))))
            left = still_open
        return killed, left

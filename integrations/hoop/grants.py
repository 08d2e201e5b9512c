"""JIT grants and reviews in hoop: provision, find, revoke; read, list and decide reviews.

A JIT grant in hoop is an APPROVED review of type ``jit`` tied to (user, connection); the gateway lets a
session open while the newest such review has ``revoke_at > now``. grantflow writes one with
``POST /sessions/provision`` and ends it with ``PUT /reviews/{id} {"status": "REVOKED"}`` (which blocks new
sessions only, so callers also kill open sessions: :mod:`integrations.hoop.sessions`).

Invariants this module keeps:

- **Provisioning is idempotent by correlation id.** hoop never deduplicates: every provision creates a new
  session and review, and ``correlation_id`` is only a filter. So ``provision_grant`` first looks for
  ``GET /sessions?correlation_id=…`` and returns an APPROVED grant it finds; only then does it provision.
  After an uncertain failure (a 5xx after the write, a dropped reply) the next attempt finds the first
  grant instead of making a second one.
- **Never more than 48 h**: hoop checks the cap only *after* writing the session, answering 500 and leaving
  an orphan, so a longer duration raises ``ValueError`` before any call. Longer grants are renewed by
  provisioning again before the previous one ends.
- **hoop's clock decides**: ``revoke_at`` and ``review_id`` are read back from the gateway
  (``GET /sessions/{id}``), never computed here.
- Revoking an already REVOKED review and deciding a review that already has the wanted outcome count as
  success (hoop answers 400 for them; the state is read back).
- **Reviews that start in hoop** (a person ran ``hoop connect``/``exec`` and left a review PENDING):
  ``list_pending_reviews`` reads ``GET /sessions?review.status=PENDING`` (paged; ``GET /reviews`` is not) and
  takes who asked and the connection from the session, since the Review object has neither; a ``onetime``
  review's command is the session's ``script.data``, which only ``GET /sessions/{id}`` shows
  (``session_command``; the list blanks it). ``get_review`` reads one back, ``decide_review`` approves
  (``force_review``, never an APPROVED review again) or rejects it; a 5xx on a review is unknown until a
  read says otherwise.

No business decision is made here: whether to grant, and for how long, is the workflow's.
"""

from __future__ import annotations

from typing import Any

from domain.hoop_reviews import HoopPendingReview, HoopReview
from integrations.gateway import (
    GatewayAuthError,
    GatewayError,
    GatewayNotFoundError,
    GatewayPermanentError,
    GatewayRefusedError,
    GatewayTransientError,
    ProvisionedGrant,
)
from integrations.hoop.client import HoopClient, seg
from integrations.hoop.records import (
    grant_from_session,
    pending_review_from_row,
    review_from_body,
    session_script,
)

MAX_GRANT_SECONDS = 48 * 3600
_ENDED = ("REVOKED", "REJECTED")  # review statuses under which a jit review grants nothing


class HoopGrants(HoopClient):
    """The grant and review calls of ``HoopGateway``."""

    async def provision_grant(
        self, *, user_email: str, connection: str, duration_seconds: int, correlation_id: str
    ) -> ProvisionedGrant:
        """Grant ``user_email`` jit access to ``connection`` for ``duration_seconds`` (≤ 48 h), or return the
        APPROVED grant already made under ``correlation_id`` (hoop leaves expired grants APPROVED: such a
        grant's ``revoke_at`` is in the past). A REVOKED one is not reused: a new grant is made."""
        if duration_seconds <= 0:
            raise ValueError(f"a grant needs a positive duration, not {duration_seconds}s")
        if duration_seconds > MAX_GRANT_SECONDS:
            raise ValueError(
                f"hoop grants at most 48 h ({MAX_GRANT_SECONDS}s), asked for {duration_seconds}s: "
                "provision up to 48 h and renew before it ends"
            )
        if not correlation_id:
            raise ValueError("a correlation id is needed to provision idempotently")
        for grant in await self.find_grants(correlation_id=correlation_id):
            if (
                grant.status == "APPROVED"
                and grant.user_email == user_email
                and grant.connection == connection
            ):
                return grant
        body = {
            "user_email": user_email,
            "connection": connection,
            "access_duration_sec": duration_seconds,
            "correlation_id": correlation_id,
            "metadata": {"grantflow_correlation_id": correlation_id},
        }
        try:
            response = await self._request("POST", "/sessions/provision", json=body, ok=(200, 202))
        except GatewayRefusedError as exc:
            raise await self._explain_provision_refusal(exc, user_email, connection) from exc
        except GatewayNotFoundError as exc:
            raise GatewayNotFoundError(
                f"hoop cannot grant access to {connection}: {exc.message}", status=exc.status
            ) from exc
        session_id = self._json(response).get("session_id")
        if not isinstance(session_id, str) or not session_id:
            raise GatewayTransientError("hoop accepted the provision but returned no session_id")
        created = grant_from_session(await self._get_session(session_id))
        if created is None:
            raise GatewayPermanentError(f"hoop created session {session_id} without a jit review")
        return created

    async def find_grants(self, *, correlation_id: str) -> list[ProvisionedGrant]:
        """Every jit grant provisioned under ``correlation_id``, newest first (any review status)."""
        rows = await self._session_rows({"correlation_id": correlation_id})
        return [g for row in rows if (g := grant_from_session(row)) is not None]

    async def revoke_grant(self, review_id: str) -> ProvisionedGrant:
        """End a jit grant now (new sessions are refused; open ones must be killed separately). Revoking an
        already revoked grant succeeds, and so does revoking one rejected in hoop meanwhile (a rejected
        review grants nothing). Returns the grant as read back. hoop answers 500 for an unknown review
        (``api/review/review.go`` does not map its not-found error): a 5xx is unknown until the review is
        read back, so an unknown id ends as ``GatewayNotFoundError`` and a real outage stays transient."""
        try:
            review = self._json(
                await self._request("PUT", f"/reviews/{seg(review_id)}", json={"status": "REVOKED"})
            )
        except GatewayTransientError:
            review = await self._get_review(review_id)  # 404 → GatewayNotFoundError
            if review.get("status") not in _ENDED:
                raise
        except GatewayRefusedError as exc:
            review = await self._get_review(review_id)
            if review.get("status") not in _ENDED:
                raise GatewayRefusedError(
                    f"hoop will not revoke review {review_id}: it is {review.get('status')} ({exc.message})",
                    status=exc.status,
                ) from exc
        grant = grant_from_session(await self._get_session(str(review.get("session", ""))))
        if grant is None or grant.review_id != review_id:
            raise GatewayPermanentError(f"hoop review {review_id} is not the jit grant of its session")
        if grant.status not in _ENDED:
            raise GatewayTransientError(
                f"hoop still reports review {review_id} as {grant.status} after revoking"
            )
        return grant

    async def decide_review(self, review_id: str, *, approve: bool, reason: str = "") -> None:
        """Approve or reject a review hoop holds, as grantflow's API key, the way hoop counts
        (``api/review/review.go``); read the outcome back with ``get_review``.

        - The review is read first. One already APPROVED is never approved again: hoop would reset its
          ``revoke_at`` to now + the full duration. Asking for an outcome already reached succeeds; anything
          else hoop would refuse (approving a REJECTED, REVOKED or rejected-and-approved review) is a
          ``GatewayRefusedError`` without a write.
        - Approving sends ``force_review: true``: the key decides in one call as a member of the review's
          force-approval groups (the access-request rule's, else the connection's). grantflow has already run
          the policy; without force hoop counts the groups the key belongs to and approves only when that
          count *equals* the number needed, so a key in too many groups would leave the review PENDING for
          good. Rejecting needs no force: hoop lets an admin deny any review.
        - A 5xx (hoop answers 500 for an unknown review too) is unknown until a read says otherwise: the
          review is read back; the outcome reached is success, a 404 is ``GatewayNotFoundError``, else the
          transient error is raised and a retry reads first again (so no second approval)."""
        wanted = "APPROVED" if approve else "REJECTED"
        current = (await self._get_review(review_id)).get("status")
        if current == wanted:
            return
        if current != "PENDING" and (approve or current != "APPROVED"):
            raise GatewayRefusedError(
                f"hoop review {review_id} is {current} and can no longer be {wanted.lower()}", status=400
            )
        body: dict[str, Any] = {"status": wanted}
        if approve:
            body["force_review"] = True
        elif reason:
            body["rejection_reason"] = reason
        try:
            await self._request("PUT", f"/reviews/{seg(review_id)}", json=body)
        except GatewayTransientError:
            if (await self._get_review(review_id)).get("status") == wanted:  # 404 → GatewayNotFoundError
                return
            raise
        except GatewayRefusedError as exc:
            current = (await self._get_review(review_id)).get("status")
            if current == wanted:
                return
            if approve and exc.message == "not eligible for review":
                raise GatewayRefusedError(
                    f"hoop will not let grantflow's API key force-approve review {review_id}: the key must "
                    "be in the review's force-approval groups (the access-request rule's "
                    "force_approval_groups, else the connection's force_approve_groups)",
                    status=exc.status,
                ) from exc
            raise GatewayRefusedError(
                f"hoop review {review_id} is {current} and can no longer be {wanted.lower()} ({exc.message})",
                status=exc.status,
            ) from exc
        except GatewayAuthError as exc:
            raise GatewayAuthError(
                f"grantflow's hoop API key may not decide review {review_id}: {exc.message}. Give the key "
                "admin and the force-approval groups of the connections and rules grantflow decides for.",
                status=exc.status,
            ) from exc

    async def get_review(self, review_id: str) -> HoopReview:
        """A review as hoop holds it now."""
        return review_from_body(await self._get_review(review_id))

    async def list_pending_reviews(self) -> list[HoopPendingReview]:
        """Every review PENDING in hoop, oldest first, one row per review
        (``GET /sessions?review.status=PENDING``, paged; ``GET /reviews`` is unpaginated). The list carries
        no ``onetime`` command (``api/session/parser.go`` blanks the script): ``command`` is None here; read
        it with ``session_command`` for the reviews you act on."""
        found: dict[str, HoopPendingReview] = {}
        for row in await self._session_rows({"review.status": "PENDING"}):
            review = row.get("review")
            if not isinstance(review, dict) or not review.get("id") or review.get("status") != "PENDING":
                continue
            found.setdefault(str(review["id"]), pending_review_from_row(row, review))
        return list(reversed(found.values()))

    async def session_command(self, session_id: str) -> str | None:
        """The input of a session — a ``onetime`` review's command — from ``GET /sessions/{id}``, the only
        place hoop shows it (``script.data``; empty means none)."""
        return session_script(await self._get_session(session_id))

    async def _explain_provision_refusal(
        self, exc: GatewayRefusedError, user_email: str, connection: str
    ) -> GatewayError:
        """hoop answers 400 chiefly for a person who never signed in (hoop has no such user yet); say so
        in words the requester can act on. The lookup is what decides, not hoop's message text."""
        try:
            await self.get_user(user_email)
        except GatewayNotFoundError:
            return GatewayRefusedError(
                f"{user_email} has never signed in to hoop; ask them to sign in once, then request again",
                status=exc.status,
            )
        except GatewayError:
            pass
        return GatewayRefusedError(
            f"hoop refused to grant {user_email} access to {connection}: {exc.message}", status=exc.status
        )

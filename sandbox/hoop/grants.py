"""Grants in the hoop stand-in: how a session and its review come into being — provisioned by an API key
(grantflow's grant) or left PENDING as when a person asks in hoop itself.

- ``POST /sessions/provision`` (API-key auth only; a person's token gets 403) → **202**
  ``{"session_id","user_email","has_review"}``. It creates a session (status ``ready``, verb ``connect``:
  a grant, not a running connection) and a ``jit`` review. With ``approved_reviewers`` omitted/null every
  reviewer group of the connection is approved at once by the key, so the review is ``APPROVED`` with
  ``revoke_at = now + access_duration_sec`` and ``access_duration`` in **nanoseconds**; ``has_review`` is
  true only when the review was left pending. Every call creates a new session and review (no
  deduplication); ``correlation_id`` is stored and only usable as a filter. Checks, in order: missing
  fields → 422; an unknown user → **400** (naming the caller, as hoop does); a connection the key cannot
  see → **400** ``connection <name> not found``; the session is then written, and only then is
  ``access_duration_sec > 48 h`` checked → **500**, leaving an orphan session without a review.
  ``access_duration_sec`` absent or 0 → the connection's ``jit_access_duration_sec`` or 30 min. An APPROVED
  grant is logged (``grant.written``, ``events``).
- ``create_pending_review`` and, stand-in only, ``POST /api/_sandbox/reviews {"user_email","connection",
  "type"?,"duration_sec"?,"command"?}`` → 201 ``{"review_id","session_id","type","status"}`` (admin auth)
  leave a review PENDING as that person, as ``hoop connect`` (``jit``, the default, for ``duration_sec``)
  or ``hoop exec`` (``onetime``, ``command``) on a connection that needs a review would; a user who never
  signed in → 400, an unknown connection → 404, a bad type, duration or command → 422, each
  ``{"message": <why>}``.

This module never decides a review (``reviews``) nor opens a running session (``sessions``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from sandbox.hoop.api import (
    ADMIN_GROUP,
    APPROVED,
    DEFAULT_ACCESS_DURATION_SEC,
    MAX_ACCESS_DURATION_SEC,
    PENDING,
    Caller,
    HTTPError,
    person_and_connection,
)
from sandbox.hoop.clock import parse_ts
from sandbox.hoop.events import GRANT_WRITTEN
from sandbox.hoop.sessions import Sessions


class PendingReview(NamedTuple):
    """What ``create_pending_review`` left: the session and its PENDING review."""

    session_id: str
    review_id: str


class Grants(Sessions):
    """Provisioning grants and leaving reviews pending."""

    def create_pending_review(
        self,
        user_email: str,
        connection: str,
        *,
        type: str = "jit",
        groups: Sequence[str] | None = None,
        min_approvals: int | None = None,
        duration_sec: int = DEFAULT_ACCESS_DURATION_SEC,
        command: str | None = None,
        rule_name: str | None = None,
    ) -> PendingReview:
        """A review hoop holds as PENDING, as when a person asks for access in hoop itself (``jit``: a
        timed connection; ``onetime``: one command, ``command``). Without ``rule_name`` or ``groups``, the
        connection's access-request rule for that access (jit; command) is used when it has one, as hoop
        does.

        Without ``rule_name`` it is a review of the review plugin (``transport/plugins/review/review.go``):
        groups default to the connection's reviewers, it carries no ``min_approvals`` (approvals are counted
        against the connection's ``min_review_approvals`` when decided) and no force-approval groups (the
        connection's count). An explicit ``min_approvals`` is a seeding shortcut the stand-in counts instead.
        With ``rule_name`` it is a review of that access-request rule (``interceptors/accessrequest``
        ``createReview``): groups default to the rule's ``reviewers_groups``, ``min_approvals`` to the rule's
        (all groups with ``all_groups_must_approve``), and it carries the rule's ``force_approval_groups``."""
        if type not in ("jit", "onetime"):
            raise ValueError(f"bad review type {type!r}")
        with self._lock:
            user = self._require_user(user_email)
            conn = self._state["connections"].get(connection)
            if conn is None:
                raise KeyError(f"no connection {connection!r}")
            force_groups: list[str] | None = None
            if rule_name is None and groups is None:
                # interceptors/accessrequest OnReceive: a connection with an access-request rule for the
                # access (connect: jit; exec: command) gets the rule's review, not the review plugin's
                found = (
                    self._jit_rule_for(connection) if type == "jit" else self._command_rule_for(connection)
                )
                rule_name = found["name"] if found is not None else None
            if rule_name is not None:
                rule = self._state["rules"].get(rule_name)
                if rule is None:
                    raise KeyError(f"no access request rule {rule_name!r}")
                review_groups = list(groups) if groups is not None else list(rule["reviewers_groups"])
                if min_approvals is None:
                    min_approvals = (
                        len(review_groups) if rule.get("all_groups_must_approve") else rule["min_approvals"]
                    )
                force_groups = rule.get("force_approval_groups")
                force_groups = None if force_groups is None else list(force_groups)
            else:
                review_groups = list(groups) if groups is not None else list(conn["reviewers"])
            session = self._new_session(
                user, conn, verb="exec" if type == "onetime" else "connect", status="ready"
            )
            if command is not None:
                session["script"] = command
            review = self._new_review(
                session,
                type=type,
                groups=review_groups,
                min_approvals=min_approvals,
                duration_sec=duration_sec if type == "jit" else 0,
                rule_name=rule_name,
                force_approval_groups=force_groups,
            )
            self._save()
            return PendingReview(session["id"], review["id"])

    def _h_provision(self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        body, email, connection = person_and_connection(body)
        duration = body.get("access_duration_sec", 0)
        if not isinstance(duration, int) or isinstance(duration, bool) or duration < 0:
            raise HTTPError(422, "access_duration_sec must be a non-negative integer")
        approved_reviewers = body.get("approved_reviewers")
        if approved_reviewers is not None and (
            not isinstance(approved_reviewers, list)
            or not all(isinstance(g, str) for g in approved_reviewers)
        ):
            raise HTTPError(422, "approved_reviewers must be a list of group names")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise HTTPError(422, "metadata must be an object")
        correlation_id = body.get("correlation_id")
        if correlation_id is not None and not isinstance(correlation_id, str):
            raise HTTPError(422, "correlation_id must be a string")
        # api/session/session.go Provision: an unknown user is a 400 whose message names the *caller*
        # (``ctx.UserEmail``, a bug in hoop kept here so clients never rely on the text); a connection the
        # key cannot see (models.GetConnectionByNameOrID) is a 400 too.
        user = self._find_user(email)
        if user is None:
            raise HTTPError(400, f"user {caller.email or caller.name} not found for exec")
        conn = self._state["connections"].get(connection)
        if conn is None or not self._reaches({"groups": list(caller.groups)}, conn):
            raise HTTPError(400, f"connection {connection} not found")
        if duration == 0:
            duration = conn["jit_access_duration_sec"] or DEFAULT_ACCESS_DURATION_SEC
        session = self._new_session(
            user, conn, verb="connect", status="ready", correlation_id=correlation_id or None
        )
        session["metadata"] = metadata
        if duration > MAX_ACCESS_DURATION_SEC:
            # hoop writes the session before it validates the review: the caller gets a 500 and an orphan
            self._save()
            raise HTTPError(500, "failed creating review: access duration exceeds the maximum of 48h")
        # session.go createApprovedReview: the review's groups are the connection's reviewers, or "admin"
        # (approved at once) when it has none; approved_reviewers null approves every group.
        groups = list(conn["reviewers"]) or [ADMIN_GROUP]
        if not conn["reviewers"]:
            approved_reviewers = [ADMIN_GROUP]
        review = self._new_review(
            session,
            type="jit",
            groups=groups,
            min_approvals=conn["min_review_approvals"],
            duration_sec=duration,
            approved_by=caller,
            approved_groups=None if approved_reviewers is None else set(approved_reviewers),
        )
        if review["status"] == APPROVED:
            self._record_event(
                GRANT_WRITTEN,
                parse_ts(review["created_at"]) or self.now(),
                user_email=user["email"],
                connection=conn["name"],
                review_id=review["id"],
                session_id=session["id"],
            )
        self._save()
        return 202, {
            "session_id": session["id"],
            "user_email": email,
            "has_review": review["status"] == PENDING,
        }

    def _h_sandbox_review(
        self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        body, email, connection = person_and_connection(body)
        kind = body.get("type", "jit")
        if kind not in ("jit", "onetime"):
            raise HTTPError(422, f"type must be jit or onetime, not {kind!r}")
        command = body.get("command")
        if command is not None and (not isinstance(command, str) or not command.strip()):
            raise HTTPError(422, "command must be a non-empty string")
        if kind == "onetime" and command is None:
            raise HTTPError(422, "a onetime review needs the command to run")
        duration = body.get("duration_sec", DEFAULT_ACCESS_DURATION_SEC)
        if kind == "jit" and (
            isinstance(duration, bool)
            or not isinstance(duration, int)
            or not 0 < duration <= MAX_ACCESS_DURATION_SEC
        ):
            raise HTTPError(
                422, f"duration_sec must be a whole number of seconds from 1 to {MAX_ACCESS_DURATION_SEC}"
            )
        if self._find_user(email) is None:
            raise HTTPError(400, f"user not found: {email} has never signed in to hoop")
        if connection not in self._state["connections"]:
            raise HTTPError(404, f"connection not found: {connection}")
        pending = self.create_pending_review(
            email, connection, type=kind, duration_sec=duration if kind == "jit" else 0, command=command
        )
        return 201, {
            "review_id": pending.review_id,
            "session_id": pending.session_id,
            "type": kind,
            "status": PENDING,
        }

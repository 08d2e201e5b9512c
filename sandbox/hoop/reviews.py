"""Reviews in the hoop stand-in: creating them, reading them, and deciding them as hoop's
``gateway/api/review/review.go`` ``DoReview`` does, rule by rule.

- ``GET /reviews``, ``GET /reviews/{id}`` (review id or session id; any caller may read any review;
  unknown → **404** ``resource not found``). ``PUT /reviews/{id}`` ``{"status", "rejection_reason"?,
  "force_review"?}`` follows ``DoReview``: an unknown review → **500** (its not-found error is not mapped),
  as are an unknown status and revoking a ``onetime`` review; only while PENDING or APPROVED, else **400**
  ``review is in wrong state`` (REVOKED needs APPROVED); the owner approving their own (unless admin) →
  **400** ``unable to self approve review``.
- Without ``force_review`` (``doIndividualReview``) every review group the caller belongs to is marked at
  once; a caller in none → **400** ``not eligible for review``, unless owner or admin, who may only deny
  (an admin's APPROVED marks nothing and leaves the review as it was); one REJECTED ends it; the review
  turns APPROVED only when the approved count **equals** ``min(len(groups), min_approvals)`` (the rule's
  ``min_approvals``, else the connection's ``min_review_approvals``; the spec's prose says all groups), so
  a caller in more groups than needed leaves it PENDING for good.
- With ``force_review`` (``doForcedReview``) a caller in the force-approval groups — the review's (copied
  from its access-request rule) when a rule made it, else the connection's ``force_approve_groups`` —
  decides it in one call (that group marked ``forced_review: true``, shown by the PUT answer and the
  sessions, not by ``GET /reviews``); else 400 ``not eligible for review``.
- Whenever the review ends APPROVED — re-approving an APPROVED one included — ``revoke_at = now +
  access_duration``; REVOKED leaves ``revoke_at`` as it was (the review just stops counting as a grant).
  The review's session becomes ``ready`` (APPROVED) or ``done`` (REJECTED/REVOKED). A jit review turning
  APPROVED or REVOKED is logged (``grant.written``, ``grant.revoked``: ``events``).
- Provisioned reviews (``createApprovedReview``) are APPROVED only when every group is, and a jit one gets
  ``revoke_at`` at creation even when left PENDING.

This module never opens a session: the newest APPROVED jit review (``_newest_jit_review``) is what
``sessions`` consults at connect, and ``grants`` creates reviews with their sessions.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sandbox.hoop.api import APPROVED, NANOS, PENDING, REJECTED, REVOKED, Caller, HTTPError
from sandbox.hoop.clock import parse_ts, ts
from sandbox.hoop.events import GRANT_REVOKED, GRANT_WRITTEN
from sandbox.hoop.state import HoopCore


class Reviews(HoopCore):
    """Creating, reading and deciding reviews."""

    def review(self, review_id: str) -> dict[str, Any]:
        with self._lock:
            return self._render_review(self._state["reviews"][review_id])

    def _new_review(
        self,
        session: dict[str, Any],
        *,
        type: str,
        groups: list[str],
        min_approvals: int | None,
        duration_sec: int,
        rule_name: str | None = None,
        force_approval_groups: list[str] | None = None,
        approved_by: Caller | None = None,
        approved_groups: set[str] | None = None,
    ) -> dict[str, Any]:
        """A review of ``session``: PENDING, or — with ``approved_by`` (provision) — approved as
        ``api/session/session.go`` ``createApprovedReview`` does it: a connection without reviewers gets the
        single group ``admin``; ``approved_groups`` None approves every group; the review is APPROVED only
        when every group is (``min_approvals`` plays no part); a jit review gets ``revoke_at = now +
        duration`` even when it is left PENDING."""
        now = self.now()
        if approved_by is not None and not groups:
            groups, approved_groups = ["admin"], {"admin"}
        review: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "seq": self._next_seq(),
            "session_id": session["id"],
            "owner_id": session["user_id"],
            "owner_email": session["user_email"],
            "connection": session["connection"],
            "type": type,
            "status": PENDING,
            "access_duration_ns": duration_sec * NANOS,
            "created_at": ts(now),
            "revoke_at": None,
            "min_approvals": min_approvals,
            "rejection_reason": None,
            "rule_name": rule_name,
            # models/reviews.go Review.ForceApprovalGroups: copied from the access-request rule when a rule
            # made the review (accessrequest.go createReview), null otherwise
            "force_approval_groups": force_approval_groups,
            "groups": [self._review_group(g) for g in groups],
        }
        session["review_id"] = review["id"]
        self._state["reviews"][review["id"]] = review
        if approved_by is not None:
            for entry in review["groups"]:
                if approved_groups is None or entry["group"] in approved_groups:
                    entry.update(status=APPROVED, reviewed_by=approved_by.owner(), review_date=ts(now))
            if all(entry["status"] == APPROVED for entry in review["groups"]):
                review["status"] = APPROVED
            if type == "jit":
                review["revoke_at"] = ts(now + timedelta(seconds=duration_sec))
        return review

    @staticmethod
    def _review_group(group: str, **decided: Any) -> dict[str, Any]:
        """One entry of a review's ``review_groups_data`` (``models.ReviewGroups``), PENDING unless told."""
        entry: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "group": group,
            "status": PENDING,
            "reviewed_by": None,
            "review_date": None,
            "forced_review": False,
        }
        entry.update(decided)
        return entry

    def _approvals_needed(self, review: dict[str, Any]) -> int:
        """gateway/api/review/review.go doIndividualReview: every group, or fewer — the review's own
        ``min_approvals`` when an access-request rule made it, else the connection's (current)
        ``min_review_approvals``. A stored ``min_approvals`` on a plugin review is create_pending_review's
        seeding shortcut and counts the same way. 0 is taken literally (hoop does too)."""
        needed = len(review["groups"])
        limit = review["min_approvals"]
        if limit is None and review["rule_name"] is None:
            conn = self._state["connections"].get(review["connection"]) or {}
            limit = conn.get("min_review_approvals")
        return needed if limit is None else min(needed, limit)

    def _settle_approval(self, review: dict[str, Any]) -> None:
        """After an individual APPROVED decision (gateway/api/review/review.go doIndividualReview): the review
        turns APPROVED only when the approved groups number **exactly** ``_approvals_needed`` (``==``): a
        caller in more of the review's groups than needed overshoots, and the review stays PENDING for good
        (every later approval only adds to the count). An APPROVED review stays APPROVED."""
        approved = sum(1 for g in review["groups"] if g["status"] == APPROVED)
        if review["status"] == PENDING and approved == self._approvals_needed(review):
            review["status"] = APPROVED

    def _newest_jit_review(self, user_id: str, connection: str) -> dict[str, Any] | None:
        """``models.GetApprovedReviewJit``: the newest APPROVED jit review of (user, connection)."""
        grants = [
            r
            for r in self._state["reviews"].values()
            if r["type"] == "jit"
            and r["status"] == APPROVED
            and r["owner_id"] == user_id
            and r["connection"] == connection
        ]
        return max(grants, key=lambda r: (parse_ts(r["created_at"]), r["seq"]), default=None)

    def _review_for(self, id_or_session: str) -> dict[str, Any]:
        """models/reviews.go GetReviewByIdOrSid: by review id or by its session's id. Unknown: a 404
        ``resource not found`` here; ``_h_put_review`` turns it into hoop's unmapped 500."""
        reviews = self._state["reviews"]
        review = reviews.get(id_or_session)
        if review is None:
            review = next((r for r in reviews.values() if r["session_id"] == id_or_session), None)
        if review is None:
            raise HTTPError(404, "resource not found")
        return review

    @staticmethod
    def _may_see_review(caller: Caller, review: dict[str, Any]) -> bool:
        return (
            caller.admin
            or review["owner_id"] == caller.id
            or bool(set(caller.groups) & {g["group"] for g in review["groups"]})
        )

    def _h_list_reviews(
        self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any
    ) -> Any:
        reviews = sorted(self._state["reviews"].values(), key=lambda r: r["seq"], reverse=True)
        return 200, [
            self._render_review(r, forced_flags=False) for r in reviews if self._may_see_review(caller, r)
        ]

    def _h_get_review(self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        # gateway/api/review/review.go GetByIdOrSid: any signed-in role may read any review of the org (no
        # ownership or group check); unknown → 404 {"message": "resource not found"} (models.ErrNotFound).
        return 200, self._render_review(self._review_for(params["review_id"]), forced_flags=False)

    def _h_put_review(self, caller: Caller, params: dict[str, str], query: dict[str, str], body: Any) -> Any:
        """gateway/api/review/review.go ReviewByIdOrSid → DoReview → doReview, rule by rule (see the module
        docstring). ``time_window`` is not modelled (ignored)."""
        # ReviewByIdOrSid: gin's ShouldBindJSON into openapi.ReviewRequest; a bad body is a 400.
        if not isinstance(body, dict):
            raise HTTPError(
                400, "json: cannot unmarshal the body into Go value of type openapi.ReviewRequest"
            )
        if not body.get("status"):
            raise HTTPError(
                400,
                "Key: 'ReviewRequest.Status' Error:Field validation for 'Status' failed on the "
                "'required' tag",
            )
        for key, kind in (("status", str), ("rejection_reason", str), ("force_review", bool)):
            if body.get(key) is not None and not isinstance(body[key], kind):
                raise HTTPError(400, f"json: cannot unmarshal {key} into Go struct field ReviewRequest.{key}")
        status = str(body["status"]).upper()  # ReviewByIdOrSid upper-cases the status
        reason = body.get("rejection_reason") or ""
        force = bool(body.get("force_review"))

        def unmapped(message: str) -> HTTPError:
            # ReviewByIdOrSid maps only ErrNotEligible, ErrSelfApproval, ErrWrongState (400) and ErrForbidden
            # (403); any other error, ErrNotFound included, is AbortWithErr 500 with this message.
            return HTTPError(500, f"failed updating review status: {message}")

        # DoReview: GetReviewByIdOrSid → models.ErrNotFound becomes ErrNotFound, which is not mapped: 500.
        try:
            review = self._review_for(params["review_id"])
        except HTTPError:
            raise unmapped("review not found") from None
        conn = self._state["connections"].get(review["connection"])
        if conn is None:
            raise unmapped("failed fetching connection for review, err=<nil>")
        # validateReviewStatusTransition
        if status not in (APPROVED, REJECTED, REVOKED):
            raise unmapped("unknown status")
        if review["status"] not in (PENDING, APPROVED):
            raise HTTPError(400, "review is in wrong state")
        is_owner = caller.id == review["owner_id"]
        if status == APPROVED and is_owner and not caller.admin:
            raise HTTPError(400, "unable to self approve review")
        if status == REVOKED:
            if review["status"] != APPROVED:
                raise HTTPError(400, "review is in wrong state")
            if review["type"] != "jit":
                raise unmapped("review not found")  # ErrNotFound again: unmapped
        now = self.now()
        before = review["status"]
        decided = {"status": status, "reviewed_by": caller.owner(), "review_date": ts(now)}
        # GetReviewByIdOrSid does not select forced_review and UpdateReview saves every group back: any
        # decision clears the flags an earlier forced decision left.
        for entry in review["groups"]:
            entry["forced_review"] = False
        if force:
            self._forced_review(caller, review, conn, decided)
        else:
            self._individual_review(caller, review, decided)
        if review["status"] == REJECTED and reason:
            review["rejection_reason"] = reason
        if review["status"] == APPROVED:
            # doReview: every time the review ends up APPROVED — re-approving an APPROVED review included —
            # revoke_at = now + the full access duration (onetime: now + 0). REVOKED leaves it as it was.
            review["revoke_at"] = ts(now + timedelta(microseconds=review["access_duration_ns"] // 1000))
        # models/reviews.go UpdateReview: the review's session becomes ready (APPROVED) or done (REJECTED,
        # REVOKED), the status column only.
        session = self._state["sessions"].get(review["session_id"])
        if session is not None:
            if review["status"] == APPROVED:
                session["status"] = "ready"
            elif review["status"] in (REJECTED, REVOKED):
                session["status"] = "done"
        if review["type"] == "jit" and review["status"] != before and review["status"] in (APPROVED, REVOKED):
            self._record_event(
                GRANT_WRITTEN if review["status"] == APPROVED else GRANT_REVOKED,
                now,
                user_email=review["owner_email"],
                connection=review["connection"],
                review_id=review["id"],
                session_id=review["session_id"],
            )
        self._save()
        return 200, self._render_review(review)

    def _forced_review(
        self, caller: Caller, review: dict[str, Any], conn: dict[str, Any], decided: dict[str, Any]
    ) -> None:
        """review.go doForcedReview: the review's force-approval groups when an access-request rule made it
        (and it carries some, even an empty list), else the connection's ``force_approve_groups``. The first
        group shared with the caller (searched in the shorter list, utils.SlicesFindFirstIntersection) is
        marked — appended if the review lacks it — with ``forced_review: true``, and the review takes the
        decided status in this one call, whatever the other groups say. No shared group: 400."""
        if review["rule_name"] is not None and review.get("force_approval_groups") is not None:
            force_groups = list(review["force_approval_groups"])
        else:
            force_groups = list(conn.get("force_approve_groups") or [])
        mine = list(caller.groups)
        shorter, longer = (mine, force_groups) if len(mine) <= len(force_groups) else (force_groups, mine)
        found = next((g for g in shorter if g in longer), None)
        if found is None:
            raise HTTPError(400, "not eligible for review")
        entry = next((g for g in review["groups"] if g["group"] == found), None)
        if entry is None:
            review["groups"].append(self._review_group(found, **decided, forced_review=True))
        else:
            entry.update(decided, forced_review=True)
        review["status"] = decided["status"]

    def _individual_review(self, caller: Caller, review: dict[str, Any], decided: dict[str, Any]) -> None:
        """review.go doIndividualReview: every review group the caller belongs to is marked at once. A caller
        in none of them: 400 unless owner or admin, who may only deny (REJECTED/REVOKED, recorded under a
        group of theirs: ``admin``, else their first group); their APPROVED marks nothing. REJECTED/REVOKED
        decide at once; APPROVED settles by count (``_settle_approval``)."""
        status = decided["status"]
        eligible = [g for g in review["groups"] if g["group"] in caller.groups]
        for entry in eligible:
            entry.update(decided)
        if not eligible:
            if not (caller.id == review["owner_id"] or caller.admin):
                raise HTTPError(400, "not eligible for review")
            if status in (REJECTED, REVOKED):
                group = "admin" if caller.admin else (caller.groups[0] if caller.groups else "")
                review["groups"].append(self._review_group(group, **decided))
        if status == APPROVED:
            self._settle_approval(review)
        else:
            review["status"] = status

    def _render_review_body(self, review: dict[str, Any], *, forced_flags: bool = True) -> dict[str, Any]:
        """A review as hoop renders it (``toOpenApiReview`` / ``topOpenApiReview``). ``forced_flags=False``
        for ``GET /reviews`` and ``GET /reviews/{id}``: their query (``models/reviews.go``
        ``GetReviewByIdOrSid``, ``ListReviews``) does not select ``forced_review``, so every group reads
        false there; the ``PUT`` answer and the sessions (``models/session.go``) show it."""
        force_groups = review.get("force_approval_groups")
        body: dict[str, Any] = {
            "id": review["id"],
            "type": review["type"],
            "status": review["status"],
            "access_duration": review["access_duration_ns"],
            "access_request_rule_name": review["rule_name"],
            "created_at": review["created_at"],
            # hoop sends null when the review carries none (a Go nil slice: plugin and provisioned reviews);
            # the stand-in sends [] there so the spec's non-null array holds. Read null and [] alike.
            "force_approval_groups": list(force_groups or []),
            "min_approvals": review["min_approvals"] or 0,
            "review_groups_data": [
                {
                    "id": g["id"],
                    "group": g["group"],
                    "status": g["status"],
                    "forced_review": bool(g.get("forced_review")) and forced_flags,
                    "reviewed_by": g["reviewed_by"],
                    "review_date": g["review_date"],
                }
                for g in review["groups"]
            ],
            "revoke_at": review["revoke_at"],
        }
        if review["rejection_reason"]:
            body["rejection_reason"] = review["rejection_reason"]
        return body

    def _render_review(self, review: dict[str, Any], *, forced_flags: bool = True) -> dict[str, Any]:
        return {
            **self._render_review_body(review, forced_flags=forced_flags),
            "session": review["session_id"],
        }

"""Reviews as hoop holds them: what its API answers about one review, and about one left PENDING.

Plain data shared by the hoop adapter (which builds them from hoop's JSON), the activities and the
workflows (which read them back from activity results). Never talks to hoop and holds no rules: what a
review's status means for a request is decided in ``workflows/hoop_decided.py``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel


class HoopReview(BaseModel):
    """A review as hoop holds it (``GET /reviews/{id}``). ``access_duration`` is converted from hoop's
    nanoseconds; ``revoke_at`` is set once a ``jit`` review is approved."""

    id: str
    type: str  # jit | onetime
    status: str  # PENDING | APPROVED | REJECTED | REVOKED
    session_id: str = ""
    access_duration: timedelta = timedelta(0)
    revoke_at: datetime | None = None
    rejection_reason: str | None = None
    groups: list[str] = []
    force_approval_groups: list[str] = []
    """Who may decide it in one call with ``force_review``: copied from the access-request rule that made
    it (empty for a review plugin's review, whose connection's ``force_approve_groups`` count instead)."""


class HoopPendingReview(BaseModel):
    """A review pending in hoop, with what the Review object lacks read from its session: who asked,
    for which connection, and (``onetime``) the command awaiting approval."""

    review_id: str
    type: str  # jit | onetime
    session_id: str
    user_email: str
    user_subject: str
    connection: str
    access_duration: timedelta = timedelta(0)
    """How long a ``jit`` review grants once approved (zero for ``onetime``)."""
    command: str | None = None
    """The session's ``script`` for ``onetime``: the command the person wants to run."""
    groups: list[str] = []
    created_at: datetime | None = None

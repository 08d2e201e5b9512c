"""What every channel says about a request the same way: which outcomes the requester is told, the outcome
note, the decisions so far, who may still decide, the templates' environment and each person's review link.

Pure reading of a :class:`~domain.requests.RequestView`: nothing here calls a vendor or decides anything
about the request.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import jinja2

from domain.approval import open_stage, votes_in_stage
from domain.durations import format_duration
from domain.identity import PersonRef
from domain.requests import Decision, RequestStatus, RequestView
from domain.review_links import ReviewLinks
from templates import template_environment

__all__ = [
    "OUTCOME_STATUSES",
    "Checkpoint",
    "decisions",
    "may_decide",
    "outcome_note",
    "outcomes_to_tell",
    "request_templates",
    "review_link",
]

Checkpoint = Callable[[], None]
"""Heartbeats what the attempt has done so far; a channel calls it after every effect."""

OUTCOME_STATUSES = frozenset(
    {
        RequestStatus.ACTIVE,
        RequestStatus.APPROVED,
        RequestStatus.ENDED,
        RequestStatus.DENIED,
        RequestStatus.TIMED_OUT,
        RequestStatus.CANCELLED,
        RequestStatus.FAILED,
    }
)
"""Statuses the requester is told about (once each, in Slack and by email)."""

_GRANT_OVER = frozenset({RequestStatus.REVOKING, RequestStatus.ENDED, RequestStatus.FAILED})


def outcomes_to_tell(view: RequestView) -> list[RequestView]:
    """What the requester is told, oldest first, each as the view to render: the current status when it is
    an outcome, preceded by ACTIVE (as it was then) when the access was granted and is now being taken
    away or over — the presentation that would have said so may have been coalesced away."""
    told: list[RequestView] = []
    if view.granted_at is not None and view.status in _GRANT_OVER:
        was_active = {
            "status": RequestStatus.ACTIVE,
            "end_reason": None,
            "ended_at": None,
            "failure_reason": None,
            "pending_extension": None,
        }
        told.append(view.model_copy(update=was_active))
    if view.status in OUTCOME_STATUSES:
        told.append(view)
    return told


def outcome_note(view: RequestView) -> str:
    """The view's ``outcome_note`` ("approved in hoop's own UI") as a sentence for people to read; "" when
    there is none."""
    note = (view.outcome_note or "").strip()
    return (note[:1].upper() + note[1:]).rstrip(".") + "." if note else ""


def decisions(view: RequestView) -> list[Decision]:
    """Every decision on the request, an extension's pending approvals included."""
    pending = view.pending_extension.approvals if view.pending_extension else []
    return [*view.approvals, *pending, *view.denials]


def may_decide(view: RequestView, person: PersonRef | None) -> bool:
    """Whether this person's message should still offer Approve/Deny."""
    stage = open_stage(view)
    if stage is None or person is None or person.id == view.requester.id:
        return False
    if view.eligible_approvers and person.id not in {p.id for p in view.eligible_approvers}:
        return False
    return not any(d.approver.id == person.id for d in votes_in_stage(view, stage))


def review_link(links: ReviewLinks | None, view: RequestView, person_id: str | None) -> str | None:
    """The person's review link for the request; None without review links configured."""
    if links is None or person_id is None:
        return None
    return links.url(view.id, person_id)


def _utc(when: datetime | None) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if when else "-"


def request_templates(*, autoescape: bool) -> jinja2.Environment:
    """The templates' environment with the filters requests are rendered with (``duration``, ``utc``)."""
    env = template_environment(autoescape=autoescape)
    env.filters["duration"] = format_duration
    env.filters["utc"] = _utc
    return env

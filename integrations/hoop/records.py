"""hoop's JSON as grantflow's records: sessions, jit grants, reviews, connections, users, access rules.

Pure functions from one decoded body to one record. Missing or null fields become empty values (hoop sends
``null`` for many fields its OpenAPI spec types as non-null — see the package docstring), Go's zero time and
an empty string mean "no time", and ``access_duration`` arrives in nanoseconds. This module never talks to
hoop and decides nothing about what a record means.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from domain.access import ReviewRule
from domain.hoop_reviews import HoopPendingReview, HoopReview
from integrations.gateway import GatewayConnection, GatewaySession, GatewayUser, ProvisionedGrant


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp from hoop; null, empty and Go's zero time mean "none"."""
    if not isinstance(value, str) or not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.year <= 1:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def nanoseconds(value: Any) -> timedelta:
    """hoop's ``access_duration`` (nanoseconds) as a ``timedelta``; missing or bad → zero."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return timedelta(microseconds=value // 1000)
    return timedelta(0)


def _strings(values: Any) -> list[str]:
    return [str(v) for v in values or []]


def _review_groups(review: dict[str, Any]) -> list[str]:
    return [str(g["group"]) for g in review.get("review_groups_data") or [] if g.get("group")]


def session_script(row: dict[str, Any]) -> str | None:
    """A session's input (a ``onetime`` review's command): ``script.data``; empty means none."""
    script = row.get("script")
    command = script.get("data") if isinstance(script, dict) else script
    return str(command) if command else None


def grant_from_session(row: dict[str, Any]) -> ProvisionedGrant | None:
    """The jit grant a session row carries, or None when its review is not a jit review."""
    review = row.get("review")
    if not isinstance(review, dict) or review.get("type") != "jit" or not review.get("id"):
        return None
    return ProvisionedGrant(
        session_id=str(row["id"]),
        review_id=str(review["id"]),
        correlation_id=str(row.get("correlation_id") or ""),
        user_email=str(row.get("user") or ""),
        connection=str(row.get("connection") or ""),
        status=str(review.get("status") or ""),
        revoke_at=parse_time(review.get("revoke_at")),
    )


def session_from_row(row: dict[str, Any]) -> GatewaySession:
    review = row.get("review")
    return GatewaySession(
        id=str(row["id"]),
        user_email=str(row.get("user") or ""),
        user_subject=str(row.get("user_id") or ""),
        connection=str(row.get("connection") or ""),
        status=str(row.get("status") or ""),
        review_id=str(review["id"]) if isinstance(review, dict) and review.get("id") else None,
        correlation_id=row.get("correlation_id") or None,
        start_date=parse_time(row.get("start_date")),
        end_date=parse_time(row.get("end_date")),
    )


def review_from_body(body: dict[str, Any]) -> HoopReview:
    return HoopReview(
        id=str(body["id"]),
        type=str(body.get("type") or ""),
        status=str(body.get("status") or ""),
        session_id=str(body.get("session") or ""),
        access_duration=nanoseconds(body.get("access_duration")),
        revoke_at=parse_time(body.get("revoke_at")),
        rejection_reason=body.get("rejection_reason") or None,
        groups=_review_groups(body),
        force_approval_groups=_strings(body.get("force_approval_groups")),
    )


def pending_review_from_row(row: dict[str, Any], review: dict[str, Any]) -> HoopPendingReview:
    """A PENDING review from a listed session row (the Review object has no user or connection)."""
    return HoopPendingReview(
        review_id=str(review["id"]),
        type=str(review.get("type") or ""),
        session_id=str(row["id"]),
        user_email=str(row.get("user") or ""),
        user_subject=str(row.get("user_id") or ""),
        connection=str(row.get("connection") or ""),
        access_duration=nanoseconds(review.get("access_duration")),
        command=session_script(row),
        groups=_review_groups(review),
        created_at=parse_time(review.get("created_at")),
    )


def connection_from_body(body: dict[str, Any]) -> GatewayConnection:
    return GatewayConnection(
        name=str(body["name"]),
        type=str(body.get("type") or ""),
        subtype=str(body.get("subtype") or ""),
        tags={str(k): str(v) for k, v in (body.get("connection_tags") or {}).items()},
        reviewers=_strings(body.get("reviewers")),
        access_max_duration=body.get("access_max_duration"),
    )


def user_from_body(body: dict[str, Any]) -> GatewayUser:
    return GatewayUser(
        id=str(body.get("id") or ""),
        email=str(body["email"]),
        name=str(body.get("name") or ""),
        status=str(body.get("status") or "active"),
        role=str(body.get("role") or ""),
        slack_id=str(body.get("slack_id") or ""),
        groups=_strings(body.get("groups")),
    )


def review_rule_from_body(body: dict[str, Any]) -> ReviewRule:
    return ReviewRule(
        name=str(body.get("name") or ""),
        access_type=str(body.get("access_type") or "jit"),
        approval_required_groups=_strings(body.get("approval_required_groups")),
        skip_review_groups=_strings(body.get("skip_review_groups")),
        reviewers_groups=_strings(body.get("reviewers_groups")),
        force_approval_groups=_strings(body.get("force_approval_groups")),
    )

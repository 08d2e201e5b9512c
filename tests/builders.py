"""What the channel tests build and read: request views, the parts of rendered Slack messages, Slack and
Jira deliveries as the vendors send them, and the signatures on them.

One place for these so a change of shape (a field of ``RequestView``, a block id, Jira's changelog) is
made once. The builders return plain data and never talk to a server; the rigs that do are in
``tests/rigs/``. Signatures here are computed independently of grantflow's own checking code, so a test
that signs with them does test that code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from domain.identity import PersonRef
from domain.policy import RolePolicy
from domain.requests import Decision, RequestStatus, RequestView, Verdict
from integrations.slack import DENY_REASON_ACTION, DENY_REASON_BLOCK
from sandbox.smtp import ReceivedMessage

__all__ = [
    "ALICE",
    "BOB",
    "CAROL",
    "T0",
    "all_text",
    "block",
    "buttons",
    "decision",
    "deny_reason",
    "issue_updated",
    "jira_signature",
    "jira_webhook_headers",
    "message_id",
    "request_view",
    "status_item",
    "text_of",
    "unsigned_interaction",
]

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
"""When the built requests were made."""
ALICE = PersonRef(id="p-alice", email="alice@corp.example")
BOB = PersonRef(id="p-bob", email="bob@corp.example")
CAROL = PersonRef(id="p-carol", email="carol@corp.example")


# ---------------------------------------------------------------------------------------------- requests


def request_view(requester: PersonRef = ALICE, **fields: Any) -> RequestView:
    """A PENDING request of ``requester`` for pg-prod admin (connection pg-prod-admin) for 2h, made at
    ``T0`` and timing out 4h later, needing one approval from group dba-owners; ``fields`` override."""
    base: dict[str, Any] = {
        "id": "req-42",
        "status": RequestStatus.PENDING,
        "requester": requester,
        "submitted_by": requester.email,
        "resource": "pg-prod",
        "role": "admin",
        "connection": "pg-prod-admin",
        "reason": "Fix the stuck migration on orders (INC-1234)",
        "requested_duration": timedelta(hours=2),
        "required_approvals": 1,
        "policy": RolePolicy(connection="pg-prod-admin", approver_groups=["dba-owners"]),
        "created_at": T0,
        "timeout_at": T0 + timedelta(hours=4),
        "updated_at": T0,
    }
    return RequestView(**{**base, **fields})


def decision(
    who: PersonRef, verdict: Verdict = Verdict.APPROVE, *, channel: str = "slack", **extra: Any
) -> Decision:
    """``who``'s decision, taken at ``T0`` through ``channel``."""
    return Decision(approver=who, verdict=verdict, channel=channel, at=extra.pop("at", T0), **extra)


# ---------------------------------------------------------------------------------------------- Slack


def buttons(rendered: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The buttons of a Slack message (or of its blocks), by action id."""
    blocks = (rendered.get("blocks") or []) if isinstance(rendered, Mapping) else rendered
    return {
        el["action_id"]: el
        for b in blocks
        if b.get("type") == "actions"
        for el in b.get("elements") or []
        if el.get("type") == "button"
    }


def block(blocks: Sequence[Mapping[str, Any]], block_id: str) -> Any:
    """The block with this ``block_id``."""
    return next(b for b in blocks if b.get("block_id") == block_id)


def all_text(blocks: Any) -> str:
    """Everything in the blocks, as one string to search (non-ASCII kept as is)."""
    return json.dumps(blocks, ensure_ascii=False)


def text_of(message: Mapping[str, Any]) -> str:
    """A posted Slack message's fallback text and its blocks, as one string to search."""
    return str(message["text"]) + all_text(message.get("blocks"))


def deny_reason(reason: str) -> dict[str, dict[str, str]]:
    """The values of the deny modal when ``reason`` is typed into it (for ``SlackDriver.submit_view``)."""
    return {DENY_REASON_BLOCK: {DENY_REASON_ACTION: reason}}


def unsigned_interaction() -> str:
    """A form-encoded ``block_actions`` body, to post without Slack's signature headers."""
    return urlencode({"payload": json.dumps({"type": "block_actions"})})


# ---------------------------------------------------------------------------------------------- Jira


def jira_signature(body: bytes, secret: str) -> str:
    """``X-Hub-Signature`` as Jira computes it: ``sha256=<hex HMAC-SHA256(secret, raw body)>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def jira_webhook_headers(
    body: bytes, secret: str | None = None, *, delivery: str | None = None, retry: int | None = None
) -> dict[str, str]:
    """The headers of a Jira webhook delivery of ``body``: signed with ``secret`` when given, with the
    delivery's identifier and retry count when given."""
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Hub-Signature"] = jira_signature(body, secret)
    if delivery is not None:
        headers["X-Atlassian-Webhook-Identifier"] = delivery
    if retry is not None:
        headers["X-Atlassian-Webhook-Retry"] = str(retry)
    return headers


def status_item(from_id: str, from_name: str, to_id: str, to_name: str) -> dict[str, str]:
    """A changelog item saying the issue's status went from one status to another."""
    return {
        "field": "status",
        "fieldtype": "jira",
        "from": from_id,
        "fromString": from_name,
        "to": to_id,
        "toString": to_name,
    }


def issue_updated(
    key: str,
    *items: Mapping[str, Any],
    account_id: str | None = None,
    labels: Iterable[str] | None = None,
) -> dict[str, Any]:
    """A ``jira:issue_updated`` webhook body for issue ``key`` with these changelog items, by the account
    ``account_id`` (when given), the issue carrying ``labels`` (when given)."""
    body: dict[str, Any] = {"webhookEvent": "jira:issue_updated"}
    if account_id is not None:
        body["user"] = {"accountId": account_id}
    body["issue"] = {"key": key} if labels is None else {"key": key, "fields": {"labels": list(labels)}}
    body["changelog"] = {"items": [dict(item) for item in items]}
    return body


# ---------------------------------------------------------------------------------------------- email


def message_id(received: ReceivedMessage) -> str:
    """The ``<…@…>`` Message-ID of a received email (a long one arrives folded: leading space dropped)."""
    return str(received.message["Message-ID"]).strip()

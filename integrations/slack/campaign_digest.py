"""A reviewer's campaign digest in Slack: which items it shows, what its buttons carry, and its Block Kit
(``templates/slack/campaign_digest.json.j2``, fitted and validated by :func:`render_blocks`).

One digest per reviewer and stage: a section on top (campaign, stage, deadline, the default at the deadline,
what is pending), one row per item (subject, access, usage, recommendation) with Keep / Revoke buttons,
and "Keep all shown" / "Revoke all shown" with a link to the web review page at the bottom. A verdict the
campaign wants a reason for has its own buttons ("Revoke…", :data:`REASON_ACTIONS`) that open a form
asking for the reason; the decision is made when the form is submitted. Slack takes at
most 50 blocks: the head and the bottom row take two, a pending item two (its text and its buttons), a
decided one one (its verdict, with a button to change it). Pending items are shown first — at most
:data:`MAX_PENDING_ROWS` — then decided ones while room is left; the rest is on the web page ("and 130
more on the web page").

A button's ``value`` binds the campaign, the stage and the item(s) (:func:`digest_value`); the Slack edge
reads it back with :func:`parse_digest_value` and refuses a click for a stage that is no longer open.
Pure functions: nothing here talks to Slack.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.campaigns import CampaignItem
from integrations.slack.blocks import MAX_MESSAGE_BLOCKS, render_blocks

CAMPAIGN_KEEP_ACTION = "grantflow_campaign_keep"
CAMPAIGN_REVOKE_ACTION = "grantflow_campaign_revoke"
CAMPAIGN_KEEP_ALL_ACTION = "grantflow_campaign_keep_all"
CAMPAIGN_REVOKE_ALL_ACTION = "grantflow_campaign_revoke_all"
CAMPAIGN_ACTIONS = {
    CAMPAIGN_KEEP_ACTION: "keep",
    CAMPAIGN_REVOKE_ACTION: "revoke",
    CAMPAIGN_KEEP_ALL_ACTION: "keep",
    CAMPAIGN_REVOKE_ALL_ACTION: "revoke",
}
"""The digest's action ids and the verdict each records (the templates spell them out)."""
REASON_ACTIONS = {f"{action}_reason": verdict for action, verdict in CAMPAIGN_ACTIONS.items()}
"""The same buttons for a verdict the campaign wants a reason for (``reasons_required``): the click opens
a form asking for it (:data:`CAMPAIGN_REASON_VIEW`) and decides nothing until it is submitted."""
BULK_ACTIONS = frozenset(
    {
        CAMPAIGN_KEEP_ALL_ACTION,
        CAMPAIGN_REVOKE_ALL_ACTION,
        f"{CAMPAIGN_KEEP_ALL_ACTION}_reason",
        f"{CAMPAIGN_REVOKE_ALL_ACTION}_reason",
    }
)
CAMPAIGN_REASON_VIEW = "grantflow_campaign_reason"
"""The callback id of the reason form (``templates/slack/campaign_reason_modal.json.j2``)."""
CAMPAIGN_REASON_BLOCK = "gf_campaign_reason"
CAMPAIGN_REASON_INPUT = "reason"

ROW_BUDGET = MAX_MESSAGE_BLOCKS - 2
"""Blocks left for the items once the head and the bottom row are placed."""
MAX_PENDING_ROWS = ROW_BUDGET // 2
"""Pending items with their own buttons in one digest (24)."""


@dataclass(frozen=True, slots=True)
class DigestTarget:
    """What a digest button decides: items of one campaign, in the stage the reviewer saw."""

    campaign_id: str
    stage: int
    item_ids: tuple[str, ...]


def digest_value(campaign_id: str, stage: int, item_ids: Sequence[str]) -> str:
    return json.dumps({"c": campaign_id, "s": stage, "i": list(item_ids)}, separators=(",", ":"))


def parse_digest_value(value: str) -> DigestTarget:
    """The target of a digest button; ``ValueError`` when the value is not one grantflow wrote."""
    try:
        data = json.loads(value)
    except ValueError:
        raise ValueError("this button does not carry a campaign decision") from None
    if not isinstance(data, dict):
        raise ValueError("this button does not carry a campaign decision")
    return _target(data)


@dataclass(frozen=True, slots=True)
class ReasonForm:
    """What a submitted reason form was opened for."""

    target: DigestTarget
    verdict: str
    bulk: bool
    """Opened from a bulk button: only the items still pending at submission are decided."""
    channel: str | None
    """The conversation the click came from, where the answer goes."""


def reason_form_metadata(target: DigestTarget, verdict: str, channel: str | None, *, bulk: bool) -> str:
    """The reason form's ``private_metadata``: what the click was for (the target as the button bound it,
    the verdict, whether it was a bulk button) and the conversation to answer in. Slack returns it
    untouched with the submission; its signature covers it."""
    meta: dict[str, Any] = {"c": target.campaign_id, "s": target.stage, "i": list(target.item_ids)}
    meta.update(verdict=verdict, bulk=bulk)
    if channel:
        meta["channel"] = channel
    return json.dumps(meta, separators=(",", ":"))


def parse_reason_form_metadata(raw: str) -> ReasonForm:
    """What a submitted reason form was for; ``ValueError`` when the metadata is not what
    :func:`reason_form_metadata` wrote."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValueError("this form does not carry a campaign decision") from None
    if not isinstance(data, dict) or data.get("verdict") not in ("keep", "revoke"):
        raise ValueError("this form does not carry a campaign decision")
    channel = data.get("channel")
    return ReasonForm(
        target=_target(data),
        verdict=str(data["verdict"]),
        bulk=data.get("bulk") is True,
        channel=channel if isinstance(channel, str) and channel else None,
    )


def _target(data: dict[str, Any]) -> DigestTarget:
    campaign_id, stage, items = data.get("c"), data.get("s"), data.get("i")
    if (
        not isinstance(campaign_id, str)
        or not campaign_id
        or not isinstance(stage, int)
        or stage < 0
        or not isinstance(items, list)
        or not items
        or not all(isinstance(i, str) and 0 < len(i) <= 64 for i in items)
    ):
        raise ValueError("this button does not carry a campaign decision")
    return DigestTarget(campaign_id=campaign_id, stage=stage, item_ids=tuple(items))


@dataclass(frozen=True, slots=True)
class DigestItem:
    item: CampaignItem
    verdict: str | None
    """The reviewer's decision in this stage so far (keep / revoke), None while pending."""
    escalation: str = ""
    """Who else may decide the item because it was escalated ("Escalated to you: …"); "" when nobody."""


@dataclass(frozen=True, slots=True)
class Digest:
    text: str
    blocks: list[dict[str, Any]]
    shown: tuple[str, ...]
    """The ids of the items shown, in order."""
    pending: int


def pick_rows(items: Sequence[DigestItem]) -> list[DigestItem]:
    """The rows a digest shows, in id order: the first :data:`MAX_PENDING_ROWS` pending items, then
    decided items while blocks are left."""
    ordered = sorted(items, key=lambda i: i.item.id)
    pending = [i for i in ordered if i.verdict is None][:MAX_PENDING_ROWS]
    budget = ROW_BUDGET - 2 * len(pending)
    decided = [i for i in ordered if i.verdict is not None][: max(budget, 0)]
    return sorted(pending + decided, key=lambda i: i.item.id)


def render_digest(
    *,
    campaign_id: str,
    campaign_name: str,
    stage: int,
    stages: int,
    closes_at: datetime | None,
    default_sentence: str,
    items: Sequence[DigestItem],
    reasons_required: Sequence[str] = (),
    open_: bool = True,
    reminder: bool = False,
    link: str | None = None,
) -> Digest:
    """A reviewer's digest of ``stage`` (0-based) as it should look now; ``items`` are every item they
    review in it (their own and their groups')."""
    rows = pick_rows(items)
    pending_rows = [r.item.id for r in rows if r.verdict is None]
    pending = sum(1 for i in items if i.verdict is None)
    text, blocks = render_blocks(
        "campaign_digest",
        campaign_name=campaign_name,
        stage=stage + 1,
        stages=stages,
        closes_at=closes_at,
        default_sentence=default_sentence,
        rows=[
            {
                "item": r.item,
                "verdict": r.verdict,
                "escalation": r.escalation,
                "value": digest_value(campaign_id, stage, [r.item.id]),
            }
            for r in rows
        ],
        total=len(items),
        pending=pending,
        decided_keep=sum(1 for i in items if i.verdict == "keep"),
        decided_revoke=sum(1 for i in items if i.verdict == "revoke"),
        left_out=len(items) - len(rows),
        bulk_value=digest_value(campaign_id, stage, pending_rows) if pending_rows else "",
        reasons_required=list(reasons_required),
        open=open_,
        reminder=reminder,
        link=link,
    )
    return Digest(text=text, blocks=blocks, shown=tuple(r.item.id for r in rows), pending=pending)

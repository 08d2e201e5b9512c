"""Block Kit for grantflow's Slack messages and modals: render ``templates/slack/<name>.json.j2``, fit the
result into Slack's limits, and validate it.

:func:`render_blocks` renders a template (strict Jinja2; every interpolated value goes through the ``json``
filter, and text Slack reads as mrkdwn through ``mrkdwn``, which escapes ``&``, ``<`` and ``>`` so a reason
cannot ping ``<!channel>`` or forge a link), then fits the blocks into Slack's limits (over-long text is cut
with "…") and validates them twice: a round trip through ``slack_sdk.models.blocks`` (which drops unknown
block types and keys silently — a difference is reported) and this module's own checks of the limits
slack_sdk does not know (50 blocks, unique ``block_id``, ``action_id`` unique within its block, button
``value`` ≤ 2000). :func:`render_view` does the same for a modal.

Pure functions: this module never talks to Slack. A template that renders something Slack would refuse is a
bug, reported as :class:`BlockKitError`.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import jinja2
from slack_sdk.errors import SlackClientError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from domain.approval import open_stage, votes_in_stage
from domain.durations import format_duration
from domain.identity import PersonRef
from domain.requests import RequestView, Verdict
from templates import template_environment

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_FIELDS = 10
MAX_CONTEXT_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_MESSAGE_TEXT = 40_000
MAX_VIEW_TITLE = 24
MAX_PRIVATE_METADATA = 3000
ELLIPSIS = "…"

APPROVE = Verdict.APPROVE


class BlockKitError(ValueError):
    """Rendered Block Kit that Slack would refuse even after fitting (a template bug); ``problems`` lists
    each one with its JSON pointer."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


_ENTITY_TAIL = re.compile(r"&[a-z]{0,4}$")


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in "…" when cut, never inside an escape
    (``&amp;``) that the cut would break."""
    if len(text) <= limit:
        return text
    head = text[: max(limit - len(ELLIPSIS), 0)]
    head = _ENTITY_TAIL.sub("", head)
    return head.rstrip() + ELLIPSIS


def mrkdwn_escape(text: str) -> str:
    """Escape what Slack's mrkdwn treats as markup: ``<!channel>``, ``<@U…>`` and links live in ``<…>``."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _quote(text: str) -> str:
    return "\n".join(f">{line}" for line in str(text).splitlines() or [""])


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _utc(when: datetime | None) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if when else "-"


def _slack_date(when: datetime | None) -> str:
    """Slack's date token: each reader sees the time in their own timezone; the fallback is UTC."""
    if when is None:
        return "-"
    epoch = int(when.timestamp())
    return f"<!date^{epoch}^{{date_short_pretty}} at {{time}}|{_utc(when)}>"


@jinja2.pass_context
def _who(ctx: jinja2.runtime.Context, person: PersonRef) -> str:
    mentions = ctx.get("mentions") or {}
    slack_id = mentions.get(person.id) or mentions.get(person.email)
    return f"<@{slack_id}>" if slack_id else mrkdwn_escape(person.email)


@lru_cache(maxsize=1)
def slack_templates() -> jinja2.Environment:
    env = template_environment(autoescape=False)
    env.filters.update(
        json=_json,
        mrkdwn=mrkdwn_escape,
        clip=clip,
        quote=_quote,
        duration=format_duration,
        utc=_utc,
        slack_date=_slack_date,
        who=_who,
    )
    return env


def _context(context: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"link": None, "mentions": {}, "note": "", "recipient": None, "origin": None}
    out.update(context)
    view = out.get("view")
    if isinstance(view, RequestView):
        stage = open_stage(view)
        recipient = out["recipient"]
        voted = (
            stage is not None
            and isinstance(recipient, PersonRef)
            and any(d.approver.id == recipient.id for d in votes_in_stage(view, stage))
        )
        out.setdefault("stage", stage.value if stage is not None else None)
        out.setdefault("recipient_voted", voted)
        out.setdefault("decision_open", stage is not None and not voted)
        stage_votes = votes_in_stage(view, stage) if stage is not None else []
        out.setdefault("stage_approvals", len({d.approver.id for d in stage_votes if d.verdict is APPROVE}))
        extension_votes = view.pending_extension.approvals if view.pending_extension else []
        out.setdefault("has_decisions", bool(view.approvals or view.denials or extension_votes))
    return out


def _render_json(template_name: str, context: dict[str, Any]) -> Any:
    name = template_name if template_name.endswith(".json.j2") else f"{template_name}.json.j2"
    rendered = slack_templates().get_template(f"slack/{name}").render(**_context(context))
    try:
        return json.loads(rendered)
    except ValueError as exc:
        raise BlockKitError([f"slack/{name} did not render valid JSON: {exc}"]) from exc


def render_blocks(template_name: str, **context: Any) -> tuple[str, list[dict[str, Any]]]:
    """Render ``templates/slack/<template_name>.json.j2`` (a ``{"text", "blocks"}`` object) into the
    fallback text and Block Kit blocks, fitted to Slack's limits and validated (:class:`BlockKitError`).

    Context: ``view`` (a :class:`RequestView`), and optionally ``recipient`` (a :class:`PersonRef`: an
    approver who already voted sees no buttons), ``link`` (the review page), ``mentions`` (directory id or
    email → Slack user id, shown as mentions), ``note``."""
    data = _render_json(template_name, context)
    if not isinstance(data, dict) or not isinstance(data.get("text"), str) or "blocks" not in data:
        raise BlockKitError([f"{template_name} must render an object with text and blocks"])
    blocks = fit_blocks(data["blocks"])
    check_blocks(blocks)
    return clip(data["text"], MAX_MESSAGE_TEXT), blocks


def render_view(template_name: str, **context: Any) -> dict[str, Any]:
    """Render a modal view (``deny_modal``), fitted and validated like :func:`render_blocks`."""
    view = _render_json(template_name, context)
    if not isinstance(view, dict) or view.get("type") != "modal":
        raise BlockKitError([f"{template_name} must render a modal view"])
    view["blocks"] = fit_blocks(view.get("blocks") or [], max_blocks=MAX_VIEW_BLOCKS)
    problems = _check_block_list(view["blocks"], MAX_VIEW_BLOCKS, "/view/blocks")
    for key in ("title", "submit", "close"):
        text = (view.get(key) or {}).get("text", "")
        if len(text) > MAX_VIEW_TITLE:
            problems.append(
                f"must be less than {MAX_VIEW_TITLE + 1} characters [json-pointer:/view/{key}/text]"
            )
    if len(view.get("private_metadata", "")) > MAX_PRIVATE_METADATA:
        problems.append(
            "private_metadata is longer than 3000 characters [json-pointer:/view/private_metadata]"
        )
    if not problems:
        try:
            if View(**view).to_dict() != view:
                problems.append("slack_sdk's View model drops or changes part of the view")
        except (SlackClientError, TypeError, ValueError) as exc:
            problems.append(f"slack_sdk refuses the view: {exc}")
    if problems:
        raise BlockKitError(problems)
    return dict(view)


def _fit_text(obj: Any, limit: int) -> None:
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        obj["text"] = clip(obj["text"], limit)


def fit_blocks(blocks: Any, *, max_blocks: int = MAX_MESSAGE_BLOCKS) -> list[dict[str, Any]]:
    """Cut over-long texts to Slack's limits (with "…") and, past ``max_blocks``, replace the tail with
    a line saying how many blocks were left out. Values that cannot be cut (a button's ``value``) are
    left for :func:`check_blocks` to refuse."""
    if not isinstance(blocks, list):
        raise BlockKitError(["blocks must be a list [json-pointer:/blocks]"])
    out: list[dict[str, Any]] = json.loads(json.dumps(blocks))
    if len(out) > max_blocks:
        left_out = len(out) - (max_blocks - 1)
        out = out[: max_blocks - 1]
        out.append(
            {
                "type": "context",
                "block_id": "gf_truncated",
                "elements": [{"type": "mrkdwn", "text": f"{ELLIPSIS} {left_out} more not shown"}],
            }
        )
    for block in out:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "section":
            _fit_text(block.get("text"), MAX_SECTION_TEXT)
            fields = block.get("fields")
            if isinstance(fields, list):
                del fields[MAX_FIELDS:]
                for f in fields:
                    _fit_text(f, MAX_FIELD_TEXT)
        elif kind == "header":
            _fit_text(block.get("text"), MAX_HEADER_TEXT)
        elif kind == "context":
            for el in block.get("elements") or []:
                _fit_text(el, MAX_CONTEXT_TEXT)
        elif kind == "actions":
            for el in block.get("elements") or []:
                if isinstance(el, dict) and el.get("type") == "button":
                    _fit_text(el.get("text"), MAX_BUTTON_TEXT)
                    confirm = el.get("confirm") or {}
                    for part, limit in (("title", 100), ("text", 300), ("confirm", 30), ("deny", 30)):
                        _fit_text(confirm.get(part), limit)
    return out


def _check_block_list(blocks: list[dict[str, Any]], max_blocks: int, pointer: str) -> list[str]:
    problems: list[str] = []
    if len(blocks) > max_blocks:
        problems.append(f"more than {max_blocks} blocks [json-pointer:{pointer}]")
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"{pointer}/{i}"
        block_id = block.get("block_id")
        if block_id is not None:
            if block_id in block_ids:
                problems.append(f"duplicate block_id {block_id!r} [json-pointer:{where}/block_id]")
            block_ids.add(block_id)
        elements = block.get("elements") if block.get("type") == "actions" else None
        action_ids: set[str] = set()
        for j, el in enumerate(elements or []):
            action_id = el.get("action_id")
            if action_id is not None:
                if action_id in action_ids:
                    problems.append(f"duplicate action_id {action_id!r} [json-pointer:{where}/elements/{j}]")
                action_ids.add(action_id)
            value = el.get("value")
            if isinstance(value, str) and len(value) > MAX_BUTTON_VALUE:
                problems.append(
                    f"button value longer than {MAX_BUTTON_VALUE} [json-pointer:{where}/elements/{j}/value]"
                )
    try:
        parsed = Block.parse_all(blocks)
    except (SlackClientError, TypeError, ValueError) as exc:
        return [*problems, f"slack_sdk cannot parse the blocks: {exc}"]
    for i, (block, model) in enumerate(zip(blocks, parsed, strict=True)):
        if model is None:
            problems.append(f"unknown block type {block.get('type')!r} [json-pointer:{pointer}/{i}]")
            continue
        try:
            as_dict = model.to_dict()
        except (SlackClientError, TypeError, ValueError) as exc:
            problems.append(f"{exc} [json-pointer:{pointer}/{i}]")
            continue
        if as_dict != block:
            problems.append(f"unknown or malformed keys (slack_sdk drops them) [json-pointer:{pointer}/{i}]")
    return problems


def check_blocks(blocks: list[dict[str, Any]], *, max_blocks: int = MAX_MESSAGE_BLOCKS) -> None:
    """Raise :class:`BlockKitError` unless Slack would accept ``blocks`` in a message."""
    problems = _check_block_list(blocks, max_blocks, "/blocks")
    if problems:
        raise BlockKitError(problems)

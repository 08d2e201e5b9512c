"""Web API methods about conversations and their messages: ``conversations.open``, ``conversations.history``,
``chat.postMessage``, ``chat.update``, ``chat.postEphemeral`` (answers as on the api.slack.com method pages).

Messages are checked as Slack checks them (Block Kit, text length, metadata shape) before anything is
stored; a refused message is never stored. This module never persists: the server saves after a write.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

from sandbox.slack.api import SlackFail, Unparsable, truthy
from sandbox.slack.blocks import MAX_MESSAGE_BLOCKS, BlockChecker
from sandbox.slack.workspace import (
    APP_ID,
    BOT_ID,
    BOT_NAME,
    BOT_USER_ID,
    TEAM_ID,
    Handler,
    Workspace,
    ts_to_micros,
)

MAX_MESSAGE_TEXT = 40_000
MAX_HISTORY_LIMIT = 999
DEFAULT_HISTORY_LIMIT = 100


def conversations_open(ws: Workspace, p: dict[str, Any], kind: str, warnings: list[str]) -> dict[str, Any]:
    if p.get("channel"):
        chan = ws.channels.get(str(p["channel"]))
        if chan is None:
            raise SlackFail("channel_not_found")
        return {"channel": {"id": chan["id"]}}
    users = p.get("users")
    if isinstance(users, list):
        ids = [str(u) for u in users]
    else:
        ids = [u.strip() for u in str(users or "").split(",") if u.strip()]
    if not ids:
        raise SlackFail("users_list_not_supplied")
    if len(ids) > 1:
        raise SlackFail("method_not_supported_for_channel_type")  # group DMs: not modelled here
    user = ws.users.get(ids[0])
    if user is None:
        raise SlackFail("user_not_found")
    if user["deleted"]:
        raise SlackFail("user_disabled")
    channel_id, existed = ws.open_dm(ids[0])
    out: dict[str, Any] = {"channel": {"id": channel_id}}
    if truthy(p.get("return_im", False)):
        out["channel"].update(is_im=True, user=ids[0], is_open=True, created=0)
    if existed:
        out.update(no_op=True, already_open=True)
    return out


def check_message(p: dict[str, Any], warnings: list[str], *, require_content: bool = True) -> None:
    blocks = p.get("blocks")
    text = p.get("text")
    if isinstance(blocks, Unparsable):
        raise SlackFail("invalid_blocks_format")
    if blocks is not None and blocks != []:
        checker = BlockChecker()
        checker.blocks(blocks, max_blocks=MAX_MESSAGE_BLOCKS)
        if checker.errors:
            raise SlackFail(
                "invalid_blocks",
                errors=checker.errors,
                response_metadata={"messages": [f"[ERROR] {e}" for e in checker.errors]},
            )
    if text is not None and not isinstance(text, str):
        raise SlackFail("invalid_arguments")
    if text and len(text) > MAX_MESSAGE_TEXT:
        raise SlackFail("msg_too_long")
    has_blocks = bool(blocks)
    if require_content and not text and not has_blocks and not p.get("attachments"):
        raise SlackFail("no_text")
    if has_blocks and not text:
        warnings.append("missing_text")


def metadata_of(p: dict[str, Any]) -> dict[str, Any] | None:
    metadata = p.get("metadata")
    if metadata is None or metadata == "":
        return None
    if (
        not isinstance(metadata, dict)
        or not isinstance(metadata.get("event_type"), str)
        or not metadata["event_type"]
        or not isinstance(metadata.get("event_payload"), dict)
        or set(metadata) - {"event_type", "event_payload"}
    ):
        raise SlackFail("invalid_metadata_format")
    return {
        "event_type": metadata["event_type"],
        "event_payload": copy.deepcopy(metadata["event_payload"]),
    }


def chat_post_message(ws: Workspace, p: dict[str, Any], kind: str, warnings: list[str]) -> dict[str, Any]:
    chan = ws.resolve_channel(p.get("channel"))
    check_message(p, warnings)
    metadata = metadata_of(p)
    message: dict[str, Any] = {
        "type": "message",
        "user": BOT_USER_ID,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "team": TEAM_ID,
        "text": p.get("text") or "",
        "ts": ws.next_ts(),
        "bot_profile": {"id": BOT_ID, "app_id": APP_ID, "name": BOT_NAME, "team_id": TEAM_ID},
    }
    if p.get("blocks"):
        message["blocks"] = copy.deepcopy(p["blocks"])
    if metadata is not None:
        message["metadata"] = metadata
    if p.get("thread_ts"):
        if ws.find_message(chan["id"], str(p["thread_ts"])) is None:
            raise SlackFail("thread_not_found")
        message["thread_ts"] = str(p["thread_ts"])
    chan["messages"].append(message)
    return {"channel": chan["id"], "ts": message["ts"], "message": copy.deepcopy(message)}


def chat_update(ws: Workspace, p: dict[str, Any], kind: str, warnings: list[str]) -> dict[str, Any]:
    chan = ws.channels.get(str(p.get("channel") or ""))
    if chan is None:
        raise SlackFail("channel_not_found")
    message = ws.find_message(chan["id"], str(p.get("ts") or ""))
    if message is None:
        raise SlackFail("message_not_found")
    if message.get("user") != BOT_USER_ID:
        raise SlackFail("cant_update_message")
    check_message(p, warnings, require_content=False)
    metadata = metadata_of(p)
    if "text" in p:
        message["text"] = p["text"] or ""
    if "blocks" in p:
        if p["blocks"]:
            message["blocks"] = copy.deepcopy(p["blocks"])
        else:
            message.pop("blocks", None)
    if metadata is not None:
        message["metadata"] = metadata
    message["edited"] = {"user": BOT_USER_ID, "ts": ws.next_ts()}
    return {
        "channel": chan["id"],
        "ts": message["ts"],
        "text": message["text"],
        "message": copy.deepcopy(message),
    }


def chat_post_ephemeral(ws: Workspace, p: dict[str, Any], kind: str, warnings: list[str]) -> dict[str, Any]:
    chan = ws.resolve_channel(p.get("channel"))
    user = str(p.get("user") or "")
    if user not in ws.users:
        raise SlackFail("user_not_found")
    if user not in chan["members"]:
        raise SlackFail("user_not_in_channel")
    check_message(p, warnings)
    ts = ws.next_ts()
    ws.ephemerals.append(
        {
            "channel": chan["id"],
            "user": user,
            "text": p.get("text") or "",
            "blocks": copy.deepcopy(p.get("blocks") or []),
            "ts": ts,
        }
    )
    return {"message_ts": ts}


def conversations_history(ws: Workspace, p: dict[str, Any], kind: str, warnings: list[str]) -> dict[str, Any]:
    chan = ws.channels.get(str(p.get("channel") or ""))
    if chan is None:
        raise SlackFail("channel_not_found")
    if BOT_USER_ID not in chan["members"]:
        raise SlackFail("not_in_channel")
    try:
        limit = int(p.get("limit") or DEFAULT_HISTORY_LIMIT)
    except (TypeError, ValueError):
        raise SlackFail("invalid_limit") from None
    limit = max(1, min(limit, MAX_HISTORY_LIMIT))
    inclusive = truthy(p.get("inclusive", False))
    try:
        oldest = ts_to_micros(str(p["oldest"])) if p.get("oldest") not in (None, "") else None
    except ValueError:
        raise SlackFail("invalid_ts_oldest") from None
    try:
        latest = ts_to_micros(str(p["latest"])) if p.get("latest") not in (None, "") else None
    except ValueError:
        raise SlackFail("invalid_ts_latest") from None
    start: int | None = None
    if p.get("cursor"):
        try:
            decoded = base64.b64decode(str(p["cursor"]), validate=True).decode()
            prefix, _, value = decoded.partition(":")
            if prefix != "next_ts":
                raise ValueError(decoded)
            start = ts_to_micros(value)
        except ValueError:
            raise SlackFail("invalid_cursor") from None

    def keep(m: dict[str, Any]) -> bool:
        t = ts_to_micros(m["ts"])
        if oldest is not None and (t < oldest or (t == oldest and not inclusive)):
            return False
        if latest is not None and (t > latest or (t == latest and not inclusive)):
            return False
        return start is None or t <= start

    rows = sorted((m for m in chan["messages"] if keep(m)), key=lambda m: ts_to_micros(m["ts"]), reverse=True)
    page, rest = rows[:limit], rows[limit:]
    with_metadata = truthy(p.get("include_all_metadata", False))
    messages = []
    for m in page:
        out = copy.deepcopy(m)
        if not with_metadata:
            out.pop("metadata", None)
        messages.append(out)
    next_cursor = base64.b64encode(f"next_ts:{rest[0]['ts']}".encode()).decode() if rest else ""
    return {
        "messages": messages,
        "has_more": bool(rest),
        "pin_count": 0,
        "channel_actions_ts": None,
        "channel_actions_count": 0,
        "response_metadata": {"next_cursor": next_cursor},
    }


METHODS: dict[str, Handler] = {
    "conversations.open": conversations_open,
    "conversations.history": conversations_history,
    "chat.postMessage": chat_post_message,
    "chat.update": chat_update,
    "chat.postEphemeral": chat_post_ephemeral,
}

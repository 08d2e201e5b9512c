"""Modals: the trigger ids Slack puts in interactions and ``views.open``, which exchanges one for a modal.

A trigger id is valid once, for 3 seconds on the workspace clock (``invalid_trigger_id``,
``exchanged_trigger_id``, ``expired_trigger_id``, per the ``views.open`` method page). The view is checked as
Slack checks it (title ≤ 24, ≤ 100 blocks, ``private_metadata`` ≤ 3000 …) and refused as
``invalid_arguments`` with ``response_metadata.messages``. Opened views are kept for the driver's
submissions, never persisted.
"""

from __future__ import annotations

import copy
import secrets
from datetime import timedelta
from typing import Any

from sandbox.slack.api import SlackFail, Unparsable
from sandbox.slack.blocks import BlockChecker
from sandbox.slack.workspace import APP_ID, BOT_ID, TEAM_ID, Handler, Workspace

TRIGGER_TTL = timedelta(seconds=3)


def new_trigger_id(ws: Workspace, user_id: str) -> str:
    """A ``trigger_id`` as Slack puts in an interaction: valid once, for 3 seconds (on the clock)."""
    with ws.lock:
        ws.seq += 1
        trigger = f"{ws.seq}.{int(ws.now().timestamp())}.{secrets.token_hex(16)}"
        ws.triggers[trigger] = {"user_id": user_id, "issued_at": ws.now(), "used": False}
        return trigger


def views_open(ws: Workspace, p: dict[str, Any], kind: str, warnings: list[str]) -> dict[str, Any]:
    trigger_id = str(p.get("trigger_id") or "")
    trigger = ws.triggers.get(trigger_id)
    if trigger is None:
        raise SlackFail("invalid_trigger_id")
    if trigger["used"]:
        raise SlackFail("exchanged_trigger_id")
    if ws.now() - trigger["issued_at"] > TRIGGER_TTL:
        raise SlackFail("expired_trigger_id")
    view = p.get("view")
    if isinstance(view, Unparsable):
        messages = ["[ERROR] invalid view JSON"]
        raise SlackFail("invalid_arguments", response_metadata={"messages": messages})
    checker = BlockChecker()
    checker.view(view)
    if checker.errors:
        raise SlackFail(
            "invalid_arguments", response_metadata={"messages": [f"[ERROR] {e}" for e in checker.errors]}
        )
    assert isinstance(view, dict)
    trigger["used"] = True
    view_id = ws.new_id("V")
    stored = {
        "id": view_id,
        "team_id": TEAM_ID,
        "type": "modal",
        "blocks": copy.deepcopy(view.get("blocks", [])),
        "private_metadata": view.get("private_metadata", ""),
        "callback_id": view.get("callback_id", ""),
        "state": {"values": {}},
        "hash": f"{int(ws.now().timestamp())}.{secrets.token_hex(4)}",
        "title": copy.deepcopy(view.get("title")),
        "close": copy.deepcopy(view.get("close")),
        "submit": copy.deepcopy(view.get("submit")),
        "clear_on_close": bool(view.get("clear_on_close", False)),
        "notify_on_close": bool(view.get("notify_on_close", False)),
        "previous_view_id": None,
        "root_view_id": view_id,
        "app_id": APP_ID,
        "external_id": view.get("external_id", ""),
        "app_installed_team_id": TEAM_ID,
        "bot_id": BOT_ID,
    }
    ws.views[view_id] = {**stored, "user_id": trigger["user_id"]}
    return {"view": copy.deepcopy(stored)}


METHODS: dict[str, Handler] = {"views.open": views_open}

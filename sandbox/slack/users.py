"""Web API methods about who is calling and who is in the workspace: ``auth.test``, ``users.lookupByEmail``,
``users.info`` (answers as on the api.slack.com method pages). They only read the workspace."""

from __future__ import annotations

import copy
from typing import Any

from sandbox.slack.api import SlackFail
from sandbox.slack.workspace import (
    APP_ID,
    BOT_ID,
    BOT_NAME,
    BOT_USER_ID,
    TEAM_DOMAIN,
    TEAM_ID,
    TEAM_NAME,
    Handler,
    Workspace,
)


def auth_test(ws: Workspace, p: dict[str, Any], kind: str, warnings: list[str]) -> dict[str, Any]:
    base = {"url": f"https://{TEAM_DOMAIN}.slack.com/", "team": TEAM_NAME, "team_id": TEAM_ID}
    if kind == "app":
        return {**base, "app_id": APP_ID}
    return {
        **base,
        "user": BOT_NAME,
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "is_enterprise_install": False,
    }


def users_lookup_by_email(ws: Workspace, p: dict[str, Any], kind: str, warnings: list[str]) -> dict[str, Any]:
    email = str(p.get("email") or "")
    if not email:
        raise SlackFail("invalid_arguments", response_metadata={"messages": ["[ERROR] missing email"]})
    for user in ws.users.values():
        if not user["is_bot"] and user["profile"]["email"].lower() == email.lower():
            return {"user": copy.deepcopy(user)}
    raise SlackFail("users_not_found")


def users_info(ws: Workspace, p: dict[str, Any], kind: str, warnings: list[str]) -> dict[str, Any]:
    user = ws.users.get(str(p.get("user") or ""))
    if user is None:
        raise SlackFail("user_not_found")
    return {"user": copy.deepcopy(user)}


METHODS: dict[str, Handler] = {
    "auth.test": auth_test,
    "users.lookupByEmail": users_lookup_by_email,
    "users.info": users_info,
}

"""The ``response_url`` Slack puts in an interaction or slash command, served at
``/_sandbox/response/<token>``: at most 5 uses (Slack's "Handling user interaction" docs), JSON bodies;
``replace_original`` / ``delete_original`` change the message the interaction came from (blocks checked as
Slack checks them). Every use is recorded in ``responses``. Response URLs are never persisted.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from sandbox.slack.api import truthy
from sandbox.slack.blocks import MAX_MESSAGE_BLOCKS, BlockChecker
from sandbox.slack.workspace import Workspace

RESPONSE_URL_USES = 5
RESPONSE_PATH = "/_sandbox/response/{token}"


class ResponseUrls:
    """Issues response URLs and answers the requests made to them."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws
        self.responses: list[dict[str, Any]] = []

    def issue(self, base_url: str, channel: str, message_ts: str | None, user_id: str) -> str:
        with self._ws.lock:
            token = secrets.token_urlsafe(16)
            self._ws.response_urls[token] = {
                "channel": channel,
                "message_ts": message_ts,
                "user_id": user_id,
                "uses": 0,
            }
            return base_url + RESPONSE_PATH.format(token=token)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        ws = self._ws
        with ws.lock:
            entry = ws.response_urls.get(token)
            if entry is None:
                return web.Response(status=404, text="expired_url")
            if entry["uses"] >= RESPONSE_URL_USES:
                return web.Response(status=404, text="used_url")
            entry["uses"] += 1
            self.responses.append({"url_token": token, **entry, "body": body})
            message = ws.find_message(entry["channel"], entry["message_ts"]) if entry["message_ts"] else None
            if isinstance(body, dict) and message is not None:
                if truthy(body.get("delete_original", False)):
                    chan = ws.channels[entry["channel"]]
                    chan["messages"] = [m for m in chan["messages"] if m is not message]
                elif truthy(body.get("replace_original", False)):
                    if "blocks" in body:
                        checker = BlockChecker()
                        checker.blocks(body["blocks"], max_blocks=MAX_MESSAGE_BLOCKS)
                        if checker.errors:
                            return web.Response(status=400, text="invalid_blocks")
                        message["blocks"] = body["blocks"]
                    message["text"] = body.get("text", message["text"])
        return web.Response(text="ok")

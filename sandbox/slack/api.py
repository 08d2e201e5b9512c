"""The shape of a Web API call as Slack takes it in and answers it: the arguments parsed from any of the
ways Slack accepts them, the error answer, and the record of a call kept for assertions.

Nothing here knows a method or touches the workspace; ``server`` dispatches, the resource modules answer.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from aiohttp import web


class Call(NamedTuple):
    """One Web API call, as recorded for assertions."""

    method: str  # the Web API method, e.g. "chat.postMessage"
    params: dict[str, Any]  # arguments as parsed (``blocks``/``view``/``metadata`` decoded), no token
    status: int | None  # HTTP status; None when the connection was dropped without an answer
    response: Any = None  # the JSON answered, or None
    injected: str | None = None  # "fault" or "drop" when a test hook decided the outcome
    http_method: str = "POST"
    warnings: tuple[str, ...] = ()  # Slack's warnings, e.g. "missing_text"


class SlackFail(Exception):
    """A Web API error answer: ``{"ok": false, "error": error, **extra}`` with HTTP ``status``."""

    def __init__(self, error: str, *, status: int = 200, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.extra = extra


class Unparsable(str):
    """A form argument that should have held JSON and did not."""


def truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes")


async def parse_request(request: web.Request) -> tuple[dict[str, Any], str | None, str | None]:
    """The call's arguments, the bearer token from the header, and the parse error Slack would answer."""
    params: dict[str, Any] = dict(request.query)
    auth = request.headers.get("Authorization", "")
    header_token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
    parse_error = None
    if request.method == "POST" and request.can_read_body:
        ctype = request.content_type
        if ctype == "application/json":
            raw = await request.read()
            try:
                data = json.loads(raw or b"{}")
            except ValueError:
                parse_error = "invalid_json"
            else:
                if isinstance(data, dict):
                    data.pop("token", None)  # Slack does not read a token from a JSON body
                    params.update(data)
                else:
                    parse_error = "json_not_object"
        elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        else:
            await request.read()
            parse_error = "invalid_form_data"
    for key in ("blocks", "view", "metadata"):
        value = params.get(key)
        if isinstance(value, str) and value.strip():
            try:
                params[key] = json.loads(value)
            except ValueError:
                params[key] = Unparsable(value)
    return params, header_token, parse_error

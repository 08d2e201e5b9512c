"""``POST /slack/events``: hands Slack's interactivity and slash-command requests to the
:class:`~web.slack_app.SlackEdge` of the running context (which verifies and answers them).

Only the route lives here, apart from the edge, so the context can name the edge's type without importing
a router. Mounted by :mod:`web.app` only when Slack is configured.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from web.context import context_of
from web.slack_app import SLACK_EVENTS_PATH

router = APIRouter(tags=["slack"])


@router.post(SLACK_EVENTS_PATH, include_in_schema=False)
async def slack_events(request: Request) -> Response:
    """Slack's interactivity and slash-command requests, verified and answered by Bolt."""
    edge = context_of(request).slack
    if edge is None:  # not mounted without an edge; kept for a context changed after start
        return JSONResponse({"error": "not_found", "detail": "Slack is not configured"}, status_code=404)
    return await edge.handle_http(request)

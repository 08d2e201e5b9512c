"""``POST /jira/webhook``: reads the body (bounded) and hands it to the :class:`~web.jira.edge.JiraEdge` of
the running context, which answers. Only the route lives here, so the context can name the edge's type
without importing a router; mounted by :mod:`web.app` only when Jira is configured.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from web.bodies import JIRA_BODY_LIMIT, BodyTooLarge, read_body
from web.context import context_of

JIRA_WEBHOOK_PATH = "/jira/webhook"

router = APIRouter(tags=["jira"])


@router.post(JIRA_WEBHOOK_PATH, include_in_schema=False)
async def jira_webhook(request: Request) -> JSONResponse:
    """Jira's webhooks: signed, deduplicated, answered quickly."""
    edge = context_of(request).jira
    if edge is None:
        return JSONResponse({"error": "not_found", "detail": "Jira is not configured"}, status_code=404)
    try:
        raw = await read_body(request, JIRA_BODY_LIMIT)
    except BodyTooLarge as exc:
        return JSONResponse({"error": "too_large", "detail": str(exc)}, status_code=413)
    status, body = await edge.receive(raw, request.headers)
    return JSONResponse(body, status_code=status)

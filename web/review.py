"""The web review page: ``GET /review/{token}`` shows a request to one approver, ``POST`` decides.

The token is a :class:`~domain.review_links.ReviewLinks` token bound to (request, approver): whoever
holds the link acts as that approver and no one else (the workflow still checks eligibility). A forged,
garbled or expired link is a 403 page and changes nothing.

CSRF protection and the pages' headers are :mod:`web.pages`' (shared with the campaign page).
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from domain.approval import approvals_counted, open_stage, votes_in_stage
from domain.identity import Actor, Person
from domain.requests import RequestView, Verdict
from domain.review_links import ReviewLinkError
from web.context import WebContext, context_of
from web.pages import COOKIE, NONCE, checked_form, csrf_token, error_page, render
from web.service import NotFound, Refused, ServiceError

_STAGE_LABELS = {"request": "request", "extension": "extension", "retro_review": "break-glass retro-review"}

router = APIRouter(include_in_schema=False)


async def _open_link(
    ctx: WebContext, token: str, *, deciding: bool = False
) -> tuple[str, Person] | HTMLResponse:
    """The request id and approver a link is for, or the 403 page saying why it cannot be used.
    ``deciding``: a decision posted through an expired (but authentic) link is recorded as a refused
    attempt against its request; a forged link names nobody, so nothing is recorded for it."""
    try:
        request_id, approver_id = ctx.links.read(token)
    except ReviewLinkError as exc:
        if deciding and exc.issued_for is not None:
            expired_request, expired_approver = exc.issued_for
            try:
                holder = await ctx.service.person_by_id(expired_approver)
                who = holder.email if holder is not None else expired_approver
                await ctx.service.record_forbidden(expired_request, who, "web", str(exc))
            except ServiceError as failed:
                return error_page(failed.status, "This review link cannot be used", failed.detail)
        return error_page(403, "This review link cannot be used", str(exc))
    try:
        approver = await ctx.service.person_by_id(approver_id)
    except ServiceError as exc:
        return error_page(exc.status, "The review page is unavailable", exc.detail)
    if approver is None or not approver.active:
        return error_page(
            403, "This review link cannot be used", "the approver it was sent to is no longer active"
        )
    return request_id, approver


def _decisions(view: RequestView) -> list[Any]:
    extension = view.pending_extension.approvals if view.pending_extension else []
    return sorted([*view.approvals, *view.denials, *extension], key=lambda d: d.at)


def _page_values(view: RequestView, approver: Person) -> dict[str, Any]:
    stage = open_stage(view)
    votes = votes_in_stage(view, stage) if stage is not None else []
    mine = next((d for d in votes if d.approver.id == approver.id), None)
    if mine is None and stage is not None:
        mine = next(
            (d for d in view.denials if d.approver.id == approver.id and d.stage == stage.value), None
        )
    return {
        "view": view,
        "approver": approver,
        "stage": stage.value if stage is not None else None,
        "stage_label": _STAGE_LABELS.get(stage.value, stage.value) if stage is not None else "",
        "approvals_now": approvals_counted(view, stage) if stage is not None else 0,
        "my_vote": mine,
        "decisions": _decisions(view),
    }


@router.get("/review/{token}", response_class=HTMLResponse)
async def review_page(token: str, request: Request) -> HTMLResponse:
    ctx = context_of(request)
    opened = await _open_link(ctx, token)
    if isinstance(opened, HTMLResponse):
        return opened
    request_id, approver = opened
    try:
        view = await ctx.service.show(request_id)
    except NotFound as exc:
        return error_page(404, "No such request", exc.detail)
    except ServiceError as exc:
        return error_page(exc.status, "The review page is unavailable", exc.detail)
    nonce = request.cookies.get(COOKIE)
    if not nonce or not NONCE.match(nonce):
        nonce = secrets.token_urlsafe(24)
    action = f"/review/{token}"
    response = render(
        "review",
        **_page_values(view, approver),
        csrf=csrf_token(ctx.csrf_key, token, nonce),
        action=action,
    )
    response.set_cookie(
        COOKIE,
        nonce,
        path=action,
        httponly=True,
        samesite="strict",
        secure=ctx.secure_cookies,
    )
    return response


@router.post("/review/{token}", response_class=HTMLResponse)
async def review_decide(token: str, request: Request) -> HTMLResponse:
    ctx = context_of(request)
    opened = await _open_link(ctx, token, deciding=True)
    if isinstance(opened, HTMLResponse):
        return opened
    request_id, approver = opened
    form = await checked_form(request, ctx.csrf_key, token)
    if isinstance(form, HTMLResponse):
        return form
    raw_verdict = form.get("verdict")
    try:
        verdict = Verdict(raw_verdict if isinstance(raw_verdict, str) else "")
    except ValueError:
        return error_page(400, "No decision was given", "choose Approve or Deny")
    raw_reason = form.get("reason")
    reason = raw_reason.strip()[:2000] if isinstance(raw_reason, str) else ""
    actor = Actor(person=approver.ref, channel="web")
    action = f"/review/{token}"
    raw_stage = form.get("stage")
    stage = raw_stage if isinstance(raw_stage, str) and raw_stage else None
    try:
        view = await ctx.service.decide(request_id, actor, verdict, reason, stage=stage)
    except Refused as exc:
        try:
            current = await ctx.service.show(request_id)
        except ServiceError:
            return error_page(409, "Your decision was not recorded", exc.detail)
        return render(
            "review_result",
            409,
            headline="Your decision was not recorded",
            refusal=exc.detail,
            outcome="",
            view=current,
            approver=approver,
            action=action,
        )
    except NotFound as exc:
        return error_page(404, "No such request", exc.detail)
    except ServiceError as exc:
        return error_page(exc.status, "Your decision could not be recorded", exc.detail)
    done = "approved" if verdict is Verdict.APPROVE else "denied"
    outcome = f"You {done} request {view.id}; it is now {view.status.value}."
    stage = open_stage(view)
    if verdict is Verdict.APPROVE and stage is not None:
        count = approvals_counted(view, stage)
        outcome = (
            f"You approved request {view.id}: {count} of {view.required_approvals} approvals so far; "
            f"the {_STAGE_LABELS.get(stage.value, stage.value)} stays open until enough approvers agree."
        )
    return render(
        "review_result",
        headline=f"You {done} the request",
        refusal="",
        outcome=outcome,
        view=view,
        approver=approver,
        action=action,
    )

"""A reviewer's campaign page: ``GET /campaigns/review/{token}`` lists every item they review in the open
stage (their own and their groups'), with its usage and recommendation; ``POST`` records decisions in one
batch.

The token is a campaign link (:meth:`~domain.review_links.ReviewLinks.campaign_token`) bound to (campaign,
reviewer): whoever holds it decides as that reviewer, and :class:`~web.campaign_service.CampaignService` still
checks every item against its assignment. The page works without JavaScript (its policy forbids scripts):
filters are a GET form, "keep / revoke all shown" applies to the items listed, and per-item choices are radio
buttons. CSRF protection and headers are the request review page's (``web/pages.py``), bound to this link.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from domain.campaign_decisions import CampaignVerdict
from domain.campaign_spec import parse_campaign_spec
from domain.identity import Actor
from domain.review_links import ReviewLinkError
from store.campaigns import StoredItem
from web.campaign_service import DecisionRequest
from web.context import campaigns_of, context_of
from web.pages import COOKIE, NONCE, checked_form, csrf_token, error_page, render
from web.service import ServiceError

router = APIRouter(include_in_schema=False)
MAX_SHOWN = 500


def _usage(item: StoredItem) -> str:
    usage = item.usage
    if usage is None:
        return "-"
    last = usage.last_used_at
    used = f"last used {last:%Y-%m-%d}" if last is not None else "not used in the records"
    return f"{used}; {usage.sessions} sessions since {usage.window_start:%Y-%m-%d}"


def _matches(item: StoredItem, q: str, show: str) -> bool:
    text = " ".join([item.subject.name, item.access.group or "", *item.access.connections]).lower()
    if q and q.lower() not in text:
        return False
    if show == "pending":
        return item.verdict is None
    if show in ("keep", "revoke"):
        return item.recommendation is not None and item.recommendation.verdict == show
    return True


async def _page(request: Request, token: str, **notes: Any) -> HTMLResponse:
    ctx = context_of(request)
    service = campaigns_of(request)
    try:
        campaign_id, reviewer_id = ctx.links.read_campaign(token)
        campaign = await service.campaign(campaign_id)
        reviewer = await ctx.service.person_by_id(reviewer_id)
        items = await service.items_for_reviewer(campaign_id, reviewer_id)
    except ReviewLinkError as exc:
        return error_page(403, "This review link cannot be used", str(exc))
    except ServiceError as exc:
        return error_page(exc.status, "The review page is unavailable", exc.detail)
    if reviewer is None or not reviewer.active:
        return error_page(
            403, "This review link cannot be used", "the reviewer it was sent to is no longer active"
        )
    spec = parse_campaign_spec(campaign.spec_toml, f"campaign {campaign.id}")
    q = str(request.query_params.get("q", ""))[:200]
    show = str(request.query_params.get("show", "all"))
    shown = [i for i in items if _matches(i, q, show)]
    nonce = request.cookies.get(COOKIE)
    if not nonce or not NONCE.match(nonce):
        nonce = secrets.token_urlsafe(24)
    action = f"/campaigns/review/{token}"
    response = render(
        "campaign_review",
        notes.pop("status_code", 200),
        campaign=campaign,
        stages=len(spec.stages),
        default_sentence=spec.default_decision.sentence,
        reasons_required=spec.reasons_required,
        reviewer=reviewer,
        open=campaign.status.value == "OPEN" and campaign.stage_open,
        items=[{"item": i, "usage": _usage(i), "verdict": i.verdict} for i in shown[:MAX_SHOWN]],
        more=len(shown) > MAX_SHOWN,
        filters={"q": q, "show": show if show in ("all", "pending", "keep", "revoke") else "all"},
        csrf=csrf_token(ctx.csrf_key, token, nonce),
        action=action,
        notice=notes.get("notice", ""),
        notice_class=notes.get("notice_class", ""),
        refused=notes.get("refused", {}),
    )
    response.set_cookie(
        COOKIE, nonce, path=action, httponly=True, samesite="strict", secure=ctx.secure_cookies
    )
    return response


@router.get("/campaigns/review/{token}", response_class=HTMLResponse)
async def campaign_page(token: str, request: Request) -> HTMLResponse:
    return await _page(request, token)


@router.post("/campaigns/review/{token}", response_class=HTMLResponse)
async def campaign_decide(token: str, request: Request) -> HTMLResponse:
    ctx = context_of(request)
    try:
        campaign_id, reviewer_id = ctx.links.read_campaign(token)
    except ReviewLinkError as exc:
        return error_page(403, "This review link cannot be used", str(exc))
    form = await checked_form(request, ctx.csrf_key, token)
    if isinstance(form, HTMLResponse):
        return form
    raw_reason = form.get("reason")
    reason = raw_reason.strip()[:2000] if isinstance(raw_reason, str) else ""
    bulk = form.get("bulk")
    wanted: dict[str, CampaignVerdict] = {}
    if bulk in ("keep", "revoke"):
        for item_id in form.getlist("shown"):
            if isinstance(item_id, str):
                wanted[item_id[:64]] = "keep" if bulk == "keep" else "revoke"
    else:
        for key, value in form.multi_items():
            if key.startswith("d:") and value in ("keep", "revoke"):
                wanted[key[2:66]] = "keep" if value == "keep" else "revoke"
    if not wanted:
        return await _page(
            request, token, notice="Nothing was marked: choose keep or revoke first.", notice_class="bad"
        )
    try:
        reviewer = await ctx.service.person_by_id(reviewer_id)
        if reviewer is None or not reviewer.active:
            return error_page(
                403, "This review link cannot be used", "the reviewer it was sent to is no longer active"
            )
        result = await campaigns_of(request).decide(
            campaign_id,
            [
                DecisionRequest(item_id=item_id, verdict=verdict, reason=reason)
                for item_id, verdict in wanted.items()
            ],
            Actor(person=reviewer.ref, channel="web"),
        )
    except ServiceError as exc:
        return error_page(exc.status, "Your decisions could not be recorded", exc.detail)
    count = len(result.recorded)
    notice = (
        f"{count} decision{'s' if count != 1 else ''} recorded; you can change them until the stage closes."
    )
    return await _page(
        request,
        token,
        notice=notice,
        notice_class="good" if count else "bad",
        refused=result.refused,
        status_code=200 if count or not result.refused else 409,
    )

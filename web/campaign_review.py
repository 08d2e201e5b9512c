"""A reviewer's campaign page: ``GET /campaigns/review/{token}`` lists every item they review in the open
stage (their own, their groups' and those escalated to them), with its usage and recommendation; ``POST``
records decisions in one batch; ``POST …/delegate`` hands the reviewer's undecided items to someone else.

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
from domain.identity import Actor, PersonRef
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
    try:
        escalations = await service.escalations(campaign_id, [i.id for i in items])
    except ServiceError as exc:
        return error_page(exc.status, "The review page is unavailable", exc.detail)
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
        items=[
            {
                "item": i,
                "usage": _usage(i),
                "verdict": i.verdict,
                "escalated_from": _escalated_from(i, reviewer_id, escalations),
            }
            for i in shown[:MAX_SHOWN]
        ],
        can_delegate=any(
            i.verdict is None
            and i.outcome.value == "open"
            and i.assignment.reviewer is not None
            and i.assignment.reviewer.id == reviewer_id
            for i in items
        ),
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


def _escalated_from(item: StoredItem, reviewer_id: str, escalations: dict[str, PersonRef]) -> str:
    """The reviewer whose pending item was escalated to the page's reader ("" when it is their own)."""
    escalated = escalations.get(item.id)
    reviewer = item.assignment.reviewer
    if escalated is None or escalated.id != reviewer_id or reviewer is None or reviewer.id == reviewer_id:
        return ""
    return reviewer.name


@router.get("/campaigns/review/{token}", response_class=HTMLResponse)
async def campaign_page(token: str, request: Request) -> HTMLResponse:
    return await _page(request, token)


@router.post("/campaigns/review/{token}", response_class=HTMLResponse)
async def campaign_decide(token: str, request: Request) -> HTMLResponse:
    ctx = context_of(request)
    try:
        campaign_id, reviewer_id = ctx.links.read_campaign(token)
    except ReviewLinkError as exc:
        if exc.issued_for is not None:  # authentic but expired: an attempt to decide as its reviewer
            expired_campaign, expired_reviewer = exc.issued_for
            try:
                holder = await ctx.service.person_by_id(expired_reviewer)
                who = holder.email if holder is not None else expired_reviewer
                await ctx.service.record_forbidden(expired_campaign, who, "web", str(exc))
            except ServiceError as failed:
                return error_page(failed.status, "This review link cannot be used", failed.detail)
        return error_page(403, "This review link cannot be used", str(exc))
    form = await checked_form(request, ctx.csrf_key, token)
    if isinstance(form, HTMLResponse):
        return form
    # The stage the page was shown for: a form posted after that stage closed (kept open in a tab,
    # replayed) is refused item by item rather than decided for a stage its reviewer never saw.
    raw_stage = form.get("stage")
    digits = isinstance(raw_stage, str) and raw_stage.isascii() and raw_stage.isdigit() and len(raw_stage) < 3
    shown_stage = int(raw_stage) if digits and isinstance(raw_stage, str) else None
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
            stage=shown_stage,
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


@router.post("/campaigns/review/{token}/delegate", response_class=HTMLResponse)
async def campaign_delegate(token: str, request: Request) -> HTMLResponse:
    """Hand every item the reviewer has not decided yet to the person named in the form."""
    ctx = context_of(request)
    try:
        campaign_id, reviewer_id = ctx.links.read_campaign(token)
    except ReviewLinkError as exc:
        return error_page(403, "This review link cannot be used", str(exc))
    form = await checked_form(request, ctx.csrf_key, token)
    if isinstance(form, HTMLResponse):
        return form
    raw_to, raw_reason = form.get("to"), form.get("reason")
    to = raw_to.strip()[:320] if isinstance(raw_to, str) else ""
    reason = raw_reason.strip()[:2000] if isinstance(raw_reason, str) else ""
    if not to:
        return await _page(
            request, token, notice="Say whom to hand your items to (their email).", notice_class="bad"
        )
    try:
        reviewer = await ctx.service.person_by_id(reviewer_id)
        if reviewer is None or not reviewer.active:
            return error_page(
                403, "This review link cannot be used", "the reviewer it was sent to is no longer active"
            )
        result = await campaigns_of(request).delegate(
            campaign_id, to, Actor(person=reviewer.ref, channel="web"), reason=reason
        )
    except ServiceError as exc:
        return await _page(
            request,
            token,
            notice=f"Nothing was delegated: {exc.detail}",
            notice_class="bad",
            status_code=exc.status,
        )
    count = len(result.delegated)
    return await _page(
        request,
        token,
        notice=f"{count} item{'s' if count != 1 else ''} handed to {result.delegate}, who has been told.",
        notice_class="good",
        refused=result.refused,
    )

"""The web review page: ``GET /review/{token}`` shows a request to one approver, ``POST`` decides.

The token is a :class:`~domain.review_links.ReviewLinks` token bound to (request, approver): whoever
holds the link acts as that approver and no one else (the workflow still checks eligibility). A forged,
garbled or expired link is a 403 page and changes nothing.

CSRF protection (double submit, bound to the link, keyed):

1. ``GET`` picks a random per-page *nonce* (or keeps the one already set, so two tabs on the same link
   both work) and sets it in the cookie ``grantflow_review`` with ``SameSite=Strict``, ``HttpOnly`` and
   ``Path=/review/<token>`` — so the cookie belongs to this one link and is only sent to it.
2. The form carries ``csrf = HMAC-SHA256(csrf_key, "<link token>|<nonce>")``. ``csrf_key`` is derived
   from the review-link secret (a random per-process key if none is configured).
3. ``POST`` recomputes the HMAC from the link in the URL and the nonce in the cookie and compares it with
   the form field in constant time; any mismatch or absence is a 403 page and nothing is decided.

A cross-site page cannot make the browser send the cookie (``SameSite=Strict``), cannot read it
(``HttpOnly``, other origin) and cannot compute the form value without the key; a form copied from
another link's page does not verify either, because the HMAC covers the link token. The pages also
forbid framing and send no ``Referer`` (the link is a credential).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from domain.approval import open_stage, votes_in_stage
from domain.durations import format_duration
from domain.identity import Actor, Person
from domain.requests import RequestView, Verdict
from domain.review_links import ReviewLinkError
from templates import template_environment
from web.context import WebContext, context_of
from web.service import NotFound, Refused, ServiceError

COOKIE = "grantflow_review"
_NONCE = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
_STAGE_LABELS = {"request": "request", "extension": "extension", "retro_review": "break-glass retro-review"}
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
}

router = APIRouter(include_in_schema=False)


def derive_csrf_key(secret: str | bytes) -> bytes:
    """The CSRF key for a review-link secret: a different key from the one that signs the links."""
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(raw, b"grantflow.review-csrf.v1", hashlib.sha256).digest()


def csrf_token(key: bytes, link_token: str, nonce: str) -> str:
    return hmac.new(key, f"{link_token}|{nonce}".encode(), hashlib.sha256).hexdigest()


def csrf_valid(key: bytes, link_token: str, nonce: str | None, submitted: str | None) -> bool:
    if not nonce or not submitted or not _NONCE.match(nonce):
        return False
    return hmac.compare_digest(csrf_token(key, link_token, nonce), submitted)


def _utc(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


@lru_cache(maxsize=1)
def _templates() -> jinja2.Environment:
    env = template_environment(autoescape=True)
    env.filters["duration"] = format_duration
    env.filters["utc"] = _utc
    return env


def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    html = _templates().get_template(f"web/{name}.html.j2").render(**values)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _error_page(status: int, headline: str, message: str) -> HTMLResponse:
    return render("review_error", status, headline=headline, message=message)


async def _open_link(ctx: WebContext, token: str) -> tuple[str, Person] | HTMLResponse:
    """The request id and approver a link is for, or the 403 page saying why it cannot be used."""
    try:
        request_id, approver_id = ctx.links.read(token)
    except ReviewLinkError as exc:
        return _error_page(403, "This review link cannot be used", str(exc))
    try:
        approver = await ctx.service.person_by_id(approver_id)
    except ServiceError as exc:
        return _error_page(exc.status, "The review page is unavailable", exc.detail)
    if approver is None or not approver.active:
        return _error_page(
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
        "approvals_now": len({d.approver.id for d in votes if d.verdict is Verdict.APPROVE}),
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
        return _error_page(404, "No such request", exc.detail)
    except ServiceError as exc:
        return _error_page(exc.status, "The review page is unavailable", exc.detail)
    nonce = request.cookies.get(COOKIE)
    if not nonce or not _NONCE.match(nonce):
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
    opened = await _open_link(ctx, token)
    if isinstance(opened, HTMLResponse):
        return opened
    request_id, approver = opened
    try:
        form = await request.form()
    except Exception:
        return _error_page(400, "The form could not be read", "send the form from the review page")
    submitted = form.get("csrf")
    if not csrf_valid(
        ctx.csrf_key, token, request.cookies.get(COOKIE), submitted if isinstance(submitted, str) else None
    ):
        return _error_page(
            403,
            "This form cannot be accepted",
            "the form did not come from this review page, or its session has expired; "
            "open the review link again and decide from there",
        )
    raw_verdict = form.get("verdict")
    try:
        verdict = Verdict(raw_verdict if isinstance(raw_verdict, str) else "")
    except ValueError:
        return _error_page(400, "No decision was given", "choose Approve or Deny")
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
            return _error_page(409, "Your decision was not recorded", exc.detail)
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
        return _error_page(404, "No such request", exc.detail)
    except ServiceError as exc:
        return _error_page(exc.status, "Your decision could not be recorded", exc.detail)
    done = "approved" if verdict is Verdict.APPROVE else "denied"
    outcome = f"You {done} request {view.id}; it is now {view.status.value}."
    stage = open_stage(view)
    if verdict is Verdict.APPROVE and stage is not None:
        count = len({d.approver.id for d in votes_in_stage(view, stage) if d.verdict is Verdict.APPROVE})
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

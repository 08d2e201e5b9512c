"""What the review pages share (a request's page, ``web/review.py``; a campaign reviewer's page,
``web/campaign_review.py``): rendering with the security headers, error pages, and CSRF protection bound to
each page's link.

CSRF protection (double submit, bound to the link, keyed):

1. ``GET`` picks a random per-page *nonce* (or keeps the one already set, so two tabs on the same link
   both work) and sets it in the cookie ``grantflow_review`` with ``SameSite=Strict``, ``HttpOnly`` and
   ``Path=<the page's path>`` — so the cookie belongs to this one link and is only sent to it.
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
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from starlette.datastructures import FormData

from domain.durations import format_duration
from templates import template_environment

COOKIE = "grantflow_review"
NONCE = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
}


def derive_csrf_key(secret: str | bytes) -> bytes:
    """The CSRF key for a review-link secret: a different key from the one that signs the links."""
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    return hmac.new(raw, b"grantflow.review-csrf.v1", hashlib.sha256).digest()


def csrf_token(key: bytes, link_token: str, nonce: str) -> str:
    return hmac.new(key, f"{link_token}|{nonce}".encode(), hashlib.sha256).hexdigest()


def csrf_valid(key: bytes, link_token: str, nonce: str | None, submitted: str | None) -> bool:
    if not nonce or not submitted or not NONCE.match(nonce):
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


def error_page(status: int, headline: str, message: str) -> HTMLResponse:
    return render("review_error", status, headline=headline, message=message)


async def checked_form(request: Request, csrf_key: bytes, link_token: str) -> FormData | HTMLResponse:
    """The posted form when its CSRF value matches this link and the cookie's nonce; otherwise the error
    page to answer with (and nothing is decided)."""
    try:
        form = await request.form()
    except Exception:
        return error_page(400, "The form could not be read", "send the form from the review page")
    submitted = form.get("csrf")
    if not csrf_valid(
        csrf_key, link_token, request.cookies.get(COOKIE), submitted if isinstance(submitted, str) else None
    ):
        return error_page(
            403,
            "This form cannot be accepted",
            "the form did not come from this review page, or its session has expired; "
            "open the review link again and decide from there",
        )
    return form

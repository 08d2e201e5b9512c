"""The web review page over a real socket: signed approver-bound links, CSRF, decisions and refusals."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest_asyncio
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from configuration.settings import Settings
from domain.requests import RequestStatus
from domain.review_links import ReviewLinks
from tests.stack import LINK_SECRET, Stack
from web.app import WebContext, create_app, running
from web.auth import TokenRegistry
from web.pages import COOKIE
from web.service import RequestService


@dataclass
class Site:
    url: str
    stack: Stack
    service: RequestService

    def link(self, request_id: str, email: str) -> str:
        person = self.stack.organisation.by_email()[email]
        return f"/review/{self.stack.links.token(request_id, person.id)}"

    async def get(self, path: str, cookie: str | None = None) -> httpx.Response:
        headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            return await http.get(path, headers=headers)

    async def post(self, path: str, form: dict[str, str], cookie: str | None = None) -> httpx.Response:
        headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            return await http.post(path, data=form, headers=headers)

    async def open(self, path: str) -> tuple[httpx.Response, str, str]:
        """GET the page; return it with its CSRF form value and the nonce cookie it set."""
        page = await self.get(path)
        assert page.status_code == 200, page.text
        match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
        assert match is not None, page.text
        cookie = page.headers["set-cookie"]
        nonce = re.match(rf"{COOKIE}=([^;]+);", cookie)
        assert nonce is not None, cookie
        return page, match.group(1), nonce.group(1)


@pytest_asyncio.fixture(loop_scope="session")
async def site(stack: Stack) -> AsyncIterator[Site]:
    service = RequestService(stack.env.client, stack.store, stack.policies, stack.task_queue, stack.timings)
    context = WebContext(
        settings=Settings(state_dir=stack.tmp_path),
        store=stack.store,
        client=stack.env.client,
        policies=stack.policies,
        links=stack.links,
        tokens=TokenRegistry(None),
        service=service,
    )
    async with running(create_app(context)) as url:
        yield Site(url=url, stack=stack, service=service)


async def new_request(site: Site, reason: str = "INC-7 <script>alert(1)</script>") -> str:
    view = await site.service.create(
        site.stack.actor("alice@example.com"), resource="pg-prod", role="admin", duration="90m", reason=reason
    )
    return view.id


def nothing_happened(site: Site, rid: str) -> None:
    view = site.stack.store.get_request(rid)
    assert view is not None and view.approvals == [] and view.denials == []
    assert not [e for e in site.stack.store.ledger_entries(subject=rid) if e.kind.startswith("decision.")]


async def test_page_shows_the_request_and_approves_through_the_form(site: Site) -> None:
    rid = await new_request(site)
    path = site.link(rid, "bob@example.com")
    page, csrf, nonce = await site.open(path)
    html = page.text
    for expected in (
        rid,
        "alice@example.com",
        "pg-prod",
        "admin",
        "pg-prod-admin",
        "1h30m",
        "PENDING",
        "2 approval(s) from group db-owners",
        "4h",
        "bob@example.com",
        "Nobody has decided yet.",
    ):
        assert expected in html, expected
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    cookie = page.headers["set-cookie"].lower()
    assert "samesite=strict" in cookie and "httponly" in cookie and f"path={path.lower()}" in cookie
    assert page.headers["x-frame-options"] == "DENY" and page.headers["referrer-policy"] == "no-referrer"

    done = await site.post(path, {"csrf": csrf, "verdict": "approve", "reason": "looks right"}, cookie=nonce)
    assert done.status_code == 200, done.text
    assert f"You approved request {rid}: 1 of 2 approvals so far" in done.text
    view = site.stack.store.get_request(rid)
    assert view is not None
    assert [(d.approver.email, d.channel, d.reason) for d in view.approvals] == [
        ("bob@example.com", "web", "looks right")
    ]

    # carol approves through her own link: quorum
    carol_path = site.link(rid, "carol@example.com")
    _, carol_csrf, carol_nonce = await site.open(carol_path)
    quorum = await site.post(
        carol_path, {"csrf": carol_csrf, "verdict": "approve", "reason": ""}, cookie=carol_nonce
    )
    assert f"You approved request {rid}; it is now ACTIVE." in quorum.text  # the answer waits for the grant
    await site.stack.wait_for(
        site.stack.env.client.get_workflow_handle(rid), lambda v: v.status is RequestStatus.ACTIVE
    )
    again = await site.get(path, cookie=nonce)
    assert "ACTIVE" in again.text and "Nothing on this request awaits a decision." in again.text
    assert re.search(r"bob@example.com</td>\s*<td>approve</td>\s*<td>request</td>\s*<td>web</td>", again.text)
    assert f"{COOKIE}={nonce}" in again.headers["set-cookie"]  # the nonce is kept across page loads


async def test_refusals_are_shown_and_recorded(site: Site) -> None:
    rid = await new_request(site)
    path = site.link(rid, "erin@example.com")
    page, csrf, nonce = await site.open(path)
    assert "erin@example.com" in page.text
    refused = await site.post(path, {"csrf": csrf, "verdict": "approve", "reason": "why not"}, cookie=nonce)
    assert refused.status_code == 409
    assert "Your decision was not recorded" in refused.text
    assert "erin@example.com is not an approver for pg-prod admin" in refused.text
    [entry] = [e for e in site.stack.store.ledger_entries(subject=rid) if e.kind == "decision.refused"]
    assert entry.actor == "erin@example.com" and entry.channel == "web"
    assert entry.data["reason_given"] == "why not"

    # deny through the page ends the request
    dan = site.link(rid, "dan@example.com")
    _, dan_csrf, dan_nonce = await site.open(dan)
    denied = await site.post(dan, {"csrf": dan_csrf, "verdict": "deny", "reason": "no"}, cookie=dan_nonce)
    assert denied.status_code == 200 and "You denied request" in denied.text


def _expired_token(request_id: str, approver_id: str) -> str:
    class PastSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 2 * 3600  # the stack's links live one hour

    serializer = URLSafeTimedSerializer(LINK_SECRET, salt=ReviewLinks.SALT, signer=PastSigner)
    return str(serializer.dumps({"r": request_id, "a": approver_id}))


async def test_forged_expired_and_tampered_links_are_403_and_change_nothing(site: Site) -> None:
    rid = await new_request(site)
    bob_id = site.stack.organisation.by_email()["bob@example.com"].id
    good = site.stack.links.token(rid, bob_id)
    _, csrf, nonce = await site.open(f"/review/{good}")
    other_secret = ReviewLinks("not-the-secret", "http://x", timedelta(hours=1)).token(rid, bob_id)
    tampered = good[:-3] + ("AAA" if good[-3:] != "AAA" else "BBB")
    cases: dict[str, tuple[str, str]] = {
        "forged": ("not-a-token", "not valid"),
        "other secret": (other_secret, "not valid"),
        "tampered": (tampered, "not valid"),
        "expired": (_expired_token(rid, bob_id), "expired"),
    }
    for name, (token, message) in cases.items():
        shown = await site.get(f"/review/{token}")
        assert shown.status_code == 403, name
        assert message in shown.text and "Nothing was changed." in shown.text, name
        posted = await site.post(f"/review/{token}", {"csrf": csrf, "verdict": "approve"}, cookie=nonce)
        assert posted.status_code == 403, name
    nothing_happened(site, rid)


async def test_bad_csrf_is_403_and_changes_nothing(site: Site) -> None:
    rid = await new_request(site)
    path = site.link(rid, "bob@example.com")
    _, csrf, nonce = await site.open(path)
    carol_path = site.link(rid, "carol@example.com")
    _, carol_csrf, carol_nonce = await site.open(carol_path)
    attempts: list[tuple[dict[str, Any], str | None]] = [
        ({"verdict": "approve"}, nonce),  # no csrf field
        ({"csrf": csrf, "verdict": "approve"}, None),  # no cookie (a cross-site post)
        ({"csrf": "0" * 64, "verdict": "approve"}, nonce),  # wrong value
        ({"csrf": csrf, "verdict": "approve"}, "x" * 32),  # another nonce
        ({"csrf": carol_csrf, "verdict": "approve"}, carol_nonce),  # carol's page, posted to bob's link
    ]
    for form, cookie in attempts:
        response = await site.post(path, form, cookie=cookie)
        assert response.status_code == 403, (form, cookie)
        assert "did not come from this review page" in response.text
    nothing_happened(site, rid)
    # and a correct post still works afterwards
    ok = await site.post(path, {"csrf": csrf, "verdict": "approve"}, cookie=nonce)
    assert ok.status_code == 200


async def test_unknown_request_and_missing_verdict(site: Site) -> None:
    bob_id = site.stack.organisation.by_email()["bob@example.com"].id
    missing = await site.get(f"/review/{site.stack.links.token('req-000000000000', bob_id)}")
    assert missing.status_code == 404 and "there is no request req-000000000000" in missing.text
    rid = await new_request(site, reason="INC-8")
    path = site.link(rid, "bob@example.com")
    _, csrf, nonce = await site.open(path)
    nothing = await site.post(path, {"csrf": csrf, "verdict": "maybe"}, cookie=nonce)
    assert nothing.status_code == 400 and "choose Approve or Deny" in nothing.text
    nothing_happened(site, rid)

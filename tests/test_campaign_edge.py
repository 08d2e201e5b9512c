"""Campaigns at the edge, over a real socket: the REST API (launch, status, preview, items, decisions, owner
commands; auditors read and change nothing), the ``grantflow campaign`` commands, and the reviewer's web
page (signed link, filters, bulk decisions, CSRF)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from configuration.settings import Settings
from grantflow.commands.campaign import campaign
from store.evidence_bundle import public_key_text, write_bundle
from tests.stack import EVIDENCE_KEY, Stack
from tests.test_campaign_workflow import ANALYTICS, synced, until_open
from web.app import WebContext, create_app, running
from web.auth import TokenRegistry, issue_token
from web.pages import COOKIE
from web.service import RequestService

TOKENS = {
    "margaret": ("margaret@example.com", ["admin"]),
    "judy": ("judy@example.com", []),
    "xena": ("xena@example.com", []),
    "auditor": ("auditor@example.com", ["auditor"]),
}


@dataclass
class Edge:
    url: str
    stack: Stack
    tokens: dict[str, str]

    async def call(self, who: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        async with httpx.AsyncClient(base_url=f"{self.url}/api/v1", headers=headers, timeout=30) as http:
            return await http.request(method, path, **kwargs)

    async def cli(self, *args: str, who: str = "margaret") -> Result:
        settings = Settings(
            state_dir=self.stack.tmp_path / "state", api_url=self.url, api_token=self.tokens[who]
        )
        return await asyncio.to_thread(
            CliRunner().invoke, campaign, list(args), obj={"settings": settings}, catch_exceptions=False
        )


@pytest_asyncio.fixture(loop_scope="session")
async def edge(scim_stack: Stack) -> AsyncIterator[Edge]:
    stack = scim_stack
    await synced(stack)
    tokens_file = stack.tmp_path / "tokens.toml"
    tokens = {name: issue_token(tokens_file, name, email, roles) for name, (email, roles) in TOKENS.items()}
    context = WebContext(
        settings=Settings(state_dir=stack.tmp_path, task_queue=stack.task_queue),
        store=stack.store,
        client=stack.env.client,
        policies=stack.policies,
        links=stack.links,
        tokens=TokenRegistry(tokens_file),
        service=RequestService(stack.env.client, stack.store, stack.policies, stack.task_queue),
    )
    async with running(create_app(context)) as url:
        yield Edge(url=url, stack=stack, tokens=tokens)


async def until_status(edge: Edge, campaign_id: str, status: str) -> dict[str, Any]:
    for _ in range(400):
        doc: dict[str, Any] = (await edge.call("margaret", "GET", f"/campaigns/{campaign_id}")).json()
        if doc["campaign"]["status"] == status:
            return doc
        await asyncio.sleep(0.05)
    raise AssertionError(doc)


async def test_rest_launch_preview_decide_and_auditors_change_nothing(edge: Edge) -> None:
    bad = await edge.call(
        "margaret",
        "POST",
        "/campaigns",
        json={"spec": ANALYTICS.replace('"14d"', '"0s"'), "source": "q.toml"},
    )
    assert bad.status_code == 422 and bad.json()["detail"].startswith("q.toml: line 3: duration:")
    judy_launch = await edge.call("judy", "POST", "/campaigns", json={"spec": ANALYTICS})
    assert judy_launch.status_code == 403

    dry = await edge.call("margaret", "POST", "/campaigns", json={"spec": ANALYTICS, "dry_run": True})
    assert dry.status_code == 201, dry.text
    dry_id = dry.json()["id"]
    await until_status(edge, dry_id, "DRY_RUN")
    preview = (await edge.call("auditor", "GET", f"/campaigns/{dry_id}/preview")).json()
    assert preview["items"] == 7 and len(preview["would_revoke"]) == 7  # default revoke, nobody answered
    assert {r["reviewer"] for r in preview["reviewers"]} == {
        "judy@example.com",
        "dan@example.com",
        "xena@example.com",
        "dina@example.com",
    }
    assert not edge.stack.notifier.messages  # a dry run tells nobody

    launched = (await edge.call("margaret", "POST", "/campaigns", json={"spec": ANALYTICS})).json()
    await until_open(edge.stack, launched["id"])
    listed = (await edge.call("auditor", "GET", "/campaigns")).json()
    assert {c["id"] for c in listed["campaigns"]} == {dry_id, launched["id"]}
    judy_items = (
        await edge.call(
            "margaret", "GET", f"/campaigns/{launched['id']}/items", params={"reviewer": "judy@example.com"}
        )
    ).json()["items"]
    assert len(judy_items) == 3
    xena_item = (
        await edge.call(
            "margaret", "GET", f"/campaigns/{launched['id']}/items", params={"reviewer": "xena@example.com"}
        )
    ).json()["items"][0]
    decisions = {"decisions": [{"item_id": xena_item["id"], "verdict": "revoke"}]}
    as_judy = await edge.call("judy", "POST", f"/campaigns/{launched['id']}/decisions", json=decisions)
    assert as_judy.status_code == 200
    assert as_judy.json()["refused"][xena_item["id"]] == (
        "this item is reviewed by xena@example.com, not by judy@example.com"
    )
    # A decision names the stage its decider was shown: one made for another stage changes nothing.
    stale = await edge.call(
        "xena", "POST", f"/campaigns/{launched['id']}/decisions", json={**decisions, "stage": 2}
    )
    assert stale.status_code == 200 and stale.json()["refused"][xena_item["id"]] == (
        "this decision was made for stage 2, which the item has not reached: it is in stage 1"
    )
    as_xena = await edge.call(
        "xena", "POST", f"/campaigns/{launched['id']}/decisions", json={**decisions, "stage": 1}
    )
    assert as_xena.json() == {"recorded": [xena_item["id"]], "refused": {}}
    auditor = await edge.call("auditor", "POST", f"/campaigns/{launched['id']}/decisions", json=decisions)
    assert auditor.status_code == 403 and "changes nothing" in auditor.json()["detail"]
    cancel = await edge.call("auditor", "POST", f"/campaigns/{launched['id']}/cancel", json={})
    assert cancel.status_code == 403
    status = (await edge.call("auditor", "GET", f"/campaigns/{launched['id']}")).json()
    assert status["progress"]["decided_in_stage"] == 1 and status["progress"]["pending_in_stage"] == 6
    kinds = [e.kind for e in edge.stack.store.ledger_entries(subject=launched["id"])]
    assert kinds.count("access.forbidden") == 2 and kinds.count("campaign.decision_refused") == 2
    extend = await edge.call("margaret", "POST", f"/campaigns/{launched['id']}/extend", json={"by": "2d"})
    assert extend.status_code == 200 and "now closes at" in extend.json()["message"]
    refused = await edge.call("judy", "POST", f"/campaigns/{launched['id']}/cancel", json={"reason": "no"})
    assert refused.status_code == 409 and "only its owner" in refused.json()["detail"]


async def test_the_cli_launches_watches_decides_and_verifies_a_bundle(edge: Edge, tmp_path: Path) -> None:
    spec = tmp_path / "analytics.toml"
    spec.write_text(ANALYTICS.replace('reminders = ["2d"]', 'reminders = ["two days"]'))
    bad = await edge.cli("launch", str(spec))
    assert bad.exit_code == 2 and f"{spec}: line 7: reminders.0:" in bad.stderr
    spec.write_text(ANALYTICS)
    launched = await edge.cli("launch", str(spec), "--dry-run", "--json")
    assert launched.exit_code == 0, launched.stderr
    campaign_id = json.loads(launched.stdout)["id"]
    watched = await edge.cli("status", campaign_id, "--watch")
    assert watched.exit_code == 0 and "DRY_RUN" in watched.stdout
    preview = await edge.cli("preview", campaign_id)
    assert "7 items over 4 reviewers" in preview.stdout and "revokes 7" in preview.stdout

    real = json.loads((await edge.cli("launch", str(spec), "--json")).stdout)["id"]
    await until_open(edge.stack, real)
    item = edge.stack.store.items(real, reviewer_id=edge.stack.ref("xena@example.com").id)[0]
    refused = await edge.cli("decide", real, "--item", item.id, "--keep", who="judy")
    assert refused.exit_code == 1 and "reviewed by xena@example.com" in refused.stderr
    later_stage = await edge.cli("decide", real, "--item", item.id, "--keep", "--stage", "2", who="xena")
    assert later_stage.exit_code == 1 and "stage 2, which the item has not reached" in later_stage.stderr
    kept = await edge.cli(
        "decide", real, "--item", item.id, "--keep", "--reason", "pipeline owner", "--stage", "1", who="xena"
    )
    assert kept.exit_code == 0 and f"keep: {item.id}" in kept.stdout
    status = await edge.cli("status", real)
    assert "1 decided, 6 pending" in status.stdout
    not_owner = await edge.cli("end-stage", real, "--reason", "enough", who="judy")
    assert not_owner.exit_code == 1 and "only its owner" in not_owner.stderr
    ended = await edge.cli("end-stage", real, "--reason", "every reviewer has answered")
    assert ended.exit_code == 0 and "closing now" in ended.stdout
    closed = await edge.cli("status", real, "--watch")
    assert closed.exit_code == 0 and "CLOSED" in closed.stdout

    key = Ed25519PrivateKey.generate()
    bundle = tmp_path / "bundle"
    write_bundle(bundle, {"items.csv": b"item\n"}, about={"campaign_id": real}, signing_key=key)
    verified = await edge.cli("verify-report", str(bundle), "--public-key", public_key_text(key))
    assert verified.exit_code == 0 and "verified — 1 files" in verified.stdout
    (bundle / "items.csv").write_bytes(b"item\nforged\n")
    tampered = await edge.cli("verify-report", str(bundle), "--public-key", public_key_text(key))
    assert tampered.exit_code == 1 and "items.csv does not match" in tampered.stderr


async def test_the_reviewers_page_decides_in_bulk_behind_its_link(edge: Edge) -> None:
    stack = edge.stack
    launched = (await edge.call("margaret", "POST", "/campaigns", json={"spec": ANALYTICS})).json()
    await until_open(stack, launched["id"])
    notice = next(
        m
        for m in stack.notifier.messages
        if m.event == "campaign_notice" and m.recipient.email == "judy@example.com"
    )
    assert notice.link is not None
    path = notice.link.removeprefix("http://127.0.0.1:9")
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as browser:
        page = await browser.get(path)
        assert (
            page.status_code == 200 and "You are reviewing as <strong>judy@example.com</strong>" in page.text
        )
        for name in ("bea", "cyrus", "dina"):
            assert f"{name}@example.com" in page.text
        assert "revoke: not used in the records" in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        filtered = await browser.get(path, params={"q": "cyrus"})
        assert "cyrus@example.com" in filtered.text and "bea@example.com" not in filtered.text
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', filtered.text)
        assert csrf is not None
        shown = re.findall(r'name="shown" value="([\w-]+)"', filtered.text)
        forged = await browser.post(path, data={"csrf": "0" * 64, "bulk": "keep", "shown": shown})
        assert forged.status_code == 403
        kept = await browser.post(
            path, data={"csrf": csrf.group(1), "bulk": "keep", "shown": shown, "reason": "reports"}
        )
        assert kept.status_code == 200 and "1 decision recorded" in kept.text
        assert browser.cookies.get(COOKIE) is not None
    cyrus = stack.store.items(launched["id"], subject_id=stack.ref("cyrus@example.com").id)[0]
    assert cyrus.verdict == "keep"
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as stranger:
        assert (await stranger.get(path[:-4] + "abcd")).status_code == 403


async def test_a_closed_campaigns_signed_evidence_is_fetched_and_verified(edge: Edge, tmp_path: Path) -> None:
    stack = edge.stack
    launched = (await edge.call("margaret", "POST", "/campaigns", json={"spec": ANALYTICS})).json()
    await until_open(stack, launched["id"])
    early = await edge.cli("report", launched["id"], "--out", str(tmp_path / "early"))
    assert early.exit_code == 1 and "is still OPEN" in early.stderr
    cancel = await edge.call(
        "margaret", "POST", f"/campaigns/{launched['id']}/cancel", json={"reason": "scope"}
    )
    assert cancel.status_code == 200
    await until_status(edge, launched["id"], "CANCELLED")
    for _ in range(200):  # the bundle is written just after the campaign closes
        if stack.store.evidence(launched["id"]):
            break
        await asyncio.sleep(0.05)
    out = tmp_path / "evidence"
    fetched = await edge.cli("report", launched["id"], "--out", str(out), "--json", who="auditor")
    assert fetched.exit_code == 0, fetched.stderr
    doc = json.loads(fetched.stdout)
    assert doc["files"] == ["decisions.jsonl", "items.csv", "population.json", "summary.html"]
    entry = next(
        e for e in stack.store.ledger_entries(subject=launched["id"]) if e.kind == "campaign.evidence"
    )
    assert entry.data["manifest_sha256"] == doc["manifest_sha256"]
    assert "CANCELLED" in (out / "summary.html").read_text()
    assert len((out / "items.csv").read_text().splitlines()) == 8  # the header and 7 items
    public = public_key_text(EVIDENCE_KEY)
    assert (await edge.cli("verify-report", str(out), "--public-key", public)).exit_code == 0
    summary = bytearray((out / "summary.html").read_bytes())
    summary[100] ^= 1
    (out / "summary.html").write_bytes(bytes(summary))
    failed = await edge.cli("verify-report", str(out), "--public-key", public)
    assert failed.exit_code == 1 and "summary.html does not match" in failed.stderr

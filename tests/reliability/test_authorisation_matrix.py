"""The authorisation matrix: every way of deciding or acting without the right to, through every edge, over
one running stack (dev server, directory in scim2-server, hoop, Slack and Jira stand-ins, SMTP, the web app
with the REST API, review pages and both webhooks).

Each cell is one attempt. It must be refused where it entered, with its reason (an HTTP 4xx with a body, a
Slack ephemeral, a Jira comment, a CLI message) and change nothing: no vote counted, no grant, no request or
campaign moved, no request created. A person's attempt is then in the evidence ledger as a refused attempt
(``decision.refused``, ``access.forbidden``, ``campaign.decision_refused``, ``campaign.<command>_refused``;
a Jira transition also leaves its delivery marker, ``jira.webhook``, whose outcome is ``refused``) — and
nothing else is. A delivery that is no person's new attempt — forged or stale signatures, a replay of a
captured Slack request, a Jira event replayed under a new delivery id — is refused and writes nothing at
all: an unauthenticated sender must not be able to append to the evidence, and a replay is not its person
trying again.

- JIT: the requester approving their own request (REST, CLI, Slack, Jira, review page); an ineligible
  approver (the same channels); a token without the role (no role creating, a requester's token on the admin
  endpoints); a requester's token acting for someone else; an administrator voting for approvers (refused
  by default; with ``allow_admin_on_behalf`` allowed, and counted as one person: the separate test at the
  end); an expired review link; a review page posted for a stage that has moved on.
- campaigns: a reviewer deciding on their own access (REST, review page); another reviewer's items through
  one's link; an expired link; a review page posted after its stage closed; a digest button of a closed
  stage (Slack).
- channels: Slack requests forged, stale (signed more than five minutes ago) and replayed (a captured click
  and a captured slash command, sent again inside the signing window); Jira deliveries forged, and replayed
  with a new delivery id (the signed changelog id makes them duplicates).

``record("authorisation-matrix", …)`` keeps the counts of the last full run.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import pytest_asyncio
from click.testing import CliRunner, Result
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from temporalio.testing import WorkflowEnvironment

from configuration.settings import Settings
from domain.policy import PolicySet
from domain.requests import RequestStatus, RequestView
from domain.review_links import ReviewLinks
from grantflow.commands.requests import request as request_commands
from integrations.slack import APPROVE_ACTION
from integrations.slack.campaign_digest import CAMPAIGN_KEEP_ACTION, digest_value
from tests.builders import jira_webhook_headers
from tests.channel_stack import JIRA_WEBHOOK_SECRET, ChannelStack, start_channel_stack
from tests.reliability.results import record
from tests.stack import LINK_SECRET, Stack, start_stack
from tests.test_campaign_workflow import handle as campaign_handle
from tests.test_campaign_workflow import synced, until_open
from web.auth import TokenRegistry, issue_token
from web.campaign_service import CampaignService
from web.pages import COOKIE, csrf_token
from web.service import RequestService
from workflows.access_request import AccessRequestWorkflow

pytestmark = [pytest.mark.long, pytest.mark.reliability]

TOKENS = {
    "alice": ("alice@example.com", ["requester"]),
    "erin": ("erin@example.com", ["requester"]),
    "bob": ("bob@example.com", []),  # an approver: approving is not a role
    "dina": ("dina@example.com", []),  # a reviewer in the campaigns, and reviewed in them herself
    "judy": ("judy@example.com", []),
    "grace": ("grace@example.com", ["admin"]),
    "margaret": ("margaret@example.com", ["admin"]),
}

CAMPAIGN = """\
name = "Analytics access review"
owner = "margaret@example.com"
duration = "14d"
default_decision = "keep"
fallback_reviewer = "margaret@example.com"

[scope]
groups = ["analytics"]
include_admins = false

[[stages]]
reviewers = "manager"
duration = "7d"

[[stages]]
reviewers = "manager"
"""
"""Both stages are reviewed by the subjects' managers, so a page shown for stage 1 would still find its
items in its reviewer's hands in stage 2: only the stage it was shown for tells them apart. judy reviews
bea, cyrus and dina; dina reviews eli and fay (and is reviewed by judy)."""

SETTLE = 0.5
"""Seconds the ledger must stay unchanged before a cell's effects are read: Slack's handlers run after the
acknowledgement, and anything a refused delivery had started would have written by then."""


# ---------------------------------------------------------------------------------------------- the stack


@dataclass
class CampaignTarget:
    id: str
    items: dict[str, str]  # subject email -> item id


@dataclass
class Matrix:
    """The running stack and what the cells act on, made once and shared (a refused attempt changes
    nothing, so the next cell finds it as it was)."""

    rig: ChannelStack
    tokens: dict[str, str]
    campaigns: CampaignService
    permissive: RequestService
    targets: dict[str, Any] = field(default_factory=dict)
    launched: list[str] = field(default_factory=list)
    results: dict[str, CellResult] = field(default_factory=dict)

    @property
    def stack(self) -> Stack:
        return self.rig.stack

    # ------------------------------------------------------------------ callers

    async def api(self, who: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        async with httpx.AsyncClient(base_url=f"{self.rig.url}/api/v1", headers=headers, timeout=30) as h:
            return await h.request(method, path, **kwargs)

    async def cli(self, who: str, *args: str) -> Result:
        settings = Settings(
            state_dir=self.stack.tmp_path / "cli", api_url=self.rig.url, api_token=self.tokens[who]
        )
        return await asyncio.to_thread(
            CliRunner().invoke, request_commands, list(args), obj={"settings": settings}
        )

    async def page(self, path: str) -> tuple[str, str, str]:
        """GET a review page (a request's or a campaign's): its CSRF field, nonce cookie and text."""
        async with httpx.AsyncClient(base_url=self.rig.url, timeout=30) as http:
            shown = await http.get(path)
        assert shown.status_code == 200, shown.text
        csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', shown.text)
        nonce = shown.cookies.get(COOKIE)
        assert csrf is not None and nonce, shown.text
        return csrf.group(1), nonce, shown.text

    async def post_form(self, path: str, form: dict[str, str], nonce: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.rig.url, timeout=30) as http:
            return await http.post(path, data=form, headers={"Cookie": f"{COOKIE}={nonce}"})

    def campaign_path(self, campaign_id: str, email: str) -> str:
        return f"/campaigns/review/{self.rig.links.campaign_token(campaign_id, self.rig.ref(email).id)}"

    # ------------------------------------------------------------------ what is there to change

    def last_seq(self) -> int:
        entries = self.stack.store.ledger_entries()
        return entries[-1].seq if entries else 0

    async def settled_entries(self, after: int) -> list[Any]:
        """The ledger entries after ``after`` once the ledger has stopped growing for :data:`SETTLE`."""
        count, stable_since = -1, time.monotonic()
        while True:
            entries = self.stack.store.ledger_entries(after_seq=after)
            if len(entries) != count:
                count, stable_since = len(entries), time.monotonic()
            elif time.monotonic() - stable_since >= SETTLE:
                return entries
            await asyncio.sleep(0.05)

    async def state(self) -> dict[str, Any]:
        """Everything an attempt could change: every request (as stored, and as its workflow holds it while
        open), every campaign's record, items and decisions. Refused attempts kept as campaign evidence
        (``store.refusals``) are left out: they are the record this suite expects."""
        store = self.stack.store

        def of(view: RequestView) -> tuple[Any, ...]:
            pending = view.pending_extension
            return (
                view.status,
                tuple((d.approver.id, d.stage, d.channel, d.on_behalf_by) for d in view.approvals),
                tuple((d.approver.id, d.stage, d.channel) for d in view.denials),
                tuple((d.approver.id, d.stage) for d in pending.approvals) if pending else None,
                view.expires_at,
                view.granted_total,
            )

        views = store.list_requests(limit=500)
        state: dict[str, Any] = {f"request {v.id}": of(v) for v in views}
        for view in views:
            if view.status in (RequestStatus.PENDING, RequestStatus.ACTIVE):
                live = await self.rig.handle(view.id).query(AccessRequestWorkflow.view)
                state[f"workflow {view.id}"] = of(live)
        for campaign_id in self.launched:
            found = store.campaign(campaign_id)
            assert found is not None
            state[f"campaign {campaign_id}"] = (found.status, found.stage, found.stage_open)
            state[f"items {campaign_id}"] = [
                (i.id, i.stage, i.outcome, i.verdict) for i in store.items(campaign_id)
            ]
            state[f"decisions {campaign_id}"] = [
                (seq, d.item_id, d.stage, d.verdict) for seq, d in store.decisions(campaign_id)
            ]
        return state


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def matrix(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Matrix]:
    tmp = tmp_path_factory.mktemp("authorisation-matrix")
    async with start_stack(dev_env, tmp, time_skipping=False, with_scim=True) as stack:
        await synced(stack)  # the directory into the store: people, groups, managers
        async with start_channel_stack(stack) as rig:
            tokens_file = tmp / "api-tokens.toml"
            tokens = {n: issue_token(tokens_file, n, email, roles) for n, (email, roles) in TOKENS.items()}
            rig.context.tokens = TokenRegistry(tokens_file)
            # campaigns run on the stack's own worker, the one with the directory (SCIM) to snapshot
            campaigns = CampaignService(stack.env.client, stack.store, stack.task_queue)
            rig.context.campaigns = campaigns
            assert rig.context.slack is not None
            rig.context.slack.campaign_actions.campaigns = campaigns
            permissive = RequestService(
                stack.env.client,
                stack.store,
                _allowing_admin_votes(stack.policies),
                rig.task_queue,
                stack.timings,
                channels=rig.settings.configured_channels,
            )
            matrix = Matrix(rig=rig, tokens=tokens, campaigns=campaigns, permissive=permissive)
            try:
                yield matrix
            finally:
                for campaign_id in matrix.launched:
                    await campaign_handle(stack, campaign_id).terminate("the test is over")


def _allowing_admin_votes(policies: PolicySet) -> PolicySet:
    data = policies.model_dump(mode="json")
    data["resources"]["pg-prod"]["roles"]["admin"]["allow_admin_on_behalf"] = True
    return PolicySet.model_validate(data)


# ---------------------------------------------------------------------------------------------- targets


async def pending_request(m: Matrix) -> str:
    """alice's request for pg-prod admin (two approvals from db-owners), PENDING, asked in every channel."""
    if "pending" not in m.targets:
        view = await m.rig.request("alice")
        await m.rig.asked_dm(view.id, "bob@example.com")
        await m.rig.ticket(view.id)
        await m.rig.review_link(view.id, "bob@example.com")
        m.targets["pending"] = view.id
    rid: str = m.targets["pending"]
    return rid


async def extension_pending(m: Matrix) -> str:
    """carol's pg-prod admin, approved by bob (Slack) and dan (review page), ACTIVE, with an extension
    waiting for approvals: the request's own decisions are over. Kept aside: a click on bob's Approve
    button of the request's message, as his Slack client could still send it (a copy not yet updated)."""
    if "extension" not in m.targets:
        rid = (await m.rig.request("carol")).id
        message = await m.rig.asked_dm(rid, "bob@example.com")
        bob = m.rig.slack_users["bob@example.com"]
        m.targets["request_button"] = m.rig.driver.block_actions_payload(
            bob, message["channel"], message["ts"], APPROVE_ACTION
        )
        await m.rig.approve(rid, "bob@example.com", "slack")
        await m.rig.approve(rid, "dan@example.com", "email")  # dan has no Slack account
        await m.rig.wait_status(rid, RequestStatus.ACTIVE)
        extending = await m.rig.service.extend(rid, m.stack.actor("carol@example.com"), "30m", "more")
        assert extending.pending_extension is not None
        m.targets["extension"] = rid
    rid = m.targets["extension"]
    return rid


async def open_campaign(m: Matrix) -> CampaignTarget:
    """The campaign in its first stage."""
    if "campaign" not in m.targets:
        m.targets["campaign"] = await _launch(m)
    target: CampaignTarget = m.targets["campaign"]
    return target


async def _launch(m: Matrix) -> CampaignTarget:
    launched = await m.api("margaret", "POST", "/campaigns", json={"spec": CAMPAIGN})
    assert launched.status_code == 201, launched.text
    campaign_id = launched.json()["id"]
    m.launched.append(campaign_id)
    await until_open(m.stack, campaign_id)
    items = {i.subject.name: i.id for i in m.stack.store.items(campaign_id)}
    return CampaignTarget(id=campaign_id, items=items)


@dataclass
class MovedOn:
    """A campaign whose first stage the owner ended (stage 2 is open, the same reviewers), with what judy
    was shown in stage 1: her review page's form and a digest button in Slack."""

    campaign: CampaignTarget
    path: str
    csrf: str
    nonce: str
    button: tuple[str, str]  # the digest message: channel, ts


async def moved_on(m: Matrix) -> MovedOn:
    if "moved_on" not in m.targets:
        campaign = await _launch(m)
        path = m.campaign_path(campaign.id, "judy@example.com")
        csrf, nonce, shown = await m.page(path)
        assert '<input type="hidden" name="stage" value="0">' in shown  # the page says what it was for
        judy = m.rig.slack_users["judy@example.com"]
        value = digest_value(campaign.id, 0, [campaign.items["bea@example.com"]])
        assert m.rig.context.slack is not None
        posted = await m.rig.context.slack.client.chat_postMessage(
            channel=judy,
            text="Analytics access review: bea@example.com",
            blocks=[
                {
                    "type": "actions",
                    "block_id": "gf_decide_bea",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": CAMPAIGN_KEEP_ACTION,
                            "text": {"type": "plain_text", "text": "Keep"},
                            "value": value,
                        }
                    ],
                }
            ],
        )
        ended = await m.api("margaret", "POST", f"/campaigns/{campaign.id}/end-stage", json={"reason": "go"})
        assert ended.status_code == 200, ended.text
        await until_open(m.stack, campaign.id, stage=1)
        m.targets["moved_on"] = MovedOn(
            campaign, path, csrf, nonce, (str(posted["channel"]), str(posted["ts"]))
        )
    moved: MovedOn = m.targets["moved_on"]
    return moved


@dataclass
class Captured:
    body: str
    headers: dict[str, str]


async def captured_click(m: Matrix) -> Captured:
    """bob's signed Approve click on erin's request, delivered once (his approval counted, 1 of 2)."""
    if "click" not in m.targets:
        rid = (await m.rig.request("erin")).id
        message = await m.rig.asked_dm(rid, "bob@example.com")
        bob = m.rig.slack_users["bob@example.com"]
        payload = m.rig.driver.block_actions_payload(bob, message["channel"], message["ts"], APPROVE_ACTION)
        body = urlencode({"payload": json.dumps(payload)})
        captured = Captured(body, m.rig.driver.signed_headers(body))
        before = len(m.rig.said_to("bob@example.com"))
        first = await _post_slack(m, captured)
        assert first.status_code == 200, first.text
        await m.rig.told_new("bob@example.com", before, contains=f"You approved request {rid}")
        m.targets["click"] = captured
    click: Captured = m.targets["click"]
    return click


async def captured_command(m: Matrix) -> Captured:
    """frank's signed ``/access billing-api 1h …``, delivered once (his request created)."""
    if "command" not in m.targets:
        frank = m.rig.slack_users["frank@example.com"]
        payload = m.rig.driver.slash_command_payload(frank, "/access", "billing-api 1h INC-77 invoices")
        body = urlencode(payload)
        captured = Captured(body, m.rig.driver.signed_headers(body))
        before = len(m.rig.said_to("frank@example.com"))
        first = await _post_slack(m, captured)
        assert first.status_code == 200, first.text
        await m.rig.told_new("frank@example.com", before, contains="Request `")
        m.targets["command"] = captured
    command: Captured = m.targets["command"]
    return command


async def jira_event(m: Matrix) -> str:
    """A signed webhook event already handled: erin (no approver) moving alice's ticket to Approved,
    refused and recorded once."""
    if "jira_event" not in m.targets:
        rid = await pending_request(m)
        key = await m.rig.ticket(rid)
        moved = await m.rig.move(key, "Approve", "erin@example.com")
        assert m.rig.answers(moved)[-1] == 200
        m.targets["jira_event"] = moved
    event: str = m.targets["jira_event"]
    return event


async def _post_slack(m: Matrix, captured: Captured) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            f"{m.rig.url}/slack/events", content=captured.body.encode(), headers=captured.headers
        )


# ---------------------------------------------------------------------------------------------- cells


@dataclass
class Attempt:
    """What the attempt was answered (the text the person or sender saw) and whose record it is."""

    shown: str
    subject: str | None


@dataclass(frozen=True)
class Cell:
    id: str
    family: str
    run: Callable[[Matrix], Awaitable[Attempt]]
    expect: str
    """Part of the reason the attempt must be answered with."""
    records: tuple[str, ...] = ()
    """The ledger kinds it leaves, all about ``Attempt.subject``; () for a delivery that is no
    person's new attempt: nothing at all is written."""

    def __str__(self) -> str:
        return self.id


@dataclass
class CellResult:
    family: str
    refused: bool
    recorded: bool
    changes: int


def _api_refusal(answer: httpx.Response, status: int) -> str:
    assert answer.status_code == status, (answer.status_code, answer.text)
    body = answer.json()
    assert body["error"] and body["detail"], body
    return str(body["detail"])


def _page_refusal(answer: httpx.Response, status: int) -> str:
    assert answer.status_code == status, (answer.status_code, answer.text)
    return answer.text


def _cli_refusal(result: Result) -> str:
    assert result.exit_code == 1, (result.exit_code, result.output)
    return result.output


async def _slack_told(m: Matrix, who: str, act: Callable[[], Awaitable[httpx.Response]], expect: str) -> str:
    before = len(m.rig.said_to(who))
    answer = await act()
    assert answer.status_code == 200, answer.text
    return await m.rig.told_new(who, before, contains=expect)


async def _jira_moved(m: Matrix, rid: str, who: str, expect: str) -> str:
    key = await m.rig.ticket(rid)
    event = await m.rig.move(key, "Approve", who)
    assert m.rig.answers(event)[-1] == 200
    comments = [c for c in m.rig.jira.comments(key) if expect in c]
    assert comments, m.rig.jira.comments(key)
    return comments[-1]


# --- JIT: the requester approving their own request


async def own_by_api(m: Matrix) -> Attempt:
    rid = await pending_request(m)
    return Attempt(_api_refusal(await m.api("alice", "POST", f"/requests/{rid}/approve"), 409), rid)


async def own_by_cli(m: Matrix) -> Attempt:
    rid = await pending_request(m)
    return Attempt(_cli_refusal(await m.cli("alice", "approve", rid, "--reason", "me")), rid)


async def own_by_slack(m: Matrix) -> Attempt:
    rid = await pending_request(m)
    alice = "alice@example.com"
    text = await _slack_told(
        m,
        alice,
        lambda: m.rig.click(rid, "bob@example.com", APPROVE_ACTION, as_user=alice),
        "cannot approve",
    )
    return Attempt(text, rid)


async def own_by_jira(m: Matrix) -> Attempt:
    rid = await pending_request(m)
    return Attempt(await _jira_moved(m, rid, "alice@example.com", "cannot approve their own"), rid)


async def own_by_web(m: Matrix) -> Attempt:
    rid = await pending_request(m)
    answer = await m.rig.review(m.rig.minted_link(rid, "alice@example.com"), "approve", "me")
    return Attempt(_page_refusal(answer, 409), rid)


# --- JIT: someone who is not an approver


async def ineligible_by_api(m: Matrix) -> Attempt:
    rid = await pending_request(m)
    return Attempt(_api_refusal(await m.api("erin", "POST", f"/requests/{rid}/approve"), 409), rid)


async def ineligible_by_slack(m: Matrix) -> Attempt:
    rid = await pending_request(m)
    erin = "erin@example.com"
    text = await _slack_told(
        m,
        erin,
        lambda: m.rig.click(rid, "bob@example.com", APPROVE_ACTION, as_user=erin),
        "not an approver",
    )
    return Attempt(text, rid)


async def ineligible_by_jira(m: Matrix) -> Attempt:
    rid = await pending_request(m)
    return Attempt(await _jira_moved(m, rid, "heidi@example.com", "is not an approver"), rid)


async def ineligible_by_web(m: Matrix) -> Attempt:
    rid = await pending_request(m)
    answer = await m.rig.review(m.rig.minted_link(rid, "erin@example.com"), "approve", "sure")
    return Attempt(_page_refusal(answer, 409), rid)


# --- JIT: tokens without the role


async def no_role_creates(m: Matrix) -> Attempt:
    body = {"resource": "pg-prod", "role": "read", "duration": "1h", "reason": "INC-1"}
    return Attempt(_api_refusal(await m.api("bob", "POST", "/requests", json=body), 403), "token:bob")


async def requester_verifies_the_ledger(m: Matrix) -> Attempt:
    return Attempt(_api_refusal(await m.api("alice", "GET", "/ledger/verify"), 403), "token:alice")


async def requester_runs_a_sync(m: Matrix) -> Attempt:
    return Attempt(_api_refusal(await m.api("alice", "POST", "/sync", json={}), 403), "token:alice")


async def requester_launches_a_campaign(m: Matrix) -> Attempt:
    answer = await m.api("alice", "POST", "/campaigns", json={"spec": CAMPAIGN})
    return Attempt(_api_refusal(answer, 403), "token:alice")


async def requester_reads_a_campaign(m: Matrix) -> Attempt:
    campaign = await open_campaign(m)
    answer = await m.api("alice", "GET", f"/campaigns/{campaign.id}/items")
    return Attempt(_api_refusal(answer, 403), campaign.id)


async def requester_ends_a_stage(m: Matrix) -> Attempt:
    campaign = await open_campaign(m)
    answer = await m.api("alice", "POST", f"/campaigns/{campaign.id}/end-stage", json={"reason": "done"})
    return Attempt(_api_refusal(answer, 409), campaign.id)


# --- JIT: a requester's token acting for someone else


async def requester_approves_as_another(m: Matrix) -> Attempt:
    rid = await pending_request(m)
    answer = await m.api("alice", "POST", f"/requests/{rid}/approve", json={"as": "bob@example.com"})
    return Attempt(_api_refusal(answer, 403), rid)


async def requester_requests_for_another(m: Matrix) -> Attempt:
    body = {
        "resource": "pg-prod",
        "role": "read",
        "duration": "1h",
        "reason": "x",
        "requester": "ivan@example.com",
    }
    return Attempt(_api_refusal(await m.api("erin", "POST", "/requests", json=body), 403), "token:erin")


async def requester_cancels_as_another(m: Matrix) -> Attempt:
    rid = await pending_request(m)
    answer = await m.api("erin", "POST", f"/requests/{rid}/cancel", json={"as": "alice@example.com"})
    return Attempt(_api_refusal(answer, 403), rid)


# --- JIT: an administrator voting for approvers (the policy does not allow it)


async def admin_votes_for_bob(m: Matrix) -> Attempt:
    rid = await pending_request(m)
    answer = await m.api("grace", "POST", f"/requests/{rid}/approve", json={"as": "bob@example.com"})
    return Attempt(_api_refusal(answer, 409), rid)


async def admin_votes_for_carol(m: Matrix) -> Attempt:
    rid = await pending_request(m)
    answer = await m.api(
        "grace", "POST", f"/requests/{rid}/deny", json={"as": "carol@example.com", "reason": "n"}
    )
    return Attempt(_api_refusal(answer, 409), rid)


async def admin_votes_for_dan_by_cli(m: Matrix) -> Attempt:
    rid = await pending_request(m)
    return Attempt(_cli_refusal(await m.cli("grace", "approve", rid, "--as", "dan@example.com")), rid)


# --- JIT: review links and stages


def _expired(payload: dict[str, str]) -> str:
    """A link signed with the real secret two hours ago (the stack's links live one hour)."""

    class PastSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 2 * 3600

    return str(URLSafeTimedSerializer(LINK_SECRET, salt=ReviewLinks.SALT, signer=PastSigner).dumps(payload))


async def _post_with_fresh_form(m: Matrix, path: str, token: str, form: dict[str, str]) -> httpx.Response:
    """POST ``form`` to a review page with a CSRF value that is valid for its link (as kept in a tab)."""
    nonce = secrets.token_urlsafe(24)
    return await m.post_form(path, {"csrf": csrf_token(m.rig.context.csrf_key, token, nonce), **form}, nonce)


async def expired_request_link(m: Matrix) -> Attempt:
    rid = await pending_request(m)
    token = _expired({"r": rid, "a": m.rig.ref("bob@example.com").id})
    answer = await _post_with_fresh_form(m, f"/review/{token}", token, {"verdict": "approve"})
    return Attempt(_page_refusal(answer, 403), rid)


async def request_stage_moved_on_by_web(m: Matrix) -> Attempt:
    """dan's review page, shown while the request waited for its approvals, posted once an extension
    waits: it decided the request, never the extension."""
    rid = await extension_pending(m)
    link = m.rig.minted_link(rid, "dan@example.com")
    token = link.rsplit("/", 1)[1]
    answer = await _post_with_fresh_form(
        m, f"/review/{token}", token, {"verdict": "approve", "stage": "request"}
    )
    return Attempt(_page_refusal(answer, 409), rid)


async def request_stage_moved_on_by_slack(m: Matrix) -> Attempt:
    """bob's Approve button of the request's message (its value carries the request stage), clicked once
    an extension waits."""
    rid = await extension_pending(m)
    body = urlencode({"payload": json.dumps(m.targets["request_button"])})
    text = await _slack_told(
        m, "bob@example.com", lambda: asyncio.to_thread(m.rig.driver.post_signed, body), "extension"
    )
    return Attempt(text, rid)


# --- campaigns


async def reviewer_own_access_by_api(m: Matrix) -> Attempt:
    campaign = await open_campaign(m)
    item = campaign.items["dina@example.com"]
    answer = await m.api(
        "dina",
        "POST",
        f"/campaigns/{campaign.id}/decisions",
        json={"decisions": [{"item_id": item, "verdict": "keep"}]},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["recorded"] == [], answer.text
    return Attempt(answer.json()["refused"][item], campaign.id)


async def reviewer_own_access_by_web(m: Matrix) -> Attempt:
    campaign = await open_campaign(m)
    path = m.campaign_path(campaign.id, "dina@example.com")
    csrf, nonce, _ = await m.page(path)
    item = campaign.items["dina@example.com"]
    answer = await m.post_form(path, {"csrf": csrf, "stage": "0", f"d:{item}": "keep"}, nonce)
    return Attempt(_page_refusal(answer, 409), campaign.id)


async def another_reviewers_items_through_a_link(m: Matrix) -> Attempt:
    """judy's link deciding eli's item, which dina reviews."""
    campaign = await open_campaign(m)
    path = m.campaign_path(campaign.id, "judy@example.com")
    csrf, nonce, _ = await m.page(path)
    item = campaign.items["eli@example.com"]
    answer = await m.post_form(path, {"csrf": csrf, "stage": "0", f"d:{item}": "revoke"}, nonce)
    return Attempt(_page_refusal(answer, 409), campaign.id)


async def expired_campaign_link(m: Matrix) -> Attempt:
    campaign = await open_campaign(m)
    token = _expired({"c": campaign.id, "a": m.rig.ref("judy@example.com").id})
    item = campaign.items["bea@example.com"]
    answer = await _post_with_fresh_form(
        m, f"/campaigns/review/{token}", token, {"stage": "0", f"d:{item}": "keep"}
    )
    return Attempt(_page_refusal(answer, 403), campaign.id)


async def campaign_page_replayed_after_its_stage(m: Matrix) -> Attempt:
    """judy's page as stage 1 showed it, posted (kept open in a tab, or replayed) once stage 2 is open —
    where the same items are hers again."""
    moved = await moved_on(m)
    item = moved.campaign.items["bea@example.com"]
    answer = await m.post_form(
        moved.path, {"csrf": moved.csrf, "stage": "0", f"d:{item}": "keep"}, moved.nonce
    )
    return Attempt(_page_refusal(answer, 409), moved.campaign.id)


async def campaign_digest_button_after_its_stage(m: Matrix) -> Attempt:
    moved = await moved_on(m)
    judy = "judy@example.com"
    text = await _slack_told(
        m,
        judy,
        lambda: m.rig.click_at(judy, moved.button, CAMPAIGN_KEEP_ACTION),
        "is closed",
    )
    return Attempt(text, moved.campaign.id)


# --- channels: deliveries nobody may act through


async def slack_forged(m: Matrix) -> Attempt:
    rid = await pending_request(m)
    answer = await m.rig.click(rid, "bob@example.com", APPROVE_ACTION, tampered=True)
    return Attempt(_api_refusal(answer, 401), None)


async def slack_stale(m: Matrix) -> Attempt:
    rid = await pending_request(m)
    answer = await m.rig.click(rid, "bob@example.com", APPROVE_ACTION, stale=True)
    return Attempt(_api_refusal(answer, 401), None)


async def slack_click_replayed(m: Matrix) -> Attempt:
    return Attempt(_api_refusal(await _post_slack(m, await captured_click(m)), 409), None)


async def slack_command_replayed(m: Matrix) -> Attempt:
    return Attempt(_api_refusal(await _post_slack(m, await captured_command(m)), 409), None)


async def jira_forged(m: Matrix) -> Attempt:
    event = m.rig.jira.event(await jira_event(m))
    payload = json.loads(event.body)
    payload["changelog"]["id"] = str(uuid.uuid4().int % 10**9)
    payload["user"] = {"accountId": m.rig.jira_accounts["bob@example.com"]}
    body = json.dumps(payload).encode()
    async with httpx.AsyncClient(base_url=m.rig.url, timeout=30) as http:
        answer = await http.post(
            "/jira/webhook", content=body, headers=jira_webhook_headers(body, "guessed", delivery="forged-1")
        )
    return Attempt(_api_refusal(answer, 401), None)


async def jira_replayed_with_a_new_id(m: Matrix) -> Attempt:
    event = m.rig.jira.event(await jira_event(m))
    async with httpx.AsyncClient(base_url=m.rig.url, timeout=30) as http:
        answer = await http.post(
            "/jira/webhook",
            content=event.body,
            headers=jira_webhook_headers(event.body, JIRA_WEBHOOK_SECRET, delivery=f"new-{uuid.uuid4().hex}"),
        )
    assert answer.status_code == 200, answer.text  # 2xx, or Jira redelivers for half an hour
    assert answer.json()["status"] == "duplicate", answer.text
    return Attempt(str(answer.json()["detail"]), None)


REFUSED = ("decision.refused",)
FORBIDDEN = ("access.forbidden",)
JIRA_REFUSED = ("decision.refused", "jira.webhook")
CAMPAIGN_REFUSED = ("campaign.decision_refused",)

CELLS = [
    Cell("jit-own-api", "jit", own_by_api, "alice@example.com cannot approve their own request", REFUSED),
    Cell("jit-own-cli", "jit", own_by_cli, "cannot approve their own request", REFUSED),
    Cell("jit-own-slack", "jit", own_by_slack, "cannot approve their own request", REFUSED),
    Cell("jit-own-jira", "jit", own_by_jira, "cannot approve their own request", JIRA_REFUSED),
    Cell("jit-own-web", "jit", own_by_web, "cannot approve their own request", REFUSED),
    Cell("jit-ineligible-api", "jit", ineligible_by_api, "erin@example.com is not an approver", REFUSED),
    Cell("jit-ineligible-slack", "jit", ineligible_by_slack, "erin@example.com is not an approver", REFUSED),
    Cell(
        "jit-ineligible-jira", "jit", ineligible_by_jira, "heidi@example.com is not an approver", JIRA_REFUSED
    ),
    Cell("jit-ineligible-web", "jit", ineligible_by_web, "erin@example.com is not an approver", REFUSED),
    Cell("role-none-creates", "role", no_role_creates, "neither the requester nor the admin role", FORBIDDEN),
    Cell("role-requester-ledger", "role", requester_verifies_the_ledger, "not an admin token", FORBIDDEN),
    Cell("role-requester-sync", "role", requester_runs_a_sync, "not an admin token", FORBIDDEN),
    Cell(
        "role-requester-launch",
        "role",
        requester_launches_a_campaign,
        "needs one of the roles admin",
        FORBIDDEN,
    ),
    Cell(
        "role-requester-items", "role", requester_reads_a_campaign, "needs one of the roles admin", FORBIDDEN
    ),
    Cell(
        "role-requester-end-stage",
        "role",
        requester_ends_a_stage,
        "only its owner",
        ("campaign.end_stage_refused",),
    ),
    Cell(
        "as-requester-approves", "on-behalf", requester_approves_as_another, "needs an admin token", FORBIDDEN
    ),
    Cell(
        "as-requester-requests",
        "on-behalf",
        requester_requests_for_another,
        "needs an admin token",
        FORBIDDEN,
    ),
    Cell(
        "as-requester-cancels", "on-behalf", requester_cancels_as_another, "needs an admin token", FORBIDDEN
    ),
    Cell("as-admin-approves-bob", "on-behalf", admin_votes_for_bob, "allow_admin_on_behalf", REFUSED),
    Cell("as-admin-denies-carol", "on-behalf", admin_votes_for_carol, "allow_admin_on_behalf", REFUSED),
    Cell(
        "as-admin-approves-dan-cli", "on-behalf", admin_votes_for_dan_by_cli, "allow_admin_on_behalf", REFUSED
    ),
    Cell("link-expired-request", "links", expired_request_link, "this review link has expired", FORBIDDEN),
    Cell(
        "stage-request-web",
        "stages",
        request_stage_moved_on_by_web,
        "now awaits a decision on its extension",
        REFUSED,
    ),
    Cell(
        "stage-request-slack",
        "stages",
        request_stage_moved_on_by_slack,
        "now awaits a decision on its extension",
        REFUSED,
    ),
    Cell(
        "campaign-own-api",
        "campaigns",
        reviewer_own_access_by_api,
        "dina@example.com cannot review their own access",
        CAMPAIGN_REFUSED,
    ),
    Cell(
        "campaign-own-web",
        "campaigns",
        reviewer_own_access_by_web,
        "dina@example.com cannot review their own access",
        CAMPAIGN_REFUSED,
    ),
    Cell(
        "campaign-other-reviewer",
        "campaigns",
        another_reviewers_items_through_a_link,
        "reviewed by dina@example.com, not by judy@example.com",
        CAMPAIGN_REFUSED,
    ),
    Cell(
        "campaign-link-expired", "campaigns", expired_campaign_link, "this review link has expired", FORBIDDEN
    ),
    Cell(
        "campaign-page-after-stage",
        "campaigns",
        campaign_page_replayed_after_its_stage,
        "made for stage 1, which has closed",
        CAMPAIGN_REFUSED,
    ),
    Cell(
        "campaign-slack-after-stage",
        "campaigns",
        campaign_digest_button_after_its_stage,
        "stage 1 of campaign",
        CAMPAIGN_REFUSED,
    ),
    Cell("slack-forged", "channels", slack_forged, "does not match the body; nothing was done"),
    Cell("slack-stale", "channels", slack_stale, "older than five minutes"),
    Cell("slack-click-replayed", "channels", slack_click_replayed, "was delivered already; nothing was done"),
    Cell(
        "slack-command-replayed",
        "channels",
        slack_command_replayed,
        "was delivered already; nothing was done",
    ),
    Cell("jira-forged", "channels", jira_forged, "nothing was done"),
    Cell("jira-replayed-new-id", "channels", jira_replayed_with_a_new_id, "was handled already"),
]


@pytest.mark.parametrize("cell", CELLS, ids=str)
async def test_each_attempt_is_refused_with_its_reason_recorded_and_changes_nothing(
    matrix: Matrix, cell: Cell
) -> None:
    await _prepare(matrix, cell)
    await matrix.settled_entries(matrix.last_seq())  # whatever the setup started has finished
    before, since = await matrix.state(), matrix.last_seq()

    attempt = await cell.run(matrix)

    assert cell.expect in attempt.shown, (cell.id, attempt.shown)
    written = await matrix.settled_entries(since)
    if cell.records:
        assert sorted(e.kind for e in written) == sorted(cell.records), [(e.kind, e.actor) for e in written]
        assert {e.subject for e in written} == {attempt.subject}, [(e.kind, e.subject) for e in written]
        refusals = [str(e.data.get("refusal") or e.data.get("detail") or "") for e in written]
        assert any(cell.expect in r for r in refusals), refusals
    else:
        assert written == [], [(e.kind, e.subject, e.actor) for e in written]
    after = await matrix.state()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, {k: (before.get(k), after.get(k)) for k in changed}
    matrix.results[cell.id] = CellResult(
        family=cell.family, refused=True, recorded=bool(cell.records), changes=len(changed)
    )


_SETUP_BY_CELL: dict[str, Callable[[Matrix], Awaitable[Any]]] = {
    "role-requester-items": open_campaign,
    "role-requester-end-stage": open_campaign,
    "campaign-page-after-stage": moved_on,
    "campaign-slack-after-stage": moved_on,
    "slack-forged": pending_request,
    "slack-stale": pending_request,
    "slack-click-replayed": captured_click,
    "slack-command-replayed": captured_command,
    "jira-forged": jira_event,
    "jira-replayed-new-id": jira_event,
}
_SETUP_BY_FAMILY: dict[str, Callable[[Matrix], Awaitable[Any]]] = {
    "jit": pending_request,
    "on-behalf": pending_request,
    "links": pending_request,
    "stages": extension_pending,
    "campaigns": open_campaign,
}


async def _prepare(m: Matrix, cell: Cell) -> None:
    """Make what the cell acts on before the snapshot, so that its setup is not counted as its change."""
    setup = _SETUP_BY_CELL.get(cell.id) or _SETUP_BY_FAMILY.get(cell.family)
    if setup is not None:
        await setup(m)


async def test_admin_votes_allowed_by_the_policy_count_as_one_person(matrix: Matrix) -> None:
    """With ``allow_admin_on_behalf``, an administrator's votes for two approvers are counted — as one
    person: the request still needs a second approver, who then decides it."""
    m = matrix
    view = await m.permissive.create(
        m.stack.actor("heidi@example.com"), resource="pg-prod", role="admin", duration="1h", reason="INC-9"
    )
    rid = view.id
    for approver in ("bob@example.com", "dan@example.com"):
        answer = await m.api("grace", "POST", f"/requests/{rid}/approve", json={"as": approver})
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "PENDING", answer.text  # one administrator: 1 of 2
    shown = await m.rig.handle(rid).query(AccessRequestWorkflow.view)
    assert [
        (d.approver.email, d.on_behalf_by.email if d.on_behalf_by else None) for d in shown.approvals
    ] == [
        ("bob@example.com", "grace@example.com"),
        ("dan@example.com", "grace@example.com"),
    ]
    approved = [e for e in m.stack.store.ledger_entries(subject=rid) if e.kind == "decision.approved"]
    assert [e.actor for e in approved] == [
        "admin grace@example.com on behalf of bob@example.com",
        "admin grace@example.com on behalf of dan@example.com",
    ]
    by_carol = await m.rig.service.decide(rid, m.stack.actor("carol@example.com"), "approve")
    assert by_carol.status is RequestStatus.ACTIVE
    m.results["on-behalf-allowed"] = CellResult(family="on-behalf", refused=False, recorded=True, changes=0)


def test_the_matrix_is_complete_and_recorded(matrix: Matrix) -> None:
    missing = [c.id for c in CELLS if c.id not in matrix.results]
    assert not missing, f"cells that did not pass: {missing}"
    cells = [matrix.results[c.id] for c in CELLS]
    people = sum(1 for r in cells if r.recorded)
    record(
        "authorisation-matrix",
        title="Authorisation matrix",
        injected=(
            f"{len(CELLS)} attempts without the right to act over one running stack: self-approval and "
            "ineligible approvers (REST, CLI, Slack, Jira, review page), tokens without the role, requester "
            "tokens acting for others, admin votes on behalf, expired links, decisions for stages that "
            "moved on, reviewers on their own access, forged, stale and replayed Slack and Jira deliveries"
        ),
        counts={
            "cells tested": len(CELLS),
            "refused with reason": sum(1 for r in cells if r.refused),
            "recorded in ledger": people,
            "deliveries refused, nothing written": len(CELLS) - people,
            "changes seen": sum(r.changes for r in cells),
            "admin votes allowed by policy, counted as one": 1
            if "on-behalf-allowed" in matrix.results
            else 0,
        },
        outcome=(
            "every attempt was refused with its reason where it entered and changed nothing; every person's "
            "attempt is in the ledger as a refused attempt, and forged, stale or replayed deliveries wrote "
            "nothing"
        ),
        details={
            "families": sorted({c.family for c in CELLS}),
            "cells": [c.id for c in CELLS],
        },
    )

"""The Jira edge over real sockets: the web app (uvicorn on 127.0.0.1) receiving the signed webhooks of the
Jira stand-in, which people act on (``transition_as``, issues created with their own API tokens), with the
real stack behind."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest_asyncio
from jira import JIRA

from domain.requests import RequestStatus, RequestView
from integrations.jira_tickets import JiraTickets, build_jira
from sandbox.jira import JiraStandIn
from tests.builders import issue_updated, jira_webhook_headers, status_item
from tests.rigs.edges import EdgeRig, JiraPeople, serving, settings_for
from tests.stack import Stack
from web.auth import TokenRegistry
from web.bodies import JIRA_BODY_LIMIT
from web.jira import JiraEdge, build_jira_edge
from web.service import RequestService

API_USER, API_TOKEN = "grantflow-bot@example.com", "jira-api-token"
WEBHOOK_SECRET = "test-jira-webhook-secret"
OUTSIDER = "zed@elsewhere.example"
WAITING, APPROVED, DENIED = "Waiting for approval", "Approved", "Denied"


@dataclass
class Rig(EdgeRig, JiraPeople):
    """The Jira edge in front of the stack's own worker; people are known by name (``alice``…, ``zed``)."""

    jira: JiraStandIn
    edge: JiraEdge
    jira_accounts: dict[str, str]  # name -> accountId
    jira_fields: dict[str, str]  # Resource/Role/Duration -> custom field id

    def api(self) -> JIRA:
        """grantflow's own ``jira`` client (its API user)."""
        return self.jira_client(API_USER, API_TOKEN)

    async def ticket(self, view: RequestView) -> str:
        """The request's ticket, opened as the ticket mirror opens it (by grantflow's API user)."""

        def open_it() -> str:
            client = build_jira(self.jira.url, API_USER, API_TOKEN)
            tickets = JiraTickets(
                client, project_key="ACC", issue_type="Task", transition_names={"Approve": APPROVED}
            )
            try:
                return tickets.open_ticket(
                    label=view.id, summary=f"{view.resource} for alice", description="…"
                )
            finally:
                client.close()

        key = await asyncio.to_thread(open_it)
        await self.jira_idle()
        return key


@pytest_asyncio.fixture(loop_scope="session")
async def rig(stack: Stack) -> AsyncIterator[Rig]:
    jira = JiraStandIn(users={API_USER: API_TOKEN}, webhook_retry_delays=(0.05,))
    jira.add_project("ACC")  # the default workflow reopens from Approved too
    jira.add_project("REQ", "Access requests")
    fields = {name: jira.add_custom_field(name) for name in ("Resource", "Role", "Duration")}
    accounts = {
        "alice": jira.add_user("alice@example.com", "Alice Adams", api_token="alice-token"),
        "bob": jira.add_user("bob@example.com", "Bob Baker"),
        "carol": jira.add_user("carol@example.com", "Carol Chen", email_visible=False),
        "dan": jira.add_user("dan@example.com", "Dan Diaz"),
        "erin": jira.add_user("erin@example.com", "Erin Evans", api_token="erin-token"),
        "zed": jira.add_user(OUTSIDER, "Zed Outsider"),
        "grantflow": jira.account_id(API_USER),
    }
    jira.start()
    try:
        service = RequestService(
            stack.env.client, stack.store, stack.policies, stack.task_queue, stack.timings
        )
        settings = settings_for(
            stack.tmp_path,
            jira=jira,
            jira_user=(API_USER, API_TOKEN),
            jira_webhook_secret=WEBHOOK_SECRET,
            jira_intake_project="REQ",
            # a field by name, one by id
            jira_intake_fields={"resource": "Resource", "role": fields["Role"], "duration": "Duration"},
            # carol hides her email from the API user: the configured mapping says who she is
            jira_account_ids={"carol@example.com": accounts["carol"]},
        )
        tokens = TokenRegistry(stack.tmp_path / "tokens.toml")
        async with serving(stack, settings, service, tokens=tokens) as web:
            edge = web.context.jira
            assert edge is not None
            jira.set_webhook(f"{web.url}/jira/webhook", WEBHOOK_SECRET)
            yield Rig(
                stack=stack,
                service=service,
                context=web.context,
                url=web.url,
                jira=jira,
                edge=edge,
                jira_accounts=accounts,
                jira_fields=fields,
            )
            jira.set_webhook(None)
    finally:
        jira.stop()


# ----------------------------------------------------------------------------------- decisions


async def test_approvals_by_transition_are_counted_and_the_ticket_waits_for_the_quorum(rig: Rig) -> None:
    view = await rig.request("alice")
    key = await rig.ticket(view)

    bob = await rig.move(key, "Approve", "bob")
    assert rig.answers(bob) == [200]
    shown = await rig.service.show(view.id)
    assert shown.status is RequestStatus.PENDING
    assert [(d.approver.email, d.channel) for d in shown.approvals] == [("bob@example.com", "jira")]
    # one approval of two: the ticket goes back to waiting, saying so
    assert rig.jira.status_of(key) == WAITING
    assert any(
        "grantflow counted the approval of bob@example.com (1 of 2 approvals)" in c
        for c in rig.jira.comments(key)
    )

    carol = await rig.move(key, "Approve", "carol")  # email hidden: found through jira_account_ids
    assert rig.answers(carol) == [200]
    active = await rig.service.show(view.id)
    assert active.status is RequestStatus.ACTIVE
    assert [d.approver.email for d in active.approvals] == ["bob@example.com", "carol@example.com"]
    assert rig.jira.status_of(key) == APPROVED  # decided: the ticket stays where carol put it
    markers = rig.ledger(view.id, "jira.webhook")
    assert [(m.actor, m.data["outcome"]) for m in markers] == [
        ("bob@example.com", "counted"),
        ("carol@example.com", "counted"),
    ]


async def test_refused_transitions_are_moved_back_with_the_reason_and_recorded(rig: Rig) -> None:
    view = await rig.request("alice")
    key = await rig.ticket(view)

    await rig.move(key, "Approve", "erin")
    assert rig.jira.status_of(key) == WAITING
    assert any(
        "Erin Evans moved this ticket to Approved, but grantflow refused the approval: "
        "erin@example.com is not an approver for pg-prod admin"
        in c
        and "The ticket is back in Waiting for approval" in c
        for c in rig.jira.comments(key)
    ), rig.jira.comments(key)

    await rig.move(key, "Approve", "alice")
    assert rig.jira.status_of(key) == WAITING
    assert any("alice@example.com cannot approve their own request" in c for c in rig.jira.comments(key))

    await rig.move(key, "Deny", "zed")
    assert rig.jira.status_of(key) == WAITING
    assert any(
        "Zed Outsider moved this ticket to Denied, but grantflow refused the denial: the Jira account of Zed "
        "Outsider is not linked to an active person in the directory" in c
        for c in rig.jira.comments(key)
    )

    refused = rig.ledger(view.id, "decision.refused")
    assert [(e.actor, e.channel, e.data["verdict"]) for e in refused] == [
        ("erin@example.com", "jira", "approve"),
        ("alice@example.com", "jira", "approve"),
        (f"jira user {rig.jira_accounts['zed']}", "jira", "deny"),
    ]
    unchanged = await rig.service.show(view.id)
    assert unchanged.status is RequestStatus.PENDING and unchanged.approvals == [] and unchanged.denials == []

    # a deny by an approver ends it, with the comment made on the transition as the reason
    await rig.move(key, "Deny", "dan", comment="not during the freeze")
    denied = await rig.service.show(view.id)
    assert denied.status is RequestStatus.DENIED
    assert [(d.approver.email, d.channel, d.reason) for d in denied.denials] == [
        ("dan@example.com", "jira", "not during the freeze")
    ]
    assert rig.jira.status_of(key) == DENIED


async def test_hidden_emails_are_learned_by_searching_the_requests_people(rig: Rig) -> None:
    # bob (an approver) and erin (not one) hide their emails and are not in jira_account_ids
    assert rig.jira.add_user("bob@example.com", "Bob Baker", email_visible=False) == rig.jira_accounts["bob"]
    rig.jira.add_user("erin@example.com", "Erin Evans", email_visible=False, api_token="erin-token")
    assert "bob@example.com" not in rig.edge.settings.jira_account_ids
    view = await rig.request("alice")
    key = await rig.ticket(view)
    candidates = {p.email for p in view.eligible_approvers} | {"alice@example.com"}
    assert "bob@example.com" in candidates and "erin@example.com" not in candidates

    def searched() -> list[str]:
        return [dict(c.query)["query"] for c in rig.jira.calls_to("GET", "/user/search")]

    bob = await rig.move(key, "Approve", "bob")
    assert rig.answers(bob) == [200]
    shown = await rig.service.show(view.id)
    assert [(d.approver.email, d.channel) for d in shown.approvals] == [("bob@example.com", "jira")]
    assert "bob@example.com" in searched() and set(searched()) <= candidates
    assert rig.jira.status_of(key) == WAITING
    assert any(
        "grantflow counted the approval of bob@example.com (1 of 2 approvals)" in c
        for c in rig.jira.comments(key)
    )

    # bob again: known from the first event, so Jira is not searched (nor asked who he is) again
    def looked_up() -> int:
        return sum(c.api_path == "/user" for c in rig.jira.calls_to("GET", "/user"))

    before, asked = searched(), looked_up()
    again = await rig.move(key, "Approve", "bob")
    assert rig.answers(again) == [200]
    assert searched() == before and looked_up() == asked
    assert rig.jira.status_of(key) == WAITING
    assert any(
        "Bob Baker moved this ticket to Approved, but grantflow refused the approval: bob@example.com has "
        "already approved" in c
        for c in rig.jira.comments(key)
    ), rig.jira.comments(key)

    # erin is nobody's candidate: still refused, with the reason, and her email is never searched for
    erin = await rig.move(key, "Approve", "erin")
    assert rig.answers(erin) == [200]
    assert rig.jira.status_of(key) == WAITING
    assert any(
        "Erin Evans moved this ticket to Approved, but grantflow refused the approval: the Jira account of "
        "Erin Evans is not linked to an active person in the directory"
        in c
        and "The ticket is back in Waiting for approval" in c
        for c in rig.jira.comments(key)
    ), rig.jira.comments(key)
    assert set(searched()) <= candidates and len(searched()) <= len(candidates)
    refused = rig.ledger(view.id, "decision.refused")
    assert [(e.actor, e.data["verdict"]) for e in refused] == [
        ("bob@example.com", "approve"),
        (f"jira user {rig.jira_accounts['erin']}", "approve"),
    ]
    after = await rig.service.show(view.id)
    assert after.status is RequestStatus.PENDING
    assert [d.approver.email for d in after.approvals] == ["bob@example.com"]


async def test_bad_signatures_redeliveries_and_our_own_transitions_change_nothing(rig: Rig) -> None:
    view = await rig.request("alice")
    key = await rig.ticket(view)
    approve = status_item("10000", WAITING, "10001", APPROVED)
    labels = [f"grantflow-{view.id}"]
    forged = json.dumps(
        issue_updated(key, approve, account_id=rig.jira_accounts["bob"], labels=labels)
    ).encode()
    async with httpx.AsyncClient(base_url=rig.url) as http:
        unsigned = await http.post(
            "/jira/webhook", content=forged, headers=jira_webhook_headers(forged, delivery="forged-1")
        )
        wrong = await http.post(
            "/jira/webhook",
            content=forged,
            headers=jira_webhook_headers(forged, "guess", delivery="forged-1"),
        )
        altered = await http.post(
            "/jira/webhook",
            content=forged.replace(b"10001", b"10002"),
            headers=jira_webhook_headers(forged, WEBHOOK_SECRET, delivery="forged-1"),
        )
    for answer in (unsigned, wrong, altered):
        assert answer.status_code == 401
        assert answer.json()["error"] == "unauthenticated" and "nothing was done" in answer.json()["detail"]
    assert (await rig.service.show(view.id)).approvals == []

    bob = await rig.move(key, "Approve", "bob")
    rig.jira.redeliver(bob)  # as Jira does when it did not see the acknowledgement
    await rig.jira_idle()
    assert rig.answers(bob) == [200, 200]
    shown = await rig.service.show(view.id)
    assert [d.approver.email for d in shown.approvals] == ["bob@example.com"]  # decided once
    assert rig.ledger(view.id, "decision.refused") == []
    assert len(rig.ledger(view.id, "jira.webhook")) == 1
    assert sum("grantflow counted the approval" in c for c in rig.jira.comments(key)) == 1
    # a restarted (or another) instance remembers nothing in memory: the ledger says it was handled
    fresh = build_jira_edge(rig.edge.settings, rig.service, rig.stack.store)
    assert fresh is not None
    rig.context.jira = fresh
    event = rig.jira.event(bob)
    try:
        async with httpx.AsyncClient(base_url=rig.url) as http:
            again = await http.post(
                "/jira/webhook",
                content=event.body,
                headers=jira_webhook_headers(event.body, WEBHOOK_SECRET, delivery=bob, retry=2),
            )
    finally:
        rig.context.jira = rig.edge
        await fresh.aclose()
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "detail": f"delivery {bob} was handled already (counted)"}
    assert [d.approver.email for d in (await rig.service.show(view.id)).approvals] == ["bob@example.com"]
    assert rig.ledger(view.id, "decision.refused") == [] and len(rig.ledger(view.id, "jira.webhook")) == 1
    assert sum("grantflow counted the approval" in c for c in rig.jira.comments(key)) == 1
    assert rig.jira.status_of(key) == WAITING

    # grantflow's own API user moving the ticket (the mirror of a decision) is not a decision
    def deny_as_api_user() -> None:
        client = rig.api()
        try:
            client.transition_issue(key, "21")
        finally:
            client.close()

    await asyncio.to_thread(deny_as_api_user)
    await rig.jira_idle()
    assert rig.jira.status_of(key) == DENIED
    after = await rig.service.show(view.id)
    assert after.status is RequestStatus.PENDING and after.denials == []


# ----------------------------------------------------------------------------------- intake


async def test_intake_issues_start_requests_or_say_what_is_wrong(rig: Rig) -> None:
    async def create(email: str, token: str, description: str, **values: str) -> str:
        return await rig.create_issue(email, token, "REQ", "Access please", description, **values)

    good = await create(
        "alice@example.com",
        "alice-token",
        "INC-42 the orders table is corrupt",
        Resource="pg-prod",
        Role="read",
        Duration="2h",
    )
    await rig.jira_idle()
    [created] = await rig.service.list(requester_email="alice@example.com")
    assert created.status is RequestStatus.PENDING
    assert (created.resource, created.role, created.reason) == (
        "pg-prod",
        "read",
        "INC-42 the orders table is corrupt",
    )
    assert f"grantflow-{created.id}" in rig.jira.issue(good)["fields"]["labels"]
    [comment] = rig.jira.comments(good)
    assert comment.startswith(
        f"grantflow request {created.id} is PENDING: it needs 1 approval(s) from group db-owners"
    )

    # the label makes the intake issue's own transitions decide
    await rig.move(good, "Approve", "bob")
    assert (await rig.service.show(created.id)).status is RequestStatus.ACTIVE

    bad = await create("erin@example.com", "erin-token", "", Resource="nosuch", Duration="soon")
    await rig.jira_idle()
    [problems] = rig.jira.comments(bad)
    assert problems.startswith("grantflow did not start a request: ")
    for part in (
        "the description is empty",
        "duration 'soon' is not understood",
        "unknown resource 'nosuch'",
        "Create a new issue with the fields filled in",
    ):
        assert part in problems, problems
    assert await rig.service.list(requester_email="erin@example.com") == []
    assert not any(label.startswith("grantflow-") for label in rig.jira.issue(bad)["fields"]["labels"])


async def test_an_oversized_delivery_is_refused_unread(rig: Rig) -> None:
    """No Jira event comes near the limit: a body past it is 413 before the signature is even computed."""
    huge = b'{"webhookEvent": "jira:issue_updated", "pad": "' + b"a" * JIRA_BODY_LIMIT + b'"}'
    async with httpx.AsyncClient(base_url=rig.url) as http:
        answer = await http.post(
            "/jira/webhook",
            content=huge,
            headers=jira_webhook_headers(huge, WEBHOOK_SECRET),
        )
    assert answer.status_code == 413 and "larger than" in answer.json()["detail"]

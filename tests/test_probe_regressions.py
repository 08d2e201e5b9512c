"""Regressions found by probing a running grantflow: each test drives the real edge (REST API, CLI, Slack and
Jira webhooks over real sockets) with what a prober sent, and checks what grantflow answered and recorded.

- Jira redelivers an approval with a new delivery id after an extension was asked for: the signed changelog
  id makes it a duplicate, and a Jira decision only ever counts for the request stage its ticket asks for.
- Slack and Jira check the signature before parsing, and bound the body (413) before reading it whole.
- Durations that overflow and text no store can keep are 4xx naming the field, at every edge.
- A requester token acting for someone else leaves a refused attempt in the ledger.
- ``grantflow ledger verify`` says how far the anchor lags the table, and since when.
- Admin votes on behalf of approvers (and reviewers) are refused unless the policy allows them; allowed,
  all the votes one administrator casts count as one person.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from click.testing import CliRunner

from domain.policy import PolicySet
from domain.requests import RequestStatus, Verdict
from store import Store
from tests.builders import jira_webhook_headers
from tests.rigs.edges import serving, settings_for
from tests.stack import LEDGER_KEY, Stack
from tests.test_api import Api, web_context
from tests.test_api import api as api
from tests.test_campaign_edge import Edge as CampaignEdge
from tests.test_campaign_edge import edge as campaign_edge  # noqa: F401  (the campaigns API fixture)
from tests.test_cli import Cli
from tests.test_cli import cli as cli
from tests.test_jira_edge import APPROVED, WAITING, WEBHOOK_SECRET
from tests.test_jira_edge import Rig as JiraRig
from tests.test_jira_edge import rig as jira_rig  # noqa: F401  (the Jira edge fixture)
from web.app import create_app, running
from web.auth import TokenRegistry, issue_token
from web.bodies import JIRA_BODY_LIMIT, SLACK_BODY_LIMIT
from web.service import RequestService

# ----------------------------------------------------------------------------------- 1. Jira redelivery


async def test_a_jira_approval_replayed_with_a_new_delivery_id_never_approves_an_extension(
    jira_rig: JiraRig,  # noqa: F811
) -> None:
    rig = jira_rig
    view = await rig.request("alice")
    key = await rig.ticket(view)
    bob = await rig.move(key, "Approve", "bob")
    await rig.move(key, "Approve", "carol")
    active = await rig.until(
        lambda: (rig.stack.store.get_request(view.id) or view).status is RequestStatus.ACTIVE, "ACTIVE"
    )
    assert active
    extending = await rig.service.extend(view.id, rig.stack.actor("alice@example.com"), "30m", "more")
    assert extending.pending_extension is not None and extending.pending_extension.approvals == []

    # the same signed event (same changelog), delivered again under a delivery id never seen before
    event = rig.jira.event(bob)
    async with httpx.AsyncClient(base_url=rig.url) as http:
        replayed = await http.post(
            "/jira/webhook",
            content=event.body,
            headers=jira_webhook_headers(event.body, WEBHOOK_SECRET, delivery="replayed-with-a-new-id"),
        )
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["status"] == "duplicate", replayed.json()
    shown = await rig.service.show(view.id)
    assert shown.pending_extension is not None and shown.pending_extension.approvals == []
    assert len(rig.ledger(view.id, "jira.webhook")) == 2  # bob's and carol's transitions, once each

    # a new transition to Approved while the extension waits: the ticket asks for the request, which is
    # decided, so it is refused (and recorded), never counted towards the extension
    payload = json.loads(event.body)
    payload["changelog"]["id"] = "999999"
    payload["user"] = {"accountId": rig.jira_accounts["dan"]}
    body = json.dumps(payload).encode()
    async with httpx.AsyncClient(base_url=rig.url) as http:
        late = await http.post(
            "/jira/webhook",
            content=body,
            headers=jira_webhook_headers(body, WEBHOOK_SECRET, delivery="another-new-id"),
        )
    assert late.status_code == 200, late.text
    assert late.json()["status"] == "refused", late.json()
    assert "extension" in late.json()["detail"]
    shown = await rig.service.show(view.id)
    assert shown.pending_extension is not None and shown.pending_extension.approvals == []
    [refused] = rig.ledger(view.id, "decision.refused")
    assert refused.actor == "dan@example.com" and refused.channel == "jira"
    await rig.jira_idle()
    assert rig.jira.status_of(key) == APPROVED  # an ACTIVE request's ticket is not moved back to waiting
    assert WAITING != APPROVED


# ----------------------------------------------------------------------------------- 2. webhook bodies


@dataclass
class Edges:
    url: str
    store: Store


@pytest_asyncio.fixture(loop_scope="session")
async def edges(stack: Stack) -> AsyncIterator[Edges]:
    """The web app with both webhooks configured; nothing behind them is reached by these requests."""
    settings = settings_for(
        stack.tmp_path,
        slack_bot_token="xoxb-probe",
        slack_signing_secret="probe-slack-secret",
        slack_api_url="http://127.0.0.1:9/api/",
        jira_url="http://127.0.0.1:9",
        jira_email="grantflow-bot@example.com",
        jira_api_token="probe-jira-token",
        jira_webhook_secret="probe-jira-secret",
    )
    service = RequestService(stack.env.client, stack.store, stack.policies, stack.task_queue, stack.timings)
    tokens = TokenRegistry(stack.tmp_path / "tokens.toml")
    async with serving(stack, settings, service, tokens=tokens) as web:
        assert web.context.slack is not None and web.context.jira is not None
        yield Edges(url=web.url, store=stack.store)


async def _streamed(size: int) -> AsyncIterator[bytes]:
    """A body sent chunked, without Content-Length: the limit must hold while reading."""
    chunk = b"a" * 65536
    sent = 0
    while sent < size:
        yield chunk
        sent += len(chunk)


async def test_unsigned_garbage_is_a_4xx_with_a_body_and_oversized_bodies_are_413(edges: Edges) -> None:
    before = len(edges.store.ledger_entries())
    async with httpx.AsyncClient(base_url=edges.url, timeout=20) as http:
        for path in ("/slack/events", "/jira/webhook"):
            for garbage in (b"\xff\xfe\x00{{{", b"payload=%7Bnot json", b"", b"\xed\xa0\x80"):
                answer = await http.post(path, content=garbage, headers={"Content-Type": "text/plain"})
                assert answer.status_code in (400, 401), (path, garbage, answer.status_code, answer.text)
                assert answer.json()["error"] and answer.json()["detail"], answer.text
            declared = await http.post(path, content=b"a" * (max(SLACK_BODY_LIMIT, JIRA_BODY_LIMIT) + 1))
            assert declared.status_code == 413 and "larger than" in declared.json()["detail"]
            limit = SLACK_BODY_LIMIT if path.startswith("/slack") else JIRA_BODY_LIMIT
            streamed = await http.post(path, content=_streamed(limit + 1))
            assert streamed.status_code == 413 and "larger than" in streamed.json()["detail"]
    assert len(edges.store.ledger_entries()) == before


# ----------------------------------------------------------------------------------- 3. edge input


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"duration": "99999999999d"}, "duration"),
        ({"duration": "P99999999999D"}, "duration"),
        ({"reason": "INC-\ud800"}, "reason"),
        ({"reason": "INC\x00-1"}, "reason"),
        ({"requester": "bob\ud800@example.com"}, "requester"),
        ({"requester": "bob\x00@example.com"}, "requester"),
        ({"role": "ad\x00min"}, "role"),
    ],
)
async def test_create_refuses_what_cannot_be_kept_naming_the_field(
    api: Api,
    body: dict[str, Any],
    field: str,
) -> None:
    raw = json.dumps({"resource": "pg-prod", "role": "admin", "duration": "1h", "reason": "INC-1", **body})
    answer = await api.call(
        "grace", "POST", "/requests", content=raw.encode(), headers={"Content-Type": "application/json"}
    )
    assert 400 <= answer.status_code < 500 and answer.status_code != 404, answer.text
    assert field in answer.json()["detail"], answer.json()
    assert api.stack.store.list_requests() == []


async def test_actions_refuse_overflowing_durations_and_bad_text_naming_the_field(
    api: Api,
) -> None:
    rid = (
        await api.call(
            "frank",
            "POST",
            "/requests",
            json={"resource": "pg-prod", "role": "read", "duration": "1h", "reason": "x"},
        )
    ).json()["id"]

    def acted() -> list[str]:
        """The ledger's record of attempts and decisions on the request (its grant is written meanwhile)."""
        kinds = [e.kind for e in api.stack.store.ledger_entries(subject=rid)]
        return [k for k in kinds if k.startswith(("decision.", "extend", "relinquish", "access."))]

    before = acted()
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("frank", "extend", {"by": "99999999999d"}, "extension"),
        ("frank", "extend", {"by": "PT99999999999999999999H"}, "extension"),
        ("frank", "extend", {"by": "1h", "reason": "more\ud800"}, "reason"),
        ("frank", "extend", {"by": "1h", "reason": "more\x00"}, "reason"),
        ("bob", "approve", {"reason": "ok\udfff"}, "reason"),
        ("bob", "deny", {"reason": "no\x00"}, "reason"),
        ("grace", "approve", {"as": "bob\ud800@example.com"}, "as"),
        ("grace", "approve", {"as": "bob\x00@example.com"}, "as"),
        ("frank", "relinquish", {"reason": "done\ud800"}, "reason"),
    ]
    for who, action, body, field in cases:
        raw = json.dumps(body).encode()
        answer = await api.call(
            who,
            "POST",
            f"/requests/{rid}/{action}",
            content=raw,
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == 422, (action, body, answer.status_code, answer.text)
        assert field in answer.json()["detail"], (action, body, answer.json())
    view = (await api.call("frank", "GET", f"/requests/{rid}")).json()
    assert view["status"] == "ACTIVE" and view["granted_total"] == 3600
    assert acted() == before


async def test_the_cli_refuses_overflowing_durations_before_calling_the_api(cli: Cli) -> None:
    settings = cli.settings(url="http://127.0.0.1:9")  # nothing listens: a call would exit 3
    for args in (
        ["create", "--resource", "pg-prod", "--role", "admin", "--duration", "99999999999d", "--reason", "x"],
        ["extend", "req-000000000000", "--by", "99999999999d"],
    ):
        result = await cli.run(*args, settings=settings)
        assert result.exit_code == 2, (args, result.exit_code, result.output)
        assert "too long" in result.output, result.output
    # bytes that are not UTF-8 on the command line reach Python as lone surrogates: refused by the API,
    # naming the field, and nothing is created
    for field, value in (("--reason", "INC\udc80"), ("--reason", "INC\x00")):
        result = await cli.run(
            "create", "--resource", "pg-prod", "--role", "read", "--duration", "1h", field, value,
            "--requester", "erin@example.com", "--json",
        )  # fmt: skip
        assert result.exit_code == 2, (value, result.exit_code, result.output)  # the API's 422
        assert "reason" in json.loads(result.stdout)["detail"], result.output
    assert cli.stack.store.list_requests() == []
    unknown = await cli.run("show", "req-\udc80", "--json")
    assert unknown.exit_code == 1 and json.loads(unknown.stdout)["error"] == "not_found", unknown.output


# ----------------------------------------------------------------------------------- 4. forbidden attempts


async def test_a_requester_token_acting_for_someone_else_is_recorded_everywhere(api: Api) -> None:
    store = api.stack.store
    rid = (
        await api.call(
            "alice",
            "POST",
            "/requests",
            json={"resource": "pg-prod", "role": "admin", "duration": "1h", "reason": "x"},
        )
    ).json()["id"]
    attempts = [
        ("alice", "POST", f"/requests/{rid}/approve", {"as": "bob@example.com"}, rid),
        ("alice", "POST", f"/requests/{rid}/deny", {"as": "bob@example.com", "reason": "no"}, rid),
        ("alice", "POST", f"/requests/{rid}/cancel", {"as": "erin@example.com"}, rid),
        ("erin", "POST", f"/requests/{rid}/cancel", {"as": "alice@example.com"}, rid),
        ("erin", "POST", f"/requests/{rid}/extend", {"by": "1h", "as": "alice@example.com"}, rid),
        ("erin", "POST", "/requests", {"resource": "pg-prod", "role": "read", "duration": "1h", "reason": "x",
                                       "requester": "carol@example.com"}, "token:erin"),
        # bob's token has no role at all: acting for alice is still an attempt to record
        ("bob", "POST", "/requests", {"resource": "pg-prod", "role": "read", "duration": "1h", "reason": "x",
                                      "requester": "alice@example.com"}, "token:bob"),
    ]  # fmt: skip
    for who, method, path, body, subject in attempts:
        before = [e for e in store.ledger_entries(subject=subject) if e.kind == "access.forbidden"]
        answer = await api.call(who, method, path, json=body)
        assert answer.status_code == 403, (path, body, answer.text)
        after = [e for e in store.ledger_entries(subject=subject) if e.kind == "access.forbidden"]
        assert len(after) == len(before) + 1, (who, path, body)
        assert (
            after[-1].actor == f"{who}@example.com" and after[-1].data["refusal"] == answer.json()["detail"]
        )
    shown = store.get_request(rid)
    assert shown is not None and shown.status is RequestStatus.PENDING and shown.approvals == []


# ----------------------------------------------------------------------------------- 5. anchor lag


def test_ledger_verify_reports_how_far_and_since_when_the_anchor_lags(tmp_path: Path) -> None:
    from grantflow.cli import main

    database = tmp_path / "grantflow.db"
    anchor = tmp_path / "ledger.anchor"
    store = Store(f"sqlite:///{database}", ledger_key=LEDGER_KEY, anchor_path=anchor)
    store.migrate()
    try:
        for n in range(5):
            store.append_ledger(
                kind="probe", subject=f"s-{n}", actor="probe", channel="system", data={"n": n}
            )
    finally:
        store.close()
    # the anchor's last writes were lost (a full disk, a copy restored from a backup): it lags by 3
    lines = anchor.read_text().splitlines(keepends=True)
    anchor.write_text("".join(lines[:2]))
    env = {
        "GRANTFLOW_STATE_DIR": str(tmp_path),
        "GRANTFLOW_DATABASE_URL": f"sqlite:///{database}",
        "GRANTFLOW_LEDGER_KEY": LEDGER_KEY.decode(),
        "GRANTFLOW_LEDGER_ANCHOR_FILE": str(anchor),
    }
    out = CliRunner().invoke(main, ["ledger", "verify"], env=env)
    assert "head #2, written " in out.output, out.output
    assert "the table is 3 entries ahead of it" in out.output, out.output
    document = json.loads(CliRunner().invoke(main, ["ledger", "verify", "--json"], env=env).output)
    assert document["anchor_lag"] == 3 and document["anchored_seq"] == 2 and document["anchored_at"]


# ----------------------------------------------------------------------------------- 6. admin on behalf


def _policies_allowing_admin_votes(policies: PolicySet) -> PolicySet:
    data = policies.model_dump(mode="json")
    data["resources"]["pg-prod"]["roles"]["admin"]["allow_admin_on_behalf"] = True
    return PolicySet.model_validate(data)


@pytest_asyncio.fixture(loop_scope="session")
async def permissive_api(stack: Stack) -> AsyncIterator[Api]:
    """The REST API whose pg-prod admin policy allows admin votes on behalf of approvers."""
    tokens_file = stack.tmp_path / "permissive-tokens.toml"
    tokens = {
        "alice": issue_token(tokens_file, "alice", "alice@example.com", ["requester"]),
        "carol": issue_token(tokens_file, "carol", "carol@example.com", ["requester"]),
        "grace": issue_token(tokens_file, "grace", "grace@example.com", ["admin"]),
    }
    context = web_context(stack, tokens_file)
    policies = _policies_allowing_admin_votes(stack.policies)
    context.policies = policies
    context.service = RequestService(stack.env.client, stack.store, policies, stack.task_queue, stack.timings)
    async with running(create_app(context)) as url:
        yield Api(url=url, tokens=tokens, stack=stack, context=context)


async def test_admin_votes_on_behalf_are_refused_by_default_and_recorded(api: Api) -> None:
    rid = (
        await api.call(
            "alice",
            "POST",
            "/requests",
            json={"resource": "pg-prod", "role": "admin", "duration": "1h", "reason": "x"},
        )
    ).json()["id"]
    for as_ in ("bob@example.com", "carol@example.com"):
        answer = await api.call("grace", "POST", f"/requests/{rid}/approve", json={"as": as_})
        assert answer.status_code == 409, answer.text
        assert "allow_admin_on_behalf" in answer.json()["detail"] and as_ in answer.json()["detail"]
    refused = [e for e in api.stack.store.ledger_entries(subject=rid) if e.kind == "decision.refused"]
    assert [e.actor for e in refused] == [
        "admin grace@example.com on behalf of bob@example.com",
        "admin grace@example.com on behalf of carol@example.com",
    ]
    shown = (await api.call("alice", "GET", f"/requests/{rid}")).json()
    assert shown["status"] == "PENDING" and shown["approvals"] == []


async def test_allowed_admin_votes_on_behalf_count_as_one_person(permissive_api: Api) -> None:
    api_ = permissive_api
    rid = (
        await api_.call(
            "alice",
            "POST",
            "/requests",
            json={"resource": "pg-prod", "role": "admin", "duration": "1h", "reason": "x"},
        )
    ).json()["id"]
    for as_ in ("bob@example.com", "dan@example.com"):
        answer = await api_.call("grace", "POST", f"/requests/{rid}/approve", json={"as": as_})
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "PENDING"  # two votes, one administrator: 1 of 2
    # the administrator voting as themselves adds nobody either
    shown = (await api_.call("alice", "GET", f"/requests/{rid}")).json()
    assert [d["on_behalf_by"]["email"] for d in shown["approvals"]] == ["grace@example.com"] * 2
    carol = await api_.call("carol", "POST", f"/requests/{rid}/approve")
    assert carol.status_code == 200, carol.text
    assert carol.json()["status"] == "ACTIVE"


async def test_the_workflow_itself_counts_one_administrator_once(stack: Stack) -> None:
    policies = _policies_allowing_admin_votes(stack.policies)
    _, policy = policies.role("pg-prod", "admin")
    handle = await stack.start_request("alice@example.com", policy=policy)
    from domain.requests import DecisionInput
    from workflows.access_request import AccessRequestWorkflow

    await stack.wait_for(handle, lambda v: v.approvers_resolved)
    for person in ("bob@example.com", "carol@example.com"):
        inp = DecisionInput(actor=stack.actor(person, admin="grace@example.com"), verdict=Verdict.APPROVE)
        view = await handle.execute_update(AccessRequestWorkflow.decide, inp)
        assert view.status is RequestStatus.PENDING
    inp = DecisionInput(actor=stack.actor("dan@example.com"), verdict=Verdict.APPROVE)
    await handle.execute_update(AccessRequestWorkflow.decide, inp)
    done = await stack.wait_for(handle, lambda v: v.status is RequestStatus.ACTIVE)
    assert {d.approver.email for d in done.approvals} == {
        "bob@example.com",
        "carol@example.com",
        "dan@example.com",
    }


def test_campaign_decisions_on_behalf_of_a_reviewer_are_refused_unless_allowed() -> None:
    from domain.campaign_decisions import refusal
    from domain.campaign_spec import parse_campaign_spec
    from domain.identity import Actor
    from tests.test_campaign_decisions import BY_KEN, EVE, KEN, _item

    def spec(extra: str = "") -> Any:
        return parse_campaign_spec(
            'name = "t"\nowner = "grace@example.com"\nduration = "14d"\n'
            f'default_decision = "keep"\nfallback_reviewer = "grace@example.com"\n{extra}'
            '[scope]\ngroups = ["db-owners"]\n[[stages]]\nreviewers = "manager"\n'
        )

    def why(actor: Actor, extra: str = "") -> str | None:
        return refusal(_item(), BY_KEN, actor, "keep", "", spec(extra), stage_open=True)

    on_behalf = Actor(person=KEN, channel="cli", admin=EVE)
    refused = why(on_behalf)
    assert refused is not None and "allow_admin_on_behalf" in refused and "ken@example.com" in refused
    assert why(on_behalf, "allow_admin_on_behalf = true\n") is None
    # an administrator who is the reviewer decides as themselves, not on behalf of anyone
    assert why(Actor(person=KEN, channel="cli", admin=KEN)) is None


async def test_campaign_decisions_for_a_reviewer_by_others_are_refused_and_recorded(
    campaign_edge: CampaignEdge,  # noqa: F811
) -> None:
    from tests.test_campaign_workflow import ANALYTICS, until_open

    edge = campaign_edge
    launched = (await edge.call("margaret", "POST", "/campaigns", json={"spec": ANALYTICS})).json()
    campaign_id = launched["id"]
    await until_open(edge.stack, campaign_id)
    [item] = (
        await edge.call(
            "margaret", "GET", f"/campaigns/{campaign_id}/items", params={"reviewer": "xena@example.com"}
        )
    ).json()["items"]
    body = {"decisions": [{"item_id": item["id"], "verdict": "revoke"}], "as": "xena@example.com"}

    def kinds() -> list[str]:
        return [e.kind for e in edge.stack.store.ledger_entries(subject=campaign_id)]

    # a reviewer's token deciding for another reviewer: forbidden, and recorded against the campaign
    by_judy = await edge.call("judy", "POST", f"/campaigns/{campaign_id}/decisions", json=body)
    assert by_judy.status_code == 403 and "needs an admin token" in by_judy.json()["detail"]
    assert kinds().count("access.forbidden") == 1
    # an administrator deciding for the reviewer: refused unless the campaign allows it, and recorded
    by_admin = await edge.call("margaret", "POST", f"/campaigns/{campaign_id}/decisions", json=body)
    assert by_admin.status_code == 200, by_admin.text
    assert by_admin.json()["recorded"] == []
    assert "allow_admin_on_behalf" in by_admin.json()["refused"][item["id"]]
    [refused] = [
        e
        for e in edge.stack.store.ledger_entries(subject=campaign_id)
        if e.kind == "campaign.decision_refused"
    ]
    assert refused.actor == "admin margaret@example.com on behalf of xena@example.com"
    # xena herself decides
    by_xena = await edge.call(
        "xena", "POST", f"/campaigns/{campaign_id}/decisions", json={"decisions": body["decisions"]}
    )
    assert by_xena.json() == {"recorded": [item["id"]], "refused": {}}

"""The REST API over a real socket: uvicorn on 127.0.0.1 in the test loop, the real stack behind it."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from configuration.settings import Settings
from tests.stack import Stack
from web.app import WebContext, create_app, running
from web.auth import TokenFileError, TokenRegistry, hash_token, issue_token
from web.service import RequestService

PEOPLE = {
    "alice": ("alice@example.com", ["requester"]),
    "erin": ("erin@example.com", ["requester"]),
    "bob": ("bob@example.com", []),  # approving is not a role
    "carol": ("carol@example.com", ["requester"]),
    "dan": ("dan@example.com", ["requester"]),
    "frank": ("frank@example.com", ["requester"]),
    "grace": ("grace@example.com", ["admin"]),
}


@dataclass
class Api:
    url: str
    tokens: dict[str, str]
    stack: Stack
    context: WebContext

    def client(self, who: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.AsyncClient(base_url=f"{self.url}/api/v1", headers=headers, timeout=30)

    async def call(self, who: str | None, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with self.client(who) as http:
            return await http.request(method, path, **kwargs)


def web_context(stack: Stack, tokens_file: Path) -> WebContext:
    service = RequestService(stack.env.client, stack.store, stack.policies, stack.task_queue, stack.timings)
    return WebContext(
        settings=Settings(state_dir=stack.tmp_path),
        store=stack.store,
        client=stack.env.client,
        policies=stack.policies,
        links=stack.links,
        tokens=TokenRegistry(tokens_file),
        service=service,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def api(stack: Stack) -> AsyncIterator[Api]:
    tokens_file = stack.tmp_path / "tokens.toml"
    tokens = {name: issue_token(tokens_file, name, email, roles) for name, (email, roles) in PEOPLE.items()}
    tokens["robot"] = issue_token(tokens_file, "robot", None, ["admin"])
    context = web_context(stack, tokens_file)
    async with running(create_app(context)) as url:
        yield Api(url=url, tokens=tokens, stack=stack, context=context)


CREATE = {"resource": "pg-prod", "role": "admin", "duration": "1h", "reason": "INC-1"}


async def create(api: Api, who: str = "alice", **body: Any) -> dict[str, Any]:
    response = await api.call(who, "POST", "/requests", json={**CREATE, **body})
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def wait_status(api: Api, rid: str, status: str, timeout: float = 20.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        view: dict[str, Any] = (await api.call("grace", "GET", f"/requests/{rid}")).json()
        if view["status"] == status:
            return view
        assert loop.time() < deadline, view
        await asyncio.sleep(0.05)


def refused_entries(api: Api, rid: str, kind: str = "decision.refused") -> list[Any]:
    return [e for e in api.stack.store.ledger_entries(subject=rid) if e.kind == kind]


async def test_create_then_two_approvals_make_it_active(api: Api) -> None:
    view = await create(api)
    rid = view["id"]
    assert view["status"] == "PENDING" and view["requester"]["email"] == "alice@example.com"
    assert view["approvers_resolved"] is True
    bob = await api.call("bob", "POST", f"/requests/{rid}/approve", json={"reason": "ok"})
    assert bob.status_code == 200, bob.text
    carol = await api.call("carol", "POST", f"/requests/{rid}/approve")  # no body at all
    assert carol.status_code == 200, carol.text
    assert carol.json()["status"] == "ACTIVE"  # the deciding vote answers once the grant is written
    active = await wait_status(api, rid, "ACTIVE")
    assert [d["channel"] for d in active["approvals"]] == ["api", "api"]
    assert active["expires_at"] is not None
    listed = (await api.call("alice", "GET", "/requests", params={"status": "ACTIVE"})).json()
    assert [v["id"] for v in listed["requests"]] == [rid] and listed["count"] == 1


async def test_self_approval_and_ineligible_approver_are_refused_with_the_reason(api: Api) -> None:
    rid = (await create(api))["id"]
    own = await api.call("alice", "POST", f"/requests/{rid}/approve", json={"reason": "me"})
    assert own.status_code == 409
    assert own.json() == {"error": "refused", "detail": "alice@example.com cannot approve their own request"}
    erin = await api.call("erin", "POST", f"/requests/{rid}/approve", json={"reason": "sure"})
    assert (
        erin.status_code == 409
        and "erin@example.com is not an approver for pg-prod admin" in erin.json()["detail"]
    )
    await api.call("bob", "POST", f"/requests/{rid}/approve")
    twice = await api.call("bob", "POST", f"/requests/{rid}/approve")
    assert twice.status_code == 409 and "already approved" in twice.json()["detail"]
    entries = refused_entries(api, rid)
    assert [(e.actor, e.channel) for e in entries] == [
        ("alice@example.com", "api"),
        ("erin@example.com", "api"),
        ("bob@example.com", "api"),
    ]
    assert entries[1].data == {
        "verdict": "approve",
        "reason_given": "sure",
        "refusal": erin.json()["detail"],
    }


async def test_deny_ends_it(api: Api) -> None:
    rid = (await create(api))["id"]
    denied = await api.call("dan", "POST", f"/requests/{rid}/deny", json={"reason": "freeze"})
    assert denied.status_code == 200, denied.text
    view = await wait_status(api, rid, "DENIED")
    assert view["denials"][0]["reason"] == "freeze"
    late = await api.call("bob", "POST", f"/requests/{rid}/approve")
    assert late.status_code == 409 and "DENIED" in late.json()["detail"]


@pytest.mark.parametrize(
    ("body", "status", "code", "detail"),
    [
        ({"duration": None}, 422, "bad_input", "duration: "),
        (
            {"reason": None, "duration": None},
            422,
            "bad_input",
            "duration: field required; reason: field required",
        ),
        ({"duration": "0s"}, 422, "bad_input", "is zero"),
        ({"duration": "-2h"}, 422, "bad_input", "is negative"),
        ({"duration": "whenever"}, 422, "bad_input", "not understood"),
        ({"duration": 3600}, 422, "bad_input", "duration: "),
        ({"duration": "5h"}, 422, "bad_input", "4h is the most pg-prod admin allows"),
        ({"resource": "nope"}, 422, "bad_input", "unknown resource 'nope'; known resources:"),
        ({"role": "root"}, 422, "bad_input", "has no role 'root'"),
        ({"reason": ""}, 422, "bad_input", "reason is empty"),
        ({"reason": "x" * 2001}, 422, "bad_input", "reason is too long (2001 characters)"),
        # what the store or a JSON answer could not keep is refused here, never a 500 or a 503 later
        ({"duration": "99999999999999999999s"}, 422, "bad_input", "is too long"),
        ({"duration": "PT99999999999999999999H"}, 422, "bad_input", "is too long"),
        ({"reason": "INC-1\x00"}, 422, "bad_input", "reason contains a NUL character"),
        ({"reason": "INC-\ud800"}, 422, "bad_input", "reason is not valid text"),
        ({"resource": "pg-\udfff"}, 422, "bad_input", "resource: Input should be a valid string"),
        ({"colour": "blue"}, 422, "bad_input", "colour: unknown field"),
        ({"role": "read", "break_glass": True}, 409, "refused", "does not allow break-glass"),
        ({"requester": "bob@example.com"}, 403, "forbidden", "needs an admin token"),
    ],
)
async def test_bad_create_is_a_4xx_with_a_body_and_starts_nothing(
    api: Api, body: dict[str, Any], status: int, code: str, detail: str
) -> None:
    payload = {k: v for k, v in {**CREATE, **body}.items() if v is not None}
    # json.dumps escapes what UTF-8 cannot carry (\\ud800), as a client in any language may send it
    raw = json.dumps(payload).encode()
    response = await api.call(
        "alice", "POST", "/requests", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert detail in response.json()["detail"]
    assert api.stack.store.list_requests() == []


async def test_unknown_requester_and_malformed_json(api: Api) -> None:
    unknown = await api.call("grace", "POST", "/requests", json={**CREATE, "requester": "nobody@example.com"})
    assert unknown.status_code == 422
    assert unknown.json()["detail"] == "requester nobody@example.com is not a person in the directory"
    garbled = await api.call(
        "alice", "POST", "/requests", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert garbled.status_code == 422 and "not valid JSON" in garbled.json()["detail"]
    assert api.stack.store.list_requests() == []


async def test_authentication_and_roles(api: Api) -> None:
    missing = await api.call(None, "POST", "/requests", json=CREATE)
    assert missing.status_code == 401
    assert (
        missing.json()["error"] == "unauthenticated" and "Authorization: Bearer" in missing.json()["detail"]
    )
    assert missing.headers["www-authenticate"] == "Bearer"
    async with httpx.AsyncClient(
        base_url=f"{api.url}/api/v1", headers={"Authorization": "Bearer gf_wrong"}
    ) as h:
        bad = await h.get("/requests")
    assert bad.status_code == 401 and bad.json() == {
        "error": "unauthenticated",
        "detail": "the bearer token is not valid",
    }
    # bob's token has no role: he may read and approve, not create
    no_role = await api.call("bob", "POST", "/requests", json=CREATE)
    assert no_role.status_code == 403 and "requester" in no_role.json()["detail"]
    # a requester acting as someone else
    rid = (await create(api))["id"]
    as_bob = await api.call("alice", "POST", f"/requests/{rid}/approve", json={"as": "bob@example.com"})
    assert as_bob.status_code == 403
    assert as_bob.json()["detail"] == (
        "token 'alice' acts only as alice@example.com; acting for bob@example.com (field 'as') "
        "needs an admin token"
    )
    assert api.stack.store.get_request(rid).approvals == []  # type: ignore[union-attr]
    # the attempt itself is evidence: recorded against the request it aimed at, changing nothing else
    [forbidden] = [e for e in api.stack.store.ledger_entries(subject=rid) if e.kind == "access.forbidden"]
    assert forbidden.actor == "alice@example.com" and "needs an admin token" in forbidden.data["refusal"]
    for_bob = await api.call("alice", "POST", "/requests", json={**CREATE, "requester": "bob@example.com"})
    assert for_bob.status_code == 403
    assert [e.kind for e in api.stack.store.ledger_entries(subject="token:alice")] == ["access.forbidden"]
    # ... but naming oneself is fine
    erin = await api.call("erin", "POST", f"/requests/{rid}/approve", json={"as": "ERIN@example.com"})
    assert erin.status_code == 409  # reached the workflow, which refused
    # the ledger check is for admins
    assert (await api.call("alice", "GET", "/ledger/verify")).status_code == 403


async def test_admin_acts_on_behalf_and_service_token_needs_as(api: Api) -> None:
    view = await create(api, "grace", requester="erin@example.com")
    assert view["submitted_by"] == "admin grace@example.com on behalf of erin@example.com"
    rid = view["id"]
    # voting for approvers needs a policy allowing it (allow_admin_on_behalf): refused and recorded
    by_grace = await api.call(
        "grace", "POST", f"/requests/{rid}/approve", json={"as": "bob@example.com", "reason": "call"}
    )
    assert by_grace.status_code == 409, by_grace.text
    detail = by_grace.json()["detail"]
    assert detail.startswith("grace@example.com may not decide on behalf of bob@example.com"), detail
    robot = await api.call("robot", "POST", f"/requests/{rid}/approve")
    assert robot.status_code == 422 and "belongs to no person" in robot.json()["detail"]
    by_robot = await api.call("robot", "POST", f"/requests/{rid}/approve", json={"as": "carol@example.com"})
    assert by_robot.status_code == 409 and "allow_admin_on_behalf" in by_robot.json()["detail"]
    entries = [e for e in api.stack.store.ledger_entries(subject=rid) if e.kind == "decision.refused"]
    assert [e.actor for e in entries] == [
        "admin grace@example.com on behalf of bob@example.com",
        "admin token:robot on behalf of carol@example.com",
    ]
    for who in ("bob", "carol"):  # the approvers themselves
        assert (await api.call(who, "POST", f"/requests/{rid}/approve")).status_code == 200
    await wait_status(api, rid, "ACTIVE")
    verified = await api.call("grace", "GET", "/ledger/verify")
    assert verified.status_code == 200 and verified.json()["ok"] is True


async def test_second_open_request_is_409_pointing_to_extend(api: Api) -> None:
    rid = (await create(api))["id"]
    for who in ("bob", "carol"):
        assert (await api.call(who, "POST", f"/requests/{rid}/approve")).status_code == 200
    await wait_status(api, rid, "ACTIVE")
    again = await api.call("alice", "POST", "/requests", json=CREATE)
    assert again.status_code == 409
    assert again.json() == {
        "error": "conflict",
        "detail": f"alice@example.com already has request {rid} (ACTIVE) for pg-prod-admin; "
        f"extend it with `grantflow request extend {rid} --by 1h`",
        "existing_request_id": rid,
    }


async def test_extend_relinquish_cancel_revoke(api: Api) -> None:
    # self-extension (pg-prod read for frank, who is on call: auto-approved)
    rid = (await create(api, "frank", role="read", duration="1h"))["id"]
    await wait_status(api, rid, "ACTIVE")
    ext = await api.call("frank", "POST", f"/requests/{rid}/extend", json={"by": "30m", "reason": "more"})
    assert ext.status_code == 200 and ext.json()["granted_total"] == 5400
    too_much = await api.call("frank", "POST", f"/requests/{rid}/extend", json={"by": "2d"})
    assert too_much.status_code == 409 and "cumulative maximum" in too_much.json()["detail"]
    zero = await api.call("frank", "POST", f"/requests/{rid}/extend", json={"by": "0s"})
    assert zero.status_code == 422 and "extension '0s' is zero" in zero.json()["detail"]
    no_by = await api.call("frank", "POST", f"/requests/{rid}/extend", json={})
    assert no_by.status_code == 422 and no_by.json()["detail"] == "by: field required"
    not_his = await api.call("erin", "POST", f"/requests/{rid}/relinquish", json={"reason": "x"})
    assert not_his.status_code == 409 and "cannot relinquish" in not_his.json()["detail"]
    gone = await api.call("frank", "POST", f"/requests/{rid}/relinquish", json={"reason": "done"})
    assert gone.status_code == 200, gone.text
    ended = await wait_status(api, rid, "ENDED")
    assert ended["end_reason"] == "relinquished"
    assert [e.kind for e in api.stack.store.ledger_entries(subject=rid) if e.kind.endswith(".refused")] == [
        "extend.refused",
        "relinquish.refused",
    ]

    # cancel
    rid = (await create(api))["id"]
    refused = await api.call("erin", "POST", f"/requests/{rid}/cancel")
    assert refused.status_code == 409 and "cannot cancel" in refused.json()["detail"]
    cancelled = await api.call("alice", "POST", f"/requests/{rid}/cancel", json={"reason": "not needed"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"

    # revoke (bob is an approver: allowed even with a role-less token); erin is refused
    rid = (await create(api, "erin"))["id"]
    for who in ("bob", "carol"):
        await api.call(who, "POST", f"/requests/{rid}/approve")
    await wait_status(api, rid, "ACTIVE")
    nope = await api.call("alice", "POST", f"/requests/{rid}/revoke", json={"reason": "x"})
    assert nope.status_code == 409 and "only administrators and its approvers" in nope.json()["detail"]
    revoked = await api.call("bob", "POST", f"/requests/{rid}/revoke", json={"reason": "incident over"})
    assert revoked.status_code == 200, revoked.text
    assert (await wait_status(api, rid, "ENDED"))["end_reason"] == "revoked"


async def test_not_found_and_reading(api: Api) -> None:
    missing = await api.call("alice", "GET", "/requests/req-000000000000")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    approve_missing = await api.call("bob", "POST", "/requests/req-000000000000/approve")
    assert approve_missing.status_code == 404
    no_route = await api.call("alice", "GET", "/nothing-here")
    assert no_route.status_code == 404 and no_route.json()["error"] == "not_found"
    bad_status = await api.call("alice", "GET", "/requests", params={"status": "OPEN"})
    assert bad_status.status_code == 422 and "status 'OPEN' is not known" in bad_status.json()["detail"]
    bad_limit = await api.call("alice", "GET", "/requests", params={"limit": 0})
    assert bad_limit.status_code == 422 and bad_limit.json()["detail"].startswith("limit (query):")
    async with httpx.AsyncClient(base_url=api.url) as http:
        health = await http.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"


async def test_openapi_document_describes_the_api(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as http:
        doc = (await http.get("/api/v1/openapi.json")).json()
        docs = await http.get("/api/v1/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    paths = doc["paths"]
    for path in (
        "/api/v1/requests",
        "/api/v1/requests/{request_id}",
        "/api/v1/requests/{request_id}/approve",
        "/api/v1/requests/{request_id}/deny",
        "/api/v1/requests/{request_id}/extend",
        "/api/v1/requests/{request_id}/relinquish",
        "/api/v1/requests/{request_id}/cancel",
        "/api/v1/requests/{request_id}/revoke",
        "/api/v1/ledger/verify",
    ):
        assert path in paths, path
    assert not [p for p in paths if p.startswith("/review")]
    create_op = paths["/api/v1/requests"]["post"]
    assert set(create_op["responses"]) >= {"201", "401", "403", "404", "409", "422", "503"}
    assert create_op["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    body = doc["components"]["schemas"]["CreateBody"]
    assert set(body["required"]) == {"resource", "duration", "reason"}
    assert "as" in doc["components"]["schemas"]["DecisionBody"]["properties"]
    assert create_op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorBody"
    )


def test_tokens_file_holds_hashes_only(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    raw = issue_token(path, "alice", "alice@example.com", ["requester"])
    text = path.read_text()
    assert raw not in text and hash_token(raw) in text
    assert path.stat().st_mode & 0o777 == 0o600
    registry = TokenRegistry(path)
    principal = registry.authenticate(raw)
    assert principal is not None and principal.email == "alice@example.com" and not principal.is_admin
    assert registry.authenticate(raw + "x") is None
    # re-issuing under the same name replaces the old token; the registry notices the change
    newer = issue_token(path, "alice", "alice@example.com", ["requester", "admin"])
    assert registry.authenticate(raw) is None
    again = registry.authenticate(newer)
    assert again is not None and again.is_admin
    with pytest.raises(TokenFileError, match="unknown role"):
        issue_token(path, "x", "x@example.com", ["root"])
    path.write_text('[[tokens]]\nname = "bad"\nsha256 = "zz"\nroles = []\n')
    with pytest.raises(TokenFileError, match="token 'bad': sha256"):
        TokenRegistry(path)


async def test_serve_builds_its_context_from_settings(stack: Stack) -> None:
    """``serve`` (as ``grantflow server`` runs it): store, Temporal and policies from settings."""
    from examples import POLICIES_FILE
    from tests.stack import LEDGER_KEY
    from web.app import serve

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tokens_file = stack.tmp_path / "served-tokens.toml"
    raw = issue_token(tokens_file, "alice", "alice@example.com", ["requester"])
    settings = Settings(
        state_dir=stack.tmp_path / "served",
        temporal_address=stack.env.client.service_client.config.target_host,
        task_queue=stack.task_queue,
        database_url=f"sqlite:///{stack.tmp_path / 'grantflow.db'}",
        ledger_key=LEDGER_KEY.decode(),
        ledger_anchor_path=stack.tmp_path / "anchor",
        review_link_secret="another-secret",
        tokens_file=tokens_file,
        policies_file=POLICIES_FILE,
        web_port=port,
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(settings, stop, ready))
    try:
        await asyncio.wait_for(ready.wait(), timeout=20)
        headers = {"Authorization": f"Bearer {raw}"}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30
        ) as http:
            assert (await http.get("/healthz")).json()["status"] == "ok"
            created = await http.post("/api/v1/requests", json=CREATE)
        assert created.status_code == 201, created.text
        assert stack.store.get_request(created.json()["id"]) is not None
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=20)
    assert stack.store.verify_ledger().ok

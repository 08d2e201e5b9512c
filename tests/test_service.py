"""RequestService against the real stack: dev server, worker, store and the hoop stand-in."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest
from temporalio.service import RPCError, RPCStatusCode

from domain.requests import EndReason, RequestStatus, RequestView, Verdict
from store import LedgerEntry
from tests.stack import Stack
from web.service import BadInput, Conflict, Forbidden, NotFound, Refused, RequestService, Unavailable


def make_service(stack: Stack, client: Any = None) -> RequestService:
    return RequestService(
        client or stack.env.client, stack.store, stack.policies, stack.task_queue, stack.timings
    )


async def wait_view(
    service: RequestService, request_id: str, predicate: Callable[[RequestView], bool], timeout: float = 20.0
) -> RequestView:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        view = await service.show(request_id)
        if predicate(view):
            return view
        if loop.time() > deadline:
            raise AssertionError(f"timed out; last view: {view.model_dump_json(indent=1)}")
        await asyncio.sleep(0.05)


def refusals(stack: Stack, request_id: str, kind: str) -> list[LedgerEntry]:
    return [e for e in stack.store.ledger_entries(subject=request_id) if e.kind == kind]


async def create_admin_request(
    stack: Stack, service: RequestService, requester: str = "alice@example.com"
) -> str:
    view = await service.create(
        stack.actor(requester), resource="pg-prod", role="admin", duration="1h", reason="INC-1"
    )
    assert view.approvers_resolved, "create answers once the approvers are resolved"
    return view.id


async def test_quorum_of_two_makes_the_request_active_and_refusals_are_recorded(stack: Stack) -> None:
    service = make_service(stack)
    view = await service.create(
        stack.actor("alice@example.com"), resource="pg-prod", role="admin", duration="1h", reason="INC-1"
    )
    assert view.id.startswith("req-") and len(view.id) == 16
    assert view.status is RequestStatus.PENDING
    assert {p.email for p in view.eligible_approvers} == {
        "bob@example.com",
        "carol@example.com",
        "dan@example.com",
    }
    rid = view.id

    with pytest.raises(Refused, match=re.escape("alice@example.com cannot approve their own request")):
        await service.decide(rid, stack.actor("alice@example.com"), Verdict.APPROVE, "me")
    with pytest.raises(Refused, match=re.escape("erin@example.com is not an approver for pg-prod admin")):
        await service.decide(rid, stack.actor("erin@example.com", channel="web"), "approve", "lgtm")

    after_bob = await service.decide(rid, stack.actor("bob@example.com"), "approve", "ok")
    assert [d.approver.email for d in after_bob.approvals] == ["bob@example.com"]
    with pytest.raises(Refused, match="already approved"):
        await service.decide(rid, stack.actor("bob@example.com"), "approve", "again")
    await service.decide(rid, stack.actor("carol@example.com"), "approve", "ok")
    active = await wait_view(service, rid, lambda v: v.status is RequestStatus.ACTIVE)
    assert active.expires_at is not None and active.grants

    refused = refusals(stack, rid, "decision.refused")
    by_actor = {e.actor: e for e in refused}
    assert set(by_actor) == {"alice@example.com", "erin@example.com", "bob@example.com"}
    erin = by_actor["erin@example.com"]
    assert erin.channel == "web"
    assert erin.data["verdict"] == "approve" and erin.data["reason_given"] == "lgtm"
    assert "is not an approver" in erin.data["refusal"]
    assert "cannot approve their own request" in by_actor["alice@example.com"].data["refusal"]
    # Refusals changed nothing.
    assert {d.approver.email for d in active.approvals} == {"bob@example.com", "carol@example.com"}


async def test_deny_ends_the_request_and_later_decisions_are_refused_and_recorded(stack: Stack) -> None:
    service = make_service(stack)
    rid = await create_admin_request(stack, service)
    denied = await service.decide(rid, stack.actor("dan@example.com"), Verdict.DENY, "not during the freeze")
    assert denied.denials and denied.denials[0].approver.email == "dan@example.com"
    final = await wait_view(service, rid, lambda v: v.status is RequestStatus.DENIED)
    assert final.status is RequestStatus.DENIED
    # Wait for the workflow to complete, so the next attempt meets a closed workflow, not a validator.
    await stack.env.client.get_workflow_handle(rid).result()
    with pytest.raises(Refused, match="already DENIED"):
        await service.decide(rid, stack.actor("bob@example.com"), Verdict.APPROVE, "too late")
    entry = refusals(stack, rid, "decision.refused")[-1]
    assert entry.actor == "bob@example.com" and "already DENIED" in entry.data["refusal"]
    # The slot is free again: the same person may ask again.
    again = await service.create(
        stack.actor("alice@example.com"), resource="pg-prod", role="admin", duration="30m", reason="INC-2"
    )
    assert again.id != rid


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"duration": "0s"}, BadInput, "is zero"),
        ({"duration": "-1h"}, BadInput, "is negative"),
        ({"duration": "soon"}, BadInput, "not understood"),
        ({"duration": "6h"}, BadInput, "4h is the most pg-prod admin allows"),
        ({"resource": "pg-nope"}, BadInput, "unknown resource 'pg-nope'"),
        ({"role": "root"}, BadInput, "has no role 'root'"),
        ({"role": None}, BadInput, "has several roles"),
        ({"reason": "  "}, BadInput, "reason is empty"),
        ({"requester_email": "nobody@example.com", "admin": True}, BadInput, "not a person in the directory"),
        ({"requester_email": "bob@example.com"}, Forbidden, "needs an admin token"),
        ({"resource": "pg-prod", "role": "read", "break_glass": True}, Refused, "does not allow break-glass"),
    ],
)
async def test_bad_input_is_refused_before_any_workflow_starts(
    stack: Stack, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    service = make_service(stack)
    args: dict[str, Any] = {"resource": "pg-prod", "role": "admin", "duration": "1h", "reason": "INC-1"}
    admin = kwargs.pop("admin", False)
    args.update(kwargs)
    actor = stack.actor("alice@example.com", admin="grace@example.com" if admin else None)
    with pytest.raises(error, match=message):
        await service.create(actor, **args)
    assert stack.store.list_requests() == []
    assert not [e for e in stack.store.ledger_entries() if e.kind == "request.created"]


async def test_admin_creates_and_decides_on_behalf_of_people(stack: Stack) -> None:
    service = make_service(stack)
    grace = stack.actor("grace@example.com", admin="grace@example.com")
    view = await service.create(
        grace,
        resource="pg-prod",
        role="admin",
        duration="1h",
        reason="INC-3",
        requester_email="erin@example.com",
    )
    assert view.requester.email == "erin@example.com"
    assert view.submitted_by == "admin grace@example.com on behalf of erin@example.com"
    # deciding for bob needs a policy that allows administrators to vote for approvers
    on_behalf = stack.actor("bob@example.com", admin="grace@example.com")
    with pytest.raises(Refused, match=re.escape("grace@example.com may not decide on behalf of bob")):
        await service.decide(view.id, on_behalf, Verdict.APPROVE, "ok for bob")
    entry = refusals(stack, view.id, "decision.refused")[-1]
    assert entry.actor == "admin grace@example.com on behalf of bob@example.com"
    assert "allow_admin_on_behalf" in entry.data["refusal"]
    # An admin deciding as themselves is still just a person: grace is no approver.
    with pytest.raises(Refused, match=re.escape("grace@example.com is not an approver")):
        await service.decide(view.id, grace, Verdict.APPROVE, "")
    entry = refusals(stack, view.id, "decision.refused")[-1]
    assert entry.actor == "grace@example.com"


async def test_second_open_request_for_the_same_connection_is_a_conflict(stack: Stack) -> None:
    service = make_service(stack)
    rid = await create_admin_request(stack, service)
    with pytest.raises(
        Conflict, match=rf"already has request {rid} \(PENDING\) for pg-prod-admin"
    ) as pending:
        await create_admin_request(stack, service)
    assert pending.value.existing_request_id == rid
    await service.decide(rid, stack.actor("bob@example.com"), "approve", "")
    await service.decide(rid, stack.actor("carol@example.com"), "approve", "")
    await wait_view(service, rid, lambda v: v.status is RequestStatus.ACTIVE)
    with pytest.raises(Conflict, match=rf"extend it with `grantflow request extend {rid} --by 1h`"):
        await create_admin_request(stack, service)


async def test_a_workflow_that_cannot_start_frees_its_slot(stack: Stack) -> None:
    class NoTemporal:
        def __getattr__(self, name: str) -> Any:
            return getattr(stack.env.client, name)

        async def start_workflow(self, *args: Any, **kwargs: Any) -> Any:
            raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")

    broken = make_service(stack, NoTemporal())
    with pytest.raises(Unavailable, match="could not be started"):
        await create_admin_request(stack, broken)
    [row] = stack.store.list_requests()
    assert row.status is RequestStatus.FAILED and row.failure_reason
    # The slot is free: a working service can create the request now.
    rid = await create_admin_request(stack, make_service(stack))
    assert rid != row.id


async def test_self_extension_and_refused_extension(stack: Stack) -> None:
    service = make_service(stack)
    # frank is on call: pg-prod read is auto-approved and may be self-extended up to 24h in total.
    view = await service.create(
        stack.actor("frank@example.com"), resource="pg-prod", role="read", duration="2h", reason="r"
    )
    await wait_view(service, view.id, lambda v: v.status is RequestStatus.ACTIVE)
    extended = await service.extend(view.id, stack.actor("frank@example.com"), "1h", "more")
    assert extended.granted_total.total_seconds() == 3 * 3600
    with pytest.raises(Refused, match="beyond the policy's cumulative maximum of 1d"):
        await service.extend(view.id, stack.actor("frank@example.com"), "1d", "much more")
    with pytest.raises(Refused, match=re.escape("erin@example.com cannot extend frank@example.com's access")):
        await service.extend(view.id, stack.actor("erin@example.com"), "1h", "")
    with pytest.raises(BadInput, match="extension '0m' is zero"):
        await service.extend(view.id, stack.actor("frank@example.com"), "0m", "")
    kinds = [(e.actor, e.data["action"]) for e in refusals(stack, view.id, "extend.refused")]
    assert kinds == [("frank@example.com", "extend"), ("erin@example.com", "extend")]


async def test_extension_needing_approval(stack: Stack) -> None:
    service = make_service(stack)
    rid = await create_admin_request(stack, service)
    for approver in ("bob@example.com", "carol@example.com"):
        await service.decide(rid, stack.actor(approver), "approve", "")
    active = await wait_view(service, rid, lambda v: v.status is RequestStatus.ACTIVE)
    asked = await service.extend(rid, stack.actor("alice@example.com"), "1h", "still debugging")
    assert asked.pending_extension is not None
    for approver in ("dan@example.com", "bob@example.com"):
        await service.decide(rid, stack.actor(approver), "approve", "")
    done = await wait_view(service, rid, lambda v: v.pending_extension is None)
    assert active.expires_at is not None and done.expires_at is not None
    assert (done.expires_at - active.expires_at).total_seconds() == 3600


async def test_relinquish_cancel_and_revoke(stack: Stack) -> None:
    service = make_service(stack)
    alice, erin = stack.actor("alice@example.com"), stack.actor("erin@example.com")

    # cancel: only the requester (or an admin), only while PENDING
    rid = await create_admin_request(stack, service)
    with pytest.raises(Refused, match=re.escape("erin@example.com cannot cancel alice@example.com's")):
        await service.cancel(rid, erin, "mine now")
    with pytest.raises(Refused, match="only ACTIVE access can be relinquished"):
        await service.relinquish(rid, alice, "")
    cancelled = await service.cancel(rid, alice, "not needed")
    assert cancelled.status is RequestStatus.CANCELLED
    await stack.env.client.get_workflow_handle(rid).result()
    with pytest.raises(Refused, match="only PENDING requests can be cancelled"):
        await service.cancel(rid, alice, "again")
    assert [e.actor for e in refusals(stack, rid, "cancel.refused")] == [
        "erin@example.com",
        "alice@example.com",
    ]
    assert [e.actor for e in refusals(stack, rid, "relinquish.refused")] == ["alice@example.com"]

    # relinquish: the requester gives access back early
    rid = await create_admin_request(stack, service)
    for approver in ("bob@example.com", "carol@example.com"):
        await service.decide(rid, stack.actor(approver), "approve", "")
    await wait_view(service, rid, lambda v: v.status is RequestStatus.ACTIVE)
    with pytest.raises(Refused, match=re.escape("cannot relinquish alice@example.com's access")):
        await service.relinquish(rid, erin, "")
    with pytest.raises(Refused, match="cannot revoke this access"):
        await service.revoke(rid, erin, "")
    await service.relinquish(rid, alice, "done early")
    ended = await wait_view(service, rid, lambda v: v.status is RequestStatus.ENDED)
    assert ended.end_reason is EndReason.RELINQUISHED
    assert refusals(stack, rid, "revoke.refused")[0].data["action"] == "revoke"

    # revoke: an approver (or an admin) takes it away
    rid = await create_admin_request(stack, service)
    for approver in ("bob@example.com", "carol@example.com"):
        await service.decide(rid, stack.actor(approver), "approve", "")
    await wait_view(service, rid, lambda v: v.status is RequestStatus.ACTIVE)
    await service.revoke(rid, stack.actor("dan@example.com"), "suspicious queries")
    ended = await wait_view(service, rid, lambda v: v.status is RequestStatus.ENDED)
    assert ended.end_reason is EndReason.REVOKED


async def test_unknown_requests_and_listing(stack: Stack) -> None:
    service = make_service(stack)
    with pytest.raises(NotFound):
        await service.show("req-000000000000")
    with pytest.raises(NotFound):
        await service.decide("req-000000000000", stack.actor("bob@example.com"), "approve", "")
    assert refusals(stack, "req-000000000000", "decision.refused") == []
    rid = await create_admin_request(stack, service)
    assert [v.id for v in await service.list(requester_email="alice@example.com")] == [rid]
    assert await service.list(requester_email="bob@example.com") == []
    assert [v.id for v in await service.list(statuses=["pending"])] == [rid]
    assert await service.list(statuses=["ACTIVE,ENDED"]) == []
    with pytest.raises(BadInput, match="status 'OPEN' is not known"):
        await service.list(statuses=["OPEN"])
    # show answers from the store when the workflow is gone
    await stack.env.client.get_workflow_handle(rid).terminate("test")
    shown = await service.show(rid)
    assert shown.id == rid


async def test_a_slot_held_by_a_terminated_pending_request_is_freed(stack: Stack) -> None:
    service = make_service(stack)
    first = await create_admin_request(stack, service)
    await stack.env.client.get_workflow_handle(first).terminate("operator mistake")
    second = await service.create(
        stack.actor("alice@example.com"), resource="pg-prod", role="admin", duration="1h", reason="INC-2"
    )
    assert second.id != first
    stored = stack.store.get_request(first)
    assert stored is not None and stored.status is RequestStatus.FAILED
    assert "TERMINATED" in (stored.failure_reason or "")
    assert [e.kind for e in stack.store.ledger_entries(subject=first)][-1] == "request.abandoned"


async def test_a_slot_held_by_a_terminated_active_request_stays_taken(stack: Stack) -> None:
    service = make_service(stack)
    view = await service.create(
        stack.actor("erin@example.com"), resource="pg-prod", role="read", duration="1h", reason="INC-3"
    )
    await service.decide(view.id, stack.actor("bob@example.com"), Verdict.APPROVE)
    await wait_view(service, view.id, lambda v: v.status is RequestStatus.ACTIVE)
    await stack.env.client.get_workflow_handle(view.id).terminate("operator mistake")
    with pytest.raises(Conflict):  # a grant may still be in the gateway: never hidden
        await service.create(
            stack.actor("erin@example.com"), resource="pg-prod", role="read", duration="1h", reason="again"
        )


async def test_an_auto_approved_request_is_answered_as_granted_not_pending(stack: Stack) -> None:
    """frank is on call: pg-prod read is approved by policy. Whoever answers him (the CLI, Slack, a Jira
    comment) must say the access is active, never that it waits for an approval it does not need."""
    service = make_service(stack)
    frank = stack.actor("frank@example.com")
    view = await service.create(frank, resource="pg-prod", role="read", duration="15m", reason="INC-9")
    assert view.auto_approved and view.status is RequestStatus.ACTIVE, view.status
    assert view.expires_at is not None
    ended = await service.relinquish(view.id, frank, "done")
    assert ended.status in (RequestStatus.REVOKING, RequestStatus.ENDED)
    await wait_view(service, view.id, lambda v: v.status is RequestStatus.ENDED)


async def test_a_person_hoop_would_not_let_in_is_refused_at_once_with_the_groups_named(stack: Stack) -> None:
    """zoe, a contractor, is in no group pg-prod-admin's access control allows: an approved review would
    not get her past hoop's first gate, so nobody is asked and nothing is granted."""
    service = make_service(stack)
    with pytest.raises(Refused) as refused:
        await service.create(
            stack.actor("zoe@example.com"), resource="pg-prod", role="admin", duration="1h", reason="INC-3"
        )
    sentence = str(refused.value)
    assert "zoe@example.com is not eligible for pg-prod admin" in sentence
    assert "db-owners, engineering" in sentence
    request_id = re.search(r"req-[0-9a-f]{12}", sentence)
    assert request_id is not None
    view = await service.show(request_id.group(0))
    assert view.status is RequestStatus.FAILED and view.grants == []
    assert view.access_check is not None and not view.access_check.eligible
    kinds = [e.kind for e in stack.store.ledger_entries(subject=view.id)]
    assert kinds == ["request.created", "request.refused"]
    assert not [m for m in stack.notifier.messages if m.event == "request_created"]
    assert [c for c in stack.hoop.calls if c.path == "/api/sessions/provision"] == []


async def test_someone_who_needs_no_review_is_told_they_already_have_access(stack: Stack) -> None:
    """dan is a db-owner: hoop's jit rule for pg-prod-ro skips the review for db-owners."""
    service = make_service(stack)
    with pytest.raises(Refused, match=r"dan@example.com already has access to pg-prod read \(pg-prod-ro\)"):
        await service.create(
            stack.actor("dan@example.com"), resource="pg-prod", role="read", duration="1h", reason="INC-4"
        )
    assert [c for c in stack.hoop.calls if c.path == "/api/sessions/provision"] == []
    assert await stack.connect("dan@example.com", "pg-prod-ro")  # and hoop indeed lets him in unreviewed

"""A workflow start that failed ambiguously never hides a running workflow (issue #9, item 3).

A start can time out or lose its connection after Temporal started the workflow. Marking the request
FAILED then would free its slot and make it terminal while the workflow runs and may grant access — a
leaver's end skips terminal requests, so that access would outlive the person. ``create`` asks Temporal
first: a running workflow is the request's, only an unknown one is FAILED.
"""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.service import RPCError, RPCStatusCode

from domain.requests import RequestStatus
from tests.stack import Stack
from tests.test_service import create_admin_request, make_service, wait_view
from web.service import Unavailable


class _Wrapped:
    """The stack's client, except for what a test overrides."""

    def __init__(self, stack: Stack) -> None:
        self._client = stack.env.client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class StartsThenTimesOut(_Wrapped):
    """Temporal started the workflow, but the answer never arrived."""

    async def start_workflow(self, *args: Any, **kwargs: Any) -> Any:
        await self._client.start_workflow(*args, **kwargs)
        raise RPCError("deadline exceeded", RPCStatusCode.DEADLINE_EXCEEDED, b"")


class TimesOutWithoutStarting(_Wrapped):
    async def start_workflow(self, *args: Any, **kwargs: Any) -> Any:
        raise RPCError("deadline exceeded", RPCStatusCode.DEADLINE_EXCEEDED, b"")


class CannotTellAtAll(TimesOutWithoutStarting):
    """Temporal cannot be reached for the start nor for the look that follows it."""

    def get_workflow_handle_for(self, *args: Any, **kwargs: Any) -> Any:
        handle = self._client.get_workflow_handle_for(*args, **kwargs)

        async def describe(*_: Any, **__: Any) -> Any:
            raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")

        handle.describe = describe  # type: ignore[method-assign]
        return handle


async def test_a_start_that_timed_out_after_starting_answers_with_the_running_request(stack: Stack) -> None:
    service = make_service(stack, StartsThenTimesOut(stack))
    rid = await create_admin_request(stack, service)  # answers the running request's view, no error
    [row] = stack.store.list_requests()
    assert row.id == rid and row.status is RequestStatus.PENDING and row.failure_reason is None
    description = await stack.env.client.get_workflow_handle(rid).describe()
    assert description.status is not None and description.status.name == "RUNNING"
    assert not [e for e in stack.store.ledger_entries(subject=rid) if e.kind == "request.failed"]
    # The running request is the one people act on: it is approved and granted as usual.
    for approver in ("bob@example.com", "carol@example.com"):
        await service.decide(rid, stack.actor(approver), "approve", "")
    await wait_view(service, rid, lambda v: v.status is RequestStatus.ACTIVE)


async def test_a_start_that_timed_out_without_starting_frees_the_slot(stack: Stack) -> None:
    with pytest.raises(Unavailable, match="could not be started"):
        await create_admin_request(stack, make_service(stack, TimesOutWithoutStarting(stack)))
    [row] = stack.store.list_requests()
    assert row.status is RequestStatus.FAILED and row.failure_reason
    rid = await create_admin_request(stack, make_service(stack))
    assert rid != row.id


async def test_when_temporal_cannot_tell_the_request_stays_open_until_it_can(stack: Stack) -> None:
    with pytest.raises(Unavailable, match="may or may not have started"):
        await create_admin_request(stack, make_service(stack, CannotTellAtAll(stack)))
    [row] = stack.store.list_requests()
    assert row.status is RequestStatus.PENDING, "not terminal: its workflow might be running"
    # Once Temporal answers that no workflow exists, the next request for the slot frees it.
    rid = await create_admin_request(stack, make_service(stack))
    assert rid != row.id
    assert stack.store.get_request(row.id).status is RequestStatus.FAILED  # type: ignore[union-attr]

"""When presenting a request in Slack, Jira and email gives up (every retry failed), the workflow keeps what
the last attempt did and, for transient failures, tries again after a pause with the people it was to ask —
a bounded number of rounds, never holding the request open. On the time-skipping server, with a stand-in
``present_request`` activity that fails as the real one does (``ChannelTransient``, the state so far in its
details)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.channel_errors import CHANNEL_REFUSED, CHANNEL_TRANSIENT
from domain.channels import ChannelState, PresentInput, SlackMessageRef
from domain.requests import RequestStatus
from tests.stack import Stack
from web.service import RequestService
from worker import build_activities, build_worker
from workflows.request_policies import PRESENT_RETRY, PRESENT_ROUNDS


class FailingPresenter:
    """``present_request`` that fails ``failing`` calls from the first one asking approvers (the ones
    before, presenting the request as created, succeed), each time with bob's DM in the state."""

    def __init__(self, failing: int, *, refused: bool = False) -> None:
        self.failing = failing
        self.refused = refused
        self.calls: list[PresentInput] = []  # from the first one asking approvers

    @activity.defn(name="present_request")
    async def present(self, inp: PresentInput) -> ChannelState:
        if not self.calls and not inp.ask:
            return inp.state
        self.calls.append(inp)
        if len(self.calls) > self.failing:
            return inp.state
        state = inp.state.model_copy(deep=True)
        state.slack.setdefault("bob", SlackMessageRef(channel="D1", ts="1.000001"))
        raise ApplicationError(
            "slack: rate limited",
            state.model_dump(mode="json"),
            type=CHANNEL_REFUSED if self.refused else CHANNEL_TRANSIENT,
            non_retryable=self.refused,
        )


def with_presenter(stack: Stack, presenter: FailingPresenter) -> list[Callable[..., Any]]:
    activities = build_activities(
        store=stack.store, gateway=stack.gateway, notifier=stack.notifier, links=stack.links
    )
    return [a for a in activities if getattr(a, "__name__", "") != "present"] + [presenter.present]


async def request_and_cancel(
    stack: Stack, presenter: FailingPresenter, *, wait: float = 600, cancel: bool = True
) -> RequestStatus:
    """A pg-prod admin request presented by ``presenter``; cancelled after ``wait`` seconds (skipped), or
    left to time out (its policy gives approvers 2 hours)."""
    task_queue = f"tq-{uuid.uuid4().hex}"
    service = RequestService(
        stack.env.client, stack.store, stack.policies, task_queue, stack.timings, channels=["slack"]
    )
    async with build_worker(stack.env.client, task_queue, with_presenter(stack, presenter)):
        alice = stack.actor("alice@example.com")
        view = await service.create(alice, resource="pg-prod", role="admin", duration="1h", reason="INC-5")
        handle = stack.env.client.get_workflow_handle(view.id)
        await stack.env.sleep(wait)  # retries and pauses pass in skipped time
        if cancel:
            await service.cancel(view.id, alice, "done testing")
        await stack.env.sleep(1800)  # the closing presentation, with its retries
        final = await handle.result()
    return RequestStatus(final["status"]) if isinstance(final, dict) else final.status


async def test_a_presentation_that_gave_up_is_tried_again_with_what_it_did(time_stack: Stack) -> None:
    attempts = PRESENT_RETRY.maximum_attempts
    presenter = FailingPresenter(failing=attempts)  # the whole first presentation fails
    assert await request_and_cancel(time_stack, presenter) is RequestStatus.CANCELLED
    first, retried = presenter.calls[0], presenter.calls[attempts]
    asked = {p.email for p in first.ask}
    assert asked == {"bob@example.com", "carol@example.com", "dan@example.com"}
    # the next round asks the same people and starts from the state the last attempt reached
    assert {p.email for p in retried.ask} == asked
    assert retried.state.slack == {"bob": SlackMessageRef(channel="D1", ts="1.000001")}
    assert first.state.slack == {}


async def test_a_refused_presentation_is_not_repeated(time_stack: Stack) -> None:
    refused = FailingPresenter(failing=1, refused=True)
    assert await request_and_cancel(time_stack, refused, wait=60) is RequestStatus.CANCELLED
    # refused once: not retried, no new round; the cancellation is presented (and succeeds)
    assert len(refused.calls) == 2
    assert refused.calls[1].state.slack == {"bob": SlackMessageRef(channel="D1", ts="1.000001")}


async def test_a_reminder_is_presented_to_the_approvers_who_have_not_decided(time_stack: Stack) -> None:
    """pg-prod admin reminds 30 minutes before its 2-hour timeout: the approvers are reminded where they
    were asked, not only through the notifier."""
    recorder = FailingPresenter(failing=0)
    outcome = await request_and_cancel(time_stack, recorder, wait=3 * 3600, cancel=False)
    assert outcome is RequestStatus.TIMED_OUT
    reminders = [c for c in recorder.calls if c.remind]
    assert len(reminders) == 1, [(len(c.ask), len(c.remind)) for c in recorder.calls]
    assert {p.email for p in reminders[0].remind} == {
        "bob@example.com",
        "carol@example.com",
        "dan@example.com",
    }
    assert reminders[0].view.status is RequestStatus.PENDING


async def test_presentation_rounds_are_bounded(time_stack: Stack) -> None:
    # Last in the module: its request times out, hours of skipped time after which the time-skipping
    # server has been seen to skip the next test's waits too far.
    attempts = PRESENT_RETRY.maximum_attempts
    assert attempts is not None
    always = FailingPresenter(failing=10_000)
    # every round given up (each ~8 minutes of retries, then a pause); the request times out all the same
    assert await request_and_cancel(time_stack, always, wait=3 * 3600, cancel=False) is (
        RequestStatus.TIMED_OUT
    )
    # the first presentation, PRESENT_ROUNDS more rounds (for the whole request, not per presentation) and
    # the closing presentation, each with all its retries
    assert attempts < len(always.calls) <= (PRESENT_ROUNDS + 2) * attempts

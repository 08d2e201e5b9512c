"""Presenter: brings a request's channels (Slack, Jira, email) up to date beside its workflow.

One ``present_request`` activity at a time, always of the newest view: a burst of changes is coalesced
into one presentation, and an older view can never overwrite a newer one in Slack or Jira. The people to
ask and to remind are queued (each person once, in order) until a presentation takes them. A presentation
that gives up keeps what it did (the channel state its last attempt carried in the error) and, after
transient failures only, is tried again after ``PRESENT_ROUND_PAUSE``, ``PRESENT_ROUNDS`` times at most.

All of its state — the channels' handles and the queue — lives here and survives continue-as-new.

It never fails the request, never holds it open (``finish`` waits for the last presentation of the final
view, which is bounded by the activity's schedule-to-close timeout) and never decides anything: it only
shows what the request decided.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from domain.channels import ChannelState, PresentInput
    from domain.identity import PersonRef
    from domain.requests import RequestView
    from workflows.request_policies import PRESENT_RETRY, PRESENT_ROUND_PAUSE, PRESENT_ROUNDS


@dataclass(frozen=True, slots=True)
class PresentQueue:
    """What the next presentation is to do: whether one is due, whom it asks and reminds, and how many
    rounds were already given up and tried again."""

    pending: bool = False
    ask: tuple[PersonRef, ...] = ()
    remind: tuple[PersonRef, ...] = ()
    rounds: int = 0

    def add(self, ask: Sequence[PersonRef], remind: Sequence[PersonRef]) -> PresentQueue:
        """A presentation is due; these people join the end of the queues."""
        return replace(self, pending=True, ask=_queued(self.ask, ask), remind=_queued(self.remind, remind))

    def again(self, ask: Sequence[PersonRef], remind: Sequence[PersonRef]) -> PresentQueue | None:
        """Another round for a presentation that gave up (its people first), or None when the rounds
        are used up."""
        if self.rounds >= PRESENT_ROUNDS:
            return None
        return PresentQueue(
            pending=True,
            ask=_queued(ask, self.ask),
            remind=_queued(remind, self.remind),
            rounds=self.rounds + 1,
        )


class Presenter:
    """The request's presentation in every channel, run as one background task of the workflow."""

    def __init__(self, view: RequestView, channels: ChannelState, queue: PresentQueue | None = None) -> None:
        self._view = view  # the request's one view object, changed in place by the workflow
        self.channels = channels
        self.queue = queue or PresentQueue()
        self.busy = False  # a presentation activity is in flight
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Start presenting (a request with channels). Until then ``present`` does nothing."""
        self._task = asyncio.create_task(self._loop())

    def present(self, ask: list[PersonRef] | None = None, remind: list[PersonRef] | None = None) -> None:
        """Ask these people to decide, remind those (if any) and bring every channel up to date, in the
        background."""
        if self._task is None:
            return
        self.queue = self.queue.add(ask or [], remind or [])

    async def finish(self) -> None:
        """The final state reaches every channel before the request ends."""
        if self._task is not None:
            self._closing = True
            await self._task

    async def _loop(self) -> None:
        while True:
            await workflow.wait_condition(lambda: self.queue.pending or self._closing)
            if not self.queue.pending:
                return
            ask, remind = list(self.queue.ask), list(self.queue.remind)
            self.queue = replace(self.queue, pending=False, ask=(), remind=())
            self.busy = True
            try:
                self.channels = await workflow.execute_activity(
                    "present_request",
                    PresentInput(view=self._view, ask=ask, remind=remind, state=self.channels),
                    result_type=ChannelState,
                    start_to_close_timeout=timedelta(seconds=60),
                    schedule_to_close_timeout=timedelta(minutes=30),  # never holds the request open
                    heartbeat_timeout=timedelta(seconds=30),
                    retry_policy=PRESENT_RETRY,
                )
            except ActivityError as err:
                workflow.logger.warning(
                    "request %s not presented in every channel: %s", self._view.id, err.cause
                )
                if self._resume(err, ask, remind):
                    try:  # a pause before the next round, cut short when the request closes
                        await workflow.wait_condition(
                            lambda: self._closing, timeout=PRESENT_ROUND_PAUSE.total_seconds()
                        )
                    except TimeoutError:
                        pass
            finally:
                self.busy = False

    def _resume(self, err: ActivityError, ask: list[PersonRef], remind: list[PersonRef]) -> bool:
        """After a presentation gave up: keep what it did (the messages it posted are then kept up to
        date, the ticket it opened is not opened twice) and, when it gave up on transient failures, queue
        another round with the people it was to ask. True when a round was queued."""
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.details and isinstance(cause.details[0], dict):
            try:
                self.channels = ChannelState.model_validate(cause.details[0])
            except ValueError:
                pass  # not a state: keep the one from before
        if isinstance(cause, ApplicationError) and cause.non_retryable:
            return False  # refused: another round would be refused again
        again = self.queue.again(ask, remind)
        if again is None:
            return False
        self.queue = again
        return True


def _queued(first: Sequence[PersonRef], then: Sequence[PersonRef]) -> tuple[PersonRef, ...]:
    """``first``, then those of ``then`` not in it: each person once, in order."""
    people: dict[str, PersonRef] = {}
    for person in [*first, *then]:
        people.setdefault(person.id, person)
    return tuple(people.values())

"""The fixed rules of an access request's workflow: its retry policies and deadlines, the state an ACTIVE
request carries into the run that continues it, and how activity failures are told to a person.

Constants, models and pure functions, plus ``wait_at_most`` (the re-armable wait every loop of the
request uses). It never runs an activity and never changes a request: the modules of the request
(``access_request``, ``approvers``, ``access_gates``, ``grant_holder``, ``hoop_decided``, ``presenter``,
``request_ledger``) do, with these policies.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ConfigDict, Field

    from activities.gateway import GATEWAY_REFUSED
    from domain.channels import ChannelState
    from domain.identity import PersonRef
    from domain.requests import AccessRequestInput, RequestView

# Critical side effects are retried until they succeed or fail permanently.
CRITICAL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30)
)
# Presenting in Slack/Jira/email is best effort too, but people rely on it: retry generously.
PRESENT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30), maximum_attempts=20
)
# A presentation that gave up on transient failures keeps what it did and is tried again, after a pause,
# with the people it was to ask: a few rounds at most, so a long outage never holds a request open.
PRESENT_ROUNDS = 3
PRESENT_ROUND_PAUSE = timedelta(minutes=1)
# Notifications are best effort: a few tries, then logged and forgotten.
BEST_EFFORT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
# How long a request waits for hoop's configuration to be readable before it is FAILED (nobody is asked
# to approve access nobody could check).
ACCESS_CHECK_DEADLINE = timedelta(minutes=10)
# How long an approved request waits for the gateway to accept a grant before it is FAILED.
GRANT_DEADLINE = timedelta(hours=1)
# Smallest step of the re-armable timers, so a clock skew cannot make the loop spin.
MIN_WAIT = timedelta(milliseconds=50)
# Reading a review to mirror it: a few tries, then again after HOOP_RECHECK (the request keeps waiting).
HOOP_READ_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)
HOOP_RECHECK = timedelta(seconds=30)
# An ACTIVE request whose history has this many events continues as new (the state carried over):
# every run stays well under Temporal's limits and replays fast, however long the access lives.
CONTINUE_AS_NEW_AFTER = 1000


class CarriedOver(BaseModel):
    """An ACTIVE request's state, carried into the run that continues it (``continue_as_new``). Its shape
    is a contract with runs already continued: fields are only ever added, with defaults."""

    model_config = ConfigDict(extra="forbid")  # never mistaken for an AccessRequestInput, nor one for it

    input: AccessRequestInput
    view: RequestView
    eligible: list[str]
    correlation_ids: list[str]
    step: int  # ledger idempotency keys go on from here
    channels: ChannelState
    present_pending: bool = False
    present_ask: list[PersonRef] = Field(default_factory=list)
    present_remind: list[PersonRef] = Field(default_factory=list)
    present_rounds: int = 0
    hoop_origin: bool = False
    hoop_review_granted: bool = False
    answers: dict[str, str | None] = Field(default_factory=dict)
    """The latest answers to the edge's commands, by command id (``AccessRequestWorkflow.answer``)."""


class Refused(ApplicationError):
    """A decision or action refused with a reason a person understands."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, type="Refused", non_retryable=True)


async def wait_at_most(condition: Callable[[], bool], timeout: timedelta) -> None:
    """Wait for ``condition`` or ``timeout`` (never less than ``MIN_WAIT``), whichever comes first."""
    try:
        await workflow.wait_condition(condition, timeout=max(timeout, MIN_WAIT))
    except TimeoutError:
        pass


def cause_message(err: ActivityError) -> str:
    """What a failed activity means, in a sentence for the requester."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        if cause.type == GATEWAY_REFUSED:
            return f"the gateway refused: {cause.message}"
        return cause.message
    if cause is not None and "Timeout" in type(cause).__name__:
        return "the gateway did not accept the grant in time; try again later"
    return str(cause or err)

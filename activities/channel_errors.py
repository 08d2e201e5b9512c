"""How a failure to present a request in a channel is classified, and the error the activity then raises.

Every channel is tried even when another fails, and within a channel every person, except that the first
*transient* failure stops that channel for this attempt (an outage or a rate limit is not hammered:
:attr:`Failures.stop`). Then, if anything failed, :func:`presentation_error` is what ``present_request``
raises: retryable (type :data:`CHANNEL_TRANSIENT`, ``next_retry_delay`` = the largest ``Retry-After``
seen) when any failure was transient, else non-retryable (type :data:`CHANNEL_REFUSED`) naming every
failure. Template errors and bugs — exceptions the adapters did not classify — count as permanent; their
tracebacks are logged. Its first detail is the channel state as far as it got, for a caller that gives up.

This module only classifies and reports: it never calls a vendor, and it decides nothing about retries
beyond the error's type (the workflow's retry policy does the rest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

import jinja2
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.channels import ChannelState
from domain.requests import RequestView
from integrations.email import EmailError, EmailPermanentError, EmailTransientError
from integrations.jira_tickets import JiraError, JiraPermanentError, JiraTransientError
from integrations.slack import BlockKitError, SlackError, SlackPermanentError, SlackTransientError

__all__ = ["CHANNEL_REFUSED", "CHANNEL_TRANSIENT", "Failure", "Failures", "presentation_error"]

CHANNEL_TRANSIENT = "ChannelTransient"
CHANNEL_REFUSED = "ChannelRefused"

_ADAPTER_ERRORS = (SlackError, JiraError, EmailError)


@dataclass(frozen=True, slots=True)
class Failure:
    channel: str
    message: str
    transient: bool
    retry_after: float | None = None


def _classify(channel: str, exc: BaseException) -> Failure:
    """A failure, classified: the adapters' transient errors are transient, their permanent ones and
    template errors are not; an adapter error of neither kind (an unknown failure) is retried."""
    if isinstance(exc, SlackTransientError | JiraTransientError):
        return Failure(channel, exc.message, True, exc.retry_after)
    if isinstance(exc, EmailTransientError):
        return Failure(channel, exc.message, True)
    if isinstance(exc, SlackPermanentError | JiraPermanentError | EmailPermanentError):
        return Failure(channel, exc.message, False)
    if isinstance(exc, _ADAPTER_ERRORS):
        return Failure(channel, exc.message, True)
    if isinstance(exc, BlockKitError | jinja2.TemplateError):
        return Failure(channel, f"template error: {exc}", False)
    return Failure(channel, f"{type(exc).__name__}: {exc}", False)


class Failures:
    """The failures of one channel in one attempt; ``stop`` says the channel should stop for now."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.items: list[Failure] = []

    def add(self, exc: BaseException, doing: str) -> Failure:
        """Record a failure while ``doing`` something (a phrase naming whom: "asking bob@corp")."""
        failure = _classify(self.channel, exc)
        failure = replace(failure, message=f"{doing}: {failure.message}")
        self.items.append(failure)
        log = activity.logger.warning if failure.transient else activity.logger.error
        log("%s: %s", self.channel, failure.message, exc_info=not isinstance(exc, _ADAPTER_ERRORS))
        return failure

    @property
    def stop(self) -> bool:
        return any(f.transient for f in self.items)


def presentation_error(
    view: RequestView, failures: Sequence[Failure], state: ChannelState
) -> ApplicationError:
    """The error ``present_request`` raises for these failures, carrying ``state`` as its first detail."""
    text = "; ".join(f"{f.channel}: {f.message}" for f in failures)
    message = f"presenting request {view.id}: {text}"
    details = state.model_dump(mode="json")
    if any(f.transient for f in failures):
        waits = [f.retry_after for f in failures if f.retry_after]
        return ApplicationError(
            message,
            details,
            type=CHANNEL_TRANSIENT,
            next_retry_delay=timedelta(seconds=max(waits)) if waits else None,
        )
    return ApplicationError(message, details, type=CHANNEL_REFUSED, non_retryable=True)

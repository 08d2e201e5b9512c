"""Where a request has been presented to people, kept in workflow state so every retry updates the
same Slack messages and the same Jira ticket instead of creating new ones.

The channel activity receives the state, does what is missing (idempotently) and returns the new state.
Approve/Deny buttons carry the request and its stage (:func:`button_value`), read back by the Slack edge
with :func:`parse_button_value`.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from domain.approval import Stage
from domain.identity import PersonRef
from domain.requests import RequestView

_STAGES = frozenset(s.value for s in Stage)


def button_value(request_id: str, stage: str) -> str:
    """The ``value`` of an Approve/Deny button: ``"<request id>|<stage>"``."""
    return f"{request_id}|{stage}"


def parse_button_value(value: str) -> tuple[str, str | None]:
    """``(request_id, stage)`` from an Approve/Deny button's value. The stage is None for a value without
    one (a message posted before stages were carried): the edge then decides on whatever stage is open."""
    request_id, sep, stage = value.strip().rpartition("|")
    if sep and request_id and stage in _STAGES:
        return request_id, stage
    return value.strip(), None


class SlackMessageRef(BaseModel):
    channel: str
    ts: str
    shown: str | None = None
    """A fingerprint of what the message shows now (its rendering, review link left out: the link is
    re-signed at every rendering), so an update that would change nothing is not sent. None: unknown."""

    def same_message(self, other: SlackMessageRef) -> bool:
        return (self.channel, self.ts) == (other.channel, other.ts)


class ChannelState(BaseModel):
    slack: dict[str, SlackMessageRef] = Field(default_factory=dict)
    """Person id -> the Slack DM that asked them to decide (updated in place after every change)."""
    earlier: dict[str, list[SlackMessageRef]] = Field(default_factory=dict)
    """Person id -> their DMs of earlier stages (asked again for an extension, a break-glass review): kept
    up to date too, without buttons, so that no message is left showing a state that has passed."""
    asked: list[str] = Field(default_factory=list)
    """The ask keys (request, stage, person) whose Slack DM is known: not looked up again."""
    told: dict[str, SlackMessageRef] = Field(default_factory=dict)
    """Request status -> the Slack DM that told the requester about it. Each stays up to date too (an
    extension moves the expiry; the "active" message ends up saying the access has ended)."""
    jira_key: str | None = None
    """The request's Jira ticket, once opened."""
    jira_done: list[str] = Field(default_factory=list)
    """Steps already done on the ticket (an assignment, a comment by its digest, a move to a status):
    not done, nor checked, again."""
    emailed: list[str] = Field(default_factory=list)
    """Message-IDs already sent: SMTP cannot be asked what it delivered, so the workflow remembers."""


class PresentInput(BaseModel):
    """Present a request as it is now: ask ``ask`` to decide (Slack DM with buttons, email with a review
    link, the Jira ticket assigned), and bring every place the request was shown up to date (Slack
    messages updated in place, Jira ticket transitioned and commented, requester told the outcome)."""

    view: RequestView
    ask: list[PersonRef] = Field(default_factory=list)
    remind: list[PersonRef] = Field(default_factory=list)
    """People asked already who have not decided yet: a new Slack DM with the buttons (the earlier one is
    kept up to date without them) and an email, once per stage."""
    state: ChannelState = Field(default_factory=ChannelState)

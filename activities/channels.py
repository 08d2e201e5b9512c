"""The ``present_request`` activity: presenting a request to people in Slack, Jira and email, and keeping
what they see up to date.

:meth:`ChannelActivities.present` takes the request as it is now (:class:`~domain.channels.PresentInput`:
the view, who must decide now, who to remind, and the handles of earlier presentations) and, for each
channel it was given (one given as None is skipped), asks every person in ``ask`` (a Slack DM with
Approve/Deny buttons, an email with their review link, the Jira ticket assigned to the first of them Jira
knows), ensures the Jira ticket, and brings everything up to date; once the request is ACTIVE, APPROVED or
over, the requester is told the outcome. It returns the new :class:`~domain.channels.ChannelState` (Slack
refs per person, the Jira key, the emails sent), which the workflow keeps and passes back next time. Each
channel is a module of its own (``slack_channel``, ``jira_channel``, ``email_channel``) and does its part
idempotently, so the activity can be run again at any time and only does what is missing.

Progress carries over. Each attempt heartbeats the channel state after every effect (and once more
before it fails), and the next attempt starts from that state instead of the input's: people already asked
are not looked up again, nor the ticket, nor anything done. With a third of all calls failing, an attempt
rarely gets through everything, but every attempt gets further. Jira runs in a thread on its own copy of
the state (the heartbeats of the other channels read the state meanwhile), merged back at the end.

The requester's story is told whole. Presentations are coalesced to the newest view, so the one that was
to say "your access is active" may never run; a view whose access was granted and is now being taken away
or over therefore tells ACTIVE first, then the end (:func:`~activities.channel_views.outcomes_to_tell`).

Errors are classified in :mod:`activities.channel_errors`. Best effort: notifications never fail a
request. The workflow runs this activity with generous but bounded retries and, when it still fails, keeps
the state the error carries and, for transient failures, tries again after a pause with the people still
to ask; the next presentation catches up in any case.

This module never builds a client from settings: ``worker.py`` wires them (``build_channels``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from temporalio import activity

from activities.channel_errors import Failure, Failures, presentation_error
from activities.channel_views import may_decide
from activities.email_channel import EmailPresenter
from activities.heartbeat import heartbeating
from activities.jira_channel import JiraPresenter, LazyJira
from activities.slack_channel import SlackPresenter
from domain.approval import open_stage
from domain.channels import ChannelState, PresentInput
from domain.review_links import ReviewLinks
from integrations.email import EmailSender
from integrations.jira_tickets import JiraTickets
from integrations.slack import SlackChannel
from store import Store

__all__ = ["ChannelActivities"]


class ChannelActivities:
    """Slack, Jira and email presentation of requests. See the module docstring.

    ``jira`` is a :class:`JiraTickets`, or a :class:`LazyJira` that builds it on first use. The transition
    names are those of the ticket's workflow: ``approve_transition`` leads to the approved status,
    ``close_transition`` from there to done. ``ticket_labels`` and ``ticket_fields`` are put on every ticket
    grantflow opens (see :class:`JiraPresenter`); a template error in them raises
    ``jinja2.TemplateSyntaxError`` here."""

    def __init__(
        self,
        *,
        slack: SlackChannel | None,
        jira: JiraTickets | LazyJira | None,
        email: EmailSender | None,
        links: ReviewLinks | None,
        store: Store,
        approve_transition: str = "Approve",
        deny_transition: str = "Deny",
        close_transition: str = "Close",
        cancel_transition: str = "Cancel",
        ticket_labels: Sequence[str] = (),
        ticket_fields: Mapping[str, Any] | None = None,
    ) -> None:
        self._slack = slack
        self._jira = jira
        self._email = email
        self._dms = SlackPresenter(links=links, store=store)
        self._ticket = JiraPresenter(
            approve_transition=approve_transition,
            deny_transition=deny_transition,
            close_transition=close_transition,
            cancel_transition=cancel_transition,
            ticket_labels=ticket_labels,
            ticket_fields=ticket_fields,
        )
        self._emails = EmailPresenter(links=links, store=store)

    # the ticket's workflow as configured (what ``worker.build_channels`` read from the settings)

    @property
    def approve_transition(self) -> str:
        return self._ticket.approve_transition

    @property
    def close_transition(self) -> str:
        return self._ticket.close_transition

    # the clients, for the workflow's other notices (``worker.build_notifier``)

    @property
    def slack(self) -> SlackChannel | None:
        return self._slack

    @property
    def email(self) -> EmailSender | None:
        return self._email

    @property
    def tickets(self) -> Callable[[], JiraTickets] | None:
        """The Jira tickets adapter, built on first use (blocking: call from a thread)."""
        jira = self._jira
        if jira is None:
            return None
        return jira.get if isinstance(jira, LazyJira) else lambda: jira

    async def aclose(self) -> None:
        if self._slack is not None:
            await self._slack.aclose()
        if isinstance(self._jira, LazyJira):
            await asyncio.to_thread(self._jira.close)

    @activity.defn(name="present_request")
    async def present(self, inp: PresentInput) -> ChannelState:
        view = inp.view
        state = inp.state.model_copy(deep=True)
        stage = open_stage(view)
        ask = list(dict.fromkeys(inp.ask))  # each person once, in order
        if ask and stage is None:
            activity.logger.info(
                "request %s: nothing awaits a decision (%s); not asking %s",
                view.id,
                view.status.value,
                ", ".join(p.email for p in ask),
            )
            ask = []
        # a reminder goes only to those who can still decide (not who voted meanwhile)
        remind = [p for p in dict.fromkeys(inp.remind) if p not in ask and may_decide(view, p)]
        asked_stage = stage.value if stage is not None else ""
        state, emailed = self._resume(state)

        def checkpoint() -> None:
            self._checkpoint(state, emailed)

        parts: dict[str, Awaitable[list[Failure]]] = {}
        if self._slack is not None:
            parts["slack"] = self._dms.present(self._slack, view, asked_stage, ask, state, checkpoint, remind)
        # Jira runs in a thread on its own copy (the heartbeats of the other channels read ``state``
        # meanwhile); its ticket and steps are merged back below.
        ticket = state.model_copy(deep=True)
        if self._jira is not None:
            parts["jira"] = asyncio.to_thread(self._ticket.present, self._jira, view, ask, ticket)
        if self._email is not None:
            parts["email"] = self._emails.present(
                self._email, view, asked_stage, ask, state, emailed, checkpoint, remind
            )
        # the channels run side by side, and one failing in an unforeseen way does not stop the others;
        # Jira's blocking calls in their thread cannot heartbeat, so the wait heartbeats for them, with
        # everything done so far (Jira's steps included) for the next attempt
        results = await heartbeating(
            asyncio.gather(*parts.values(), return_exceptions=True),
            lambda: self._progress(state, emailed, ticket if self._jira is not None else None),
        )
        failures: list[Failure] = []
        for channel, result in zip(parts, results, strict=True):
            if isinstance(result, Exception):
                failures.append(Failures(channel).add(result, "presenting"))
            elif isinstance(result, BaseException):
                raise result  # cancelled: Temporal's to handle
            else:
                failures.extend(result)
        if self._jira is not None:
            state.jira_key, state.jira_done = ticket.jira_key, ticket.jira_done
        state.emailed = sorted(emailed)
        if failures:
            self._checkpoint(state, emailed)  # the next attempt goes on from here
            raise presentation_error(view, failures, state)
        return state

    # ------------------------------------------------------------------ progress between attempts

    def _resume(self, state: ChannelState) -> tuple[ChannelState, set[str]]:
        """Take over what an earlier attempt of this activity did: its last heartbeat holds the channel
        state as far as it got (a superset of the input's, from which it started), so a retry goes on
        from there instead of looking everything up again. Returns that state and the Message-IDs sent —
        by that attempt, by earlier presentations (``state.emailed``) or by this worker."""
        for detail in activity.info().heartbeat_details:
            if isinstance(detail, dict) and isinstance(detail.get("state"), dict):
                state = ChannelState.model_validate(detail["state"])
        return state, self._emails.sent() | set(state.emailed)

    @staticmethod
    def _progress(state: ChannelState, emailed: set[str], ticket: ChannelState | None) -> dict[str, Any]:
        """The heartbeat details of this attempt so far, with the Jira thread's ticket and steps."""
        now = state.model_copy(update={"emailed": sorted(emailed)})
        if ticket is not None:
            now.jira_key, now.jira_done = ticket.jira_key, list(ticket.jira_done)
        return {"state": now.model_dump(mode="json")}

    @staticmethod
    def _checkpoint(state: ChannelState, emailed: set[str]) -> None:
        """Heartbeat what this attempt has done so far, for the next attempt if this one fails."""
        state.emailed = sorted(emailed)
        activity.heartbeat({"state": state.model_dump(mode="json")})

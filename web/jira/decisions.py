"""Decisions made in Jira: a person moving a request's ticket to the approve or deny status.

A ``jira:issue_updated`` whose changelog moves a ticket labelled ``grantflow-<request id>`` into
``settings.jira_approve_status`` or ``jira_deny_status`` (matched against the status id first, then its
name: configure ids to survive renames) is ``RequestService.decide`` as that person on channel ``jira``
(a deny's reason is the comment made with the transition). Whether the person may decide is the
service's (the workflow's) to say, never this module's.

While the request still awaits decisions, the ticket must say so: after a refused attempt (not eligible,
the requester, a second vote, someone outside the directory) and after a counted approval that does not
reach the quorum, the ticket is moved back (by a transition leading to the status it came from, else the
one configured as ``Reopen``) with a comment saying why. Refusals are in the ledger (the service records
them; this module records those of people outside the directory, whom the service cannot know).
Transitions made by grantflow's own API user are ignored: they mirror decisions already made.

A transition decides the stage the ticket asks for, the request's own (the ticket's status follows the
request, never an extension's): one arriving late, once an extension awaits approval, is refused rather than
counted towards the extension. A transition is known by its signed changelog id, so a redelivery under a new
delivery id finds the marker of the first and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from jira import JIRA

from configuration.settings import Settings
from domain.approval import Stage, approvals_counted, open_stage
from domain.identity import Actor
from domain.requests import RequestView, Verdict
from integrations.jira_tickets import JiraPermanentError, JiraTickets, StatusChange, parse_status_change
from store import Store
from web.jira.authenticity import Markers, event_key
from web.jira.connection import (
    CHANNEL,
    JiraConnection,
    Malformed,
    Outcome,
    Transient,
    field_text,
    jira_call,
)
from web.jira.people import People
from web.service import RequestService, ServiceError, Unavailable

log = logging.getLogger("grantflow.web.jira")


class Decisions:
    """Turns status changes of request tickets into decisions, and brings the tickets in line after."""

    def __init__(
        self,
        *,
        settings: Settings,
        service: RequestService,
        store: Store,
        connection: JiraConnection,
        people: People,
        markers: Markers,
    ) -> None:
        self.settings = settings
        self.service = service
        self.store = store
        self.connection = connection
        self.people = people
        self.markers = markers

    def _verdict(self, change: StatusChange) -> Verdict | None:
        def matches(configured: str) -> bool:
            wanted = configured.strip().lower()
            return bool(wanted) and wanted in (
                change.to_status_id.lower(),
                (change.to_status_name or "").lower(),
            )

        if matches(self.settings.jira_approve_status):
            return Verdict.APPROVE
        if matches(self.settings.jira_deny_status):
            return Verdict.DENY
        return None

    async def handle(self, payload: dict[str, Any], identifier: str) -> Outcome:
        """A ``jira:issue_updated`` delivery: a decision, a duplicate of one, or nothing to act on."""
        try:
            change = parse_status_change(payload, identifier)
        except ValueError as exc:  # a status change of no issue
            raise Malformed(str(exc)) from None
        if change is None:
            return Outcome("ignored", "no status change")
        verdict = self._verdict(change)
        if verdict is None:
            return Outcome("ignored", f"{change.issue_key} moved to {change.to_status_name}: not a decision")
        _, tickets = await self.connection.run(self.connection.ensure_client)
        request_id = tickets.grantflow_id(change.labels)
        if request_id is None:
            return Outcome("ignored", f"{change.issue_key} is not a grantflow ticket")
        if await self.connection.by_ourselves(payload):
            return Outcome("ignored", "moved by grantflow's own Jira user")

        # Jira redelivers an event for ~30 minutes, and a replay may carry a delivery id never seen: the
        # signed body's own changelog id names the transition, whatever the (unsigned) header says.
        key = event_key(payload) or identifier
        marker = await self.markers.find(request_id, key)
        if marker is not None:
            await self._follow_up(change, marker)
            return Outcome(
                "duplicate", f"delivery {identifier} was handled already ({marker.get('outcome')})"
            )

        who = change.actor_display_name or change.actor_account_id or "someone"
        person = await self.people.person_for_account(
            change.actor_account_id, lambda: self._candidates(request_id)
        )
        counted: RequestView | None = None
        if person is None:
            sentence = (
                f"the Jira account of {who} is not linked to an active person in the directory; "
                "nothing was recorded"
            )
            await self._record_unknown(request_id, change, verdict, sentence, key)
            actor_name = f"jira user {change.actor_account_id}"
        else:
            actor = Actor(person=person.ref, channel=CHANNEL, channel_user_id=change.actor_account_id)
            actor_name = person.email
            reason = _comment_text(payload) if verdict is Verdict.DENY else ""
            try:
                # The ticket asks for the request's decision only (its status follows the request, not an
                # extension's), so a transition decides that stage and never a later one.
                counted = await self.service.decide(
                    request_id, actor, verdict, reason, stage=Stage.REQUEST.value
                )
                sentence = ""
            except Unavailable as exc:
                raise Transient(exc.detail) from exc
            except ServiceError as exc:
                if type(exc) is ServiceError:  # unexpected: let Jira try again
                    raise Transient(exc.detail) from exc
                sentence = exc.detail

        view = counted or await self._view(request_id)
        move_back = view is not None and open_stage(view) is Stage.REQUEST
        word = "approval" if verdict is Verdict.APPROVE else "denial"
        back_to = change.from_status_name or "the status it came from"
        if counted is None:
            comment = (
                f"{who} moved this ticket to {change.to_status_name}, but grantflow refused the {word}: "
            )
            comment += sentence.rstrip(".") + "."
            comment += f" The ticket is back in {back_to}; the request did not change." if move_back else ""
            outcome = Outcome("refused", sentence)
        else:
            comment = ""
            if move_back:
                comment = f"grantflow counted the {word} of {actor_name} ({_tally(counted)}); the ticket is "
                comment += f"back in {back_to} until enough approvers have approved."
            outcome = Outcome(
                "counted", f"{verdict.value} by {actor_name} on {request_id}: {counted.status.value}"
            )
        if change.timestamp is not None:
            comment = comment and f"{comment} ({change.timestamp:%Y-%m-%d %H:%M:%S} UTC)"
        data = {
            "webhook_id": identifier,
            "event": "jira:issue_updated",
            "issue": change.issue_key,
            "account_id": change.actor_account_id,
            "verdict": verdict.value,
            "outcome": outcome.status,
            "detail": outcome.detail,
            "move_back": move_back,
            "from_status": change.from_status_id,
            "to_status": change.to_status_id,
            "comment": comment,
        }
        await self.markers.write(request_id, key, actor_name, data)
        await self._follow_up(change, data)
        return outcome

    async def _candidates(self, request_id: str) -> list[str]:
        """The emails of those who could move a request's ticket as a decision: its eligible approvers and
        its requester (who is told why they may not); none for a request the service does not know."""
        try:
            view = await self.service.show(request_id)
        except Unavailable as exc:
            raise Transient(exc.detail) from exc
        except ServiceError as exc:
            if type(exc) is ServiceError:
                raise Transient(exc.detail) from exc
            return []
        return [p.email for p in view.eligible_approvers] + [view.requester.email]

    async def _view(self, request_id: str) -> RequestView | None:
        try:
            return await self.service.show(request_id)
        except ServiceError:
            return None

    async def _record_unknown(
        self, request_id: str, change: StatusChange, verdict: Verdict, sentence: str, key: str
    ) -> None:
        """The service records refusals of people it knows; this one it cannot know."""
        try:
            if await asyncio.to_thread(self.store.get_request, request_id) is None:
                return
            await asyncio.to_thread(
                self.store.append_ledger,
                kind="decision.refused",
                subject=request_id,
                actor=f"jira user {change.actor_account_id}",
                channel=CHANNEL,
                data={"verdict": verdict.value, "reason_given": "", "refusal": sentence},
                idempotency_key=f"jira-webhook:{key}:refused",
            )
        except Exception as exc:
            raise Transient(f"the refused attempt could not be recorded ({type(exc).__name__})") from exc

    async def _follow_up(self, change: StatusChange, data: Mapping[str, Any]) -> None:
        """Bring the ticket in line after a decision attempt: move it back while the request still waits,
        and comment. Safe to repeat: a ticket no longer where the person put it is left alone, and
        ``JiraTickets.comment`` never posts the same text twice."""
        key, comment = change.issue_key, str(data.get("comment") or "")
        client, tickets = await self.connection.run(self.connection.ensure_client)
        moved = False
        if data.get("move_back"):
            try:
                moved = await self.connection.run(lambda: self._move_back(client, tickets, change, comment))
            except JiraPermanentError as exc:
                log.warning("could not move %s back: %s", key, exc.message)
                comment += (
                    f" grantflow could not move the ticket back ({exc.message}): whatever its status says, "
                    "the request is still waiting for decisions."
                )
        if comment and not moved:
            await self.connection.run(lambda: tickets.comment(key, comment))

    def _move_back(self, client: JIRA, tickets: JiraTickets, change: StatusChange, comment: str) -> bool:
        """Move the ticket from the status the person put it in back to the one it came from, with the
        comment, in one request. False (nothing done) when it is no longer where the person put it."""
        key = change.issue_key
        if tickets.status(key).id != change.to_status_id:
            return False
        offered = jira_call(f"listing the transitions of {key}", client.transitions, key)
        reopen = next((n for n in self.settings.jira_transitions if n.lower() == "reopen"), "Reopen")
        chosen = next(
            (t for t in offered if str((t.get("to") or {}).get("id")) == change.from_status_id), None
        )
        chosen = chosen or next(
            (t for t in offered if str(t.get("name", "")).lower() == reopen.lower()), None
        )
        if chosen is None:
            names = ", ".join(str(t.get("name")) for t in offered) or "none"
            raise JiraPermanentError(
                f"no transition leads from {change.to_status_name} back to {change.from_status_name} "
                f"(offered: {names})"
            )
        jira_call(
            f"moving {key} back",
            client.transition_issue,
            key,
            str(chosen["id"]),
            comment=comment or None,
        )
        return True


def _tally(view: RequestView) -> str:
    stage = open_stage(view)
    if stage is None:
        return view.status.value
    return f"{approvals_counted(view, stage)} of {view.policy.min_approvals} approvals"


def _comment_text(payload: Mapping[str, Any]) -> str:
    comment = payload.get("comment")
    return field_text(comment.get("body")) if isinstance(comment, Mapping) else ""

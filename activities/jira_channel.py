"""Presenting a request in Jira: one ticket per request, assigned to the first approver Jira knows,
commented once per decision and once per status, and moved to the status matching the request's.

Idempotency: the ticket is found by its label ``grantflow-<request id>`` before one is opened; a comment
identical to one already there is not posted again (decision comments are rendered as of the decision,
not as of now, so they stay identical); a transition to the status the ticket is already in does nothing.
Steps done (the assignment, each comment by its digest, each move) are kept in ``ChannelState.jira_done``
and neither done nor checked again.

The ticket's status follows the request's through the configured transitions: PENDING waits (no status
comment either; the ticket says it), ACTIVE/APPROVED/REVOKING → approve, DENIED → deny, ENDED → close
(through approve when the workflow offers no direct way), TIMED_OUT/CANCELLED/FAILED → cancel. A ticket
its workflow cannot bring there (moved by hand to a dead end) is a permanent failure naming the transition.

The Jira client blocks: :meth:`JiraPresenter.present` runs in a thread, on its own copy of the state, and
cannot heartbeat (the caller does). This module never reads settings and never raises for a failure.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any

import jinja2
from jira import JIRA

from activities.channel_errors import Failure, Failures
from activities.channel_views import decisions, outcome_note, request_templates
from domain.channels import ChannelState
from domain.durations import format_duration
from domain.identity import PersonRef
from domain.requests import Decision, RequestStatus, RequestView
from integrations.jira_tickets import JiraTickets, JiraWorkflowError

__all__ = ["JiraPresenter", "LazyJira"]


class LazyJira:
    """Jira tickets whose client is built on first use: ``build_jira`` calls Jira, and a worker (which also
    grants and revokes) must start while Jira is down. A failed build is tried again on the next use."""

    def __init__(self, connect: Callable[[], JIRA], tickets: Callable[[JIRA], JiraTickets]) -> None:
        self._connect = connect
        self._make = tickets
        self._lock = threading.Lock()
        self._client: JIRA | None = None
        self._tickets: JiraTickets | None = None

    def get(self) -> JiraTickets:
        """The tickets adapter (blocking: call from a thread). Raises ``JiraError`` while Jira cannot be
        reached or refuses the credentials."""
        with self._lock:
            if self._tickets is None:
                client = self._connect()
                self._client, self._tickets = client, self._make(client)
            return self._tickets

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = self._tickets = None


class JiraPresenter:
    """A request's Jira ticket. The transition names are those of the ticket's workflow (and must be in the
    adapter's ``transition_names``). ``ticket_labels`` and ``ticket_fields`` are put on every ticket opened
    (custom fields by id); the strings in them are Jinja templates rendered with the request (``view``),
    compiled here, so a mistake in the configuration stops the worker at start, not every ticket
    (``jinja2.TemplateSyntaxError``)."""

    def __init__(
        self,
        *,
        approve_transition: str,
        deny_transition: str,
        close_transition: str,
        cancel_transition: str,
        ticket_labels: Sequence[str] = (),
        ticket_fields: Mapping[str, Any] | None = None,
    ) -> None:
        self.approve_transition = approve_transition
        self.deny_transition = deny_transition
        self.close_transition = close_transition
        self.cancel_transition = cancel_transition
        self._ticket_labels = [self._text.from_string(label) for label in ticket_labels]
        self._ticket_fields = _compile_values(self._text, dict(ticket_fields or {}))

    @cached_property
    def _text(self) -> jinja2.Environment:
        return request_templates(autoescape=False)

    def present(
        self, source: JiraTickets | LazyJira, view: RequestView, ask: Sequence[PersonRef], state: ChannelState
    ) -> list[Failure]:
        """Ensure the ticket, assign it, comment and move it (blocking), recording what was done in
        ``state``; the failures, the first transient one ending the attempt."""
        failures = Failures("jira")
        try:
            jira = source.get() if isinstance(source, LazyJira) else source
            key = state.jira_key or jira.open_ticket(
                label=jira.jira_label(view.id),
                summary=_summary(view),
                description=self._text.get_template("jira/ticket_description.j2").render(
                    view=view, decide_with=[self.approve_transition, self.deny_transition]
                ),
                labels=[_as_label(t.render(view=view)) for t in self._ticket_labels],
                fields=_render_values(self._ticket_fields, view),
            )
        except Exception as exc:
            failures.add(exc, f"opening the ticket of {view.id}")
            return failures.items
        state.jira_key = key
        # (what it is, for ``state.jira_done``; what it does, for errors; the call)
        steps: list[tuple[str, str, Callable[[], object]]] = []
        if ask:
            assignees = "assign:" + ",".join(p.id for p in ask)
            steps.append((assignees, f"assigning {key}", lambda: _assign(jira, key, ask)))
        for decision in sorted(decisions(view), key=lambda d: d.at):
            text = self._text.get_template("jira/comment_decision.j2").render(
                view=_as_of(view, decision), decision=decision
            )
            doing = f"commenting {decision.approver.email}'s decision on {key}"
            steps.append((_comment_step(text), doing, _comment(jira, key, text)))
        if view.status is not RequestStatus.PENDING:
            text = self._text.get_template("jira/comment_status.j2").render(
                view=view, note=outcome_note(view)
            )
            steps.append((_comment_step(text), f"commenting the status on {key}", _comment(jira, key, text)))
        path = self._transitions(view.status)
        if path:
            doing = f"moving {key} to match {view.status.value}"
            steps.append((f"move:{view.status.value}", doing, lambda: _move(jira, key, path)))
        for step_id, doing, step in steps:
            if step_id in state.jira_done:
                continue  # done by an earlier attempt or presentation
            try:
                step()
            except Exception as exc:
                failures.add(exc, doing)
                if failures.stop:
                    break
            else:
                state.jira_done.append(step_id)
        return failures.items

    def _transitions(self, status: RequestStatus) -> list[str]:
        """The transitions that bring the ticket to the request's status; the last is the one that matters,
        the ones before are the way there when the ticket's workflow offers no direct one."""
        approve, close = self.approve_transition, self.close_transition
        if status in (RequestStatus.ACTIVE, RequestStatus.APPROVED, RequestStatus.REVOKING):
            return [approve]
        if status is RequestStatus.DENIED:
            return [self.deny_transition]
        if status is RequestStatus.ENDED:
            return [approve, close]
        if status in (RequestStatus.TIMED_OUT, RequestStatus.CANCELLED, RequestStatus.FAILED):
            return [self.cancel_transition]
        return []  # PENDING: the ticket waits for approval


def _assign(jira: JiraTickets, key: str, ask: Sequence[PersonRef]) -> None:
    for person in ask:
        account_id = jira.account_id_for_email(person.email)
        if account_id is not None:
            jira.assign(key, account_id)
            return


def _as_of(view: RequestView, decision: Decision) -> RequestView:
    """The view as it was when ``decision`` was made, within its stage: what its Jira comment says. Later
    decisions do not change it, so the comment rendered again is identical and is not posted twice."""

    def earlier(d: Decision) -> bool:
        return d.stage == decision.stage and d.at <= decision.at

    pending = view.pending_extension.approvals if view.pending_extension else []
    return view.model_copy(
        update={
            "approvals": [d for d in [*view.approvals, *pending] if earlier(d)],
            "denials": [d for d in view.denials if earlier(d)],
        }
    )


def _summary(view: RequestView) -> str:
    prefix = "[break-glass] " if view.break_glass else ""
    if view.command is not None:
        return f"{view.requester.email} asks to run a command on {view.resource} / {view.role} ({view.id})"
    return (
        f"{prefix}{view.requester.email} asks for {view.resource} / {view.role} "
        f"for {format_duration(view.requested_duration)} ({view.id})"
    )


def _compile_values(env: jinja2.Environment, value: Any) -> Any:
    """Configured ticket field values with every string compiled as a template (nested values too)."""
    if isinstance(value, str):
        return env.from_string(value)
    if isinstance(value, Mapping):
        return {k: _compile_values(env, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_compile_values(env, v) for v in value]
    return value


def _render_values(value: Any, view: RequestView) -> Any:
    if isinstance(value, jinja2.Template):
        return value.render(view=view)
    if isinstance(value, Mapping):
        return {k: _render_values(v, view) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_values(v, view) for v in value]
    return value


def _as_label(text: str) -> str:
    """Jira labels cannot hold spaces: a rendered label's words are joined with dashes."""
    return "-".join(text.split())


def _comment_step(text: str) -> str:
    """The ``jira_done`` entry of a comment: its digest (the same text is never posted twice)."""
    return "comment:" + hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:24]


def _comment(jira: JiraTickets, key: str, text: str) -> Callable[[], object]:
    return lambda: jira.comment(key, text)


def _move(jira: JiraTickets, key: str, path: Sequence[str]) -> None:
    """Move the ticket by ``path[-1]``; when its workflow does not offer that from where the ticket is,
    go the whole way (``transition`` does nothing for a step whose target the ticket is already in)."""
    try:
        jira.transition(key, path[-1])
    except JiraWorkflowError:
        if len(path) == 1:
            raise
        for name in path:
            jira.transition(key, name)

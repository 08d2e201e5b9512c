"""Presenting a request to people in Slack, Jira and email, and keeping what they see up to date.

One activity, ``present_request`` (:meth:`ChannelActivities.present`), takes the request as it is now
(:class:`~domain.channels.PresentInput`: the view, who must decide now, and the handles of earlier
presentations) and, for each configured channel (a channel given as None is skipped):

1. **asks** every person in ``ask``: a Slack DM with Approve/Deny buttons and their review link
   (``templates/slack/request_created.json.j2``), an email with their review link
   (``templates/email/request_created.*``), and the Jira ticket assigned to the first of them Jira knows;
2. **ensures the Jira ticket** exists (found by its label ``grantflow-<request id>`` before one is opened);
3. **brings everything up to date**: every Slack DM in the state is updated in place
   (``request_updated.json.j2``: who decided via which channel, the status, the expiry; buttons only while
   that person can still decide), the ticket gets one comment per decision and one per status and is moved to
   the status matching the request's, and once the request is ACTIVE, APPROVED or over, the requester is told
   the outcome by Slack DM and by email.

Who is skipped: a person without a Slack account (looked up by email) is not asked in Slack, one whom Jira
does not know is not assigned, and without review links (``links=None``) nobody is asked by email — each
logged. The ticket's status follows the request's through the configured transitions: PENDING waits (no
status comment either; the ticket says it), ACTIVE/APPROVED/REVOKING → approve, DENIED → deny, ENDED → close
(through approve when the workflow offers no direct way), TIMED_OUT/CANCELLED/FAILED → cancel. A ticket its
workflow cannot bring there (moved by hand to a dead end) is a permanent failure naming the transition.

It returns the new :class:`~domain.channels.ChannelState` (Slack refs per person, the Jira key), which the
workflow keeps and passes back next time.

Idempotency — every effect has a key derived from the request, the event and the person, so the activity
can be run again at any time and only does what is missing:

- Slack DMs are posted with :meth:`SlackChannel.post_once` under ``<request>:ask:<stage>:<person>``,
  ``<request>:remind:<stage>:<person>`` (a reminder: a new DM that takes over the buttons) and
  ``<request>:outcome:<status>``; the key is stored in the message's metadata and looked up before posting.
  Updates are ``chat.update`` of the same message (idempotent), sent only when the rendering differs from
  what the message already shows (``SlackMessageRef.shown``, a fingerprint kept in the state), which
  matters most when the failure was a rate limit.
- The Jira ticket is found by label before one is opened; a comment identical to one already there is not
  posted again (decision comments are rendered as of the decision, not as of now, so they stay identical);
  a transition to the status the ticket is already in does nothing. Steps done (assignment, each comment
  by its digest, each move) are kept in ``ChannelState.jira_done`` and neither done nor checked again.
- Email has no look-up, so emails are keyed by their Message-ID (``<request>.ask.<stage>.<person>``,
  ``<request>.remind.<stage>.<person>``, ``<request>.outcome.<status>``): a Message-ID already sent is
  skipped, remembered in ``ChannelState.emailed`` and in this worker's memory. Residual duplicate: after a
  dropped connection the SMTP server may have kept the message the retry sends again — it carries the
  same Message-ID, so mail clients can tell.

Progress carries over. Each attempt heartbeats the channel state after every effect (and once more
before it fails), and the next attempt starts from that state instead of the input's: people already asked
are not looked up again, nor the ticket, nor anything done. With a third of all calls failing, an attempt
rarely gets through everything, but every attempt gets further; Slack user ids found by email are also
remembered by the worker.

The requester's story is told whole. Presentations are coalesced to the newest view, so the one that was
to say "your access is active" may never run (a short grant that ended while an earlier presentation was
still retrying). A view whose access was granted and is now being taken away or over therefore tells
ACTIVE first (rendered as of then), then the end (see :func:`outcomes_to_tell`); the keys above make each
one once.

Stages and Slack buttons. A new stage (an extension, a break-glass review) asks again with a new DM: the
person's ref in the state is *replaced* by the new message, the one with buttons; the old one moves to
``ChannelState.earlier`` and is kept up to date too, without buttons. Approve/Deny buttons carry
``"<request id>|<stage>"`` in their ``value`` (see :func:`button_value`); the Slack edge reads it with
:func:`parse_button_value` and passes the stage with the decision, so a click on an old message cannot count
towards a stage its author never saw (the workflow refuses it with an explanation).

Errors. Every channel is tried even when another fails, and within a channel every person, except that the
first *transient* failure stops that channel for this attempt (an outage or a rate limit is not hammered).
Then, if anything failed, the activity raises an ``ApplicationError``: retryable (type
``ChannelTransient``, ``next_retry_delay`` = the largest ``Retry-After`` seen) when any failure was
transient, else non-retryable (type ``ChannelRefused``) naming every failure (template errors and bugs —
exceptions the adapters did not classify — count as permanent; their tracebacks are logged). Its first
detail is the state as far as it got, for a caller that gives up. Because everything is idempotent, a
retry redoes only what is missing.

Best effort. Notifications never fail a request: the workflow runs this activity with generous but bounded
retries and, when it still fails, keeps the state the error carries and, for transient failures, tries
again after a pause with the people still to ask (a few rounds at most); the next presentation catches up
in any case, since it brings everything up to date from the view.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import jinja2
from jira import JIRA
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from config.settings import Settings, SettingsError
from domain.approval import Stage, open_stage, votes_in_stage
from domain.channels import ChannelState, PresentInput, SlackMessageRef
from domain.durations import format_duration
from domain.identity import PersonRef
from domain.requests import Decision, RequestStatus, RequestView
from domain.review_links import ReviewLinks
from integrations.email import EmailError, EmailPermanentError, EmailSender, EmailTransientError
from integrations.jira_tickets import (
    JiraError,
    JiraPermanentError,
    JiraTickets,
    JiraTransientError,
    JiraWorkflowError,
    build_jira,
)
from integrations.slack import (
    BlockKitError,
    MessageRef,
    SlackChannel,
    SlackError,
    SlackNotFoundError,
    SlackPermanentError,
    SlackTransientError,
    build_slack_client,
    render_blocks,
)
from store import Store
from templates import template_environment

__all__ = [
    "CHANNEL_REFUSED",
    "CHANNEL_TRANSIENT",
    "ChannelActivities",
    "LazyJira",
    "build_channels",
    "button_value",
    "outcomes_to_tell",
    "parse_button_value",
]

CHANNEL_TRANSIENT = "ChannelTransient"
CHANNEL_REFUSED = "ChannelRefused"

OUTCOME_STATUSES = frozenset(
    {
        RequestStatus.ACTIVE,
        RequestStatus.APPROVED,
        RequestStatus.ENDED,
        RequestStatus.DENIED,
        RequestStatus.TIMED_OUT,
        RequestStatus.CANCELLED,
        RequestStatus.FAILED,
    }
)
"""Statuses the requester is told about (once each, in Slack and by email)."""

_GRANT_OVER = frozenset({RequestStatus.REVOKING, RequestStatus.ENDED, RequestStatus.FAILED})

EMAILED_MEMORY = 10_000
"""How many Message-IDs a worker remembers having sent (oldest forgotten first)."""

_STAGES = frozenset(s.value for s in Stage)


# ------------------------------------------------------------------------------------------ button values


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


# ------------------------------------------------------------------------------------------ outcomes


def outcomes_to_tell(view: RequestView) -> list[RequestView]:
    """What the requester is told, oldest first, each as the view to render: the current status when it is
    an outcome, preceded by ACTIVE (as it was then) when the access was granted and is now being taken
    away or over — the presentation that would have said so may have been coalesced away."""
    told: list[RequestView] = []
    if view.granted_at is not None and view.status in _GRANT_OVER:
        was_active = {
            "status": RequestStatus.ACTIVE,
            "end_reason": None,
            "ended_at": None,
            "failure_reason": None,
            "pending_extension": None,
        }
        told.append(view.model_copy(update=was_active))
    if view.status in OUTCOME_STATUSES:
        told.append(view)
    return told


def _outcome_note(view: RequestView) -> str:
    """The view's ``outcome_note`` ("approved in hoop's own UI") as a sentence for people to read; "" when
    there is none."""
    note = (view.outcome_note or "").strip()
    return (note[:1].upper() + note[1:]).rstrip(".") + "." if note else ""


def _fingerprint(text: str, blocks: Sequence[dict[str, Any]], link: str | None) -> str:
    """What a Slack message shows, as a digest, with the review link left out (it is signed anew, with a
    timestamp, at every rendering, and the one already shown stays valid)."""
    rendered = json.dumps([text, blocks], sort_keys=True, ensure_ascii=False)
    if link:
        rendered = rendered.replace(link, "<review link>")
    return hashlib.sha256(rendered.encode()).hexdigest()


# ------------------------------------------------------------------------------------------ keys


def ask_key(request_id: str, stage: str, person_id: str) -> str:
    return f"{request_id}:ask:{stage}:{person_id}"


def outcome_key(request_id: str, status: str) -> str:
    return f"{request_id}:outcome:{status}"


def ask_message_id(request_id: str, stage: str, person_id: str) -> str:
    return f"{request_id}.ask.{stage}.{person_id}"


def remind_key(request_id: str, stage: str, person_id: str) -> str:
    return f"{request_id}:remind:{stage}:{person_id}"


def remind_message_id(request_id: str, stage: str, person_id: str) -> str:
    return f"{request_id}.remind.{stage}.{person_id}"


def outcome_message_id(request_id: str, status: str) -> str:
    return f"{request_id}.outcome.{status}"


# ------------------------------------------------------------------------------------------ failures


@dataclass(frozen=True, slots=True)
class _Failure:
    channel: str
    message: str
    transient: bool
    retry_after: float | None = None


_ADAPTER_ERRORS = (SlackError, JiraError, EmailError)


def _failure(channel: str, exc: BaseException) -> _Failure:
    """A failure, classified: the adapters' transient errors are transient, their permanent ones and
    template errors are not; an adapter error of neither kind (an unknown failure) is retried."""
    if isinstance(exc, SlackTransientError | JiraTransientError):
        return _Failure(channel, exc.message, True, exc.retry_after)
    if isinstance(exc, EmailTransientError):
        return _Failure(channel, exc.message, True)
    if isinstance(exc, SlackPermanentError | JiraPermanentError | EmailPermanentError):
        return _Failure(channel, exc.message, False)
    if isinstance(exc, _ADAPTER_ERRORS):
        return _Failure(channel, exc.message, True)
    if isinstance(exc, BlockKitError | jinja2.TemplateError):
        return _Failure(channel, f"template error: {exc}", False)
    return _Failure(channel, f"{type(exc).__name__}: {exc}", False)


class _Failures:
    """The failures of one channel in one attempt; ``stop`` says the channel should stop for now."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.items: list[_Failure] = []

    def add(self, exc: BaseException, doing: str) -> _Failure:
        """Record a failure while ``doing`` something (a phrase naming whom: "asking bob@corp")."""
        failure = _failure(self.channel, exc)
        failure = replace(failure, message=f"{doing}: {failure.message}")
        self.items.append(failure)
        log = activity.logger.warning if failure.transient else activity.logger.error
        log("%s: %s", self.channel, failure.message, exc_info=not isinstance(exc, _ADAPTER_ERRORS))
        return failure

    @property
    def stop(self) -> bool:
        return any(f.transient for f in self.items)


# ------------------------------------------------------------------------------------------ Jira, built late


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


# ------------------------------------------------------------------------------------------ rendering


def _utc(when: datetime | None) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if when else "-"


def _environment(*, autoescape: bool) -> jinja2.Environment:
    env = template_environment(autoescape=autoescape)
    env.filters["duration"] = format_duration
    env.filters["utc"] = _utc
    return env


def _decisions(view: RequestView) -> list[Decision]:
    pending = view.pending_extension.approvals if view.pending_extension else []
    return [*view.approvals, *pending, *view.denials]


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


# ------------------------------------------------------------------------------------------ the activity


class ChannelActivities:
    """Slack, Jira and email presentation of requests. See the module docstring.

    ``jira`` is a :class:`JiraTickets`, or a :class:`LazyJira` that builds it on first use. The transition
    names are those of the ticket's workflow (and must be in the adapter's ``transition_names``):
    ``approve_transition`` leads to the approved status, ``close_transition`` from there to done.
    ``ticket_labels`` and ``ticket_fields`` are put on every ticket grantflow opens (custom fields by id);
    the strings in them are Jinja templates rendered with the request (``view``), checked here."""

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
        self._links = links
        self._store = store
        self.approve_transition = approve_transition
        self.deny_transition = deny_transition
        self.close_transition = close_transition
        self.cancel_transition = cancel_transition
        self._emailed: OrderedDict[str, None] = OrderedDict()
        # compiled now, so a mistake in the configuration stops the worker at start, not every ticket
        self._ticket_labels = [self._text.from_string(label) for label in ticket_labels]
        self._ticket_fields = _compile_values(self._text, dict(ticket_fields or {}))

    @cached_property
    def _text(self) -> jinja2.Environment:
        return _environment(autoescape=False)

    @cached_property
    def _html(self) -> jinja2.Environment:
        return _environment(autoescape=True)

    # the clients, for the workflow's other notices (``activities.notifications.build_notifier``)

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
        remind = [p for p in dict.fromkeys(inp.remind) if p not in ask and self._may_decide(view, p)]
        asked_stage = stage.value if stage is not None else ""
        state, emailed = self._resume(state)
        parts: dict[str, Awaitable[list[_Failure]]] = {}
        if self._slack is not None:
            parts["slack"] = self._present_slack(self._slack, view, asked_stage, ask, state, emailed, remind)
        # Jira runs in a thread on its own copy (the heartbeats of the other channels read ``state``
        # meanwhile); its ticket and steps are merged back below.
        ticket = state.model_copy(deep=True)
        if self._jira is not None:
            parts["jira"] = asyncio.to_thread(self._present_jira, self._jira, view, ask, ticket)
        if self._email is not None:
            parts["email"] = self._present_email(self._email, view, asked_stage, ask, state, emailed, remind)
        # the channels run side by side, and one failing in an unforeseen way does not stop the others;
        # Jira's blocking calls in their thread cannot heartbeat, so the wait heartbeats for them, with
        # everything done so far (Jira's steps included) for the next attempt
        results = await heartbeating(
            asyncio.gather(*parts.values(), return_exceptions=True),
            lambda: self._progress(state, emailed, ticket if self._jira is not None else None),
        )
        failures: list[_Failure] = []
        for channel, result in zip(parts, results, strict=True):
            if isinstance(result, Exception):
                failures.append(_Failures(channel).add(result, "presenting"))
            elif isinstance(result, BaseException):
                raise result  # cancelled: Temporal's to handle
            else:
                failures.extend(result)
        if self._jira is not None:
            state.jira_key, state.jira_done = ticket.jira_key, ticket.jira_done
        state.emailed = sorted(emailed)
        if failures:
            self._checkpoint(state, emailed)  # the next attempt goes on from here
            raise self._error(view, failures, state)
        return state

    # ------------------------------------------------------------------ errors

    @staticmethod
    def _error(view: RequestView, failures: Sequence[_Failure], state: ChannelState) -> ApplicationError:
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

    # ------------------------------------------------------------------ people and links

    def _link(self, view: RequestView, person_id: str | None) -> str | None:
        if self._links is None or person_id is None:
            return None
        return self._links.url(view.id, person_id)

    async def _people(
        self, view: RequestView, ask: Iterable[PersonRef], ids: Iterable[str]
    ) -> dict[str, PersonRef]:
        """Person id -> PersonRef for every id given, from the view and ``ask``, else from the directory."""
        known: dict[str, PersonRef] = {view.requester.id: view.requester}
        for person in [*view.eligible_approvers, *ask, *(d.approver for d in _decisions(view))]:
            known.setdefault(person.id, person)
        for person_id in ids:
            if person_id not in known:
                found = await asyncio.to_thread(self._store.get_person, person_id)
                if found is not None:
                    known[person_id] = found.ref
        return known

    async def _inactive(self, person_ids: Iterable[str]) -> set[str]:
        """The ids among these of people the directory has deactivated (unknown ids count as active: the
        directory may not have synced them yet)."""
        found = [await asyncio.to_thread(self._store.get_person, pid) for pid in set(person_ids)]
        return {p.id for p in found if p is not None and not p.active}

    @staticmethod
    def _may_decide(view: RequestView, person: PersonRef | None) -> bool:
        """Whether this person's message should still offer Approve/Deny."""
        stage = open_stage(view)
        if stage is None or person is None or person.id == view.requester.id:
            return False
        if view.eligible_approvers and person.id not in {p.id for p in view.eligible_approvers}:
            return False
        return not any(d.approver.id == person.id for d in votes_in_stage(view, stage))

    # ------------------------------------------------------------------ Slack

    async def _present_slack(
        self,
        slack: SlackChannel,
        view: RequestView,
        stage: str,
        ask: Sequence[PersonRef],
        state: ChannelState,
        emailed: set[str],
        remind: Sequence[PersonRef] = (),
    ) -> list[_Failure]:
        failures = _Failures("slack")
        people = await self._people(view, ask, state.slack)
        fresh: set[str] = set()  # refs posted now: they already show the view as it is
        for person, reminder in [*((p, False) for p in ask), *((p, True) for p in remind)]:
            try:
                await self._ask_slack(slack, view, stage, person, state, fresh, reminder=reminder)
            except Exception as exc:
                failures.add(exc, f"{'reminding' if reminder else 'asking'} {person.email}")
                if failures.stop:
                    return failures.items
            else:
                self._checkpoint(state, emailed)
        for person_id, ref in list(state.slack.items()):
            if person_id in fresh:
                continue
            recipient = people.get(person_id)
            try:
                text, blocks, shown = self._approver_message(
                    view, recipient, person_id, decision_open=self._may_decide(view, recipient)
                )
                if ref.shown == shown:
                    continue  # it already shows this
                await slack.update(MessageRef(channel=ref.channel, ts=ref.ts), text, blocks)
                state.slack[person_id] = ref.model_copy(update={"shown": shown})
                self._checkpoint(state, emailed)
            except SlackNotFoundError:
                # deleted by its reader (or the DM is gone): nothing left to keep up to date
                activity.logger.info("request %s: Slack message %s of %s is gone", view.id, ref.ts, person_id)
                del state.slack[person_id]
            except Exception as exc:
                failures.add(exc, f"updating the message of {recipient.email if recipient else person_id}")
                if failures.stop:
                    return failures.items
        for person_id in list(state.earlier):
            try:
                await self._refresh_earlier(slack, view, people.get(person_id), person_id, state, emailed)
            except Exception as exc:
                failures.add(exc, f"updating an earlier message of {person_id}")
                if failures.stop:
                    return failures.items
        for outcome in outcomes_to_tell(view):  # in order: a failure stops the later ones
            status = outcome.status.value
            if status in state.told:
                continue
            try:
                told = await self._tell_requester_slack(slack, outcome)
            except Exception as exc:
                failures.add(exc, f"telling {view.requester.email} the outcome ({status})")
                return failures.items
            if told is not None:
                state.told[status] = told
                self._checkpoint(state, emailed)
        for status, ref in list(state.told.items()):
            try:
                await self._refresh_told(slack, view, status, ref, state, emailed)
            except SlackNotFoundError:
                del state.told[status]  # deleted by the requester
            except Exception as exc:
                failures.add(exc, f"updating the {status} message of {view.requester.email}")
                if failures.stop:
                    break
        return failures.items

    async def _refresh_earlier(
        self,
        slack: SlackChannel,
        view: RequestView,
        recipient: PersonRef | None,
        person_id: str,
        state: ChannelState,
        emailed: set[str],
    ) -> None:
        """Bring a person's DMs of earlier stages up to date, without buttons (their current DM has them);
        one deleted by its reader is forgotten."""
        text, blocks, shown = self._approver_message(view, recipient, person_id, decision_open=False)
        refs = state.earlier.get(person_id, [])  # updated in place, so every checkpoint carries it
        gone: list[SlackMessageRef] = []
        for i, ref in enumerate(refs):
            if ref.shown == shown:
                continue
            try:
                await slack.update(MessageRef(channel=ref.channel, ts=ref.ts), text, blocks)
            except SlackNotFoundError:
                gone.append(ref)  # deleted by its reader: nothing left to keep up to date
                continue
            refs[i] = ref.model_copy(update={"shown": shown})
            self._checkpoint(state, emailed)
        if gone:
            state.earlier[person_id] = [ref for ref in refs if ref not in gone]

    def _approver_message(
        self, view: RequestView, recipient: PersonRef | None, person_id: str, *, decision_open: bool
    ) -> tuple[str, list[dict[str, Any]], str]:
        """An approver's DM as it should look now (``request_updated``), and its fingerprint."""
        link = self._link(view, person_id)
        text, blocks = render_blocks(
            "request_updated",
            view=view,
            recipient=recipient,
            link=link,
            decision_open=decision_open,
            note=_outcome_note(view),
        )
        return text, blocks, _fingerprint(text, blocks, link)

    async def _refresh_told(
        self,
        slack: SlackChannel,
        view: RequestView,
        status: str,
        ref: SlackMessageRef,
        state: ChannelState,
        emailed: set[str],
    ) -> None:
        """Bring a message that told the requester an outcome up to date: it shows the request as it is
        now, and an earlier outcome's message says it was overtaken."""
        notes = [_outcome_note(view)] if view.outcome_note else []
        if status != view.status.value:
            notes.append(f"Updated: this request is {view.status.value} now.")
        text, blocks = render_blocks(
            "requester_outcome", view=view, recipient=view.requester, note=" ".join(notes)
        )
        shown = _fingerprint(text, blocks, None)
        if ref.shown == shown:
            return
        await slack.update(MessageRef(channel=ref.channel, ts=ref.ts), text, blocks)
        state.told[status] = ref.model_copy(update={"shown": shown})
        self._checkpoint(state, emailed)

    async def _ask_slack(
        self,
        slack: SlackChannel,
        view: RequestView,
        stage: str,
        person: PersonRef,
        state: ChannelState,
        fresh: set[str],
        *,
        reminder: bool = False,
    ) -> None:
        """Ask ``person`` in a DM with the buttons (or remind them: a new such DM, which takes over the
        buttons); their earlier DM is then kept up to date without buttons."""
        key = (remind_key if reminder else ask_key)(view.id, stage, person.id)
        if key in state.asked and person.id in state.slack:
            return  # asked by an earlier attempt or presentation: its message is the one to update
        user = await slack.user_id_for_email(person.email)
        if user is None:
            activity.logger.info(
                "request %s: %s has no Slack account; not asked in Slack", view.id, person.email
            )
            return
        text, blocks = render_blocks(
            "request_created",
            view=view,
            recipient=person,
            link=self._link(view, person.id),
            reminder=reminder,
        )
        posted, now = await slack.ensure_posted(
            user, text, blocks, key=key, metadata={"request_id": view.id, "stage": stage}
        )
        if now:
            fresh.add(person.id)
        ref = SlackMessageRef(channel=posted.channel, ts=posted.ts)
        old = state.slack.get(person.id)
        if old is not None and old.same_message(ref):
            ref = old  # asked again at the same stage: the message, and what it shows, are known
        elif old is not None:
            # a new stage: the new message is the one with buttons; the earlier one is kept up to date
            # without them (``_refresh_earlier``)
            state.earlier.setdefault(person.id, []).append(old)
        state.slack[person.id] = ref
        state.asked.append(key)

    async def _tell_requester_slack(self, slack: SlackChannel, view: RequestView) -> SlackMessageRef | None:
        """Tell the requester ``view``'s outcome in a DM of its own (a notification); its ref, or None when
        the requester has no Slack account."""
        user = await slack.user_id_for_email(view.requester.email)
        if user is None:
            activity.logger.info(
                "request %s: requester %s has no Slack account", view.id, view.requester.email
            )
            return None
        text, blocks = render_blocks(
            "requester_outcome",
            view=view,
            recipient=view.requester,
            note=_outcome_note(view),
        )
        posted = await slack.post_once(
            user,
            text,
            blocks,
            key=outcome_key(view.id, view.status.value),
            metadata={"request_id": view.id, "status": view.status.value},
        )
        return SlackMessageRef(channel=posted.channel, ts=posted.ts, shown=_fingerprint(text, blocks, None))

    # ------------------------------------------------------------------ Jira (blocking: runs in a thread)

    def _present_jira(
        self, source: JiraTickets | LazyJira, view: RequestView, ask: Sequence[PersonRef], state: ChannelState
    ) -> list[_Failure]:
        failures = _Failures("jira")
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
            steps.append((assignees, f"assigning {key}", lambda: self._assign(jira, key, ask)))
        for decision in sorted(_decisions(view), key=lambda d: d.at):
            text = self._text.get_template("jira/comment_decision.j2").render(
                view=_as_of(view, decision), decision=decision
            )
            doing = f"commenting {decision.approver.email}'s decision on {key}"
            steps.append((_comment_step(text), doing, _comment(jira, key, text)))
        if view.status is not RequestStatus.PENDING:
            text = self._text.get_template("jira/comment_status.j2").render(
                view=view, note=_outcome_note(view)
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

    @staticmethod
    def _assign(jira: JiraTickets, key: str, ask: Sequence[PersonRef]) -> None:
        for person in ask:
            account_id = jira.account_id_for_email(person.email)
            if account_id is not None:
                jira.assign(key, account_id)
                return

    # ------------------------------------------------------------------ progress between attempts

    def _resume(self, state: ChannelState) -> tuple[ChannelState, set[str]]:
        """Take over what an earlier attempt of this activity did: its last heartbeat holds the channel
        state as far as it got (a superset of the input's, from which it started), so a retry goes on
        from there instead of looking everything up again. Returns that state and the Message-IDs sent —
        by that attempt, by earlier presentations (``state.emailed``) or by this worker."""
        for detail in activity.info().heartbeat_details:
            if isinstance(detail, dict) and isinstance(detail.get("state"), dict):
                state = ChannelState.model_validate(detail["state"])
        return state, set(self._emailed) | set(state.emailed)

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

    # ------------------------------------------------------------------ email

    def _mark_emailed(self, message_id: str, emailed: set[str], state: ChannelState) -> None:
        emailed.add(message_id)
        self._emailed[message_id] = None
        self._emailed.move_to_end(message_id)
        while len(self._emailed) > EMAILED_MEMORY:
            self._emailed.popitem(last=False)
        self._checkpoint(state, emailed)

    def _render_email(self, event: str, **context: Any) -> tuple[str, str, str]:
        rendered = self._text.get_template(f"email/{event}.txt.j2").render(**context)
        subject, _, text = rendered.partition("\n")
        html = self._html.get_template(f"email/{event}.html.j2").render(**context)
        return subject.strip(), text.lstrip("\n"), html

    async def _present_email(
        self,
        sender: EmailSender,
        view: RequestView,
        stage: str,
        ask: Sequence[PersonRef],
        state: ChannelState,
        emailed: set[str],
        remind: Sequence[PersonRef] = (),
    ) -> list[_Failure]:
        failures = _Failures("email")
        sends: list[tuple[str, PersonRef, str, dict[str, Any]]] = []
        if (ask or remind) and self._links is None:
            activity.logger.warning(
                "request %s: no review links configured; approvers are not emailed", view.id
            )
        else:
            for person in ask:
                asking: dict[str, Any] = {
                    "view": view,
                    "recipient": person,
                    "link": self._link(view, person.id),
                }
                sends.append((ask_message_id(view.id, stage, person.id), person, "request_created", asking))
            for person in remind:
                context: dict[str, Any] = {
                    "view": view,
                    "recipient": person,
                    "link": self._link(view, person.id),
                    "reminder": True,
                }
                message_id = remind_message_id(view.id, stage, person.id)
                sends.append((message_id, person, "request_created", context))
        for outcome in outcomes_to_tell(view):
            note = _outcome_note(outcome)
            context = {"view": outcome, "recipient": view.requester, "note": note}
            message_id = outcome_message_id(view.id, outcome.status.value)
            sends.append((message_id, view.requester, "outcome", context))
        # Nobody the directory has deactivated is emailed (a leaver's mailbox is someone else's problem
        # now, and an outcome mail would tell an ex-employee about production access).
        inactive = await self._inactive({person.id for _, person, _, _ in sends})
        for message_id, person, event, context in sends:
            if message_id in emailed or person.id in inactive:
                continue
            try:
                subject, text, html = self._render_email(event, **context)
                await asyncio.to_thread(sender.send, person.email, subject, text, html, message_id)
            except Exception as exc:
                failures.add(exc, f"emailing {person.email} ({event})")
                if failures.stop:
                    break
                continue
            self._mark_emailed(message_id, emailed, state)
        return failures.items


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


# ------------------------------------------------------------------------------------------ wiring


def _slack_base_url(url: str) -> str | None:
    """The Web API base slack_sdk needs (ending in ``/api/``) from ``slack_api_url``: Slack's own when
    empty; a server's root (a stand-in's URL) gets ``/api/``, a URL ending in ``/api`` the slash."""
    if not url:
        return None
    url = url.rstrip("/")
    return url + "/" if url.endswith("/api") else url + "/api/"


def _transition_to(transitions: dict[str, str], status: str, default: str) -> str:
    """The name of the configured transition leading to ``status`` (case-insensitive), else ``default``."""
    for name, target in transitions.items():
        if target.lower() == status.lower():
            return name
    return default


def _configured(transitions: dict[str, str], name: str) -> str:
    for configured in transitions:
        if configured.lower() == name.lower():
            return configured
    raise SettingsError(
        f"GRANTFLOW_JIRA_TRANSITIONS has no {name!r} transition (configured: {', '.join(transitions)})"
    )


def build_channels(settings: Settings, *, links: ReviewLinks | None, store: Store) -> ChannelActivities:
    """The channel activities with a client for each configured channel: Slack when a bot token is set,
    Jira when ``jira_url`` is (connected on first use), email when ``smtp_host`` is. Close with
    :meth:`ChannelActivities.aclose`. Raises ``SettingsError`` for an incomplete configuration."""
    slack: SlackChannel | None = None
    if settings.slack_bot_token is not None and settings.slack_bot_token.get_secret_value():
        client = build_slack_client(
            settings.slack_bot_token.get_secret_value(), base_url=_slack_base_url(settings.slack_api_url)
        )
        slack = SlackChannel(client)

    jira: LazyJira | None = None
    transitions = dict(settings.jira_transitions)
    approve = _transition_to(transitions, settings.jira_approve_status, "Approve")
    deny = _transition_to(transitions, settings.jira_deny_status, "Deny")
    close, cancel = "Close", "Cancel"
    if settings.jira_url:
        token = settings.require_secret("jira_api_token")
        if not settings.jira_email:
            raise SettingsError("GRANTFLOW_JIRA_EMAIL is not set (the Jira API user, required with jira_url)")
        approve, deny, close, cancel = (_configured(transitions, n) for n in (approve, deny, close, cancel))
        url, user = settings.jira_url, settings.jira_email

        def tickets(client: JIRA) -> JiraTickets:
            return JiraTickets(
                client,
                project_key=settings.jira_project,
                issue_type=settings.jira_issue_type,
                transition_names=transitions,
                account_ids=settings.jira_account_ids,
                adopted_projects=[settings.jira_intake_project],
            )

        jira = LazyJira(lambda: build_jira(url, user, token), tickets)

    email: EmailSender | None = None
    if settings.smtp_host:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password is not None else None
        email = EmailSender(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_from,
            username=settings.smtp_username or None,
            password=password,
            starttls=settings.smtp_starttls,
        )

    try:
        return ChannelActivities(
            slack=slack,
            jira=jira,
            email=email,
            links=links,
            store=store,
            approve_transition=approve,
            deny_transition=deny,
            close_transition=close,
            cancel_transition=cancel,
            ticket_labels=settings.jira_labels,
            ticket_fields=settings.jira_fields,
        )
    except jinja2.TemplateSyntaxError as exc:
        raise SettingsError(f"GRANTFLOW_JIRA_LABELS or GRANTFLOW_JIRA_FIELDS: {exc.message}") from exc

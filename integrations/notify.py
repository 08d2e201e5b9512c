"""Telling people about requests: the workflow's own notices (``activities/notifications.py`` renders them
from ``templates/notifications/``), one :class:`Message` per recipient. Notifications are best effort: a
failure is logged and never fails a request.

Where they go:

- :class:`ChannelNotifier`, in production: through the configured channels. The notices the presentation
  (``present_request``, ``activities/channels.py``) already delivers in Slack and by email — asking and
  reminding approvers with their review links, telling the requester the outcome (:data:`PRESENTED_EVENTS`)
  — are not sent twice. Every other notice (an escalation: a revocation that does not succeed, sessions left
  open) goes to each recipient by Slack DM and email, and its copy for :data:`OPERATORS` to the operators'
  Slack channel and address and as a comment on the request's Jira ticket.
- :class:`OutboxNotifier`, for ``grantflow dev`` only: one JSON line per message in an outbox file that dev
  prints. It holds review links, which are credentials: nothing else ever writes them to disk.
- :class:`Notifiers` sends each message to several (dev: the outbox and the channels).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from domain.identity import PersonRef
from integrations.email import EmailError, EmailSender
from integrations.jira_tickets import JiraError, JiraTickets
from integrations.slack import SlackChannel, SlackError, mrkdwn_escape

log = logging.getLogger("grantflow.notify")


class Message(BaseModel):
    request_id: str
    event: str
    recipient: PersonRef
    subject: str
    text: str
    link: str | None = None


OPERATORS = PersonRef(id="operators", email="operators")
"""The recipient of an escalation's copy for whoever runs grantflow (one per notice, without a link)."""

PRESENTED_EVENTS = frozenset(
    {"request_created", "reminder", "retro_review", "extension_requested", "active", "closed"}
)
"""Notices the presentation delivers in Slack and by email (asks with review links, outcomes)."""

DIGEST_EVENTS = frozenset(
    {"campaign_notice", "campaign_reminder", "campaign_escalation", "campaign_delegation", "campaign_outcome"}
)
"""Campaign notices whose Slack side is the reviewer's digest (``activities/campaign_digests.py``; an
escalation's manager and a delegate get theirs; a campaign's outcome replaces the reviewer's last digest):
by email only here."""

SENT_MEMORY = 10_000
"""How many keys of messages sent without a look-up a notifier remembers (oldest forgotten first)."""


class Notifier(Protocol):
    async def send(self, message: Message) -> None: ...


class NotifyError(Exception):
    """A message reached some of its channels only; ``message`` names each failure."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class OutboxNotifier:
    """``grantflow dev``'s channel: each message is appended as one JSON line to an outbox file (dev prints
    it, links included) and logged. Never used in production: the file collects review links."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def _append(self, line: str) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # Review links are credentials: the outbox is readable by its owner only, and logs never carry them.
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with open(fd, "a", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write(line + "\n")

    async def send(self, message: Message) -> None:
        line = json.dumps({"at": datetime.now(UTC).isoformat(), **message.model_dump(mode="json")})
        await asyncio.to_thread(self._append, line)
        log.info(
            "to %s: %s%s",
            message.recipient.email,
            message.subject,
            " (with a review link)" if message.link else "",
        )


class Notifiers:
    """Each message to every notifier given, all tried; the first failure is raised after."""

    def __init__(self, *notifiers: Notifier) -> None:
        self._notifiers = notifiers

    async def send(self, message: Message) -> None:
        errors: list[BaseException] = []
        for notifier in self._notifiers:
            try:
                await notifier.send(message)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


class ChannelNotifier:
    """Notices through the configured channels (see the module docstring). ``jira`` returns the tickets
    adapter (blocking: it may connect first). Safe to call again after a failure: Slack DMs are posted
    once (looked up by key), a Jira comment is not repeated, and what was posted to the operators' channel
    or emailed is remembered by this worker (a retry on another worker may send it again)."""

    def __init__(
        self,
        *,
        slack: SlackChannel | None,
        email: EmailSender | None,
        jira: Callable[[], JiraTickets] | None,
        operator_slack_channel: str = "",
        operator_email: str = "",
    ) -> None:
        self._slack = slack
        self._email = email
        self._jira = jira
        self._operator_channel = operator_slack_channel
        self._operator_email = operator_email
        self._sent: OrderedDict[str, None] = OrderedDict()

    async def send(self, message: Message) -> None:
        if message.recipient.id == OPERATORS.id:
            await self._tell_operators(message)
        elif message.event in PRESENTED_EVENTS:
            log.debug("%s for %s: delivered by the presentation", message.event, message.request_id)
        else:
            await self._tell_person(message)

    async def _tell_person(self, message: Message) -> None:
        person = message.recipient
        key = _key(message)
        failures: list[str] = []
        if self._slack is not None and message.event not in DIGEST_EVENTS:
            try:
                user_id = await self._slack.user_id_for_email(person.email)
                if user_id is None:
                    log.info("%s has no Slack account: %s not sent there", person.email, message.event)
                else:
                    await self._slack.post_once(user_id, _slack_text(message), [], key=f"{key}:{person.id}")
            except SlackError as exc:
                failures.append(f"slack: {exc.message}")
        if self._email is not None:
            failures += await self._mail(person.email, message, f"{key}.{person.id}")
        _raise(message, failures)

    async def _tell_operators(self, message: Message) -> None:
        key = _key(message)
        failures: list[str] = []
        if not (self._operator_channel or self._operator_email):
            log.error(
                "%s for %s reaches no operator (set GRANTFLOW_OPERATOR_SLACK_CHANNEL or "
                "GRANTFLOW_OPERATOR_EMAIL): %s",
                message.event,
                message.request_id,
                message.subject,
            )
        if self._operator_channel and self._slack is not None and not self._was_sent(f"slack:{key}"):
            try:
                await self._slack.post(self._operator_channel, _slack_text(message), key=key)
                self._remember(f"slack:{key}")
            except SlackError as exc:
                failures.append(f"slack {self._operator_channel}: {exc.message}")
        if self._operator_email and self._email is not None:
            failures += await self._mail(self._operator_email, message, f"{key}.operators")
        if self._jira is not None:
            try:
                await asyncio.to_thread(self._comment, self._jira, message)
            except JiraError as exc:
                failures.append(f"jira: {exc.message}")
        _raise(message, failures)

    @staticmethod
    def _comment(jira: Callable[[], JiraTickets], message: Message) -> None:
        tickets = jira()
        key = tickets.find_issue(message.request_id)
        if key is None:
            log.info("request %s has no Jira ticket: %s not commented", message.request_id, message.event)
            return
        tickets.comment(key, f"{message.subject}\n\n{message.text}")

    async def _mail(self, to: str, message: Message, message_id: str) -> list[str]:
        assert self._email is not None
        if self._was_sent(f"email:{message_id}"):
            return []
        text = message.text
        if message.link and message.link not in text:  # the link is what the person acts on
            text = f"{text}\n\n{message.link}"
        try:
            await asyncio.to_thread(self._email.send, to, message.subject, text, None, message_id)
        except EmailError as exc:
            return [f"email to {to}: {exc.message}"]
        self._remember(f"email:{message_id}")
        return []

    def _was_sent(self, key: str) -> bool:
        return key in self._sent

    def _remember(self, key: str) -> None:
        self._sent[key] = None
        while len(self._sent) > SENT_MEMORY:
            self._sent.popitem(last=False)


def _key(message: Message) -> str:
    """The same notice (the same words) has the same key: a second escalation with a new note is new. A
    review link in the text is left out: it is signed anew at each rendering, and a retry is the same
    notice."""
    text = message.text.replace(message.link, "<review link>") if message.link else message.text
    digest = hashlib.sha256(f"{message.subject}\n{text}".encode()).hexdigest()[:12]
    return f"{message.request_id}:notify:{message.event}:{digest}"


def _slack_text(message: Message) -> str:
    # people's words (a reason) are in the text: escaped, so they cannot ping <!channel> or forge a link
    return f"*{mrkdwn_escape(message.subject)}*\n{mrkdwn_escape(message.text)}"


def _raise(message: Message, failures: list[str]) -> None:
    if failures:
        who = message.recipient.email
        raise NotifyError(f"{message.event} for {message.request_id} to {who}: {'; '.join(failures)}")

"""Rendering and sending notifications about a request: best effort, never failing the request.

Each recipient gets the notice rendered for them (with their review link when asked for); an escalation
(:data:`ESCALATION_EVENTS`) also gets one copy for the operators (``integrations.notify.OPERATORS``, no
link). Where they go is the notifier's business: :func:`build_notifier` picks the configured channels, and
the outbox file only for ``grantflow dev``.
"""

from __future__ import annotations

import logging
from datetime import UTC
from functools import cached_property

import jinja2
from pydantic import BaseModel
from temporalio import activity

from activities.channels import ChannelActivities
from config.settings import Settings, SettingsError
from domain.durations import format_duration
from domain.identity import PersonRef
from domain.requests import RequestView
from domain.review_links import ReviewLinks
from integrations.notify import OPERATORS, ChannelNotifier, Message, Notifier, Notifiers, OutboxNotifier
from templates import template_environment

log = logging.getLogger("grantflow.notify")


ESCALATION_EVENTS = frozenset({"revocation_escalated"})
"""Notices someone must act on: the operators get a copy too."""


class NotifyInput(BaseModel):
    event: str
    """One template per event: request_created, reminder, approved, denied, timed_out, cancelled, active,
    ended, failed, extension_requested, revocation_escalated, retro_review."""
    view: RequestView
    recipients: list[PersonRef]
    with_review_link: bool = False
    note: str = ""


class NotificationActivities:
    def __init__(self, notifier: Notifier, links: ReviewLinks | None) -> None:
        self._notifier = notifier
        self._links = links

    @cached_property
    def _templates(self) -> jinja2.Environment:
        env = template_environment(autoescape=False)
        env.filters["duration"] = format_duration
        env.filters["utc"] = lambda d: d.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if d else "-"
        return env

    @activity.defn(name="notify")
    async def notify(self, inp: NotifyInput) -> int:
        template = self._templates.get_template(f"notifications/{inp.event}.txt.j2")
        messages = []
        for recipient in inp.recipients:
            link = None
            if inp.with_review_link and self._links is not None:
                link = self._links.url(inp.view.id, recipient.id)
            messages.append(self._message(template, inp, recipient, link))
        if inp.event in ESCALATION_EVENTS:
            messages.append(self._message(template, inp, OPERATORS, None))
        # everyone is tried; a retry sends again only what failed (the notifiers are idempotent)
        failures: list[str] = []
        for message in messages:
            try:
                await self._notifier.send(message)
            except Exception as exc:
                failures.append(str(exc))
        if failures:
            raise RuntimeError("; ".join(failures))
        return len(inp.recipients)

    @staticmethod
    def _message(
        template: jinja2.Template, inp: NotifyInput, recipient: PersonRef, link: str | None
    ) -> Message:
        rendered = template.render(view=inp.view, recipient=recipient, link=link, note=inp.note)
        subject, _, body = rendered.partition("\n")
        return Message(
            request_id=inp.view.id,
            event=inp.event,
            recipient=recipient,
            subject=subject.strip(),
            text=body.strip(),
            link=link,
        )


def build_notifier(settings: Settings, channels: ChannelActivities) -> Notifier:
    """Notices through the channels ``channels`` was built with (its Slack, email and Jira clients) and
    the operators' channel and address; ``grantflow dev`` (``settings.dev_outbox``) also writes them to its
    outbox. Review links are written to disk nowhere else. ``SettingsError`` for an operator channel or
    address without the channel it needs."""
    if settings.operator_slack_channel and channels.slack is None:
        raise SettingsError("GRANTFLOW_OPERATOR_SLACK_CHANNEL needs Slack (GRANTFLOW_SLACK_BOT_TOKEN)")
    if settings.operator_email and channels.email is None:
        raise SettingsError("GRANTFLOW_OPERATOR_EMAIL needs email (GRANTFLOW_SMTP_HOST)")
    notifier: Notifier = ChannelNotifier(
        slack=channels.slack,
        email=channels.email,
        jira=channels.tickets,
        operator_slack_channel=settings.operator_slack_channel,
        operator_email=settings.operator_email,
    )
    if settings.dev_outbox:
        return Notifiers(OutboxNotifier(settings.state_dir / "outbox.jsonl"), notifier)
    if not settings.configured_channels:
        log.warning(
            "no channel is configured (GRANTFLOW_SLACK_BOT_TOKEN, GRANTFLOW_SMTP_HOST, GRANTFLOW_JIRA_URL): "
            "approvers hear of requests only through the API, and escalations reach nobody"
        )
    return notifier

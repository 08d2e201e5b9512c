"""Rendering and sending notifications about a request: best effort, never failing the request.

Each recipient gets the notice rendered for them (with their review link when asked for); an escalation
(:data:`ESCALATION_EVENTS`) also gets one copy for the operators (``integrations.notify.OPERATORS``, no
link). Where they go is the notifier's business: this module is given one (``worker.build_notifier`` picks
the configured channels, and the outbox file only for ``grantflow dev``) and never reads settings.
"""

from __future__ import annotations

from functools import cached_property

import jinja2
from pydantic import BaseModel
from temporalio import activity

from activities.channel_views import request_templates
from domain.identity import PersonRef
from domain.requests import RequestView
from domain.review_links import ReviewLinks
from integrations.notify import OPERATORS, Message, Notifier

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
        return request_templates(autoescape=False)

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

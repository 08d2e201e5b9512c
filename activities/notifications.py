"""Rendering and sending notifications about a request: best effort, never failing the request."""

from __future__ import annotations

from datetime import UTC
from functools import cached_property

import jinja2
from pydantic import BaseModel
from temporalio import activity

from domain.durations import format_duration
from domain.identity import PersonRef
from domain.requests import RequestView
from integrations.notify import Message, Notifier
from templates import template_environment
from web.links import ReviewLinks


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
        sent = 0
        for recipient in inp.recipients:
            link = None
            if inp.with_review_link and self._links is not None:
                link = self._links.url(inp.view.id, recipient.id)
            rendered = template.render(view=inp.view, recipient=recipient, link=link, note=inp.note)
            subject, _, body = rendered.partition("\n")
            await self._notifier.send(
                Message(
                    request_id=inp.view.id,
                    event=inp.event,
                    recipient=recipient,
                    subject=subject.strip(),
                    text=body.strip(),
                    link=link,
                )
            )
            sent += 1
        return sent

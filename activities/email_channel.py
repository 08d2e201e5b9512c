"""Presenting a request by email: approvers asked (and reminded) with their review link, the requester told
each outcome. Without review links (``links=None``) nobody is asked by email, which is logged; nobody the
directory has deactivated is emailed at all.

Idempotency: SMTP cannot be asked what it delivered, so emails are keyed by their Message-ID
(``<request>.ask.<stage>.<person>``, ``<request>.remind.<stage>.<person>``, ``<request>.outcome.<status>``):
a Message-ID already sent is skipped, remembered in ``ChannelState.emailed`` and in this worker's memory
(:data:`EMAILED_MEMORY`). Residual duplicate: after a dropped connection the SMTP server may have kept the
message the retry sends again — it carries the same Message-ID, so mail clients can tell.

This module never builds an SMTP sender (it is given one) and never raises for a failure: it returns them.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any

import jinja2
from temporalio import activity

from activities.channel_errors import Failure, Failures
from activities.channel_views import (
    Checkpoint,
    outcome_note,
    outcomes_to_tell,
    request_templates,
    review_link,
)
from domain.channels import ChannelState
from domain.identity import PersonRef
from domain.requests import RequestView
from domain.review_links import ReviewLinks
from integrations.email import EmailSender
from store import Store

__all__ = ["EMAILED_MEMORY", "EmailPresenter"]

EMAILED_MEMORY = 10_000
"""How many Message-IDs a worker remembers having sent (oldest forgotten first)."""


def ask_message_id(request_id: str, stage: str, person_id: str) -> str:
    return f"{request_id}.ask.{stage}.{person_id}"


def remind_message_id(request_id: str, stage: str, person_id: str) -> str:
    return f"{request_id}.remind.{stage}.{person_id}"


def outcome_message_id(request_id: str, status: str) -> str:
    return f"{request_id}.outcome.{status}"


class EmailPresenter:
    """A request's emails; ``store`` tells who the directory has deactivated. Remembers the Message-IDs
    this worker sent (:meth:`sent`)."""

    def __init__(self, *, links: ReviewLinks | None, store: Store) -> None:
        self._links = links
        self._store = store
        self._emailed: OrderedDict[str, None] = OrderedDict()

    @cached_property
    def _text(self) -> jinja2.Environment:
        return request_templates(autoescape=False)

    @cached_property
    def _html(self) -> jinja2.Environment:
        return request_templates(autoescape=True)

    def sent(self) -> set[str]:
        """The Message-IDs this worker remembers having sent."""
        return set(self._emailed)

    async def present(
        self,
        sender: EmailSender,
        view: RequestView,
        stage: str,
        ask: Sequence[PersonRef],
        state: ChannelState,
        emailed: set[str],
        checkpoint: Checkpoint,
        remind: Sequence[PersonRef] = (),
    ) -> list[Failure]:
        """Send what is due and not in ``emailed`` (adding each sent Message-ID to it); the failures, the
        first transient one ending the attempt."""
        failures = Failures("email")
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
                    "link": review_link(self._links, view, person.id),
                }
                sends.append((ask_message_id(view.id, stage, person.id), person, "request_created", asking))
            for person in remind:
                context: dict[str, Any] = {
                    "view": view,
                    "recipient": person,
                    "link": review_link(self._links, view, person.id),
                    "reminder": True,
                }
                message_id = remind_message_id(view.id, stage, person.id)
                sends.append((message_id, person, "request_created", context))
        for outcome in outcomes_to_tell(view):
            note = outcome_note(outcome)
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
                subject, text, html = self._render(event, **context)
                await asyncio.to_thread(sender.send, person.email, subject, text, html, message_id)
            except Exception as exc:
                failures.add(exc, f"emailing {person.email} ({event})")
                if failures.stop:
                    break
                continue
            self._mark_emailed(message_id, emailed)
            checkpoint()
        return failures.items

    def _mark_emailed(self, message_id: str, emailed: set[str]) -> None:
        emailed.add(message_id)
        self._emailed[message_id] = None
        self._emailed.move_to_end(message_id)
        while len(self._emailed) > EMAILED_MEMORY:
            self._emailed.popitem(last=False)

    def _render(self, event: str, **context: Any) -> tuple[str, str, str]:
        rendered = self._text.get_template(f"email/{event}.txt.j2").render(**context)
        subject, _, text = rendered.partition("\n")
        html = self._html.get_template(f"email/{event}.html.j2").render(**context)
        return subject.strip(), text.lstrip("\n"), html

    async def _inactive(self, person_ids: Iterable[str]) -> set[str]:
        """The ids among these of people the directory has deactivated (unknown ids count as active: the
        directory may not have synced them yet)."""
        found = [await asyncio.to_thread(self._store.get_person, pid) for pid in set(person_ids)]
        return {p.id for p in found if p is not None and not p.active}

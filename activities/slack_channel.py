"""Presenting a request in Slack: approvers asked (and reminded) in DMs with Approve/Deny buttons, every DM
kept up to date in place, the requester told each outcome in a DM of its own.

Idempotency: DMs are posted with :meth:`SlackChannel.post_once` under ``<request>:ask:<stage>:<person>``,
``<request>:remind:<stage>:<person>`` (a reminder: a new DM that takes over the buttons) and
``<request>:outcome:<status>``; the key is stored in the message's metadata and looked up before posting.
Updates are ``chat.update`` of the same message (idempotent), sent only when the rendering differs from
what the message already shows (``SlackMessageRef.shown``, a fingerprint kept in the state), which matters
most when the failure was a rate limit.

Stages: a new stage (an extension, a break-glass review) asks again with a new DM; the person's ref in the
state is *replaced* by the new message, the one with buttons, and the old one moves to
``ChannelState.earlier`` and is kept up to date too, without buttons. The buttons carry
``"<request id>|<stage>"`` (:func:`domain.channels.button_value`).

A person without a Slack account (looked up by email) is not asked in Slack, which is logged. This module
never builds a Slack client (it is given one) and never raises for a failure: it returns them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

from temporalio import activity

from activities.channel_errors import Failure, Failures
from activities.channel_views import (
    Checkpoint,
    decisions,
    may_decide,
    outcome_note,
    outcomes_to_tell,
    review_link,
)
from domain.channels import ChannelState, SlackMessageRef
from domain.identity import PersonRef
from domain.requests import RequestView
from domain.review_links import ReviewLinks
from integrations.slack import MessageRef, SlackChannel, SlackNotFoundError, render_blocks
from store import Store

__all__ = ["SlackPresenter", "ask_key", "outcome_key", "remind_key"]


def ask_key(request_id: str, stage: str, person_id: str) -> str:
    return f"{request_id}:ask:{stage}:{person_id}"


def remind_key(request_id: str, stage: str, person_id: str) -> str:
    return f"{request_id}:remind:{stage}:{person_id}"


def outcome_key(request_id: str, status: str) -> str:
    return f"{request_id}:outcome:{status}"


def _fingerprint(text: str, blocks: Sequence[dict[str, Any]], link: str | None) -> str:
    """What a Slack message shows, as a digest, with the review link left out (it is signed anew, with a
    timestamp, at every rendering, and the one already shown stays valid)."""
    rendered = json.dumps([text, blocks], sort_keys=True, ensure_ascii=False)
    if link:
        rendered = rendered.replace(link, "<review link>")
    return hashlib.sha256(rendered.encode()).hexdigest()


class SlackPresenter:
    """A request's Slack DMs; ``store`` names people the view does not (their DMs are in the state)."""

    def __init__(self, *, links: ReviewLinks | None, store: Store) -> None:
        self._links = links
        self._store = store

    async def present(
        self,
        slack: SlackChannel,
        view: RequestView,
        stage: str,
        ask: Sequence[PersonRef],
        state: ChannelState,
        checkpoint: Checkpoint,
        remind: Sequence[PersonRef] = (),
    ) -> list[Failure]:
        """Ask ``ask``, remind ``remind``, bring every DM in ``state`` up to date and tell the requester,
        changing ``state`` as it goes; the failures, the first transient one ending the attempt."""
        failures = Failures("slack")
        people = await self._people(view, ask, state.slack)
        fresh: set[str] = set()  # refs posted now: they already show the view as it is
        for person, reminder in [*((p, False) for p in ask), *((p, True) for p in remind)]:
            try:
                await self._ask(slack, view, stage, person, state, fresh, reminder=reminder)
            except Exception as exc:
                failures.add(exc, f"{'reminding' if reminder else 'asking'} {person.email}")
                if failures.stop:
                    return failures.items
            else:
                checkpoint()
        for person_id, ref in list(state.slack.items()):
            if person_id in fresh:
                continue
            recipient = people.get(person_id)
            try:
                text, blocks, shown = self._approver_message(
                    view, recipient, person_id, decision_open=may_decide(view, recipient)
                )
                if ref.shown == shown:
                    continue  # it already shows this
                await slack.update(MessageRef(channel=ref.channel, ts=ref.ts), text, blocks)
                state.slack[person_id] = ref.model_copy(update={"shown": shown})
                checkpoint()
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
                await self._refresh_earlier(slack, view, people.get(person_id), person_id, state, checkpoint)
            except Exception as exc:
                failures.add(exc, f"updating an earlier message of {person_id}")
                if failures.stop:
                    return failures.items
        for outcome in outcomes_to_tell(view):  # in order: a failure stops the later ones
            status = outcome.status.value
            if status in state.told:
                continue
            try:
                told = await self._tell_requester(slack, outcome)
            except Exception as exc:
                failures.add(exc, f"telling {view.requester.email} the outcome ({status})")
                return failures.items
            if told is not None:
                state.told[status] = told
                checkpoint()
        for status, ref in list(state.told.items()):
            try:
                await self._refresh_told(slack, view, status, ref, state, checkpoint)
            except SlackNotFoundError:
                del state.told[status]  # deleted by the requester
            except Exception as exc:
                failures.add(exc, f"updating the {status} message of {view.requester.email}")
                if failures.stop:
                    break
        return failures.items

    async def _people(
        self, view: RequestView, ask: Iterable[PersonRef], ids: Iterable[str]
    ) -> dict[str, PersonRef]:
        """Person id -> PersonRef for every id given, from the view and ``ask``, else from the directory."""
        known: dict[str, PersonRef] = {view.requester.id: view.requester}
        for person in [*view.eligible_approvers, *ask, *(d.approver for d in decisions(view))]:
            known.setdefault(person.id, person)
        for person_id in ids:
            if person_id not in known:
                found = await asyncio.to_thread(self._store.get_person, person_id)
                if found is not None:
                    known[person_id] = found.ref
        return known

    async def _refresh_earlier(
        self,
        slack: SlackChannel,
        view: RequestView,
        recipient: PersonRef | None,
        person_id: str,
        state: ChannelState,
        checkpoint: Checkpoint,
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
            checkpoint()
        if gone:
            state.earlier[person_id] = [ref for ref in refs if ref not in gone]

    def _approver_message(
        self, view: RequestView, recipient: PersonRef | None, person_id: str, *, decision_open: bool
    ) -> tuple[str, list[dict[str, Any]], str]:
        """An approver's DM as it should look now (``request_updated``), and its fingerprint."""
        link = review_link(self._links, view, person_id)
        text, blocks = render_blocks(
            "request_updated",
            view=view,
            recipient=recipient,
            link=link,
            decision_open=decision_open,
            note=outcome_note(view),
        )
        return text, blocks, _fingerprint(text, blocks, link)

    async def _refresh_told(
        self,
        slack: SlackChannel,
        view: RequestView,
        status: str,
        ref: SlackMessageRef,
        state: ChannelState,
        checkpoint: Checkpoint,
    ) -> None:
        """Bring a message that told the requester an outcome up to date: it shows the request as it is
        now, and an earlier outcome's message says it was overtaken."""
        notes = [outcome_note(view)] if view.outcome_note else []
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
        checkpoint()

    async def _ask(
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
            link=review_link(self._links, view, person.id),
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

    async def _tell_requester(self, slack: SlackChannel, view: RequestView) -> SlackMessageRef | None:
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
            note=outcome_note(view),
        )
        posted = await slack.post_once(
            user,
            text,
            blocks,
            key=outcome_key(view.id, view.status.value),
            metadata={"request_id": view.id, "status": view.status.value},
        )
        return SlackMessageRef(channel=posted.channel, ts=posted.ts, shown=_fingerprint(text, blocks, None))

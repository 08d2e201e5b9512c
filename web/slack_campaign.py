"""Campaign decisions from a reviewer's Slack digest (``activities/campaign_digests.py`` posts it): the
Keep / Revoke buttons of each item and "Keep all shown" / "Revoke all shown", handled by the Slack edge
(:class:`web.slack_app.SlackEdge` registers them next to the request buttons). Where the campaign wants a
reason for a verdict, its buttons ("Revoke…") open a form asking for it, and the submitted form decides
as a click would, with the reason.

Who is acting is the edge's business, as for requests: Slack's signature (checked before any handler runs),
then the Slack user → email → an active directory person (:meth:`SlackEdge.actor`). A button's value binds
the campaign, the stage the reviewer saw and the item(s) (``integrations.slack.campaign_digest``); a click
for a stage that is no longer the open one is refused here, and everything else goes through
:meth:`CampaignService.decide` — the same rules as the web page, the REST API and the CLI (their own access,
another reviewer's item, a closed stage, a missing reason). Each refusal is answered in an ephemeral message
with its reason and recorded as a refused attempt; nothing else changes. The bulk buttons act on the items
they showed that are still pending (a decision made meanwhile elsewhere is not overwritten).

The digest itself is brought up to date by the campaign's workflow after the service signals it
(``decisions_recorded`` names the reviewers), whatever channel the decision came from.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime
from typing import Any, Protocol

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond

from domain.campaign_report import RefusedAttempt
from domain.campaign_state import CampaignStatus
from domain.identity import Actor
from integrations.slack import SlackChannel, SlackError, render_view
from integrations.slack.campaign_digest import (
    BULK_ACTIONS,
    CAMPAIGN_ACTIONS,
    CAMPAIGN_REASON_BLOCK,
    CAMPAIGN_REASON_INPUT,
    CAMPAIGN_REASON_VIEW,
    REASON_ACTIONS,
    DigestTarget,
    parse_digest_value,
    parse_reason_form_metadata,
    reason_form_metadata,
)
from store import Store
from web.campaign_service import MAX_REASON, CampaignService, DecideResult, DecisionRequest
from web.service import ServiceError

log = logging.getLogger("grantflow.web.slack.campaigns")

ACTIONS = re.compile("^(" + "|".join(re.escape(a) for a in CAMPAIGN_ACTIONS) + ")$")
ALL_DECIDED = "Every item shown is decided already; nothing was changed."
REASON_CLICKS = re.compile("^(" + "|".join(re.escape(a) for a in REASON_ACTIONS) + ")$")
MAX_REFUSALS_TOLD = 5


class SlackEdgeParts(Protocol):
    """What the handlers use of :class:`web.slack_app.SlackEdge`."""

    app: AsyncApp
    store: Store
    channel: SlackChannel

    async def actor(self, user_id: str) -> Actor: ...

    async def _tell(self, respond: AsyncRespond | None, body: dict[str, Any], text: str) -> None: ...


class CampaignActions:
    """The digest's button handlers, bound to one edge; ``not_in_directory`` is the exception its
    ``actor`` raises (with the sentence to show) for a Slack user who is no active directory person.
    ``campaigns`` is set by the web app (None: the buttons answer that campaigns are not served here)."""

    def __init__(self, edge: SlackEdgeParts, not_in_directory: type[Exception]) -> None:
        self._edge = edge
        self._not_in_directory = not_in_directory
        self.campaigns: CampaignService | None = None
        edge.app.action(ACTIONS)(self._on_click)
        edge.app.action(REASON_CLICKS)(self._on_reason_click)
        edge.app.view(CAMPAIGN_REASON_VIEW)(self._on_reason_submitted)

    async def _on_click(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()  # Slack wants an answer within three seconds; the decision may take longer
        action = (body.get("actions") or [{}])[0]
        action_id = str(action.get("action_id") or "")
        clicked = await self._clicked(body, respond)
        if clicked is None:
            return
        service, target, actor = clicked
        await self._decide(service, target, CAMPAIGN_ACTIONS[action_id], "", actor, respond, body)

    async def _on_reason_click(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        """A verdict that needs a reason: open the form asking for it (within Slack's three seconds of the
        click, while its trigger id is valid). Nothing is decided until the form is submitted."""
        await ack()
        edge = self._edge
        action = (body.get("actions") or [{}])[0]
        action_id = str(action.get("action_id") or "")
        clicked = await self._clicked(body, respond)
        if clicked is None:
            return
        service, target, actor = clicked
        try:
            stale = await self._stale(service, target)
            if stale is not None:
                await self._record_refused(target, actor.describe(), stale)
                await edge._tell(respond, body, f"{stale}; nothing was recorded.")
                return
            if action_id in BULK_ACTIONS:
                pending = await self._still_pending(target)
                if not pending:
                    await edge._tell(respond, body, ALL_DECIDED)
                    return
                target = DigestTarget(target.campaign_id, target.stage, tuple(pending))
            record = await service.campaign(target.campaign_id)
            found = await asyncio.to_thread(edge.store.items_by_id, target.campaign_id, list(target.item_ids))
            verdict = REASON_ACTIONS[action_id]
            form = render_view(
                "campaign_reason_modal",
                verdict=verdict,
                campaign_name=record.name,
                stage=target.stage + 1,
                items=[found[i] for i in target.item_ids if i in found],
                metadata=reason_form_metadata(
                    target, verdict, _conversation(body), bulk=action_id in BULK_ACTIONS
                ),
            )
            await edge.channel.open_modal(str(body.get("trigger_id") or ""), form)
        except ServiceError as exc:
            await edge._tell(respond, body, exc.detail if exc.detail.endswith(".") else f"{exc.detail}.")
        except SlackError as exc:
            log.warning("could not open the reason form on campaign %s: %s", target.campaign_id, exc)
            await edge._tell(
                respond, body, f"grantflow could not open the reason form ({exc.message}); click again."
            )

    async def _on_reason_submitted(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        """The reason form: an empty or overlong reason keeps the form open with the error under the
        field (Slack's ``response_action: errors``); otherwise the decision goes the way a click's does."""
        edge = self._edge
        user_id = str((body.get("user") or {}).get("id") or "")
        try:
            form = parse_reason_form_metadata(str(view.get("private_metadata") or ""))
        except ValueError as exc:
            await self._form_error(ack, str(exc))
            return
        values = ((view.get("state") or {}).get("values") or {}).get(CAMPAIGN_REASON_BLOCK) or {}
        reason = str((values.get(CAMPAIGN_REASON_INPUT) or {}).get("value") or "").strip()
        if not reason:
            await self._form_error(ack, "Say why: it is kept as evidence")
            return
        if len(reason) > MAX_REASON:
            await self._form_error(ack, f"Keep the reason under {MAX_REASON} characters")
            return
        service = self.campaigns
        if service is None:
            await self._form_error(ack, "Campaign decisions are not served here")
            return
        try:
            actor = await edge.actor(user_id)
        except Exception as exc:
            if not isinstance(exc, self._not_in_directory):
                raise
            if getattr(exc, "refusal", True):
                await self._record_refused(form.target, f"slack user {user_id}", str(exc))
            await self._form_error(ack, str(exc))
            return
        await ack()  # closes the form; the decision may take longer than Slack's three seconds
        where: dict[str, Any] = {"user": {"id": user_id}, "channel_id": form.channel}
        await self._decide(service, form.target, form.verdict, reason, actor, None, where, bulk=form.bulk)

    @staticmethod
    async def _form_error(ack: AsyncAck, sentence: str) -> None:
        """Keep the form open with ``sentence`` under the reason field (clipped as the deny form's are)."""
        text = sentence if len(sentence) <= 150 else sentence[:149] + "…"
        await ack(response_action="errors", errors={CAMPAIGN_REASON_BLOCK: text})

    async def _clicked(
        self, body: dict[str, Any], respond: AsyncRespond
    ) -> tuple[CampaignService, DigestTarget, Actor] | None:
        """What a digest button was clicked for and by whom; None after telling the clicker why not."""
        edge = self._edge
        action = (body.get("actions") or [{}])[0]
        user_id = str((body.get("user") or {}).get("id") or "")
        try:
            target = parse_digest_value(str(action.get("value") or ""))
        except ValueError as exc:
            await edge._tell(respond, body, f"{exc}; nothing was recorded.")
            return None
        service = self.campaigns
        if service is None:
            await edge._tell(respond, body, "campaign decisions are not served here; nothing was recorded.")
            return None
        try:
            actor = await edge.actor(user_id)
        except Exception as exc:
            if not isinstance(exc, self._not_in_directory):
                raise
            if getattr(exc, "refusal", True):  # False: Slack could not be asked, nothing was attempted
                await self._record_refused(target, f"slack user {user_id}", str(exc))
            await edge._tell(respond, body, str(exc))
            return None
        return service, target, actor

    async def _decide(
        self,
        service: CampaignService,
        target: DigestTarget,
        verdict: str,
        reason: str,
        actor: Actor,
        respond: AsyncRespond | None,
        body: dict[str, Any],
        *,
        bulk: bool | None = None,
    ) -> None:
        """Record ``verdict`` on the target's items through the service (the same rules as every channel)
        and tell the reviewer what was recorded and what refused. A bulk button acts on the items it showed
        that are still pending: a decision made meanwhile elsewhere is not overwritten."""
        edge = self._edge
        if bulk is None:
            action = (body.get("actions") or [{}])[0]
            bulk = str(action.get("action_id") or "") in BULK_ACTIONS
        try:
            stale = await self._stale(service, target)
            if stale is not None:
                await self._record_refused(target, actor.describe(), stale)
                await edge._tell(respond, body, f"{stale}; nothing was recorded.")
                return
            items = list(target.item_ids)
            if bulk:
                items = await self._still_pending(target)
                if not items:
                    await edge._tell(respond, body, ALL_DECIDED)
                    return
            result = await service.decide(
                target.campaign_id,
                [DecisionRequest(item_id=i, verdict=verdict, reason=reason) for i in items],
                actor,
                stage=target.stage,  # the stage may close between the check above and this call
            )
        except ServiceError as exc:
            await edge._tell(respond, body, exc.detail if exc.detail.endswith(".") else f"{exc.detail}.")
            return
        except Exception as exc:
            log.exception("a campaign decision from Slack failed (%s)", target.campaign_id)
            await edge._tell(
                respond, body, f"grantflow could not record your decision ({type(exc).__name__})"
            )
            return
        await edge._tell(respond, body, decided_sentence(result, verdict))

    @staticmethod
    async def _stale(service: CampaignService, target: DigestTarget) -> str | None:
        """Why a click for ``target``'s stage cannot count now (the stage closed or moved on), or None."""
        record = await service.campaign(target.campaign_id)
        if record.status is not CampaignStatus.OPEN:
            return f"campaign {record.id} is {record.status.value}: decisions are closed"
        if record.stage != target.stage or not record.stage_open:
            return (
                f"stage {target.stage + 1} of campaign {record.id} is closed; "
                "decisions on its items are no longer accepted"
            )
        return None

    async def _still_pending(self, target: DigestTarget) -> list[str]:
        store = self._edge.store
        decided = await asyncio.to_thread(
            store.stage_verdicts, target.campaign_id, target.stage, list(target.item_ids)
        )
        return [i for i in target.item_ids if i not in decided]

    async def _record_refused(self, target: DigestTarget, actor: str, sentence: str) -> None:
        """A click refused before the service saw it is evidence too (as the service records its own)."""
        store = self._edge.store
        try:
            if await asyncio.to_thread(store.campaign, target.campaign_id) is None:
                return
            now = datetime.now(UTC)
            for item_id in target.item_ids:
                attempt = RefusedAttempt(
                    item_id=item_id, actor=actor, channel="slack", at=now, reason=sentence
                )
                await asyncio.to_thread(store.record_refusal, target.campaign_id, attempt)
            await asyncio.to_thread(
                store.append_ledger,
                kind="campaign.decision_refused",
                subject=target.campaign_id,
                actor=actor,
                channel="slack",
                data={"items": list(target.item_ids), "refusal": sentence},
            )
        except Exception:
            log.exception("could not record a refused Slack click on campaign %s", target.campaign_id)


def _conversation(body: dict[str, Any]) -> str | None:
    """The conversation a click came from (the digest's DM), where the answer to its form goes."""
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    return str(channel) if channel else None


def decided_sentence(result: DecideResult, verdict: str) -> str:
    """What the reviewer is told after a click: what was recorded, and why anything was refused."""
    done = "keep" if verdict == "keep" else "revoke"
    parts: list[str] = []
    if result.recorded:
        n = len(result.recorded)
        parts.append(
            f"Recorded: {done} for {n} item{'s' if n != 1 else ''}. You can change it until the stage closes."
        )
    if result.refused:
        reasons = [f"{item}: {why}" for item, why in list(result.refused.items())[:MAX_REFUSALS_TOLD]]
        more = len(result.refused) - len(reasons)
        head = "Nothing was recorded" if not result.recorded else "Not recorded"
        parts.append(f"{head} for {len(result.refused)} item(s): " + "; ".join(reasons))
        if more > 0:
            parts.append(f"(and {more} more refusals)")
    return " ".join(parts) or "Nothing was recorded."

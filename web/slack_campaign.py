"""Campaign decisions from a reviewer's Slack digest (``activities/campaign_digests.py`` posts it): the
Keep / Revoke buttons of each item and "Keep all shown" / "Revoke all shown", handled by the Slack edge
(:class:`web.slack_app.SlackEdge` registers them next to the request buttons).

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
from integrations.slack.campaign_digest import (
    BULK_ACTIONS,
    CAMPAIGN_ACTIONS,
    DigestTarget,
    parse_digest_value,
)
from store import Store
from web.campaign_service import CampaignService, DecideResult, DecisionRequest
from web.service import ServiceError

log = logging.getLogger("grantflow.web.slack.campaigns")

ACTIONS = re.compile("^(" + "|".join(re.escape(a) for a in CAMPAIGN_ACTIONS) + ")$")
MAX_REFUSALS_TOLD = 5


class SlackEdgeParts(Protocol):
    """What the handlers use of :class:`web.slack_app.SlackEdge`."""

    app: AsyncApp
    store: Store

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

    async def _on_click(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()  # Slack wants an answer within three seconds; the decision may take longer
        edge = self._edge
        action = (body.get("actions") or [{}])[0]
        action_id = str(action.get("action_id") or "")
        verdict = CAMPAIGN_ACTIONS[action_id]
        user_id = str((body.get("user") or {}).get("id") or "")
        try:
            target = parse_digest_value(str(action.get("value") or ""))
        except ValueError as exc:
            await edge._tell(respond, body, f"{exc}; nothing was recorded.")
            return
        service = self.campaigns
        if service is None:
            await edge._tell(respond, body, "campaign decisions are not served here; nothing was recorded.")
            return
        try:
            actor = await edge.actor(user_id)
        except Exception as exc:
            if not isinstance(exc, self._not_in_directory):
                raise
            if getattr(exc, "refusal", True):  # False: Slack could not be asked, nothing was attempted
                await self._record_refused(target, f"slack user {user_id}", str(exc))
            await edge._tell(respond, body, str(exc))
            return
        try:
            stale = await self._stale(service, target)
            if stale is not None:
                await self._record_refused(target, actor.describe(), stale)
                await edge._tell(respond, body, f"{stale}; nothing was recorded.")
                return
            items = list(target.item_ids)
            if action_id in BULK_ACTIONS:
                items = await self._still_pending(target)
                if not items:
                    await edge._tell(
                        respond, body, "Every item shown is decided already; nothing was changed."
                    )
                    return
            result = await service.decide(
                target.campaign_id,
                [DecisionRequest(item_id=i, verdict=verdict) for i in items],
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

"""Campaign decisions made in Jira: a reviewer commenting on their digest issue
(``activities/campaign_jira_digests.py`` opens it; the syntax is ``integrations/jira_campaign_digest.py``'s:
``keep it-… it-…``, ``revoke all reason: left the team``, one command a line).

A ``jira:issue_updated`` carrying a comment on an issue labelled
``grantflow-<campaign>:digest:<stage>:<person>`` is read here (the edge routes it before request
decisions). Who is acting: the comment's author must be the Jira account of the person the issue is for
(found by their email, as the digest's assignee was); anyone else's command is refused, recorded as a
refused attempt and answered on the issue. The reviewer's commands go through
:meth:`CampaignService.decide` with ``stage`` = the issue's stage — the same rules as the web page, Slack
and the CLI (a closed stage, another reviewer's item, their own access, a missing reason are refused there
and recorded). Each comment is answered with a comment saying what was recorded and what was refused and
why. The description is refreshed by the campaign's workflow after the service signals it, as for every
channel.

Transitions: where ``jira_digest_keep_all_status`` / ``jira_digest_revoke_all_status`` are set (the
statuses a project's "Keep all" / "Revoke all" transitions lead to, by id or name), the reviewer moving
their issue there is "keep all" / "revoke all" (the transition's comment is the reason), answered in the
same way; the issue is left where they put it (the stage's close moves it on). Other status changes decide
nothing. Comments that hold no command (a question, a discussion) and grantflow's own comments and moves
are ignored. Each comment or move is handled once: its key is the signed changelog or comment id
(``web.jira.authenticity.event_key``) and a ``jira.webhook`` marker under the campaign holds the answer,
which a redelivery only posts again (``JiraTickets.comment`` never posts the
same text twice).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from domain.campaign_report import RefusedAttempt
from domain.campaign_state import CampaignStatus
from domain.identity import Actor
from integrations.jira_campaign_digest import (
    CommentSyntaxError,
    DecisionCommand,
    DigestIssueId,
    listed_pending,
    parse_decision_comment,
    parse_digest_label_id,
)
from integrations.jira_tickets import StatusChange, parse_status_change
from store import Store
from web.campaign_service import CampaignService, DecideResult, DecisionRequest
from web.jira.authenticity import Markers, event_key
from web.jira.connection import CHANNEL, JiraConnection, Malformed, Outcome, Transient, field_text
from web.service import ServiceError, Unavailable
from web.slack_campaign import decided_sentence

log = logging.getLogger("grantflow.web.jira.campaigns")

_REASON_PREFIX = re.compile(r"^\s*reason\s*:", re.IGNORECASE)


def digest_issue(payload: Mapping[str, Any], label_prefix: str) -> DigestIssueId | None:
    """The digest a delivery's issue is, from its labels; None for any other issue."""
    issue = payload.get("issue")
    fields = issue.get("fields") if isinstance(issue, Mapping) else None
    labels = fields.get("labels") if isinstance(fields, Mapping) else None
    for label in labels if isinstance(labels, list) else []:
        if isinstance(label, str) and label.startswith(label_prefix):
            found = parse_digest_label_id(label[len(label_prefix) :])
            if found is not None:
                return found
    return None


class CampaignDigestComments:
    """Reads reviewers' comments on digest issues as decisions. ``campaigns`` is set by the web app
    (None: a command is answered that campaign decisions are not served here)."""

    def __init__(self, *, store: Store, connection: JiraConnection, markers: Markers) -> None:
        self.store = store
        self.connection = connection
        self.markers = markers
        self.campaigns: CampaignService | None = None

    async def handle(self, payload: dict[str, Any], identifier: str, digest: DigestIssueId) -> Outcome:
        issue = payload.get("issue") or {}
        key = str(issue.get("key") or "")
        try:
            change = parse_status_change(payload, identifier)
        except ValueError as exc:  # a status change of no issue
            raise Malformed(str(exc)) from None
        comment = payload.get("comment")
        if change is None and (not isinstance(comment, Mapping) or not comment.get("id")):
            return Outcome("ignored", f"{key} is a campaign digest: only comments and its bulk moves decide")
        if await self.connection.by_ourselves(payload):
            return Outcome("ignored", "made by grantflow's own Jira user")
        problem = ""
        if change is not None:
            verdict = self._bulk_verdict(change)
            if verdict is None:
                return Outcome("ignored", f"{key} moved to {change.to_status_name}: not a decision")
            reason = field_text(comment.get("body")) if isinstance(comment, Mapping) else ""
            reason = _REASON_PREFIX.sub("", reason).strip()
            commands = [DecisionCommand(verdict, (), every_pending=True, reason=reason)]
            account_id = change.actor_account_id or ""
            who = change.actor_display_name or account_id or "someone"
            head = f"{who} moved this issue to {change.to_status_name} ({verdict} all):"
            what = f"the move to {change.to_status_name}"
        else:
            assert isinstance(comment, Mapping)
            try:
                commands = parse_decision_comment(field_text(comment.get("body")))
            except CommentSyntaxError as exc:
                commands, problem = [], str(exc)
            if not commands and not problem:
                return Outcome("ignored", f"comment {comment['id']} on {key} holds no decision")
            author = comment.get("author") if isinstance(comment.get("author"), Mapping) else {}
            assert isinstance(author, Mapping)
            account_id = str(author.get("accountId") or "")
            who = str(author.get("displayName") or account_id or "someone")
            head = f"Comment {comment['id']} by {who}:"
            what = f"comment {comment['id']}"

        marker_key = event_key(payload) or identifier
        marker = await self.markers.find(digest.campaign_id, marker_key)
        if marker is not None:
            await self._answer(key, str(marker.get("comment") or ""))
            return Outcome("duplicate", f"{what} was handled already")

        reviewer = await asyncio.to_thread(self.store.get_person, digest.person_id)
        reviewer_account = await self._account_of(reviewer.email) if reviewer is not None else None
        named = [i for c in commands for i in c.item_ids]
        if reviewer is None or not reviewer.active or not account_id or account_id != reviewer_account:
            whose = reviewer.email if reviewer is not None else "its reviewer"
            sentence = f"only {whose}, whom this issue is for, can decide here"
            await self._record_refused(digest, named, f"jira user {account_id or who}", sentence)
            answer, outcome = f"{head} {sentence}; nothing was recorded.", Outcome("refused", sentence)
        elif problem:
            answer, outcome = f"{head} {problem}; nothing was recorded.", Outcome("refused", problem)
        else:
            actor = Actor(person=reviewer.ref, channel=CHANNEL, channel_user_id=account_id)
            answer, outcome = await self._decide(digest, commands, actor, head)
        await self.markers.write(
            digest.campaign_id,
            marker_key,
            who,
            {"issue": key, "event": what, "outcome": outcome.status, "comment": answer},
        )
        await self._answer(key, answer)
        return outcome

    def _bulk_verdict(self, change: StatusChange) -> str | None:
        """keep / revoke when the issue was moved into the status configured for "keep all" / "revoke
        all" (by status id first, then name, as request tickets' decisions are matched), else None."""
        settings = self.connection.settings
        moved_to = (change.to_status_id.lower(), (change.to_status_name or "").lower())
        for verdict, configured in (
            ("keep", settings.jira_digest_keep_all_status),
            ("revoke", settings.jira_digest_revoke_all_status),
        ):
            wanted = configured.strip().lower()
            if wanted and wanted in moved_to:
                return verdict
        return None

    async def _decide(
        self, digest: DigestIssueId, commands: list[DecisionCommand], actor: Actor, head: str
    ) -> tuple[str, Outcome]:
        service = self.campaigns
        if service is None:
            sentence = "campaign decisions are not served here"
            return f"{head} {sentence}; nothing was recorded.", Outcome("refused", sentence)
        parts: list[str] = []
        recorded = 0
        try:
            stale = await self._stale(service, digest)
            if stale is not None:
                await self._record_refused(
                    digest, [i for c in commands for i in c.item_ids], actor.describe(), stale
                )
                return f"{head} {stale}; nothing was recorded.", Outcome("refused", stale)
            for command in commands:
                items = list(command.item_ids) or await self._pending(service, digest)
                if not items:
                    parts.append(f"{command.verdict} all: every item is decided already.")
                    continue
                try:
                    wanted = [
                        DecisionRequest(item_id=i, verdict=command.verdict, reason=command.reason)
                        for i in items
                    ]
                except ValidationError:
                    parts.append(f"{command.verdict}: the reason is too long; nothing was recorded.")
                    continue
                result: DecideResult = await service.decide(
                    digest.campaign_id, wanted, actor, stage=digest.stage
                )
                recorded += len(result.recorded)
                parts.append(decided_sentence(result, command.verdict))
        except Unavailable as exc:
            if not parts:
                raise Transient(exc.detail) from exc
            parts.append(f"grantflow could not record the rest ({exc.detail}); comment them again.")
        except ServiceError as exc:
            parts.append(exc.detail if exc.detail.endswith(".") else f"{exc.detail}.")
        status = "counted" if recorded else "refused"
        return f"{head} " + " ".join(parts), Outcome(status, " ".join(parts))

    async def _account_of(self, email: str) -> str | None:
        def ask() -> str | None:
            _, tickets = self.connection.ensure_client()
            return tickets.account_id_for_email(email)

        return await self.connection.run(ask)

    @staticmethod
    async def _stale(service: CampaignService, digest: DigestIssueId) -> str | None:
        record = await service.campaign(digest.campaign_id)
        if record.status is not CampaignStatus.OPEN:
            return f"campaign {record.id} is {record.status.value}: decisions are closed"
        if record.stage != digest.stage or not record.stage_open:
            return (
                f"stage {digest.stage + 1} of campaign {record.id} is closed; "
                "decisions on its items are no longer accepted"
            )
        return None

    async def _pending(self, service: CampaignService, digest: DigestIssueId) -> list[str]:
        """The items the issue lists that are still pending: those the reviewer reviews in the stage,
        undecided, never their own access, at most as many as a description lists."""
        items = await service.items_for_reviewer(digest.campaign_id, digest.person_id)
        ids = [
            i.id
            for i in items
            if i.stage == digest.stage and not (i.subject.is_person and i.subject.id == digest.person_id)
        ]
        decided = await asyncio.to_thread(self.store.stage_verdicts, digest.campaign_id, digest.stage, ids)
        return listed_pending([i for i in ids if i not in decided])

    async def _record_refused(
        self, digest: DigestIssueId, item_ids: list[str], actor: str, sentence: str
    ) -> None:
        """A comment refused before the service saw it is evidence too (as the service records its own)."""
        try:
            if await asyncio.to_thread(self.store.campaign, digest.campaign_id) is None:
                return
            now = datetime.now(UTC)
            for item_id in item_ids:
                attempt = RefusedAttempt(
                    item_id=item_id, actor=actor, channel=CHANNEL, at=now, reason=sentence
                )
                await asyncio.to_thread(self.store.record_refusal, digest.campaign_id, attempt)
            await asyncio.to_thread(
                self.store.append_ledger,
                kind="campaign.decision_refused",
                subject=digest.campaign_id,
                actor=actor,
                channel=CHANNEL,
                data={"items": item_ids, "stage": digest.stage + 1, "refusal": sentence},
            )
        except Exception as exc:
            raise Transient(f"the refused attempt could not be recorded ({type(exc).__name__})") from exc

    async def _answer(self, key: str, text: str) -> None:
        if not text:
            return

        def post() -> None:
            _, tickets = self.connection.ensure_client()
            tickets.comment(key, text)

        await self.connection.run(post)

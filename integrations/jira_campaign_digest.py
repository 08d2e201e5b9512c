"""A reviewer's campaign digest in Jira: the issue's label, its description
(``templates/jira/campaign_digest.j2``) and the comment syntax a reviewer decides with.

One issue per reviewer and campaign stage, assigned to the reviewer, due at the stage's deadline, listing
every item they review in it (subject, access, recommendation, item id, what was decided). The label
``grantflow-<campaign>:digest:<stage>:<person>`` (:func:`digest_label_id`, the same key the Slack digest
carries in its metadata) lets a retried notice find the issue before opening another, and lets the Jira
edge know a digest issue from a request's ticket.

Comment syntax (:func:`parse_decision_comment`), one command a line, case-insensitive, other lines ignored::

    keep it-0a1b… it-2c3d…
    revoke it-0a1b… reason: left the team
    keep all
    revoke all reason: the project ended

``all`` means the items the issue lists that are still pending when the comment is read (pending items are
listed first, at most :data:`MAX_LISTED`; the rest are on the review page, as in Slack). The reason is what
follows ``reason:`` on the line. Pure functions: nothing here talks to Jira.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from domain.campaigns import CampaignItem
from templates import template_environment

DIGEST_MARK = ":digest:"

_COMMAND = re.compile(r"^\s*(keep|revoke)\b(.*)$", re.IGNORECASE)
_REASON = re.compile(r"\breason\s*:\s*(.*)$", re.IGNORECASE)
_ITEM_ID = re.compile(r"^it-[0-9a-f]{1,62}$")
_TEXT = template_environment(autoescape=False)
_TEXT.filters["utc"] = lambda when: when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
MAX_LISTED = 100
"""Items one description lists (about 300 characters each); the rest are on the review page."""
MAX_COMMANDS = 20
"""Commands read from one comment; a longer comment is refused as a whole (nothing is decided)."""


def digest_label_id(campaign_id: str, stage: int, person_id: str) -> str:
    """The grantflow id a digest issue's label carries (``JiraTickets.jira_label`` adds the prefix)."""
    return f"{campaign_id}{DIGEST_MARK}{stage}:{person_id}"


@dataclass(frozen=True, slots=True)
class DigestIssueId:
    campaign_id: str
    stage: int
    person_id: str


def parse_digest_label_id(grantflow_id: str) -> DigestIssueId | None:
    """What a digest issue's grantflow id names, or None when it is not a digest's (a request's ticket)."""
    campaign_id, mark, rest = grantflow_id.partition(DIGEST_MARK)
    stage, sep, person_id = rest.partition(":")
    if not mark or not campaign_id or not sep or not person_id or not stage.isdigit():
        return None
    return DigestIssueId(campaign_id, int(stage), person_id)


@dataclass(frozen=True, slots=True)
class JiraDigestRow:
    item: CampaignItem
    verdict: str | None
    """The reviewer's decision in this stage so far (keep / revoke), None while pending."""
    escalation: str = ""
    """Who else may decide the item because it was escalated ("Escalated to you: …"); "" when nobody."""


def pick_rows(rows: Sequence[JiraDigestRow]) -> list[JiraDigestRow]:
    """The rows a description lists: pending items first, by id, then decided ones, at most
    :data:`MAX_LISTED` (Jira keeps at most 32,767 characters of a description)."""
    return sorted(rows, key=lambda r: (r.verdict is not None, r.item.id))[:MAX_LISTED]


def listed_pending(pending_ids: Sequence[str]) -> list[str]:
    """The pending items a description lists, of those pending now: what ``keep all`` / ``revoke all``
    decide (as Slack's bulk buttons decide the items they show, never unseen ones)."""
    return sorted(pending_ids)[:MAX_LISTED]


def render_description(
    *,
    campaign_name: str,
    stage: int,
    stages: int,
    closes_at: datetime | None,
    default_sentence: str,
    rows: Sequence[JiraDigestRow],
    reasons_required: Sequence[str] = (),
    open_: bool = True,
) -> str:
    """The issue's description as it should read now; ``stage`` is 0-based."""
    ordered = pick_rows(rows)
    return _TEXT.get_template("jira/campaign_digest.j2").render(
        campaign_name=campaign_name,
        stage=stage + 1,
        stages=stages,
        closes_at=closes_at,
        default_sentence=default_sentence,
        rows=ordered,
        total=len(rows),
        left_out=len(rows) - len(ordered),
        pending=sum(1 for r in rows if r.verdict is None),
        kept=sum(1 for r in rows if r.verdict == "keep"),
        revoked=sum(1 for r in rows if r.verdict == "revoke"),
        reasons_required=list(reasons_required),
        open=open_,
    )


def render_outcome_comment(context: dict[str, Any]) -> str:
    """The comment that tells a reviewer, on their last digest issue, how the campaign ended for their
    items (``templates/jira/campaign_outcome.j2``; ``context`` as the outcome email's). Its first line
    names the campaign, so the same outcome always reads the same (``JiraTickets.comment`` then posts
    it once)."""
    return _TEXT.get_template("jira/campaign_outcome.j2").render(**context)


def digest_summary(campaign_name: str, stage: int, stages: int, reviewer_email: str) -> str:
    return f"Access review: {campaign_name} (stage {stage + 1} of {stages}) for {reviewer_email}"


@dataclass(frozen=True, slots=True)
class DecisionCommand:
    verdict: str  # keep / revoke
    item_ids: tuple[str, ...]
    """The items named; empty when ``all``."""
    every_pending: bool
    reason: str


class CommentSyntaxError(ValueError):
    """A comment that means to decide but cannot be read; its message says how to write it."""


USAGE = 'write "keep <item id> …", "revoke <item id> … reason: why", "keep all" or "revoke all"'


def parse_decision_comment(text: str) -> list[DecisionCommand]:
    """The decisions a comment asks for, one a line; an empty list when no line starts with keep or
    revoke (a comment that is not a decision). Raises :class:`CommentSyntaxError` for a command line that
    names nothing, names something that is not an item id, or mixes ``all`` with ids."""
    commands: list[DecisionCommand] = []
    for line in text.splitlines():
        found = _COMMAND.match(line)
        if found is None:
            continue
        verdict, rest = found.group(1).lower(), found.group(2)
        reason_match = _REASON.search(rest)
        reason = reason_match.group(1).strip() if reason_match else ""
        words = (rest[: reason_match.start()] if reason_match else rest).replace(",", " ").split()
        if not words:
            raise CommentSyntaxError(f"{line.strip()!r} names no item: {USAGE}")
        if [w.lower() for w in words] == ["all"]:
            commands.append(DecisionCommand(verdict, (), every_pending=True, reason=reason))
            continue
        wrong = [w for w in words if not _ITEM_ID.match(w.lower())]
        if wrong:
            raise CommentSyntaxError(
                f"{', '.join(wrong[:3])} in {line.strip()!r} is not an item id of this issue: {USAGE}"
            )
        ids = tuple(dict.fromkeys(w.lower() for w in words))
        commands.append(DecisionCommand(verdict, ids, every_pending=False, reason=reason))
        if len(commands) > MAX_COMMANDS:
            raise CommentSyntaxError(f"at most {MAX_COMMANDS} commands per comment")
    return commands

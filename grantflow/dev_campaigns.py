"""Campaign digests in ``grantflow dev``: sandbox controls that act as a reviewer in the Slack and Jira
stand-ins, as ``dev_channels`` does for requests (these routes exist only in ``grantflow dev``).

- ``POST /_sandbox/campaign/digest`` shows what a reviewer was sent about a campaign: their Slack digest
  (its rows, with the item id each row's buttons carry), their Jira digest issue and the emails with their
  review link;
- ``POST /_sandbox/campaign/slack-click`` presses Keep / Revoke on an item's row of the reviewer's digest
  DM, or "Keep all shown" / "Revoke all shown", exactly as Slack would: the driver posts grantflow the
  signed ``block_actions`` with the button the message carries; where the campaign wants a reason for the
  verdict (the button opened grantflow's form with ``views.open``), the form is submitted with the reason
  (``view_submission``). It answers with what Slack showed the person (ephemeral messages, a form kept
  open with its error) and the digest once grantflow has updated it in place;
- ``POST /_sandbox/campaign/jira`` comments on the reviewer's digest issue or moves it by a transition, as
  that person in Jira's UI; the Jira stand-in sends grantflow the signed webhook, and the route answers
  with grantflow's comments and the issue's status.

Each answers ``recorded``: whether grantflow recorded a decision (its answer starts with "Recorded:"), so
``grantflow sandbox campaign-click`` / ``campaign-jira`` exit 1 when grantflow answered and recorded
nothing (a comment with no command, a move that is no decision, are not answered: exit 0). Refusals before
anything is sent (no such campaign, no digest for that person, no row for that item in their digest) are
4xx with the sentence to show.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from integrations.slack.campaign_digest import (
    BULK_ACTIONS,
    CAMPAIGN_ACTIONS,
    CAMPAIGN_REASON_BLOCK,
    CAMPAIGN_REASON_INPUT,
    REASON_ACTIONS,
)

if TYPE_CHECKING:
    from domain.campaign_state import CampaignRecord
    from grantflow.dev_channels import DevChannels
    from store import Store

DIGEST_WAIT = 8.0
"""Seconds a click or a comment waits for grantflow to bring the digest (or the issue) up to date."""
ANSWER_WAIT = 8.0
"""Seconds a click waits for what Slack shows the person (an ephemeral answer, the reason form)."""
DECISION_BUTTONS = {**CAMPAIGN_ACTIONS, **REASON_ACTIONS}
"""A digest's decision buttons: action id -> the verdict it records (its ``_reason`` variant asks why)."""
RECORDED = "Recorded:"
"""How grantflow's answer to a decision starts when it recorded some (``web.slack_campaign``)."""


class CampaignDigestAsk(BaseModel):
    user_email: str
    campaign_id: str


class CampaignClick(BaseModel):
    user_email: str
    campaign_id: str
    items: list[str] = []
    all: bool = False  # "Keep all shown" / "Revoke all shown"
    verdict: Literal["keep", "revoke"]
    reason: str = ""  # typed into the form Slack opens where the campaign wants a reason


class CampaignJira(BaseModel):
    user_email: str
    campaign_id: str
    transition: str | None = None
    comment: str | None = None  # the comment to post, or the move's comment with ``transition``


def campaign_router(channels: DevChannels) -> APIRouter:
    """Dev-only controls that act as a reviewer on a campaign's digests in the Slack and Jira stand-ins."""
    from grantflow.dev_channels import _context, _said_to, _slack_person

    router = APIRouter(prefix="/_sandbox", include_in_schema=False)

    @router.post("/campaign/digest")
    async def campaign_digest(body: CampaignDigestAsk, request: Request) -> dict[str, Any]:
        store = _context(request).store
        record = await _campaign(store, body.campaign_id)
        person_id = await _person_id(store, body.user_email)
        found: dict[str, Any] = {"campaign_id": record.id, "name": record.name, "stage": record.stage}
        if channels.slack is not None:
            slack, _, user = _slack_person(channels, body.user_email)
            channel = slack.dm_channel(user)
            message = _digest_message(slack, channel, record.id)
            found["slack"] = None if message is None else _digest_view(message)
            found["slack_messages"] = sum(1 for m in slack.messages(channel) if _campaign_of(m) == record.id)
        if channels.jira is not None:
            key = _jira_issue(channels.jira, record, person_id)
            found["jira"] = None if key is None else _issue_view(channels.jira, key)
        if channels.smtp is not None:
            found["emails"] = _emails(channels, body.user_email, record.id)
        if not any(found.get(k) for k in ("slack", "jira", "emails")):
            raise HTTPException(404, f"{body.user_email} was sent nothing about campaign {record.id}")
        return found

    @router.post("/campaign/slack-click")
    async def campaign_slack_click(body: CampaignClick, request: Request) -> dict[str, Any]:
        if bool(body.items) == body.all:
            raise HTTPException(
                422, "click either items' buttons (--item) or the digest's bulk button (--all)"
            )
        slack, driver, user = _slack_person(channels, body.user_email)
        record = await _campaign(_context(request).store, body.campaign_id)
        channel = slack.dm_channel(user)
        message = _digest_message(slack, channel, record.id)
        if message is None:
            raise HTTPException(404, f"{body.user_email} has no Slack digest of campaign {record.id}")
        ts = str(message["ts"])
        before = _rendering(message)
        seen = len(_said_to(slack, user))
        told: list[str] = []
        targets: list[str | None] = [*body.items] or [None]
        for target in targets:
            message = slack.message(channel, ts)
            action_id, block_id = _button(message, body.verdict, target, body.user_email, record.id)
            views = len(slack.views(user))
            # The driver posts back to this very app: run it off the event loop.
            await asyncio.to_thread(driver.click_button, user, channel, ts, action_id, block_id=block_id)
            if action_id in REASON_ACTIONS:  # grantflow opens its form asking for the reason
                form = await _wait_for_view(slack, user, views)
                if form is not None:
                    values = {CAMPAIGN_REASON_BLOCK: {CAMPAIGN_REASON_INPUT: body.reason}}
                    submitted = await asyncio.to_thread(
                        driver.submit_view, user, view_id=form["id"], values=values
                    )
                    kept_open = _form_errors(submitted)
                    if kept_open:  # Slack shows the error under the field; nothing was decided
                        told.append(f"the reason form stays open: {kept_open}")
                        continue
            fresh = await _wait_for_fresh(slack, user, seen)
            seen += len(fresh)
            told += fresh
        recorded = any(t.startswith(RECORDED) for t in told)
        message = (
            await _wait_for_update(slack, channel, ts, before) if recorded else slack.message(channel, ts)
        )
        digests = sum(1 for m in slack.messages(channel) if _campaign_of(m) == record.id)
        return {
            "campaign_id": record.id,
            "told": told,
            "recorded": recorded,
            "digest": _digest_view({**message, "channel": channel}),
            "digest_messages": digests,
        }

    @router.post("/campaign/jira")
    async def campaign_jira(body: CampaignJira, request: Request) -> dict[str, Any]:
        jira = channels.jira
        if jira is None:
            raise HTTPException(404, "the Jira stand-in is not running (grantflow dev --with jira)")
        if not body.transition and not body.comment:
            raise HTTPException(422, "give a transition (--transition) or a comment (--comment)")
        store = _context(request).store
        record = await _campaign(store, body.campaign_id)
        key = _jira_issue(jira, record, await _person_id(store, body.user_email))
        if key is None:
            raise HTTPException(404, f"{body.user_email} has no Jira digest issue for campaign {record.id}")
        try:
            account = jira.account_id(body.user_email)
        except KeyError:
            raise HTTPException(404, f"{body.user_email} has no Jira account in the stand-in") from None
        before = len(jira.comments(key))
        description = str(jira.issue(key)["fields"]["description"])
        try:
            if body.transition:
                await asyncio.to_thread(jira.transition_as, key, body.transition, account, body.comment)
            else:
                await asyncio.to_thread(jira.comment_as, key, body.comment, account)
        except ValueError as exc:  # Jira offers no such transition from the issue's status
            raise HTTPException(409, str(exc)) from None
        await asyncio.to_thread(jira.wait_idle, 5.0)  # the webhook is delivered and answered
        # grantflow answers every comment holding a command and every bulk move; anything else it ignores
        answers = [c for c in jira.comments(key)[before:] if c != body.comment]
        recorded = any(RECORDED in c for c in answers)
        if recorded:  # the campaign's workflow refreshes the description after the decisions
            deadline = time.monotonic() + DIGEST_WAIT
            while time.monotonic() < deadline:
                if str(jira.issue(key)["fields"]["description"]) != description:
                    break
                await asyncio.sleep(0.1)
        return {"campaign_id": record.id, "answers": answers, "recorded": recorded, **_issue_view(jira, key)}

    return router


async def _campaign(store: Store, campaign_id: str) -> CampaignRecord:
    record = await asyncio.to_thread(store.campaign, campaign_id)
    if record is None:
        raise HTTPException(404, f"campaign {campaign_id} does not exist")
    return record


async def _person_id(store: Store, email: str) -> str:
    person = await asyncio.to_thread(store.find_person_by_email, email)
    if person is None:
        raise HTTPException(404, f"{email} is not in grantflow's directory")
    return person.id


def _campaign_of(message: dict[str, Any]) -> str | None:
    payload = (message.get("metadata") or {}).get("event_payload") or {}
    found = payload.get("campaign_id")
    return str(found) if found else None


def _digest_message(slack: Any, channel: str, campaign_id: str) -> dict[str, Any] | None:
    """The reviewer's digest of the campaign's latest stage in their DM (its metadata names them)."""
    found = [m for m in slack.messages(channel) if _campaign_of(m) == campaign_id and m.get("blocks")]
    if not found:
        return None
    return max(found, key=lambda m: int((m["metadata"]["event_payload"] or {}).get("stage") or 0))


def _buttons(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every button of a message with its block id (action rows and section accessories)."""
    found = []
    for block in message.get("blocks") or []:
        elements = block.get("elements", []) if block.get("type") == "actions" else []
        if block.get("type") == "section" and block.get("accessory"):
            elements = [block["accessory"]]
        found += [(str(block.get("block_id")), el) for el in elements if el.get("type") == "button"]
    return found


def _items_of(button: dict[str, Any]) -> list[str]:
    try:
        value = json.loads(str(button.get("value") or ""))
    except ValueError:
        return []
    items = value.get("i") if isinstance(value, dict) else None
    return [str(i) for i in items] if isinstance(items, list) else []


def _button(
    message: dict[str, Any], verdict: str, item: str | None, email: str, campaign_id: str
) -> tuple[str, str]:
    """The action id and block id of the button to press: ``verdict`` on ``item``'s row, or the bulk
    button (``item`` None). 404 when the digest has no row for the item, 409 when it has no such button
    (the item is decided that way already; nothing is pending; the stage is over)."""
    wanted = {
        a for a, v in DECISION_BUTTONS.items() if v == verdict and (a in BULK_ACTIONS) == (item is None)
    }
    digest = f"{email}'s Slack digest of campaign {campaign_id}"
    decisions = [(b, el) for b, el in _buttons(message) if el.get("action_id") in DECISION_BUTTONS]
    if not decisions:  # the stage closed, or the campaign ended: the digest shows how it went
        said = " ".join(_digest_view(message)["head"].splitlines()[:2])
        raise HTTPException(409, f"{digest} has no buttons any more: it says {said!r}")
    if item is None:
        rows = [(b, el) for b, el in decisions if b == "gf_digest_all"]
    else:
        rows = [(b, el) for b, el in decisions if _items_of(el) == [item] and b != "gf_digest_all"]
    for block_id, el in rows:
        if el.get("action_id") in wanted:
            return str(el["action_id"]), block_id
    if item is None:
        raise HTTPException(409, f"{digest} has no {verdict} all button: nothing in it is pending")
    if not rows:
        raise HTTPException(
            404,
            f"{digest} has no row for {item}: it is not an item they review in this stage (or one beyond "
            "the rows the digest shows: their web page has it)",
        )
    done = "kept" if verdict == "keep" else "revoked"
    raise HTTPException(409, f"{item} is {done} already in {digest}: its row has no {verdict} button")


def _rendering(message: dict[str, Any]) -> str:
    return json.dumps([message.get("text"), message.get("blocks")], sort_keys=True)


_SLACK_MARKUP = re.compile(r"<(?:!date\^[^|>]*|[^|>]+)\|([^>]*)>")
"""A date or a link in mrkdwn (``<!date^…|fallback>``, ``<url|text>``): the text a person reads."""


def _plain(text: str) -> str:
    """mrkdwn as a person reads it: dates and links by their text, no bold or italics."""
    return re.sub(r"(?<!\w)_|_(?!\w)", "", _SLACK_MARKUP.sub(r"\1", text).replace("*", ""))


def _digest_view(message: dict[str, Any]) -> dict[str, Any]:
    """A digest as the person reads it: its head, then a line per row (the item id its buttons carry), or,
    once the campaign ended, the outcome that replaced it."""
    blocks = message.get("blocks") or []
    head = ""
    rows: list[dict[str, str]] = []
    outcome: list[str] = []
    for i, block in enumerate(blocks):
        text = str((block.get("text") or {}).get("text") or "")
        if block.get("block_id") in ("gf_digest_head", "gf_outcome_head"):
            head = _plain(text)
        elif block.get("block_id") == "gf_outcome_items":  # the campaign ended: how their items did
            outcome += _plain(text).splitlines()
        elif str(block.get("block_id", "")).startswith("gf_item_"):
            carried = _items_of(block.get("accessory") or {})
            follow = blocks[i + 1] if i + 1 < len(blocks) else {}
            if not carried and follow.get("type") == "actions":
                carried = next((ids for el in follow.get("elements", []) if (ids := _items_of(el))), [])
            buttons = [str(el.get("text", {}).get("text")) for el in _row_buttons(block, follow)]
            rows.append(
                {
                    "item": carried[0] if carried else "",
                    "text": " · ".join(_plain(text).splitlines()[:2]),
                    "buttons": " / ".join(buttons),
                }
            )
    bulk = [str(el.get("text", {}).get("text")) for b, el in _buttons(message) if b == "gf_digest_all"]
    return {"ts": message.get("ts"), "head": head, "rows": rows, "bulk": " / ".join(bulk), "outcome": outcome}


def _row_buttons(section: dict[str, Any], follow: dict[str, Any]) -> list[dict[str, Any]]:
    if section.get("accessory"):
        return [section["accessory"]]
    if follow.get("type") == "actions" and str(follow.get("block_id", "")).startswith("gf_decide_"):
        return [el for el in follow.get("elements", []) if el.get("type") == "button"]
    return []


def _form_errors(response: Any) -> str:
    """The errors grantflow asked Slack to show under the form's fields (``response_action: errors``)."""
    try:
        answer = response.json()
    except ValueError:
        return ""
    if isinstance(answer, dict) and answer.get("response_action") == "errors":
        return "; ".join(str(v) for v in (answer.get("errors") or {}).values())
    return ""


async def _wait_for_view(slack: Any, user: str, seen: int) -> dict[str, Any] | None:
    deadline = time.monotonic() + ANSWER_WAIT
    while time.monotonic() < deadline:
        opened = slack.views(user)
        if len(opened) > seen:
            return dict(opened[-1])
        await asyncio.sleep(0.1)
    return None


async def _wait_for_fresh(slack: Any, user: str, seen: int) -> list[str]:
    from grantflow.dev_channels import _wait_for_said

    return await _wait_for_said(slack, user, seen, ANSWER_WAIT)


async def _wait_for_update(slack: Any, channel: str, ts: str, before: str) -> dict[str, Any]:
    """The digest once grantflow has updated it in place (as it was after ``DIGEST_WAIT`` seconds)."""
    deadline = time.monotonic() + DIGEST_WAIT
    while True:
        message: dict[str, Any] = slack.message(channel, ts)
        if _rendering(message) != before or time.monotonic() > deadline:
            return message
        await asyncio.sleep(0.1)


def _jira_issue(jira: Any, record: CampaignRecord, person_id: str) -> str | None:
    """The key of the person's digest issue for the campaign's latest stage that has one."""
    for stage in range(record.stage, -1, -1):
        found = jira.issues(label=f"grantflow-{record.id}:digest:{stage}:{person_id}")
        if found:
            return str(found[0]["key"])
    return None


def _issue_view(jira: Any, key: str) -> dict[str, Any]:
    issue = jira.issue(key)
    fields = issue["fields"]
    return {
        "issue": key,
        "status": fields["status"]["name"],
        "summary": fields.get("summary"),
        "description": str(fields.get("description") or ""),
    }


def _emails(channels: DevChannels, email: str, campaign_id: str) -> list[dict[str, str]]:
    """The emails the SMTP sink received for ``email`` whose review link is for the campaign."""
    found = []
    for message in list(channels.smtp.messages):
        if email.lower() not in (r.lower() for r in message.rcpt_tos):
            continue
        link = next((w for w in (message.text or "").split() if "/campaigns/review/" in w), "")
        if link and _link_campaign(link) == campaign_id:
            found.append({"subject": str(message.message["Subject"]), "link": link})
    return found


def _link_campaign(link: str) -> str | None:
    """The campaign a signed review link is for (its payload is readable; only its signature is secret)."""
    token = link.rsplit("/", 1)[-1].split(".", 1)[0]
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        return None
    return str(data.get("c")) if isinstance(data, dict) and data.get("c") else None

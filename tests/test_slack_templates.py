"""The Slack templates (``templates/slack/*.json.j2``) rendered for requests in every state: valid Block Kit
within Slack's limits (checked by slack_sdk, by the adapter and, independently, by the stand-in's
validator), hostile text kept literal, long text cut, and decision buttons only while a decision is
possible."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import jinja2
import pytest
from slack_sdk.models.blocks import Block

from domain.policy import BreakGlass, RolePolicy
from domain.requests import (
    EndReason,
    HoopReviewOrigin,
    HoopReviewType,
    PendingExtension,
    RequestStatus,
    RequestView,
    RetroReview,
    Verdict,
)
from integrations.slack import (
    APPROVE_ACTION,
    DENY_ACTION,
    DENY_CALLBACK_ID,
    DENY_REASON_ACTION,
    DENY_REASON_BLOCK,
    BlockKitError,
    MessageRef,
    SlackChannel,
    build_slack_client,
    check_blocks,
    fit_blocks,
    render_blocks,
    render_view,
)
from sandbox.slack import SlackStandIn, block_kit_errors
from tests.builders import ALICE, BOB, CAROL, T0, all_text, block, buttons, decision, request_view

POLICY = RolePolicy(
    connection="pg-prod-admin",
    approver_groups=["dba-owners"],
    min_approvals=2,
    max_cumulative=timedelta(hours=12),
    break_glass=BreakGlass(allowed=True),
)
NASTY = 'He said "no".\nThen: <!channel> & <https://evil.example|click here> \\ done'
MESSAGE_TEMPLATES = ("request_created", "request_updated", "requester_outcome")


def view(status: RequestStatus = RequestStatus.PENDING, **changes: Any) -> RequestView:
    """alice's request needing two of bob and carol, under ``POLICY``, in ``status``."""
    two_of_two = {"required_approvals": 2, "eligible_approvers": [BOB, CAROL], "approvers_resolved": True}
    return request_view(ALICE, status=status, **{**two_of_two, "policy": POLICY, **changes})


COMMAND = "-- INC-7: `orders` is stuck\nUPDATE orders SET state = 'done' WHERE id = 42; -- <!channel> *now*"
ONETIME = HoopReviewOrigin(
    review_id="rev-1", review_type=HoopReviewType.ONETIME, session_id="ses-1", command=COMMAND
)
ACTIVE = {
    "approvals": [decision(BOB), decision(CAROL, channel="web")],
    "decided_at": T0,
    "granted_at": T0,
    "expires_at": T0 + timedelta(hours=2),
}
VIEWS: dict[str, RequestView] = {
    "pending, no decision": view(),
    "pending, one of two": view(approvals=[decision(BOB)]),
    "pending, submitted by an admin": view(submitted_by="admin@corp.example"),
    "active": view(RequestStatus.ACTIVE, **ACTIVE),
    "active, extension asked": view(
        RequestStatus.ACTIVE,
        **ACTIVE,
        pending_extension=PendingExtension(
            by=timedelta(hours=1),
            requested_at=T0,
            reason="still running",
            approvals=[decision(BOB, stage="extension")],
        ),
    ),
    "break-glass, review pending": view(
        RequestStatus.ACTIVE,
        break_glass=True,
        retro_review=RetroReview.PENDING,
        auto_approved=True,
        granted_at=T0,
        expires_at=T0 + timedelta(hours=2),
    ),
    "denied, hostile reason": view(
        RequestStatus.DENIED,
        reason=NASTY,
        approvals=[decision(BOB)],
        denials=[decision(CAROL, Verdict.DENY, reason=NASTY, channel="web")],
        decided_at=T0,
    ),
    "ended, expired": view(
        RequestStatus.ENDED, **ACTIVE, end_reason=EndReason.EXPIRED, ended_at=T0 + timedelta(hours=2)
    ),
    "ended, leaver": view(RequestStatus.ENDED, **ACTIVE, end_reason=EndReason.LEAVER, ended_at=T0),
    "revoking": view(RequestStatus.REVOKING, **ACTIVE),
    "timed out": view(RequestStatus.TIMED_OUT, approvals=[decision(BOB)]),
    "cancelled": view(RequestStatus.CANCELLED),
    "failed": view(RequestStatus.FAILED, failure_reason="the gateway refused: user never signed in to hoop"),
    "approved, one-time": view(RequestStatus.APPROVED, approvals=[decision(BOB), decision(CAROL)]),
    "pending, one-time command": view(origin=ONETIME),
}
DECIDABLE = {"pending, no decision", "pending, one of two", "pending, submitted by an admin"} | {
    "pending, one-time command",
    "active, extension asked",
    "break-glass, review pending",
}
# the stage each decidable case asks about: button values are "<request id>|<stage>"
STAGE_OF = {"active, extension asked": "extension", "break-glass, review pending": "retro_review"}


@pytest.mark.parametrize("template", MESSAGE_TEMPLATES)
@pytest.mark.parametrize("case", list(VIEWS))
def test_every_template_renders_valid_block_kit_for_every_state(template: str, case: str) -> None:
    text, blocks = render_blocks(
        template, view=VIEWS[case], link="https://grantflow.example/r/req-42?sig=abc"
    )
    assert text.startswith("[grantflow] ") and "\n" not in text
    assert block_kit_errors(blocks) == []  # the stand-in's validator, written independently
    check_blocks(blocks)
    assert [b.to_dict() for b in Block.parse_all(blocks)] == blocks  # nothing dropped by slack_sdk
    ids = [b["block_id"] for b in blocks]
    assert len(ids) == len(set(ids)) and all(i.startswith("gf_") for i in ids)
    decide = buttons(blocks)
    if template != "requester_outcome" and case in DECIDABLE:
        stage = STAGE_OF.get(case, "request")
        assert decide[APPROVE_ACTION]["value"] == decide[DENY_ACTION]["value"] == f"req-42|{stage}"
        assert decide[APPROVE_ACTION]["style"] == "primary" and decide[DENY_ACTION]["style"] == "danger"
    else:
        assert APPROVE_ACTION not in decide and DENY_ACTION not in decide
    assert decide["grantflow_open"]["url"] == "https://grantflow.example/r/req-42?sig=abc"


@pytest.mark.parametrize("template", ["request_created", "request_updated"])
def test_a_onetime_review_shows_the_command_exactly_as_typed(template: str) -> None:
    """Approvers decide on the command itself: it is shown literally (preformatted rich text: backticks,
    mentions and markup stay text), a long one is cut, and no duration is claimed for it."""
    text, blocks = render_blocks(template, view=VIEWS["pending, one-time command"])
    command = block(blocks, "gf_command")
    assert command["type"] == "rich_text"
    [label, shown] = command["elements"]
    assert label["elements"][0]["text"] == "Command"
    assert shown["type"] == "rich_text_preformatted"
    assert shown["elements"] == [{"type": "text", "text": COMMAND}]
    assert block(blocks, "gf_header")["text"]["text"] == "Command review: pg-prod / admin"
    summary = all_text([block(blocks, "gf_summary")])
    assert "*Duration*" not in summary and "run one command" in summary
    if template == "request_created":
        assert "asks to run a command on pg-prod admin" in text
    long = view(origin=ONETIME.model_copy(update={"command": "SELECT 1;\n" * 1000}))
    _, blocks = render_blocks(template, view=long)
    cut = block(blocks, "gf_command")["elements"][1]["elements"][0]["text"]
    assert len(cut) <= 2900 and cut.endswith("…")
    assert block_kit_errors(blocks) == []
    assert "gf_command" not in {b["block_id"] for b in render_blocks(template, view=VIEWS["active"])[1]}


def test_approver_message_content() -> None:
    pending = VIEWS["pending, one of two"]
    text, blocks = render_blocks("request_created", view=pending, mentions={BOB.id: "U0BOB"})
    assert text == "[grantflow] alice@corp.example asks for pg-prod admin for 2h: your decision is needed"
    summary = all_text([block(blocks, "gf_summary")])
    for expected in ("alice@corp.example", "pg-prod / admin", "pg-prod-admin", "2h"):
        assert expected in summary
    assert "2 approval(s) from group dba-owners" in all_text([block(blocks, "gf_policy")])
    decisions = block(blocks, "gf_decisions")["elements"][0]["text"]
    assert "✅ <@U0BOB> approved via slack" in decisions and "Approvals so far: 1 of 2" in decisions
    assert "grantflow_open" not in buttons(blocks)  # no link given, no link button

    admin = render_blocks("request_created", view=VIEWS["pending, submitted by an admin"])[1]
    assert "(submitted by admin@corp.example)" in all_text([block(admin, "gf_summary")])
    extension = render_blocks("request_created", view=VIEWS["active, extension asked"])[1]
    assert extension[0]["text"]["text"] == "Extension request: pg-prod / admin"
    assert "*Extension asked*\\n+1h: still running" in all_text([block(extension, "gf_summary")])


def test_an_approver_who_already_voted_sees_no_buttons() -> None:
    pending = VIEWS["pending, one of two"]
    _, for_bob = render_blocks("request_updated", view=pending, recipient=BOB)
    _, for_carol = render_blocks("request_updated", view=pending, recipient=CAROL)
    assert APPROVE_ACTION not in buttons(for_bob) and APPROVE_ACTION in buttons(for_carol)
    assert block(for_bob, "gf_status")["text"]["text"].startswith(
        "✅ You approved · ⏳ *Waiting for approvals* (1 of 2)"
    )


def test_updates_say_who_decided_how_and_what_happens_now() -> None:
    _, active = render_blocks("request_updated", view=VIEWS["active"])
    status = block(active, "gf_status")["text"]["text"]
    assert status.startswith("✅ *Approved* · access active until <!date^1772449200^")
    assert "|2026-03-02 11:00 UTC>" in status
    decisions = block(active, "gf_decisions")["elements"][0]["text"]
    assert (
        "bob@corp.example approved via slack" in decisions
        and "carol@corp.example approved via web" in decisions
    )
    _, ended = render_blocks("request_updated", view=VIEWS["ended, leaver"])
    assert "⏹ *Access ended* (revoked: the requester left)" in block(ended, "gf_status")["text"]["text"]
    text, outcome = render_blocks("requester_outcome", view=VIEWS["active"])
    assert (
        text == "[grantflow] Your request for pg-prod admin was approved, active until 2026-03-02 11:00 UTC"
    )
    assert "Connect with `hoop connect pg-prod-admin`" in block(outcome, "gf_status")["text"]["text"]
    _, expired = render_blocks("requester_outcome", view=VIEWS["ended, expired"])
    assert "has ended: it expired" in block(expired, "gf_status")["text"]["text"]
    _, failed = render_blocks("requester_outcome", view=VIEWS["failed"], note="Ask #platform for help")
    assert "user never signed in to hoop" in block(failed, "gf_status")["text"]["text"]
    assert block(failed, "gf_note")["elements"][0]["text"] == "Ask #platform for help"


@pytest.mark.parametrize("template", MESSAGE_TEMPLATES)
def test_hostile_text_stays_literal(template: str) -> None:
    text, blocks = render_blocks(template, view=VIEWS["denied, hostile reason"])
    rendered = all_text(blocks)
    assert "<!channel>" not in rendered and "<https://evil" not in rendered  # no ping, no forged link
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click here&gt;" in rendered
    assert "<!channel>" not in text
    if template != "requester_outcome":
        reason = block(blocks, "gf_reason")["text"]["text"]
        assert reason == (
            '*Reason*\n>He said "no".\n'
            ">Then: &lt;!channel&gt; &amp; &lt;https://evil.example|click here&gt; \\ done"
        )
    if template != "request_created":
        status = block(blocks, "gf_status")["text"]["text"]
        assert "❌ *Denied" in status and 'He said "no".' in status


def test_a_very_long_reason_is_cut_not_refused() -> None:
    long_view = view(reason="x" * 10_000, denials=[decision(BOB, Verdict.DENY, reason="y" * 10_000)])
    for template in MESSAGE_TEMPLATES:
        _, blocks = render_blocks(template, view=long_view)
        assert block_kit_errors(blocks) == []
        for b in blocks:
            text = (b.get("text") or {}).get("text", "")
            assert len(text) <= 3000
        if template != "requester_outcome":
            reason = block(blocks, "gf_reason")["text"]["text"]
            assert reason.endswith("…") and 2800 < len(reason) <= 3000
    modal = render_view("deny_modal", view=long_view)
    assert block_kit_errors(view=modal) == []
    assert modal["blocks"][0]["text"]["text"].endswith("…")
    # escaping lengthens text: 3000 '&' would be 15000 characters; they are cut without breaking an escape
    _, amp = render_blocks("request_created", view=view(reason="&" * 3000))
    reason = block(amp, "gf_reason")["text"]["text"]
    assert reason.endswith("&amp;…") and len(reason) <= 3000


def test_deny_modal() -> None:
    origin = MessageRef(channel="D00000001", ts="1772442000.000100")
    modal = render_view("deny_modal", view=VIEWS["pending, one of two"], origin=origin)
    assert block_kit_errors(view=modal) == []
    assert modal["callback_id"] == DENY_CALLBACK_ID
    assert json.loads(modal["private_metadata"]) == {
        "request_id": "req-42",
        "channel": "D00000001",
        "ts": "1772442000.000100",
    }
    reason_input = block(modal["blocks"], DENY_REASON_BLOCK)
    assert reason_input["type"] == "input" and reason_input["element"]["action_id"] == DENY_REASON_ACTION
    plain = render_view("deny_modal", view=VIEWS["pending, no decision"])
    assert json.loads(plain["private_metadata"]) == {"request_id": "req-42"}


def test_fitting_and_checking() -> None:
    many = [{"type": "divider", "block_id": f"d{i}"} for i in range(60)]
    fitted = fit_blocks(many)
    assert len(fitted) == 50 and fitted[-1]["elements"][0]["text"] == "… 11 more not shown"
    check_blocks(fitted)
    long_button = [
        {
            "type": "actions",
            "block_id": "a",
            "elements": [
                {
                    "type": "button",
                    "action_id": "go",
                    "text": {"type": "plain_text", "text": "B" * 100},
                    "value": "v" * 2001,
                }
            ],
        }
    ]
    fitted = fit_blocks(long_button)
    assert fitted[0]["elements"][0]["text"]["text"] == "B" * 74 + "…"  # a label can be cut, a value cannot
    with pytest.raises(BlockKitError, match="button value longer than 2000"):
        check_blocks(fitted)
    with pytest.raises(BlockKitError, match="duplicate block_id"):
        check_blocks([{"type": "divider", "block_id": "x"}, {"type": "divider", "block_id": "x"}])
    with pytest.raises(BlockKitError, match="slack_sdk drops them"):
        check_blocks([{"type": "divider", "block_id": "x", "colour": "red"}])
    with pytest.raises(BlockKitError, match="unknown block type"):
        check_blocks([{"type": "sectoin", "block_id": "x"}])


def test_templates_are_strict() -> None:
    with pytest.raises(jinja2.UndefinedError):
        render_blocks("request_created")
    with pytest.raises(jinja2.TemplateNotFound):
        render_blocks("no_such_event", view=VIEWS["active"])


async def test_rendered_messages_are_accepted_by_the_stand_in_over_http() -> None:
    slack = SlackStandIn(bot_token="xoxb-t", signing_secret="s")
    slack.start()
    chan = SlackChannel(build_slack_client("xoxb-t", base_url=slack.api_url))
    try:
        bob = slack.add_user(BOB.email, "Bob")
        ref = None
        for i, case in enumerate(VIEWS):
            text, blocks = render_blocks("request_created", view=VIEWS[case], link="https://g.example/r")
            ref = await chan.post_once(bob, text, blocks, key=f"case-{i}")
            text, blocks = render_blocks("request_updated", view=VIEWS[case], recipient=BOB)
            await chan.update(ref, text, blocks)
        assert ref is not None and len(slack.messages()) == len(VIEWS)
    finally:
        await chan.aclose()
        slack.stop()

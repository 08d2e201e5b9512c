"""Email over real SMTP: ``integrations/email.py`` sending to the SMTP sink (``sandbox/smtp.py``), faults
classified as transient or permanent, and the email templates."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, timedelta

import jinja2
import pytest

from domain.durations import format_duration
from domain.identity import PersonRef
from domain.requests import Decision, EndReason, RequestStatus, Verdict
from integrations.email import EmailPermanentError, EmailSender, EmailTransientError, message_id_header
from integrations.notify import ChannelNotifier, Message
from sandbox.smtp import SmtpSink
from templates import template_environment
from tests.test_jira_adapter import BOB, T_CREATED, request_view

FROM = "grantflow <grantflow@corp.example>"
LINK = "http://127.0.0.1:8000/review/req-42?t=abc&u=bob"


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    server = SmtpSink(users={"grantflow": "smtp-password"})
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _empty(sink: SmtpSink) -> None:
    sink.clear()


@pytest.fixture
def sender(sink: SmtpSink) -> EmailSender:
    return EmailSender(
        sink.host,
        sink.port,
        FROM,
        username="grantflow",
        password="smtp-password",
        timeout=5,
        local_hostname="grantflow.test",
    )


def environments() -> tuple[jinja2.Environment, jinja2.Environment]:
    """Text and HTML environments, as an activity sets them up (HTML autoescaped)."""
    text, html = template_environment(autoescape=False), template_environment(autoescape=True)
    for env in (text, html):
        env.filters["duration"] = format_duration
        env.filters["utc"] = lambda d: d.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if d else "-"
    return text, html


def render(event: str, **context: object) -> tuple[str, str, str]:
    """(subject, text, html) of an email template pair: the text template's first line is the subject."""
    text_env, html_env = environments()
    rendered = text_env.get_template(f"email/{event}.txt.j2").render(**context)
    subject, _, body = rendered.partition("\n")
    html = html_env.get_template(f"email/{event}.html.j2").render(**context)
    return subject.strip(), body.lstrip("\n"), html


def test_a_message_arrives_with_both_parts_and_the_link(sink: SmtpSink, sender: EmailSender) -> None:
    view = request_view(reason='Incident <42> & "urgent"')
    subject, text, html = render("request_created", view=view, recipient=BOB, link=LINK)
    assert subject == "[grantflow] alice@corp.example asks for pg-prod admin for 1h"
    sent_id = sender.send("bob@corp.example", subject, text, html, "req-42:request_created:u-bob")
    [received] = sink.wait_for(1)
    message = received.message
    assert received.mail_from == "grantflow@corp.example" and received.rcpt_tos == ("bob@corp.example",)
    assert received.authenticated_as == "grantflow"
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["Subject"] == subject and message["From"] == FROM and message["To"] == "bob@corp.example"
    assert message["Message-ID"] == sent_id == "<req-42=3Arequest_created=3Au-bob@corp.example>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert received.text is not None and received.html is not None
    assert f"Review and decide: {LINK}" in received.text
    assert 'Reason:    Incident <42> & "urgent"' in received.text
    assert (
        '<a href="http://127.0.0.1:8000/review/req-42?t=abc&amp;u=bob">Review and decide</a>' in received.html
    )
    assert "Incident &lt;42&gt; &amp; &#34;urgent&#34;" in received.html  # autoescaped
    assert "The request times out at 2026-03-02 13:00:00 UTC." in received.text


def test_a_retried_send_carries_the_same_message_id(sink: SmtpSink, sender: EmailSender) -> None:
    sink.drop_next(after_store=True)  # the server kept it, but the reply was lost
    with pytest.raises(EmailTransientError, match="closed the connection"):
        sender.send("bob@corp.example", "s", "t", "<p>h</p>", "req-42:outcome")
    sender.send("bob@corp.example", "s", "t", "<p>h</p>", "req-42:outcome")
    first, second = sink.wait_for(2)
    assert first.message["Message-ID"] == second.message["Message-ID"] == "<req-42=3Aoutcome@corp.example>"
    assert sink.drops == 1


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
def test_451_is_transient(sink: SmtpSink, sender: EmailSender, stage: str) -> None:
    sink.fail_next(1, 451, stage=stage)
    with pytest.raises(EmailTransientError) as failed:
        sender.send("bob@corp.example", "s", "t", None, "m-1")
    assert failed.value.code == 451
    assert sink.messages == []
    sender.send("bob@corp.example", "s", "t", None, "m-1")  # the retry goes through
    assert len(sink.wait_for(1)) == 1


@pytest.mark.parametrize(("stage", "code"), [("rcpt", 550), ("data", 554), ("mail", 550)])
def test_5xx_is_permanent(sink: SmtpSink, sender: EmailSender, stage: str, code: int) -> None:
    sink.fail_next(1, code, stage=stage)
    with pytest.raises(EmailPermanentError) as failed:
        sender.send("nobody@corp.example", "s", "t", None, "m-2")
    assert failed.value.code == code
    assert str(code) in str(failed.value)


def test_credentials_and_connection_failures(sink: SmtpSink) -> None:
    wrong = EmailSender(sink.host, sink.port, FROM, username="grantflow", password="nope", local_hostname="t")
    with pytest.raises(EmailPermanentError) as refused:
        wrong.send("bob@corp.example", "s", "t", None, "m-3")
    assert refused.value.code == 535
    anonymous = EmailSender(sink.host, sink.port, FROM, local_hostname="t")
    with pytest.raises(EmailPermanentError, match="530"):
        anonymous.send("bob@corp.example", "s", "t", None, "m-3")
    tls = EmailSender(sink.host, sink.port, FROM, starttls=True, local_hostname="t")
    with pytest.raises(EmailPermanentError, match="STARTTLS"):
        tls.send("bob@corp.example", "s", "t", None, "m-3")
    closed = SmtpSink()
    host, port = closed.start()
    closed.stop()
    with pytest.raises(EmailTransientError, match="ConnectionRefusedError"):
        EmailSender(host, port, FROM, timeout=2, local_hostname="t").send(
            "bob@corp.example", "s", "t", None, "m-3"
        )
    assert sink.messages == []


async def test_send_from_async_code_through_a_thread(sink: SmtpSink, sender: EmailSender) -> None:
    await asyncio.gather(
        *(
            asyncio.to_thread(sender.send, f"p{n}@corp.example", "s", "t", "<p>h</p>", f"m-{n}")
            for n in range(3)
        )
    )
    assert sorted(m.rcpt_tos[0] for m in sink.wait_for(3)) == [
        "p0@corp.example",
        "p1@corp.example",
        "p2@corp.example",
    ]


def test_message_ids() -> None:
    assert (
        message_id_header("req-1:created:u-bob", "corp.example") == "<req-1=3Acreated=3Au-bob@corp.example>"
    )
    assert message_id_header("<already@there>", "corp.example") == "<already@there>"
    assert message_id_header("a b@c", "x") == "<a=20b=40c@x>"
    assert message_id_header("a=b", "x") != message_id_header("a:b", "x")  # distinct ids stay distinct
    with pytest.raises(ValueError):
        message_id_header(" ", "x")


def test_outcome_templates() -> None:
    approval = Decision(approver=BOB, verdict=Verdict.APPROVE, channel="email", at=T_CREATED)
    view = request_view(
        status=RequestStatus.ACTIVE, approvals=[approval], expires_at=T_CREATED + timedelta(hours=1)
    )
    subject, text, html = render("outcome", view=view, recipient=view.requester)
    assert subject == "[grantflow] Request req-42 for pg-prod admin: active"
    assert text.startswith(
        "alice@corp.example, your access to pg-prod / admin is active until 2026-03-02 10:00:00 UTC."
    )
    assert "Approved by: bob@corp.example" in text
    assert "is active until 2026-03-02 10:00:00 UTC" in html and "<strong>pg-prod / admin</strong>" in html
    denial = Decision(
        approver=BOB, verdict=Verdict.DENY, reason="<script>no</script>", channel="jira", at=T_CREATED
    )
    subject, text, html = render(
        "outcome",
        view=request_view(status=RequestStatus.DENIED, denials=[denial]),
        recipient=view.requester,
        note="Ask your manager.",
    )
    assert subject.endswith(": denied")
    assert "Denied by: bob@corp.example (<script>no</script>)" in text and "Ask your manager." in text
    assert "&lt;script&gt;no&lt;/script&gt;" in html and "<script>" not in html
    ended = request_view(status=RequestStatus.ENDED, end_reason=EndReason.EXPIRED)
    assert render("outcome", view=ended, recipient=view.requester)[1].startswith(
        "alice@corp.example, your access ended (expired)."
    )
    for status in RequestStatus:
        subject, text, html = render(
            "outcome", view=request_view(status=status, failure_reason="x"), recipient=view.requester
        )
        assert subject.startswith("[grantflow] Request req-42") and text.strip() and "</html>" in html


async def test_a_notice_whose_text_does_not_carry_its_link_is_emailed_with_it(
    sink: SmtpSink, sender: EmailSender
) -> None:
    """An escalation or a delegation names the review link in ``Message.link`` only: the email must carry
    it, since that is where the person acts; a text that already shows it is sent as it is."""
    notifier = ChannelNotifier(slack=None, email=sender, jira=None)
    manager = PersonRef(id="u-judy", email="judy@corp.example")
    link = "http://127.0.0.1:8000/campaigns/review/abc?t=1"
    await notifier.send(
        Message(
            request_id="cmp-1:0:escalation:u-bea",
            event="campaign_escalation",
            recipient=manager,
            subject="Escalated to you: Q3 review — 2 items bea has not reviewed",
            text="Q3 review: bea has not decided 2 items yet.",
            link=link,
        )
    )
    await notifier.send(
        Message(
            request_id="cmp-1:0",
            event="campaign_notice",
            recipient=manager,
            subject="Q3 review: 4 items to review",
            text=f"Review and decide: {link}",
            link=link,
        )
    )
    escalation, notice = sink.wait_for(2)
    assert escalation.text is not None and escalation.text.rstrip().endswith(link)
    assert notice.text is not None and notice.text.count(link) == 1

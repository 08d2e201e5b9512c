"""Sending grantflow's emails over SMTP: one multipart/alternative message (plain text and HTML) per call.

Synchronous (``smtplib``): call it from async code through ``asyncio.to_thread``. Email is a best-effort
channel; whether a failure is retried is the caller's choice, and the error says which kind it is.

The ``Message-ID`` is made from the id the caller gives (derive it from the request and event), so a message
sent again after an uncertain failure (the connection dropped after the server had the message) carries the
same ``Message-ID``, and mail clients and archives can tell it is the same message.

Error hierarchy::

    EmailError                  any failure sending a message
    ├── EmailTransientError     may succeed if retried: 4xx SMTP replies (451 try again later, 421 closing),
    │                           refused or dropped connections, timeouts
    └── EmailPermanentError     will not change by retrying: 5xx replies (550 no such mailbox, 535 bad
                                credentials, 554), or the server lacks STARTTLS/AUTH that was asked for
``code`` is the SMTP reply code when there was one.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate

__all__ = ["EmailError", "EmailPermanentError", "EmailSender", "EmailTransientError", "message_id_header"]


class EmailError(Exception):
    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class EmailTransientError(EmailError):
    pass


class EmailPermanentError(EmailError):
    pass


def _classify(message: str, code: int | None) -> EmailError:
    if code is not None and 400 <= code < 500:
        return EmailTransientError(message, code=code)
    if code is not None and 500 <= code < 600:
        return EmailPermanentError(message, code=code)
    return EmailTransientError(message, code=code)


_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/?^_`{|}~.-]")


def message_id_header(message_id: str, domain: str) -> str:
    """``<local@domain>`` from a caller's id: kept when already in that form, else characters outside the
    RFC 5322 atom set become ``=XX`` (so distinct ids stay distinct)."""
    message_id = message_id.strip()
    if re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", message_id):
        return message_id
    if not message_id:
        raise ValueError("message_id must not be empty")
    local = "".join(ch if _ATEXT.fullmatch(ch) and ch != "=" else f"={ord(ch):02X}" for ch in message_id)
    local = re.sub(r"\.{2,}", lambda m: "=2E" * len(m.group()), local).strip(".") or "=2E"
    return f"<{local}@{domain}>"


class EmailSender:
    """An SMTP submission client. ``starttls=True`` upgrades the connection before any credentials are sent
    (and fails permanently when the server does not offer it); ``username``/``password`` log in."""

    def __init__(
        self,
        host: str,
        port: int,
        from_addr: str,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 30.0,
        local_hostname: str | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if "@" not in from_addr:
            raise ValueError(f"from_addr {from_addr!r} is not an email address")
        self.host = host
        self.port = port
        self.from_addr = from_addr
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout = timeout
        self._local_hostname = local_hostname
        self._tls_context = tls_context

    @property
    def domain(self) -> str:
        return self.from_addr.rsplit("@", 1)[1].strip(" >")

    def build(
        self, to: str | Sequence[str], subject: str, text: str, html: str | None, message_id: str
    ) -> EmailMessage:
        """The message ``send`` would send: text, then HTML as the preferred alternative."""
        recipients = [to] if isinstance(to, str) else list(to)
        if not recipients:
            raise ValueError("no recipient")
        msg = EmailMessage()
        msg["From"] = self.from_addr
        msg["To"] = ", ".join(recipients)
        msg["Subject"] = " ".join(subject.split())
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = message_id_header(message_id, self.domain)
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to a robot
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
        return msg

    def send(
        self, to: str | Sequence[str], subject: str, text: str, html: str | None, message_id: str
    ) -> str:
        """Send one message; returns its ``Message-ID`` header. Raises ``EmailTransientError`` or
        ``EmailPermanentError``. With several recipients, any refusal fails the call (the others may
        have the message, which a retry sends again with the same Message-ID)."""
        msg = self.build(to, subject, text, html, message_id)
        where = f"{self.host}:{self.port}"
        try:
            with smtplib.SMTP(
                self.host, self.port, timeout=self._timeout, local_hostname=self._local_hostname
            ) as smtp:
                smtp.ehlo()
                if self._starttls:
                    smtp.starttls(context=self._tls_context or ssl.create_default_context())
                    smtp.ehlo()
                if self._username is not None:
                    smtp.login(self._username, self._password or "")
                refused = smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            raise self._refused(exc.recipients, where) from exc
        except smtplib.SMTPResponseException as exc:
            # SMTPSenderRefused, SMTPDataError, SMTPAuthenticationError, SMTPHeloError, SMTPConnectError
            reply = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else exc.smtp_error
            )
            raise _classify(f"{where} answered {exc.smtp_code} {reply}", exc.smtp_code) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise EmailPermanentError(f"{where}: {exc}") from exc
        except smtplib.SMTPServerDisconnected as exc:
            raise EmailTransientError(f"{where} closed the connection: {exc}") from exc
        except (OSError, smtplib.SMTPException) as exc:  # refused, reset, timed out, TLS failures
            raise EmailTransientError(f"{where}: {type(exc).__name__}: {exc}") from exc
        if refused:
            raise self._refused(refused, where)
        return str(msg["Message-ID"])

    @staticmethod
    def _refused(recipients: dict[str, tuple[int, bytes]], where: str) -> EmailError:
        codes = [code for code, _ in recipients.values()]
        detail = "; ".join(
            f"{rcpt}: {code} {reply.decode(errors='replace')}" for rcpt, (code, reply) in recipients.items()
        )
        code = max(codes) if codes else None
        return _classify(f"{where} refused recipients: {detail}", code)

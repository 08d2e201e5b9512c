"""A local SMTP server for tests and ``grantflow dev``: it accepts mail on 127.0.0.1 and keeps every message.

    sink = SmtpSink()
    host, port = sink.start()          # 127.0.0.1, a free port
    ...                                # send with EmailSender(host, port, ...)
    [received] = sink.wait_for(1)
    received.message["Subject"], received.text, received.html
    sink.stop()

Built on aiosmtpd's ``Controller`` (its own event loop on a daemon thread). It speaks ESMTP with 8BITMIME and
SMTPUTF8; with ``users`` it offers AUTH PLAIN/LOGIN on the plain connection (tests only: real servers refuse
AUTH without TLS) and refuses a wrong password with 535, without them it offers no AUTH. STARTTLS is not
offered (no certificate here), so a sender configured with ``starttls=True`` fails against it, as it would
against any server without STARTTLS.

Test hooks: ``fail_next(count, code=451, stage="data")`` answers the next ``count`` MAIL, RCPT or end-of-DATA
commands with ``code`` (4xx: try again later, 5xx: refused); ``drop_next(count, after_store=…)`` closes the
connection at the end of DATA without a reply, after keeping the message or not (so the sender cannot tell
whether it was delivered). Every accepted message is in ``messages``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["ReceivedMessage", "SmtpSink"]

LOOPBACK = "127.0.0.1"
_STAGES = ("mail", "rcpt", "data")
_DEFAULT_REPLIES = {
    421: "421 4.3.0 Service not available, closing transmission channel",
    450: "450 4.2.0 Mailbox unavailable, try again later",
    451: "451 4.3.0 Requested action aborted: local error in processing",
    452: "452 4.3.1 Insufficient system storage",
    550: "550 5.1.1 Mailbox unavailable",
    552: "552 5.3.4 Message size exceeds fixed limit",
    554: "554 5.7.1 Message rejected",
}


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage
    authenticated_as: str | None

    def _part(self, subtype: str) -> str | None:
        part = self.message.get_body(preferencelist=(subtype,))
        if part is None or part.get_content_type() != f"text/{subtype}":
            return None
        return str(part.get_content())

    @property
    def text(self) -> str | None:
        return self._part("plain")

    @property
    def html(self) -> str | None:
        return self._part("html")


@dataclass
class _Fault:
    stage: str
    remaining: int
    reply: str | None  # None: drop the connection
    after_store: bool = False


class _Controller(Controller):
    """aiosmtpd's Controller serving a socket bound beforehand, so port 0 works and the port is known."""

    def __init__(self, handler: Any, sock: socket.socket, **kwargs: Any) -> None:
        self._sock = sock
        super().__init__(handler, hostname=LOOPBACK, port=int(sock.getsockname()[1]), **kwargs)

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


class SmtpSink:
    """See the module docstring."""

    def __init__(self, *, users: Mapping[str, str] | None = None, hostname: str = "smtp-sink.test") -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._users = dict(users or {})
        self._hostname = hostname
        self._faults: list[_Fault] = []
        self._controller: _Controller | None = None
        self._port: int | None = None
        self.messages: list[ReceivedMessage] = []
        self.refusals: list[tuple[str, str]] = []  # (stage, reply) of every injected refusal
        self.drops = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self, port: int = 0) -> tuple[str, int]:
        """Listen on 127.0.0.1 (``port`` 0: any free one); returns (host, port)."""
        if self._controller is not None:
            raise RuntimeError("already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
        sock.listen(64)
        sock.setblocking(False)
        kwargs: dict[str, Any] = {"server_hostname": self._hostname, "ident": "grantflow SMTP sink"}
        if self._users:
            # AUTH on a plain connection: fine on loopback in tests, never for a real server
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        controller = _Controller(_Handler(self), sock, **kwargs)
        try:
            controller.start()
        except BaseException:
            sock.close()
            raise
        self._controller = controller
        self._port = int(sock.getsockname()[1])
        with self._lock:
            self.messages.clear()  # the start-up probe connection sends nothing, but be sure
        return LOOPBACK, self._port

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("not started")
        return self._port

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ test hooks

    def fail_next(
        self, count: int = 1, code: int = 451, *, stage: str = "data", reply: str | None = None
    ) -> None:
        """Answer the next ``count`` commands of ``stage`` (mail, rcpt, data) with ``code``."""
        if stage not in _STAGES:
            raise ValueError(f"stage must be one of {_STAGES}")
        if not 400 <= code < 600:
            raise ValueError("an SMTP failure code is 4xx or 5xx")
        text = reply or _DEFAULT_REPLIES.get(
            code, f"{code} {'4' if code < 500 else '5'}.0.0 Injected failure"
        )
        with self._lock:
            self._faults.append(_Fault(stage, count, text))

    def drop_next(self, count: int = 1, *, after_store: bool = False) -> None:
        """Close the connection at the end of the next ``count`` DATA commands without replying; with
        ``after_store`` the message is kept first."""
        with self._lock:
            self._faults.append(_Fault("data", count, None, after_store))

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
            self.refusals.clear()
            self._faults.clear()
            self.drops = 0

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Wait until at least ``count`` messages arrived; returns them all. Raises ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(self.messages)} of {count} messages arrived within {timeout}s")
                self._cond.wait(remaining)
            return list(self.messages)

    # ------------------------------------------------------------------ for the handler

    def _take_fault(self, stage: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.stage == stage:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    if fault.reply is not None:
                        self.refusals.append((stage, fault.reply))
                    return fault
        return None

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            if self._users.get(login) == password:
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)

    def _store(self, session: Session, envelope: Envelope) -> None:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        received = ReceivedMessage(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(envelope.rcpt_tos),
            raw=raw,
            message=message,
            authenticated_as=str(session.auth_data) if session.authenticated and session.auth_data else None,
        )
        with self._cond:
            self.messages.append(received)
            self._cond.notify_all()

    def _dropped(self) -> None:
        with self._lock:
            self.drops += 1


class _Handler:
    """aiosmtpd's handler hooks (a separate object: aiosmtpd inspects every attribute of its handler)."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self._sink._users and not session.authenticated:
            return "530 5.7.0 Authentication required"
        fault = self._sink._take_fault("mail")
        if fault is not None and fault.reply is not None:
            return fault.reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        fault = self._sink._take_fault("rcpt")
        if fault is not None and fault.reply is not None:
            return fault.reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = self._sink._take_fault("data")
        if fault is not None and fault.reply is not None:
            return fault.reply
        if fault is None or fault.after_store:
            self._sink._store(session, envelope)
        if fault is not None:  # a drop: no reply at all
            self._sink._dropped()
            transport = server.transport
            assert isinstance(transport, asyncio.Transport)
            transport.abort()
            return "421 4.3.0 connection dropped"  # written to a closed transport: never seen
        return "250 OK: queued"

"""Telling people about requests. Channels (web outbox now; Slack, Jira and email later) implement
:class:`Notifier`. Notifications are best effort: a failure is logged and never fails a request."""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from domain.identity import PersonRef

log = logging.getLogger("grantflow.notify")


class Message(BaseModel):
    request_id: str
    event: str
    recipient: PersonRef
    subject: str
    text: str
    link: str | None = None


class Notifier(Protocol):
    async def send(self, message: Message) -> None: ...


class OutboxNotifier:
    """The default channel when nothing else is configured: each message is appended as one JSON line
    to an outbox file (``grantflow dev`` prints it, links included) and logged."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def _append(self, line: str) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # Review links are credentials: the outbox is readable by its owner only, and logs never carry them.
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with open(fd, "a", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write(line + "\n")

    async def send(self, message: Message) -> None:
        line = json.dumps({"at": datetime.now(UTC).isoformat(), **message.model_dump(mode="json")})
        await asyncio.to_thread(self._append, line)
        log.info(
            "to %s: %s%s",
            message.recipient.email,
            message.subject,
            " (with a review link)" if message.link else "",
        )

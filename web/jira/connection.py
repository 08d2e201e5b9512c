"""What every part of the Jira edge shares: its one Jira client, the outcome of a delivery, and how Jira's
field values read as text.

:class:`JiraConnection` builds the ``jira`` client on first use, in a worker thread (the client talks to
Jira when it is built), and runs every blocking Jira step off the event loop; a transient Jira failure
becomes :class:`Transient`, which the edge answers with 503 so that Jira's redelivery tries again. It
decides nothing: what to do with Jira's answers is the decisions' and the intake's.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import requests
from jira import JIRA, JIRAError

from configuration.settings import Settings
from integrations.jira_tickets import JiraTickets, JiraTransientError, translate_error

CHANNEL = "jira"
"""The channel decisions and requests made in Jira are recorded under."""

P = ParamSpec("P")
T = TypeVar("T")


class Transient(Exception):
    """Something failed that may work on redelivery: answer 503 and remember nothing."""


class Malformed(Exception):
    """A signed delivery whose JSON is not shaped as Jira's webhooks are: answer 400 (naming what is
    wrong), act on nothing, and remember nothing."""


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # counted, refused, created, rejected, ignored, duplicate
    detail: str

    def body(self) -> dict[str, str]:
        return {"status": self.status, "detail": self.detail}


def jira_call(doing: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` with the ``jira`` library's errors translated (``doing`` says what for)."""
    try:
        return fn(*args, **kwargs)
    except (JIRAError, requests.RequestException) as exc:
        raise translate_error(exc, doing) from exc


class JiraConnection:
    """The Jira client and :class:`JiraTickets` of one edge, built by ``connect`` on first use."""

    def __init__(self, settings: Settings, connect: Callable[[], JIRA]) -> None:
        self.settings = settings
        self._connect = connect
        self._client: JIRA | None = None
        self._tickets: JiraTickets | None = None
        self._client_lock = threading.Lock()
        self._myself: str | None = None

    def ensure_client(self) -> tuple[JIRA, JiraTickets]:
        """The client and tickets, built now if need be (blocking: call from a worker thread)."""
        with self._client_lock:
            if self._client is None or self._tickets is None:
                client = self._connect()
                self._tickets = JiraTickets(
                    client,
                    project_key=self.settings.jira_project,
                    issue_type=self.settings.jira_issue_type,
                    transition_names=self.settings.jira_transitions,
                    account_ids=self.settings.jira_account_ids,
                    adopted_projects=[self.settings.jira_intake_project],
                )
                self._client = client
            return self._client, self._tickets

    async def run(self, fn: Callable[[], T]) -> T:
        """A blocking Jira step off the event loop; transient failures become :class:`Transient`."""
        try:
            return await asyncio.to_thread(fn)
        except JiraTransientError as exc:
            raise Transient(exc.message) from exc

    def close(self) -> None:
        with self._client_lock:
            client, self._client, self._tickets = self._client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    async def by_ourselves(self, payload: Mapping[str, Any]) -> bool:
        """Whether grantflow's own API user made the event (the mirror of a decision already made)."""
        account_id = str((payload.get("user") or {}).get("accountId") or "")
        return bool(account_id) and account_id == await self._own_account_id()

    async def _own_account_id(self) -> str:
        if self._myself is None:

            def ask() -> str:
                client, _ = self.ensure_client()
                return str(jira_call("asking Jira who grantflow is", client.myself)["accountId"])

            self._myself = await self.run(ask)
        return self._myself


def field_text(value: Any) -> str:
    """A Jira field value as text: strings, numbers, options ``{"value"}``, named objects, lists (the
    first), and Atlassian Document Format (its text)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return ""
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return field_text(value[0]) if value else ""
    if isinstance(value, Mapping):
        if value.get("type") == "doc":
            return _adf_text(value).strip()
        for key in ("value", "name", "key"):
            if isinstance(value.get(key), str):
                return str(value[key]).strip()
    return ""


def _adf_text(node: Any) -> str:
    if isinstance(node, Mapping):
        if node.get("type") == "text":
            return str(node.get("text") or "")
        inner = "".join(_adf_text(c) for c in node.get("content") or [])
        return inner + ("\n" if node.get("type") in ("paragraph", "heading") else "")
    return ""

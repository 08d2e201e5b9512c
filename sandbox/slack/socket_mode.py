"""Socket Mode, as Slack's docs describe it ("Using Socket Mode", api.slack.com/apis/socket-mode):
``apps.connections.open`` returns a single-use ``ws://127.0.0.1:PORT/link/?ticket=…`` URL; on connect the
server sends ``hello``; envelopes (``slash_commands``, ``interactive``, ``events_api``) go to the newest
connection, and the app acks each with ``{"envelope_id": …}`` (and, where Slack accepts one, a payload);
``disconnect`` asks clients to reconnect through ``apps.connections.open``.

Only the connections and envelopes live here; what an envelope carries is built by the driver.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import WSMsgType, web

from sandbox.slack.loop import LOOPBACK, LoopThread
from sandbox.slack.workspace import APP_ID, Workspace

SOCKET_TYPES = ("slash_commands", "interactive", "events_api")


@dataclass
class SocketEnvelope:
    """One envelope sent over Socket Mode, and whether (and with what) the app acknowledged it."""

    envelope_id: str
    type: str
    payload: dict[str, Any]
    acked: bool = False
    ack_payload: dict[str, Any] | None = None
    _event: threading.Event = field(default_factory=threading.Event, init=False, repr=False, compare=False)

    def wait_ack(self, timeout: float = 5.0) -> bool:
        return self._event.wait(timeout)


@dataclass
class _Socket:
    ws: web.WebSocketResponse
    opened_at: float


class SocketMode:
    """The Socket Mode connections of one stand-in, guarded by the workspace lock."""

    def __init__(self, ws: Workspace, port: Callable[[], int]) -> None:
        self._lock = ws.lock
        self._port = port
        self._tickets: set[str] = set()
        self._sockets: list[_Socket] = []
        self._connects = 0
        self.envelopes: list[SocketEnvelope] = []

    def connections_open(
        self, ws: Workspace, p: dict[str, Any], kind: str, warnings: list[str]
    ) -> dict[str, Any]:
        """The Web API method ``apps.connections.open`` (app-level token only)."""
        ticket = str(uuid.uuid4())
        self._tickets.add(ticket)
        query = urlencode({"ticket": ticket, "app_id": APP_ID})
        return {"url": f"ws://{LOOPBACK}:{self._port()}/link/?{query}"}

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._sockets)

    @property
    def connects(self) -> int:
        with self._lock:
            return self._connects

    def wait(self, timeout: float, count: int) -> None:
        deadline = time.monotonic() + timeout
        while self.connections < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no Socket Mode connection within {timeout}s")
            time.sleep(0.01)

    def deliver(
        self, server: LoopThread | None, envelope_type: str, payload: Mapping[str, Any], timeout: float
    ) -> SocketEnvelope:
        if envelope_type not in SOCKET_TYPES:
            raise ValueError(f"envelope type must be one of {', '.join(SOCKET_TYPES)}")
        with self._lock:
            if server is None or not self._sockets:
                raise RuntimeError("no Socket Mode connection: start the app's SocketModeHandler first")
            ws = self._sockets[-1].ws
            envelope = SocketEnvelope(str(uuid.uuid4()), envelope_type, dict(payload))
            self.envelopes.append(envelope)
        accepts_response = envelope_type == "slash_commands" or (
            envelope_type == "interactive" and payload.get("type") in ("view_submission", "block_suggestion")
        )
        message = {
            "envelope_id": envelope.envelope_id,
            "payload": envelope.payload,
            "type": envelope_type,
            "accepts_response_payload": accepts_response,
        }
        if envelope_type == "events_api":
            message.update(retry_attempt=0, retry_reason="")
        server.run(ws.send_str(json.dumps(message)), timeout)
        envelope.wait_ack(timeout)
        return envelope

    def disconnect(self, server: LoopThread | None, reason: str) -> None:
        with self._lock:
            sockets = list(self._sockets)
        if server is None:
            return
        body = json.dumps({"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-sandbox"}})
        for sock in sockets:
            server.run(sock.ws.send_str(body))

    def close_all(self, server: LoopThread) -> None:
        """Close every connection, as a server shutting down does."""
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                server.run(sock.ws.close(code=1001, message=b"server shutting down"), 2.0)
            except Exception:  # already gone
                pass

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        with self._lock:
            valid = ticket in self._tickets
            self._tickets.discard(ticket)
        if not valid:
            return web.Response(status=401, text="invalid or used ticket")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        entry = _Socket(ws, time.monotonic())
        with self._lock:
            self._sockets.append(entry)
            self._connects += 1
            count = len(self._sockets)
        await ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": count,
                    "debug_info": {"host": "applink-sandbox", "approximate_connection_time": 18060},
                    "connection_info": {"app_id": APP_ID},
                }
            )
        )
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(data, dict) and isinstance(data.get("envelope_id"), str):
                    self._ack(data["envelope_id"], data.get("payload"))
        finally:
            with self._lock:
                if entry in self._sockets:
                    self._sockets.remove(entry)
        return ws

    def _ack(self, envelope_id: str, payload: Any) -> None:
        with self._lock:
            for envelope in self.envelopes:
                if envelope.envelope_id == envelope_id and not envelope.acked:
                    envelope.acked = True
                    envelope.ack_payload = payload if isinstance(payload, dict) else None
                    envelope._event.set()

"""Run an ASGI app with uvicorn on a daemon thread, for the stand-ins in ``sandbox/`` and their tests.

``BackgroundServer(app).start()`` binds ``127.0.0.1`` (never any other interface) on the given port, or on a
free one when the port is 0, waits until uvicorn accepts connections and returns the base URL
(``http://127.0.0.1:PORT``). ``stop()`` asks uvicorn to exit and joins the thread. The socket is bound here,
not by uvicorn, so the real port is known before the server starts even when 0 was asked for.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Self

import uvicorn

LOOPBACK = "127.0.0.1"


class _QuickServer(uvicorn.Server):
    """uvicorn checks ``should_exit`` every 100 ms; tests start and stop a server per test, so look every
    10 ms (``on_tick`` still refreshes the Date header about every 100 ms)."""

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            await asyncio.sleep(0.01)


class BackgroundServer:
    """One uvicorn server on a daemon thread. Not restartable: make a new one to serve again."""

    def __init__(self, app: Any, *, port: int = 0, log_level: str = "warning") -> None:
        self._app = app
        self._port = port
        self._log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._bound_port: int | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("server is not running")
        return self._url

    @property
    def port(self) -> int:
        """The port bound by ``start`` (the real one when 0 was asked for)."""
        if self._bound_port is None:
            raise RuntimeError("server was not started")
        return self._bound_port

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> str:
        if self._thread is not None:
            raise RuntimeError("server already started")
        # proto must say TCP: asyncio only sets TCP_NODELAY on accepted sockets whose proto is IPPROTO_TCP,
        # and without it every response waits ~40 ms for a delayed ACK (headers and body go out separately)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, self._port))
        sock.listen(128)
        sock.setblocking(False)
        self._socket = sock
        self._bound_port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self._app,
            host=LOOPBACK,
            port=self.port,
            log_level=self._log_level,
            access_log=False,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=2,
        )
        server = _QuickServer(config)
        self._server = server
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{self.port}", daemon=True
        )
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive():
                self._close_socket()
                raise RuntimeError(f"server on port {self.port} exited during start-up")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server on port {self.port} did not start within {timeout}s")
            time.sleep(0.005)
        self._url = f"http://{LOOPBACK}:{self.port}"
        return self._url

    def stop(self, timeout: float = 10.0) -> None:
        server, thread = self._server, self._thread
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout)
        self._close_socket()
        self._url = None

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()

    def __enter__(self) -> BackgroundServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class HttpStandIn:
    """What every stand-in served by :class:`BackgroundServer` shares: start/stop on 127.0.0.1, its URL,
    an injectable clock (timezone-aware), and use as a context manager. Subclasses set ``self.app``,
    ``self._clock`` and ``self._server = None`` in their constructor, and may hook ``_started`` and
    ``_stopping``."""

    app: Any
    _clock: Callable[[], datetime]
    _server: BackgroundServer | None

    def start(self, port: int = 0) -> str:
        """Serve on 127.0.0.1 (``port`` 0: any free port); returns the base URL."""
        if self._server is not None:
            raise RuntimeError("already started")
        server = BackgroundServer(self.app, port=port)
        url = server.start()
        self._server = server
        self._started(url)
        return url

    def stop(self) -> None:
        self._stopping()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _started(self, url: str) -> None:
        """Called once serving (e.g. to start background senders)."""

    def _stopping(self) -> None:
        """Called before the server stops."""

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("not started")
        return self._server.url

    def now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the clock must return timezone-aware datetimes")
        return now

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

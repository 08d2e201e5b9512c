"""An aiohttp application on its own event loop in a daemon thread, bound to 127.0.0.1 only.

Why aiohttp and not the Starlette + ``BackgroundServer`` pair the hoop stand-in uses: uvicorn there runs
without a WebSocket library, and ASGI offers no way to close a connection without answering, which the
dropped-connection faults need. aiohttp is installed anyway (slack_sdk's ``AsyncWebClient`` runs on it).
This module knows nothing of Slack.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

from aiohttp import web

LOOPBACK = "127.0.0.1"


class LoopThread:
    """An aiohttp application on its own event loop in a daemon thread, bound to 127.0.0.1 only."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self.loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def start(self, port: int, timeout: float = 10.0) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
        sock.listen(128)
        sock.setblocking(False)
        self.port = int(sock.getsockname()[1])
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            runner = web.AppRunner(self._app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            self._runner = runner

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(serve())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, name=f"slack-standin-{self.port}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or failure:
            sock.close()
            raise RuntimeError(f"Slack stand-in did not start on port {self.port}") from (
                failure[0] if failure else None
            )
        return self.port

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        runner = self._runner
        if runner is not None and self.loop.is_running():
            try:
                self.run(runner.cleanup(), timeout)
            except Exception:  # the server is going away either way
                pass
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self.loop.is_running():
            self.loop.close()
        self._thread = None

"""The HTTP side of the SCIM directory: a threaded ``wsgiref`` server for 127.0.0.1, and the answers the
directory builds itself (injected failures) rather than getting them from scim2-server.

Nothing here knows about resources or faults; ``server`` decides what to answer.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from http import HTTPStatus
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

LOOPBACK = "127.0.0.1"
CONNECTION = "sandbox.connection"
"""Where the handler puts the request's socket in the WSGI environ."""
# RFC 7644 §3.12: an error answer carries this schema, the status as a string, and a detail
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


class Handler(WSGIRequestHandler):
    """wsgiref's handler without access logs, and with TCP_NODELAY: it writes headers and body separately,
    and without it every small answer waits for a delayed ACK."""

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ[CONNECTION] = self.connection  # for a dropped connection (``drop_connection``)
        return environ

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up (a test that stopped waiting) is not worth a traceback


@dataclass
class Answer:
    status: str
    headers: list[tuple[str, str]]
    body: bytes = b""


def error_answer(status: int, *, retry_after: str | None, scim_body: bool, detail: str) -> Answer:
    """A SCIM error answer, or with ``scim_body=False`` the HTML page a proxy in front would send."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    headers: list[tuple[str, str]] = []
    if retry_after is not None:
        headers.append(("Retry-After", retry_after))
    if scim_body:
        body = json.dumps({"schemas": [ERROR_SCHEMA], "status": str(status), "detail": detail}).encode()
        headers.append(("Content-Type", "application/scim+json"))
    else:
        body = f"<html><body><h1>{status} {phrase}</h1></body></html>".encode()
        headers.append(("Content-Type", "text/html"))
    return Answer(f"{status} {phrase}", headers, body)


def drop_connection(environ: Any, start_response: Any) -> list[bytes]:
    """Close the request's connection without an answer; returns the (empty) body for the WSGI app to
    return. wsgiref then fails to write the status it is handed and gives up silently: a client that hung
    up is a broken pipe it expects."""
    connection = environ.get(CONNECTION)
    if connection is None:
        raise RuntimeError("dropping a connection needs the directory's own request handler")
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already gone
    start_response("500 Internal Server Error", [("Content-Length", "0")])
    return []

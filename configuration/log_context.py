"""What the web app is answering, for its log lines: the request or campaign of the route being served.

The web app's middleware wraps each HTTP request in :func:`serving`; grantflow's JSON log formatter
(``grantflow/logs.py``) adds the route's ``request_id`` / ``campaign_id`` path parameters to every record
logged meanwhile, so a log pipeline can follow one request from the edge into the worker.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

_http_scope: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "grantflow_http_scope", default=None
)


@contextlib.contextmanager
def serving(scope: MutableMapping[str, Any]) -> Iterator[None]:
    """While the web app answers the HTTP request of this ASGI ``scope``: its log records carry the
    ``request_id`` / ``campaign_id`` of the route's path parameters. The router fills them into the same
    scope once it has matched the route, so the scope is kept, not copied."""
    token = _http_scope.set(scope)
    try:
        yield
    finally:
        _http_scope.reset(token)


def ids_from_route(line: dict[str, Any]) -> None:
    scope = _http_scope.get()
    params = scope.get("path_params") if scope is not None else None
    if isinstance(params, Mapping):
        for name in ("request_id", "campaign_id"):
            if isinstance(params.get(name), str):
                line.setdefault(name, params[name])

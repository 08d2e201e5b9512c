"""The grantflow web app: REST API (``/api/v1``), review pages (``/review/{token}``), ``/healthz`` and
``/metrics`` (Prometheus; :mod:`integrations.metrics`).

``/api/v1/docs`` is Swagger UI with its assets served by the app itself (from the ``fastapi-offline``
package, never a CDN), so the docs work without internet; ``/`` is a small page linking the docs, the
health check and, in ``grantflow dev``, what the stack runs.

``create_app`` builds the FastAPI app around a :class:`~web.context.WebContext` (everything the routes
need, built once) and is the only module that imports the routers; ``build_context`` builds that context
from settings; ``serve`` runs it under uvicorn until a stop event is set (``grantflow server`` and
``grantflow dev``). The app keeps no state of its own beyond the context, so several instances may run
behind a load balancer (they share the store and Temporal; review pages work across instances when they
share the review-link secret).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from configuration import __version__
from configuration.log_context import serving
from configuration.policies import configured_policies
from configuration.settings import Settings, SettingsError
from configuration.temporal import connect_client
from domain.requests import GatewayTimings
from domain.review_links import ReviewLinks
from integrations.metrics import METRICS
from store.opening import open_current_store
from web.api import router as api_router
from web.auth import TokenFileError, TokenRegistry
from web.callers import API_PREFIX, Unauthenticated
from web.campaign_api import router as campaign_api_router
from web.campaign_review import router as campaign_review_router
from web.campaign_triggers import router as campaign_triggers_router
from web.context import WebContext, campaigns_for
from web.jira import build_jira_edge
from web.jira.router import router as jira_router
from web.pages import derive_csrf_key
from web.review import router as review_router
from web.service import RequestService, ServiceError
from web.slack_app import build_slack_edge
from web.slack_router import router as slack_router
from web.sync_api import router as sync_router

log = logging.getLogger("grantflow.web")


def gateway_timings(settings: Settings) -> GatewayTimings:
    return GatewayTimings(
        max_grant=settings.gateway_max_grant,
        renewal_lead=settings.renewal_lead,
        revoke_escalate_after=settings.revoke_escalate_after,
    )


async def build_context(settings: Settings) -> WebContext:
    """Load the policies and tokens, open the store and connect to Temporal; :class:`SettingsError`
    names what is missing or unusable (ledger key, review-link secret, the policies or tokens file, a
    schema older than this release), :class:`~configuration.settings.ServiceUnreachable` the database or
    Temporal that cannot be reached. Never migrates and never falls back to the example policies."""
    secret = settings.require_secret("review_link_secret")
    policies = configured_policies(settings)
    links = ReviewLinks(secret, settings.effective_public_url, settings.review_link_ttl)
    tokens = load_tokens(settings)
    store = await asyncio.to_thread(open_current_store, settings)
    store.observe_ledger(METRICS.observe_entry)
    try:
        client = await connect_client(settings)
    except BaseException:
        store.close()
        raise
    service = RequestService(
        client,
        store,
        policies,
        settings.task_queue,
        gateway_timings(settings),
        channels=settings.configured_channels,
    )
    # --- channel edges, when configured
    slack = build_slack_edge(settings, service, store)
    jira = build_jira_edge(settings, service, store)
    return WebContext(
        settings=settings,
        store=store,
        client=client,
        policies=policies,
        links=links,
        tokens=tokens,
        service=service,
        csrf_key=derive_csrf_key(secret),
        secure_cookies=settings.effective_public_url.startswith("https://"),
        owns_store=True,
        slack=slack,
        jira=jira,
    )


def load_tokens(settings: Settings) -> TokenRegistry:
    """The API tokens of ``GRANTFLOW_TOKENS_FILE``, which must exist and list at least one token: a
    server without tokens would answer 401 to everyone, so it refuses to start instead."""
    where = "GRANTFLOW_TOKENS_FILE"
    if settings.tokens_file is None:
        raise SettingsError(
            f"{where} is not set: the API tokens file is required "
            "(create it with `grantflow token issue --name NAME --role admin`)"
        )
    where = f"{where}={settings.tokens_file}"
    if not settings.tokens_file.is_file():
        raise SettingsError(
            f"{where}: the API tokens file does not exist "
            "(create it with `grantflow token issue --name NAME --role admin`)"
        )
    try:
        tokens = TokenRegistry(settings.tokens_file)
    except TokenFileError as exc:
        raise SettingsError(f"{where}: {exc}") from None
    if not tokens.count:
        raise SettingsError(
            f"{where}: the file lists no tokens, so every call would be refused "
            "(add one with `grantflow token issue --name NAME --role admin`)"
        )
    return tokens


def _error_response(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body: dict[str, Any] = {"error": code, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    where = ""
    if parts and parts[0] in ("body", "query", "path", "header"):
        where = parts.pop(0)
    if not parts:
        return "the request body" if where == "body" else (where or "the request")
    name = ".".join(parts)
    return name if where in ("body", "") else f"{name} ({where})"


def validation_detail(exc: RequestValidationError) -> str:
    """One readable sentence naming every bad field: ``duration: field required; reason: ...``."""
    problems = []
    for err in exc.errors():
        where = _field(err.get("loc", ()))
        if err.get("type") == "json_invalid":
            problems.append(
                f"the request body is not valid JSON ({err.get('ctx', {}).get('error', 'parse error')})"
            )
            continue
        message = str(err.get("msg", "is not valid"))
        if err.get("type") == "missing":
            message = "field required"
        elif err.get("type") == "extra_forbidden":
            message = "unknown field"
        problems.append(f"{where}: {message}")
    return "; ".join(problems) or "the request is not valid"


DOCS_URL = f"{API_PREFIX}/docs"
DOCS_ASSETS_URL = f"{API_PREFIX}/docs/assets"
"""Where Swagger UI's own JavaScript and CSS are served from (offline: no CDN)."""


def home_page(home_links: Sequence[tuple[str, str]] = ()) -> str:
    """The page at ``/``: where the docs and the health check are, and ``home_links`` (name, URL or
    text) under "grantflow dev runs" when the dev stack passes them."""

    def item(name: str, target: str) -> str:
        shown = html.escape(target)
        value = f'<a href="{shown}">{shown}</a>' if target.startswith(("http://", "https://")) else shown
        return f"<li>{html.escape(name)}: {value}</li>"

    stack = ""
    if home_links:
        stack = "<h2>grantflow dev runs</h2><ul>" + "".join(item(n, t) for n, t in home_links) + "</ul>"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>grantflow</title></head><body>"
        f"<h1>grantflow {html.escape(__version__)}</h1><ul>"
        f'<li><a href="{DOCS_URL}">REST API documentation</a> (Swagger UI) and its '
        f'<a href="{API_PREFIX}/openapi.json">OpenAPI document</a></li>'
        '<li><a href="/healthz">health check</a></li>'
        "<li>review pages: the signed links sent to approvers (<code>/review/…</code>)</li>"
        "<li>the command line: <code>grantflow --help</code></li></ul>"
        f"{stack}</body></html>"
    )


def create_app(context: WebContext, *, home_links: Sequence[tuple[str, str]] = ()) -> FastAPI:
    """The FastAPI app for ``context``: API, review pages, health check, ``/`` and JSON error bodies;
    ``home_links`` are shown on ``/`` (``grantflow dev`` lists what it runs)."""
    app = FastAPIOffline(
        title="grantflow",
        version=__version__,
        description=(
            "Just-in-time access to hoop.dev connections, approved by N of M eligible approvers and revoked "
            'on time. Every error is `{"error": code, "detail": sentence}`.'
        ),
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=DOCS_URL,
        redoc_url=None,
        static_url=DOCS_ASSETS_URL,
    )
    app.state.context = context

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return _error_response(
            exc.status, exc.code, exc.detail, existing_request_id=getattr(exc, "existing_request_id", None)
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(422, "bad_input", validation_detail(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: Unauthenticated.code, 403: "forbidden"}
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"there is no {request.method} {request.url.path}"
        if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):
            # FastAPI's "error parsing the body" (bytes that are not UTF-8 under a JSON content type): the
            # same bad input as JSON that does not parse, so the same 422 the API documents
            why = (
                "it is not UTF-8 text"
                if isinstance(exc.__cause__, UnicodeDecodeError)
                else "it cannot be read"
            )
            return _error_response(422, "bad_input", f"the request body is not valid JSON ({why})")
        return _error_response(exc.status_code, codes.get(exc.status_code, "http_error"), detail)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error_response(500, "internal", f"an unexpected error occurred ({type(exc).__name__})")

    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        """This process's metrics in Prometheus text format; no authentication, like ``/healthz``."""
        return Response(generate_latest(METRICS.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(RequestCounter)

    @app.get("/", include_in_schema=False)
    async def home() -> HTMLResponse:
        return HTMLResponse(home_page(home_links))

    app.include_router(api_router)
    app.include_router(campaign_triggers_router)  # before /campaigns/{campaign_id}
    app.include_router(campaign_api_router)
    app.include_router(campaign_review_router)
    app.include_router(sync_router)
    app.include_router(review_router)
    # --- channel edges, when configured
    if context.slack is not None:
        context.slack.campaign_actions.campaigns = campaigns_for(context)
        app.include_router(slack_router)
    if context.jira is not None:
        context.jira.campaign_digests.campaigns = campaigns_for(context)
        app.include_router(jira_router)
    return app


def route_template(scope: Scope) -> str:
    """The path template of the route that answered (``/api/v1/requests/{request_id}``), so metrics get
    one series per route, not per id; ``unmatched`` for a path no route has."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else "unmatched"


class RequestCounter:
    """ASGI middleware counting HTTP requests by route template and status
    (``grantflow_http_requests_total``); a request whose handler raised counts as 500. It also scopes the
    request's log records (:func:`configuration.log_context.serving`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            with serving(scope):  # log records name the route's request or campaign
                await self.app(scope, receive, sending)
        finally:
            METRICS.observe_http(route_template(scope), status)


class CannotListen(OSError):
    """The web app's address cannot be bound (a port in use, an unknown host); the message says which."""


@contextlib.asynccontextmanager
async def running(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` under uvicorn in this event loop; yields its base URL (``port=0``: a free port).

    The socket is bound here, so a port in use is a :class:`CannotListen` (an ``OSError``) for the caller
    (uvicorn itself would call ``sys.exit``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise CannotListen(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    except BaseException:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    # log_config=None: uvicorn's lines go through the process's own handlers (GRANTFLOW_LOG_FORMAT).
    config = uvicorn.Config(app, host=host, port=bound, log_level="warning", lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="grantflow-web")
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError(f"the web app did not start on {host}:{bound}")
            await asyncio.sleep(0.02)
        yield f"http://[{host}]:{bound}" if family == socket.AF_INET6 else f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
    extra_routers: Sequence[APIRouter] = (),
    home_links: Sequence[tuple[str, str]] = (),
) -> None:
    """Run the web app on ``settings.web_host:web_port`` until ``stop`` is set; ``ready`` is set once it
    accepts connections. ``extra_routers`` are mounted too (``grantflow dev`` adds its sandbox controls),
    and ``home_links`` are listed on ``/``."""
    context = await build_context(settings)
    try:
        app = create_app(context, home_links=home_links)
        for router in extra_routers:
            app.include_router(router)
        async with running(app, settings.web_host, settings.web_port) as url:
            log.info("web app listening on %s", url)
            # --- Slack over Socket Mode, when an app-level token is configured
            if context.slack is not None and context.slack.app_token:
                try:
                    await context.slack.start_socket_mode()
                except Exception:  # the API and review pages still work; say what is off
                    log.exception("Slack Socket Mode could not connect: Slack buttons and commands are off")
            if ready is not None:
                ready.set()
            await stop.wait()
    except CannotListen as exc:
        raise SettingsError(f"GRANTFLOW_WEB_HOST / GRANTFLOW_WEB_PORT: {exc}") from None
    finally:
        # --- channel edges
        if context.slack is not None:
            await context.slack.aclose()
        if context.jira is not None:
            await context.jira.aclose()
        context.close()

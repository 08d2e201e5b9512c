"""The grantflow web app: REST API (``/api/v1``), review pages (``/review/{token}``) and ``/healthz``.

``create_app`` builds the FastAPI app around a :class:`WebContext` (everything the routes need, built
once); ``build_context`` builds that context from settings; ``serve`` runs it under uvicorn until a stop
event is set (``grantflow server`` and ``grantflow dev``). The app keeps no state of its own beyond the
context, so several instances may run behind a load balancer (they share the store and Temporal; review
pages work across instances when they share the review-link secret).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import Client

from domain.policy import PolicySet, load_policies
from domain.requests import GatewayTimings
from examples import POLICIES_FILE
from grantflow import __version__
from grantflow.settings import Settings, SettingsError
from store import Store
from web.api import API_PREFIX, Unauthenticated
from web.api import router as api_router
from web.auth import TokenFileError, TokenRegistry
from web.jira_webhook import JiraEdge, build_jira_edge
from web.jira_webhook import router as jira_router
from web.links import ReviewLinks
from web.review import derive_csrf_key
from web.review import router as review_router
from web.service import RequestService, ServiceError
from web.slack_app import SlackEdge, build_slack_edge
from web.slack_app import router as slack_router
from web.sync_api import router as sync_router

log = logging.getLogger("grantflow.web")


@dataclass
class WebContext:
    """Everything the routes use, built once per process."""

    settings: Settings
    store: Store
    client: Client
    policies: PolicySet
    links: ReviewLinks
    tokens: TokenRegistry
    service: RequestService
    csrf_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    """Keys the review pages' CSRF tokens; derived from the review-link secret by ``build_context``."""
    secure_cookies: bool = False
    """Mark cookies ``Secure``: on when the public URL is https."""
    owns_store: bool = False
    # --- channel edges (Slack, Jira): None when not configured
    slack: SlackEdge | None = None
    jira: JiraEdge | None = None

    def close(self) -> None:
        if self.owns_store:
            self.store.close()


def gateway_timings(settings: Settings) -> GatewayTimings:
    return GatewayTimings(
        max_grant=settings.gateway_max_grant,
        renewal_lead=settings.renewal_lead,
        revoke_escalate_after=settings.revoke_escalate_after,
    )


async def build_context(settings: Settings) -> WebContext:
    """Open the store, connect to Temporal and load the policies; :class:`SettingsError` names what is
    missing (ledger key, review-link secret, a policy file that cannot be used)."""
    from domain.policy import PolicyError
    from worker import connect_client, open_store

    secret = settings.require_secret("review_link_secret")
    try:
        policies = load_policies(settings.policies_file or POLICIES_FILE)
    except PolicyError as exc:
        raise SettingsError(str(exc)) from None
    links = ReviewLinks(secret, settings.effective_public_url, settings.review_link_ttl)
    try:
        tokens = TokenRegistry(settings.tokens_file or settings.state_dir / "tokens.toml")
    except TokenFileError as exc:
        raise SettingsError(str(exc)) from None
    store = await asyncio.to_thread(open_store, settings)
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


def create_app(context: WebContext) -> FastAPI:
    """The FastAPI app for ``context``: API, review pages, health check and JSON error bodies."""
    app = FastAPI(
        title="grantflow",
        version=__version__,
        description=(
            "Just-in-time access to hoop.dev connections, approved by N of M eligible approvers and revoked "
            'on time. Every error is `{"error": code, "detail": sentence}`.'
        ),
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
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
        return _error_response(exc.status_code, codes.get(exc.status_code, "http_error"), detail)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error_response(500, "internal", f"an unexpected error occurred ({type(exc).__name__})")

    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    app.include_router(api_router)
    app.include_router(sync_router)
    app.include_router(review_router)
    # --- channel edges, when configured
    if context.slack is not None:
        app.include_router(slack_router)
    if context.jira is not None:
        app.include_router(jira_router)
    return app


@contextlib.asynccontextmanager
async def running(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` under uvicorn in this event loop; yields its base URL (``port=0``: a free port).

    The socket is bound here, so a port in use is an ``OSError`` for the caller (uvicorn itself would
    call ``sys.exit``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, host=host, port=bound, log_level="warning", lifespan="off")
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
) -> None:
    """Run the web app on ``settings.web_host:web_port`` until ``stop`` is set; ``ready`` is set once it
    accepts connections. ``extra_routers`` are mounted too (``grantflow dev`` adds its sandbox controls)."""
    context = await build_context(settings)
    try:
        app = create_app(context)
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
    finally:
        # --- channel edges
        if context.slack is not None:
            await context.slack.aclose()
        if context.jira is not None:
            await context.jira.aclose()
        context.close()

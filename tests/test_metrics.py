"""Operators' observability: Prometheus metrics derived from the evidence ledger (counted once per new
entry), the web app's ``/metrics`` and request counter, the worker's metrics port and JSON log lines."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from configuration.settings import Settings, SettingsError
from configuration.temporal import connect_client, metrics_runtime
from domain.requests import EndReason, RequestStatus
from grantflow.logs import JsonFormatter
from integrations.metrics import METRICS, GrantflowMetrics, expiry_lag_seconds
from store import Store
from tests.rigs.ports import free_port
from tests.stack import LEDGER_KEY, Stack
from tests.test_access_request_workflow import active, approve, ready
from web.app import RequestCounter, create_app, running
from web.auth import issue_token
from worker import serve_worker_metrics


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def parsed(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page, keyed by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def fresh_store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'metrics.db'}", ledger_key=LEDGER_KEY, anchor_path=None)
    store.migrate()
    return store


def test_a_new_ledger_entry_is_counted_once_and_an_idempotent_repeat_not_at_all(fresh_store: Store) -> None:
    metrics = GrantflowMetrics(CollectorRegistry())
    fresh_store.observe_ledger(metrics.observe_entry)
    fresh_store.observe_ledger(metrics.observe_entry)  # registering twice still counts once
    for _ in range(2):
        fresh_store.append_ledger(
            kind="decision.approved",
            subject="req-1",
            actor="bob@example.com",
            channel="slack",
            data={"stage": "request"},
            idempotency_key="req-1:decide:bob",
        )
    registry = metrics.registry
    assert sample(registry, "grantflow_ledger_entries_total", kind="decision.approved") == 1.0
    assert (
        sample(registry, "grantflow_decisions_total", verdict="approve", channel="slack", outcome="recorded")
        == 1.0
    )
    fresh_store.append_ledger(
        kind="campaign.decided",
        subject="camp-1",
        actor="dan@example.com",
        channel="web",
        data={"decisions": [{"item": "a", "verdict": "keep"}, {"item": "b", "verdict": "revoke"}] * 2},
    )
    fresh_store.append_ledger(
        kind="decision.refused", subject="req-1", actor="x", channel="jira", data={"verdict": "deny"}
    )
    fresh_store.append_ledger(kind="campaign.item_failed", subject="camp-1", actor="w", channel="w", data={})
    fresh_store.append_ledger(kind="grant.written", subject="req-1", actor="w", channel="w", data={})
    decisions = "grantflow_decisions_total"
    assert sample(registry, decisions, verdict="keep", channel="web", outcome="recorded") == 2.0
    assert sample(registry, decisions, verdict="revoke", channel="web", outcome="recorded") == 2.0
    assert sample(registry, decisions, verdict="deny", channel="jira", outcome="refused") == 1.0
    assert sample(registry, "grantflow_revocations_total", result="failed") == 1.0
    assert sample(registry, "grantflow_failures_total", kind="campaign.item_failed") == 1.0
    assert sample(registry, "grantflow_grants_total") == 1.0
    assert len(fresh_store.ledger_entries()) == 5


def test_a_failing_observer_is_logged_and_never_fails_the_append(
    fresh_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[int] = []

    def broken(entry: Any) -> None:
        raise RuntimeError("metrics backend gone")

    fresh_store.observe_ledger(broken)
    fresh_store.observe_ledger(lambda entry: seen.append(entry.seq))
    with caplog.at_level(logging.ERROR, logger="grantflow.store.ledger"):
        entry = fresh_store.append_ledger(kind="notice", subject="s", actor="a", channel="c", data={})
    assert entry.seq == 1 and seen == [1]
    assert "a ledger observer failed on entry 1 (notice)" in caplog.text
    assert fresh_store.verify_ledger().ok


async def test_an_expired_request_observes_its_expiry_to_revocation_lag(time_stack: Stack) -> None:
    stack = time_stack
    metrics = GrantflowMetrics(CollectorRegistry())
    stack.store.observe_ledger(metrics.observe_entry)
    handle = await stack.start_request("alice@example.com", "pg-prod", "admin", timedelta(hours=2))
    await ready(stack, handle)
    await approve(stack, handle, "bob@example.com")
    await approve(stack, handle, "carol@example.com")
    view = await active(stack, handle)
    assert view.expires_at is not None

    result = await handle.result()  # time skips to the expiry
    assert result.status is RequestStatus.ENDED and result.end_reason is EndReason.EXPIRED
    ended = [e for e in stack.store.ledger_entries(subject=view.id) if e.kind == "request.ended"]
    assert len(ended) == 1
    assert datetime.fromisoformat(ended[0].data["expires_at"]) == result.expires_at
    lag = expiry_lag_seconds(ended[0])
    assert lag is not None and 0.0 <= lag < 60.0  # revoked on time, in Temporal's (skipped) time
    assert result.ended_at is not None and result.expires_at is not None
    assert lag == pytest.approx((result.ended_at - result.expires_at).total_seconds(), abs=1e-3)
    registry = metrics.registry
    assert sample(registry, "grantflow_expiry_to_revocation_seconds_count") == 1.0
    assert sample(registry, "grantflow_expiry_to_revocation_seconds_sum") == pytest.approx(lag)
    assert sample(registry, "grantflow_expiry_to_revocation_seconds_bucket", le="60.0") == 1.0
    assert sample(registry, "grantflow_grants_total") == 1.0
    assert sample(registry, "grantflow_revocations_total", result="revoked") == 1.0
    channels = {
        e.channel for e in stack.store.ledger_entries(subject=view.id) if e.kind == "decision.approved"
    }
    assert len(channels) == 1
    decisions = "grantflow_decisions_total"
    assert sample(registry, decisions, verdict="approve", channel=channels.pop(), outcome="recorded") == 2.0


@pytest_asyncio.fixture(loop_scope="session")
async def web(stack: Stack) -> AsyncIterator[tuple[str, dict[str, str]]]:
    from tests.test_api import web_context

    tokens_file = stack.tmp_path / "tokens.toml"
    tokens = {
        "alice": issue_token(tokens_file, "alice", "alice@example.com", ["requester"]),
        "bob": issue_token(tokens_file, "bob", "bob@example.com", []),
    }
    stack.store.observe_ledger(METRICS.observe_entry)  # as build_context does
    async with running(create_app(web_context(stack, tokens_file))) as url:
        yield url, tokens


async def test_the_web_app_serves_its_counters_in_prometheus_text_format(
    web: tuple[str, dict[str, str]],
) -> None:
    url, tokens = web
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        before = parsed((await http.get("/metrics")).text)
        body = {"resource": "pg-prod", "role": "admin", "duration": "1h", "reason": "INC-7"}
        created = await http.post(
            "/api/v1/requests", json=body, headers={"Authorization": f"Bearer {tokens['alice']}"}
        )
        assert created.status_code == 201, created.text
        rid = created.json()["id"]
        approved = await http.post(
            f"/api/v1/requests/{rid}/approve", headers={"Authorization": f"Bearer {tokens['bob']}"}
        )
        assert approved.status_code == 200, approved.text
        missing = await http.get(f"/api/v1/requests/{rid}", headers={"Authorization": "Bearer wrong"})
        assert missing.status_code == 401
        page = await http.get("/metrics")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    after = parsed(page.text)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    http_total = "grantflow_http_requests_total"
    assert delta(http_total, route="/api/v1/requests", status="201") == 1.0
    assert delta(http_total, route="/api/v1/requests/{request_id}/approve", status="200") == 1.0
    assert delta(http_total, route="/api/v1/requests/{request_id}", status="401") == 1.0
    assert delta(http_total, route="/metrics", status="200") == 1.0  # the first scrape
    assert not any(rid in labels_value for (_, labels) in after for _, labels_value in labels)
    assert delta("grantflow_decisions_total", verdict="approve", channel="api", outcome="recorded") == 1.0
    assert delta("grantflow_ledger_entries_total", kind="request.created") == 1.0


def test_json_log_lines_carry_the_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("grantflow.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.warning("request %s could not be told", "req-9", extra={"request_id": "req-9"})
        logger.info(
            "activity done",
            extra={"temporal_activity": {"workflow_id": "campaign-q3", "activity_type": "campaign_snapshot"}},
        )
        try:
            raise ValueError('bad "quote"\nand a newline')
        except ValueError:
            logger.exception("failed", extra={"campaign_id": "q3"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    first, second, third = (json.loads(line) for line in lines)
    assert first["message"] == "request req-9 could not be told"
    assert first["level"] == "WARNING" and first["logger"] == "grantflow.test.json"
    assert first["request_id"] == "req-9" and "campaign_id" not in first
    assert datetime.fromisoformat(first["time"]).utcoffset() == timedelta(0)
    assert second["workflow_id"] == "campaign-q3" and second["activity_type"] == "campaign_snapshot"
    assert third["campaign_id"] == "q3" and third["level"] == "ERROR"
    assert 'ValueError: bad "quote"' in third["exception"]


def test_the_worker_serves_its_metrics_on_its_port(tmp_path: Path) -> None:
    assert serve_worker_metrics(Settings(state_dir=tmp_path)) is None  # off by default
    port = free_port()
    server = serve_worker_metrics(Settings(state_dir=tmp_path, metrics_port=port))
    assert server is not None and server.port == port
    try:
        METRICS.ledger_entries.labels(kind="test.worker_port").inc(3)
        page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert page.status_code == 200
        samples = parsed(page.text)
        assert samples[("grantflow_ledger_entries_total", (("kind", "test.worker_port"),))] >= 3.0
        # A second worker on the same port is refused, naming the setting.
        with pytest.raises(SettingsError, match=f"GRANTFLOW_METRICS_PORT={port}: cannot listen"):
            serve_worker_metrics(Settings(state_dir=tmp_path, metrics_port=port))
    finally:
        server.close()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


async def test_the_worker_exports_temporal_sdk_metrics_when_configured(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    assert metrics_runtime(Settings(state_dir=tmp_path)) is None  # off by default: the SDK's runtime
    address = f"127.0.0.1:{free_port()}"
    settings = Settings(
        state_dir=tmp_path,
        temporal_address=time_env.client.service_client.config.target_host,
        temporal_metrics_address=address,
    )
    runtime = metrics_runtime(settings)
    assert runtime is not None and metrics_runtime(settings) is runtime  # one per address and process
    client = await connect_client(settings, runtime=runtime)
    await client.workflow_service.get_system_info(GetSystemInfoRequest())
    async with httpx.AsyncClient(timeout=10) as http:
        page = await http.get(f"http://{address}/metrics")
    assert page.status_code == 200
    requests = {
        dict(labels).get("operation", ""): value
        for (name, labels), value in parsed(page.text).items()
        if name in ("temporal_request", "temporal_request_total")
    }
    assert requests.get("GetSystemInfo", 0.0) >= 2.0, sorted(requests)  # connecting asks once too


async def test_json_log_lines_inside_an_activity_name_its_request_or_campaign() -> None:
    """The integrations log with plain loggers: inside an activity the line still names the workflow, and
    from it the request (its workflow id is the request id) or the campaign (``campaign-<id>``)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("grantflow.test.json.activity")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)

    async def gateway_call() -> None:
        logger.warning("hoop answered 503")

    try:
        for workflow_id, workflow_type in (
            ("req-7f3a", "AccessRequestWorkflow"),
            ("campaign-q3-prod", "CampaignWorkflow"),
            ("identity-sync", "IdentitySyncWorkflow"),
            ("campaign-schedule-quarterly-2026-12-01T09:00:00Z", "CampaignWorkflow"),
        ):
            env = ActivityEnvironment()
            env.info = dataclasses.replace(env.info, workflow_id=workflow_id, workflow_type=workflow_type)
            env.info = dataclasses.replace(env.info, activity_type="revoke", attempt=3)
            await env.run(gateway_call)
        logger.info("outside any activity")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    request, campaign, sync, scheduled, outside = lines
    assert request["request_id"] == "req-7f3a" and request["workflow_id"] == "req-7f3a"
    assert request["activity_type"] == "revoke" and request["attempt"] == 3
    assert campaign["campaign_id"] == "q3-prod" and "request_id" not in campaign
    assert sync["workflow_id"] == "identity-sync"
    assert "request_id" not in sync and "campaign_id" not in sync
    assert "campaign_id" not in scheduled  # its workflow id names the schedule; its activities pass the id
    assert not {"workflow_id", "request_id", "campaign_id"} & set(outside)


async def test_json_log_lines_while_serving_a_route_name_its_request_or_campaign() -> None:
    """The web app's middleware scopes each HTTP request: what a handler logs names the route's request or
    campaign, read from the path parameters the router matched."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("grantflow.test.json.route")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)

    async def approve(request: Request) -> PlainTextResponse:
        logger.warning("store call failed")
        return PlainTextResponse("ok")

    app = RequestCounter(
        Starlette(
            routes=[
                Route("/api/v1/requests/{request_id}/approve", approve, methods=["POST"]),
                Route("/api/v1/campaigns/{campaign_id}/extend", approve, methods=["POST"]),
                Route("/healthz", approve),
            ]
        )
    )
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            assert (await http.post("/api/v1/requests/req-51/approve")).status_code == 200
            assert (await http.post("/api/v1/campaigns/q3-prod/extend")).status_code == 200
            assert (await http.get("/healthz")).status_code == 200
        logger.info("after the requests")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    request, campaign, health, after = (json.loads(line) for line in stream.getvalue().splitlines())
    assert request["request_id"] == "req-51" and "campaign_id" not in request
    assert campaign["campaign_id"] == "q3-prod" and "request_id" not in campaign
    assert not {"request_id", "campaign_id"} & (set(health) | set(after))

"""The REST API against its own OpenAPI document (``/api/v1/openapi.json``), with schemathesis.

The web app serves a real stack on 127.0.0.1: the Temporal dev server, grantflow's worker, the store, the
hoop stand-in and a seeded SCIM directory (read into the store by a first identity sync through the API
itself). For every operation of the document schemathesis generates cases that fit the schema (positive)
and cases that break it (negative), and each is sent with an admin's token, a requester's token and no
token at all. Every answer must:

- never be a 5xx — a 503 included: Temporal and the store are up, so "unavailable" would be a lie about
  input that can never succeed;
- carry a status the document declares, the content type it declares and a body its schema accepts.

Afterwards the workflows the run started on the dev server are read back: none may have failed a workflow
task (the mark of input it cannot decode, which leaves a workflow RUNNING forever), and every request
still running answers its view query. Hypothesis runs from a fixed seed (``GRANTFLOW_SCHEMA_SEED`` picks
another) so a failure replays; counts go to ``record("api-schema", ...)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import pkgutil
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import requests
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Err
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from configuration.settings import Settings
from domain.requests import request_workflow_id
from examples import POLICIES_FILE
from tests.reliability.results import record
from tests.stack import Stack, start_stack
from web.app import WebContext, create_app, running
from web.auth import TokenRegistry, issue_token
from web.service import RequestService
from workflows.access_request import AccessRequestWorkflow

pytestmark = [pytest.mark.long, pytest.mark.reliability]


def _import_schemathesis_now() -> None:
    """Import every schemathesis module here, in the main thread. pytest rewrites a plugin's modules with
    ``ast`` as they are imported, and schemathesis imports many lazily: in the thread the fuzzing runs in,
    while hypothesis moves the recursion limit, CPython 3.11's ``ast`` then fails ("AST constructor
    recursion depth mismatch")."""
    for module in pkgutil.walk_packages(schemathesis.__path__, "schemathesis."):
        with contextlib.suppress(Exception):  # optional extras (GraphQL …) that are not installed
            importlib.import_module(module.name)


_import_schemathesis_now()

SEED = int(os.environ.get("GRANTFLOW_SCHEMA_SEED", "20261206"))
EXAMPLES_PER_CASE = 15
"""Examples per (operation, mode, caller): ~30 operations, 2 modes, 3 callers, plus the operations on
known ids: about 4,000 calls."""

CAMPAIGN_FILE = Path(POLICIES_FILE).with_name("campaign.toml")
ANSWER_WITHIN = 30
"""Seconds a call may take: every operation answers in well under one (creating a request waits at most
five for its approvers); a call left hanging is reported, not waited on."""
CALLERS: dict[str, tuple[str | None, list[str]]] = {
    "admin": ("grace@example.com", ["admin"]),
    "requester": ("alice@example.com", ["requester"]),
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@dataclass
class Tally:
    operations: set[str] = field(default_factory=set)
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@dataclass
class Served:
    url: str
    tokens: dict[str, str]
    stack: Stack


@pytest_asyncio.fixture(loop_scope="session")
async def served(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Served]:
    """The web app over a stack on the dev server whose directory is a seeded scim2-server (so the
    ``/sync`` operation has a directory to read); the store is filled by a first sync through the API."""
    async with start_stack(dev_env, tmp_path, time_skipping=False, with_scim=True) as stack:
        assert stack.scim_server is not None
        tokens_file = tmp_path / "tokens.toml"
        tokens = {
            name: issue_token(tokens_file, name, email, roles) for name, (email, roles) in CALLERS.items()
        }
        settings = Settings(state_dir=tmp_path, task_queue=stack.task_queue)
        context = WebContext(
            settings=settings,
            store=stack.store,
            client=stack.env.client,
            policies=stack.policies,
            links=stack.links,
            tokens=TokenRegistry(tokens_file),
            service=RequestService(
                stack.env.client, stack.store, stack.policies, stack.task_queue, stack.timings
            ),
        )
        async with running(create_app(context)) as url:
            yield Served(url=url, tokens=tokens, stack=stack)


def fuzz(url: str, tokens: dict[str, str], known: dict[str, list[str]]) -> Tally:
    """Every operation of the document, positive and negative cases, as each caller; in a thread, while the
    test's event loop serves the app. ``known`` holds ids that exist (``request_id``: requests,
    ``campaign_id``: a campaign): an operation on one of them is also tried with each of those ids, so
    its body meets a real request or campaign rather than a 404."""
    schema = schemathesis.openapi.from_url(f"{url}/api/v1/openapi.json")
    tally = Tally()
    callers: dict[str, dict[str, str]] = {
        name: {"Authorization": f"Bearer {t}"} for name, t in tokens.items()
    }
    callers["anonymous"] = {}
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operation = result.ok()
        tally.operations.add(operation.label)
        strategies = [operation.as_strategy(generation_mode=mode) for mode in GenerationMode]
        # the document's own examples (pg-prod, 2h …) reach what random strings never do: a request created
        strategies += schema.get_strategies_from_examples(operation)
        for name, ids in known.items():
            if f"{{{name}}}" in operation.path:
                strategies += [
                    operation.as_strategy(generation_mode=mode, path_parameters={name: known_id})
                    for known_id in ids
                    for mode in GenerationMode
                ]
        for strategy in strategies:
            for who, headers in callers.items():
                _explore(strategy, url, who, headers, tally)
    return tally


def _explore(strategy: Any, url: str, who: str, headers: dict[str, str], tally: Tally) -> None:
    @seed(SEED)
    @settings(
        max_examples=EXAMPLES_PER_CASE,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    @given(strategy)
    def run(case: Case) -> None:
        tally.cases += 1
        where = f"{who}: {case.method} {case.formatted_path}"
        try:
            response = case.call(base_url=url, headers=headers, timeout=ANSWER_WITHIN)
        except requests.RequestException as exc:  # no answer at all is a finding too
            tally.failures.append(f"{where}: no answer within {ANSWER_WITHIN} s ({type(exc).__name__})")
            raise
        tally.statuses[response.status_code] += 1
        where = f"{where} -> {response.status_code}"
        if response.status_code >= 500:
            tally.server_errors.append(f"{where}: {response.text[:300]}")
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Exception, BaseExceptionGroup) as exc:  # one group naming every check that broke
            tally.failures.append(f"{where}: {str(exc)[:800]}")
            raise

    failures_before = len(tally.failures)
    try:
        run()
    except Unsatisfiable:  # the document's examples do not fit this operation's other parameters
        pass
    except (Exception, BaseExceptionGroup) as exc:  # in the tally (shrunk); the test asserts on it
        if len(tally.failures) == failures_before:  # raised outside the checks: keep it too
            tally.failures.append(f"{who}: {type(exc).__name__}: {str(exc)[:800]}")


@pytest.fixture
def tracebacks() -> Iterator[list[logging.LogRecord]]:
    """Every log record carrying a traceback while the test runs (any logger)."""
    caught: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info:
                caught.append(record)

    handler = Catch(level=logging.DEBUG)
    logging.getLogger().addHandler(handler)
    try:
        yield caught
    finally:
        logging.getLogger().removeHandler(handler)


async def test_every_operation_answers_as_documented_and_never_5xx(
    served: Served, tracebacks: list[logging.LogRecord]
) -> None:
    stack = served.stack
    admin = _auth(served, "admin")
    async with _http(served) as http:
        synced = await http.post("/sync", json={"full": True}, headers=admin)
        assert synced.status_code == 200, synced.text  # the directory, read through the API itself
        request_ids = []
        for requester, role in (("alice@example.com", "admin"), ("frank@example.com", "read")):
            body = {
                "resource": "pg-prod",
                "role": role,
                "duration": "1h",
                "reason": "INC-1",
                "requester": requester,
            }
            created = await http.post("/requests", json=body, headers=admin)
            assert created.status_code == 201, created.text
            request_ids.append(created.json()["id"])
        launched = await http.post(
            "/campaigns", json={"spec": CAMPAIGN_FILE.read_text(), "dry_run": True}, headers=admin
        )
        assert launched.status_code == 201, launched.text
    known = {"request_id": request_ids, "campaign_id": [launched.json()["id"]]}

    tally = await asyncio.to_thread(fuzz, served.url, served.tokens, known)

    stuck, failed_tasks = await _workflows_of_the_run(stack)
    record(
        "api-schema",
        title="REST API against its OpenAPI document",
        injected=(
            f"schemathesis cases (positive and negative) for every operation of /api/v1/openapi.json, as an "
            f"admin, a requester and without a token, {EXAMPLES_PER_CASE} per operation, mode and caller"
        ),
        counts={
            "operations": len(tally.operations),
            "cases": tally.cases,
            "2xx": sum(n for s, n in tally.statuses.items() if 200 <= s < 300),
            "4xx": sum(n for s, n in tally.statuses.items() if 400 <= s < 500),
            "5xx": len(tally.server_errors),
            "schema violations": len(tally.failures),
            "workflows stuck or failing tasks": len(stuck) + len(failed_tasks),
            "tracebacks logged": len(tracebacks),
        },
        outcome=(
            "no 5xx, every answer as documented, no workflow started with input it cannot decode"
            if not (tally.server_errors or tally.failures or stuck or failed_tasks or tracebacks)
            else "the API answered outside its document or with a 5xx, or a workflow is stuck"
        ),
        seed=SEED,
        details={"statuses": {str(k): v for k, v in sorted(tally.statuses.items())}},
    )
    assert not tally.server_errors, "\n".join(tally.server_errors[:10])
    assert not tally.failures, "\n".join(tally.failures[:10])
    assert len(tally.operations) >= 20, sorted(tally.operations)
    assert not failed_tasks, failed_tasks
    assert not stuck, stuck
    assert not tracebacks, [f"{r.name}: {r.getMessage()}" for r in tracebacks]


async def _workflows_of_the_run(stack: Stack) -> tuple[list[str], list[str]]:
    """The run's workflows on the dev server (its task queue): those with a failed workflow task, and the
    running requests that do not answer their view query."""
    client = stack.env.client
    failed_tasks: list[str] = []
    stuck: list[str] = []
    async for execution in client.list_workflows(f"TaskQueue = '{stack.task_queue}'"):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                cause = event.workflow_task_failed_event_attributes.failure.message
                failed_tasks.append(f"{execution.workflow_type} {execution.id}: {cause[:200]}")
                break
        if (
            execution.status is WorkflowExecutionStatus.RUNNING
            and execution.workflow_type == "AccessRequestWorkflow"
        ):
            try:
                await asyncio.wait_for(
                    client.get_workflow_handle_for(AccessRequestWorkflow.run, execution.id).query(
                        AccessRequestWorkflow.view
                    ),
                    timeout=15,
                )
            except Exception as exc:
                stuck.append(f"{execution.id}: {type(exc).__name__}")
    for stored in stack.store.list_requests(limit=1000):
        if not stored.status.is_terminal:
            description = await client.get_workflow_handle(request_workflow_id(stored.id)).describe()
            if description.status is not WorkflowExecutionStatus.RUNNING:
                stuck.append(
                    f"{stored.id}: {stored.status.value} in the store, {description.status} in Temporal"
                )
    return stuck, failed_tasks


def _auth(served: Served, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {served.tokens[who]}"}


def _http(served: Served) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"{served.url}/api/v1", timeout=60)

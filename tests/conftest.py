"""Shared fixtures: real Temporal servers from the pip wheels, a migrated store, the hoop stand-in.

- ``time_env``: the time-skipping test server (long timers complete at once); one per module.
- ``dev_env``: the Temporal dev server (``temporal server start-dev``, in memory); session scoped.
- ``stack`` / ``time_stack``: a worker with grantflow's real activities on a unique task queue, a SQLite
  store seeded with the example organisation, and the hoop stand-in over real HTTP.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import sys
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.testing import WorkflowEnvironment

from tests.channel_stack import JIRA_TOKEN, JIRA_WEBHOOK_SECRET, SLACK_APP, SLACK_BOT, SLACK_SECRET
from tests.rigs.secrets_scan import scan_histories
from tests.rigs.watchdog import Watchdog, limit_for
from tests.stack import EVIDENCE_KEY, HOOP_KEY, LEDGER_KEY, LINK_SECRET, SCIM_TOKEN, Stack, start_stack

RIG_SECRETS: dict[str, str | bytes] = {
    "hoop API key": HOOP_KEY,
    "ledger key": LEDGER_KEY,
    "review link secret": LINK_SECRET,
    "SCIM token": SCIM_TOKEN,
    "evidence signing key": EVIDENCE_KEY.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    ),
    "Slack bot token": SLACK_BOT,
    "Slack app token": SLACK_APP,
    "Slack signing secret": SLACK_SECRET,
    "Jira API token": JIRA_TOKEN,
    "Jira webhook secret": JIRA_WEBHOOK_SECRET,
}

# The SDK core warns on stdout about capabilities the test servers do not advertise; keep errors only.
Runtime.set_default(
    Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
        )
    ),
    error_if_already_set=False,
)


WATCHDOG = Watchdog()


def pytest_configure(config: pytest.Config) -> None:
    """The watchdog writes to a copy of the terminal's stdout taken now, while pytest is not capturing:
    during a test, file descriptor 1 is pytest's capture file (pytest's faulthandler plugin keeps a copy
    of stderr the same way)."""
    logging.getLogger("temporalio").addHandler(WATCHDOG.sdk_errors)
    try:
        WATCHDOG.out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    except (OSError, ValueError, io.UnsupportedOperation):  # no real stdout: the report goes nowhere
        WATCHDOG.out = None


def pytest_unconfigure(config: pytest.Config) -> None:
    logging.getLogger("temporalio").removeHandler(WATCHDOG.sdk_errors)
    if WATCHDOG.out is not None:
        WATCHDOG.out.close()
        WATCHDOG.out = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    """Every test runs under the watchdog: a hung test ends the run within minutes, saying where."""
    with WATCHDOG.watching(item.nodeid, limit_for(item)):
        return (yield)


@pytest_asyncio.fixture(scope="session", loop_scope="session", autouse=True)
async def _watched_loop() -> AsyncIterator[None]:
    """Shows the watchdog the session's event loop, whose tasks it prints when a test hangs."""
    WATCHDOG.loop = asyncio.get_running_loop()
    yield
    WATCHDOG.loop = None


def _venv_binary(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.exit(f"{path} is missing: install the test extras (pip install '.[test]')", returncode=4)
    return str(path)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """One time-skipping server per test module (it starts in ~0.1 s): a workflow one module leaves
    running on a stopped worker's queue (its timers firing with nobody to run them) must not stop time
    from skipping in the next module."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_venv_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_venv_binary("temporal"),
        data_converter=pydantic_data_converter,
        ui=False,
        dev_server_log_level="error",
    )
    try:
        yield env
        # Secrets never enter workflow histories: everything the session ran on this server is scanned for
        # every secret the rigs configure (the time-skipping servers cannot list their workflows).
        scan = await scan_histories(env.client, RIG_SECRETS)
        assert not scan.found, f"secrets in workflow histories (workflow, secret): {scan.found}"
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(loop_scope="session")
async def stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    """grantflow's worker on the dev server, with real time: for short end-to-end flows."""
    async with start_stack(dev_env, tmp_path, time_skipping=False) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def time_stack(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    """grantflow's worker on the time-skipping server; the hoop stand-in reads Temporal's clock."""
    async with start_stack(time_env, tmp_path, time_skipping=True) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def scim_stack(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    """``time_stack`` whose directory is a seeded scim2-server; the store starts empty."""
    async with start_stack(time_env, tmp_path, time_skipping=True, with_scim=True) as running:
        yield running


@pytest.fixture(autouse=True)
def _no_grantflow_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings under test come from the test, never from the developer's environment."""
    for name in list(os.environ):
        if name.startswith("GRANTFLOW_"):
            monkeypatch.delenv(name)
    yield

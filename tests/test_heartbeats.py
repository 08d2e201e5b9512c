"""Activities that can outlast their heartbeat timeout heartbeat while they wait: the SCIM sync while the
provider lists groups and while the directory is written in one transaction, and the presentation while the
blocking Jira client works in its thread. Without it Temporal times the attempt out and runs another one
beside it (workflows/identity_sync.py: 2 min / 1 min; present_request: 30 s)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

import activities.heartbeat
from activities.channels import ChannelActivities
from activities.identity_sync import IdentitySyncActivities, SyncInput
from domain.channels import ChannelState, PresentInput
from domain.identity import PersonRef
from domain.policy import RolePolicy
from domain.requests import RequestStatus, RequestView
from integrations.scim import DirectoryGroup, ScimDirectory
from sandbox.scim import ScimDirectoryServer
from store import Store
from tests.stack import LEDGER_KEY, SCIM_TOKEN

SLOW = 0.5  # seconds a step blocks; heartbeats come every 0.05 s in these tests


@pytest.fixture(autouse=True)
def _frequent_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(activities.heartbeat, "HEARTBEAT_EVERY", 0.05)


class Phases:
    """Which slow step is running, and the heartbeats seen during each."""

    def __init__(self) -> None:
        self.now = ""
        self.beats: dict[str, list[Any]] = {}

    def env(self) -> ActivityEnvironment:
        env = ActivityEnvironment()
        env.on_heartbeat = lambda *details: self.beats.setdefault(self.now, []).append(details)
        return env

    def during(self, phase: str) -> _Phase:
        return _Phase(self, phase)


class _Phase:
    def __init__(self, phases: Phases, name: str) -> None:
        self.phases, self.name = phases, name

    def __enter__(self) -> None:
        self.phases.now = self.name

    def __exit__(self, *_: object) -> None:
        self.phases.now = ""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store(f"sqlite:///{tmp_path / 'hb.db'}", ledger_key=LEDGER_KEY, anchor_path=None)
    db.migrate()
    yield db
    db.close()


async def test_the_sync_heartbeats_while_groups_are_listed_and_while_the_directory_is_written(
    store: Store,
) -> None:
    server = ScimDirectoryServer(bearer_token=SCIM_TOKEN)
    directory = ScimDirectory(server.start(), SCIM_TOKEN)
    phases = Phases()
    list_groups, apply = directory.list_groups, store.apply_directory_changes

    async def slow_groups(**kwargs: Any) -> list[DirectoryGroup]:
        with phases.during("listing groups"):
            await asyncio.sleep(SLOW)  # one slow page: a large group with all its members
            return await list_groups(**kwargs)

    def slow_apply(**kwargs: Any) -> None:
        with phases.during("applying"):
            time.sleep(SLOW)  # one long transaction, in a thread
            apply(**kwargs)

    directory.list_groups = slow_groups  # type: ignore[method-assign]
    store.apply_directory_changes = slow_apply  # type: ignore[method-assign]
    try:
        server.add_users(3, prefix="user", domain="hb.example.com")
        sync = IdentitySyncActivities(store, directory)
        report = await phases.env().run(sync._sync, SyncInput(sync_id="hb-1", full=True))
        assert report.applied and report.counts["joiners"] == 3
    finally:
        await directory.aclose()
        server.stop()
    assert len(phases.beats.get("listing groups", [])) >= 3, phases.beats.keys()
    assert len(phases.beats.get("applying", [])) >= 3, phases.beats.keys()


class SlowTickets:
    """Just enough of JiraTickets for a pending request nobody is asked about: opening its ticket, slowly
    (the blocking client in its thread)."""

    def __init__(self, phases: Phases) -> None:
        self.phases = phases

    def jira_label(self, label: str) -> str:
        return f"grantflow-{label}"

    def open_ticket(self, **_: Any) -> str:
        with self.phases.during("jira"):
            time.sleep(SLOW)
        return "ACC-1"


async def test_presenting_heartbeats_its_progress_while_jira_works(store: Store) -> None:
    phases = Phases()
    channels = ChannelActivities(
        slack=None,
        jira=SlowTickets(phases),  # type: ignore[arg-type]
        email=None,
        links=None,
        store=store,
    )
    alice = PersonRef(id="u-alice", email="alice@example.com")
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    view = RequestView(
        id="req-hb",
        status=RequestStatus.PENDING,
        requester=alice,
        submitted_by=alice.email,
        resource="pg-prod",
        role="admin",
        connection="pg-prod-admin",
        reason="INC-42",
        requested_duration=timedelta(hours=1),
        required_approvals=1,
        policy=RolePolicy(connection="pg-prod-admin", approver_groups=["db-owners"]),
        created_at=t0,
        timeout_at=t0 + timedelta(hours=4),
        updated_at=t0,
    )
    state = await phases.env().run(channels.present, PresentInput(view=view, ask=[], state=ChannelState()))
    assert state.jira_key == "ACC-1"
    beats = phases.beats.get("jira", [])
    assert len(beats) >= 3, phases.beats.keys()
    # what a heartbeat carries is the state for the next attempt to resume from
    assert ChannelState.model_validate(beats[-1][0]["state"]) == ChannelState()

"""The ``revoke_access`` activity kills exactly the sessions a grant enabled (``activities/gateway.py``).

hoop links no session to the jit grant that let it through, so the activity finds them by person,
connection and time, and hoop's kill answers 204 even for a session that lives on: run against the hoop
stand-in (manual clock, real HTTP) in Temporal's activity test environment.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from activities.gateway import (
    KILL_ROUNDS,
    SESSION_CLOCK_SKEW,
    GatewayActivities,
    KilledSoFar,
    RevokeInput,
    RevokeResult,
    grant_correlation_id,
)
from integrations.hoop import HoopGateway
from sandbox.hoop import DEFAULT_API_KEY, HoopStandIn, ManualClock

GRANTED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # when the request's grant began (sessions_since)
ALICE, BOB = "alice@corp.example", "bob@corp.example"
CONNECTION = "pg-staging"
_TLS = ssl.create_default_context()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(GRANTED - timedelta(hours=1))


@pytest.fixture
def hoop(clock: ManualClock) -> Iterator[HoopStandIn]:
    stand_in = HoopStandIn(clock=clock)
    stand_in.add_user(ALICE, "Alice", groups=["eng"])
    stand_in.add_user(BOB, "Bob", groups=["eng"])
    # both may reach it; its reviewers mean a connect goes through a jit grant
    stand_in.add_connection(CONNECTION, access_groups=["eng"], reviewers=["dba-owners"])
    stand_in.add_connection("app-db", access_groups=["eng"])  # standing access, no review
    stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
async def gateway(hoop: HoopStandIn) -> AsyncIterator[HoopGateway]:
    gw = HoopGateway(hoop.url, DEFAULT_API_KEY, transport=httpx.AsyncHTTPTransport(verify=_TLS))
    yield gw
    await gw.aclose()


def kills(hoop: HoopStandIn, session_id: str) -> int:
    return sum(1 for c in hoop.calls if c.method == "POST" and c.path == f"/api/sessions/{session_id}/kill")


async def revoke(
    gateway: HoopGateway, environment: ActivityEnvironment | None = None, **changes: object
) -> RevokeResult:
    inp = RevokeInput(
        request_id="req-1",
        user_email=ALICE,
        connection=CONNECTION,
        correlation_ids=[grant_correlation_id("req-1", 0)],
        sessions_since=GRANTED,
    ).model_copy(update=changes)
    activities = GatewayActivities(gateway, kill_round_wait=timedelta(0))
    return await (environment or ActivityEnvironment()).run(activities.revoke, inp)


async def test_kills_the_persons_sessions_on_the_connection_since_the_grant_and_nothing_else(
    gateway: HoopGateway, hoop: HoopStandIn, clock: ManualClock
) -> None:
    # Before the grant: alice holds an older grant of her own (not this request's) and uses it.
    earlier = await gateway.provision_grant(
        user_email=ALICE, connection=CONNECTION, duration_seconds=8 * 3600, correlation_id="older-request"
    )
    clock.set(GRANTED - SESSION_CLOCK_SKEW - timedelta(seconds=1))
    before_grant = hoop.connect(ALICE, CONNECTION)
    clock.set(GRANTED - SESSION_CLOCK_SKEW + timedelta(seconds=1))
    within_skew = hoop.connect(ALICE, CONNECTION)  # hoop's clock a little ahead of grantflow's
    await gateway.provision_grant(  # bob's own grant: his session is not alice's request's to end
        user_email=BOB, connection=CONNECTION, duration_seconds=3600, correlation_id="bobs-request"
    )
    clock.set(GRANTED)
    ours = await gateway.provision_grant(
        user_email=ALICE,
        connection=CONNECTION,
        duration_seconds=3600,
        correlation_id=grant_correlation_id("req-1", 0),
    )
    clock.advance(minutes=1)
    mine = hoop.connect(ALICE, CONNECTION)
    bobs = hoop.connect(BOB, CONNECTION)
    elsewhere = hoop.connect(ALICE, "app-db")
    clock.advance(minutes=1)
    ended_by_her = hoop.connect(ALICE, CONNECTION)
    hoop.disconnect(ended_by_her)
    clock.advance(minutes=1)
    on_another_gateway = hoop.connect(ALICE, CONNECTION)
    hoop.detach(on_another_gateway)
    clock.advance(minutes=5)

    result = await revoke(gateway)

    assert result.revoked_review_ids == [ours.review_id]
    assert hoop.review(ours.review_id)["status"] == "REVOKED"
    assert hoop.review(earlier.review_id)["status"] == "APPROVED"  # not this request's grant
    assert result.sessions_seen == [within_skew, mine, ended_by_her, on_another_gateway]  # oldest first
    assert result.killed_session_ids == [within_skew, mine]
    assert result.sessions_left_open == [on_another_gateway]
    status = {sid: hoop.session(sid)["status"] for sid in hoop.state_snapshot()["sessions"]}
    assert status[mine] == status[within_skew] == status[ended_by_her] == "done"
    # another person's, another connection's, and one started before the grant: untouched
    assert status[bobs] == status[elsewhere] == status[before_grant] == "open"
    assert kills(hoop, bobs) == kills(hoop, elsewhere) == kills(hoop, before_grant) == 0
    assert kills(hoop, ended_by_her) == 0  # nothing to end
    # hoop said 204 every time; the session lives on: killed KILL_ROUNDS times, then given back
    assert status[on_another_gateway] == "open"
    assert kills(hoop, on_another_gateway) == KILL_ROUNDS
    assert kills(hoop, mine) == 1


async def test_a_named_session_is_killed_whenever_it_started_and_no_window_kills_nothing_unnamed(
    gateway: HoopGateway, hoop: HoopStandIn, clock: ManualClock
) -> None:
    await gateway.provision_grant(
        user_email=ALICE, connection=CONNECTION, duration_seconds=8 * 3600, correlation_id="hoop-review"
    )
    asked = hoop.connect(ALICE, CONNECTION)  # e.g. the session that asked for a hoop review
    clock.set(GRANTED + timedelta(minutes=1))
    later = hoop.connect(ALICE, CONNECTION)

    nothing = await revoke(gateway, correlation_ids=[], sessions_since=None)
    assert nothing.sessions_seen == [] and hoop.session(later)["status"] == "open"

    result = await revoke(gateway, correlation_ids=[], session_ids=[asked])
    assert result.sessions_seen == [asked, later] and result.killed_session_ids == [asked, later]
    assert hoop.session(asked)["status"] == hoop.session(later)["status"] == "done"


async def test_a_session_killed_by_an_attempt_lost_with_its_worker_is_reported_by_the_retry(
    gateway: HoopGateway, hoop: HoopStandIn, clock: ManualClock
) -> None:
    clock.set(GRANTED)
    await gateway.provision_grant(
        user_email=ALICE,
        connection=CONNECTION,
        duration_seconds=3600,
        correlation_id=grant_correlation_id("req-1", 0),
    )
    clock.advance(minutes=1)
    mine = hoop.connect(ALICE, CONNECTION)
    clock.advance(minutes=1)

    # The first attempt kills the session and heartbeats it; say its worker then dies before it returns.
    heartbeats: list[Any] = []
    first = ActivityEnvironment()
    first.on_heartbeat = lambda *details: heartbeats.extend(details)
    await revoke(gateway, first)
    assert heartbeats[-1] == KilledSoFar(killed=[mine])
    assert hoop.session(mine)["status"] == "done"

    # The retry gets that heartbeat back from Temporal (as JSON), finds the session done, kills nothing
    # more, and still reports the kill, so the request's record says grantflow ended it.
    retry = ActivityEnvironment()
    retry.info = dataclasses.replace(retry.info, attempt=2, heartbeat_details=[heartbeats[-1].model_dump()])
    result = await revoke(gateway, retry)
    assert result.sessions_seen == [mine] and result.killed_session_ids == [mine]
    assert kills(hoop, mine) == 1

    # Without that heartbeat a retry can only say it saw the session.
    bare = await revoke(gateway)
    assert bare.sessions_seen == [mine] and bare.killed_session_ids == []

"""The worker is SIGKILLed five times while 200 JIT requests go through approval, grant, extension and expiry.

A production-like stack (:mod:`tests.reliability.rig`: the Temporal dev server, ``grantflow server`` and
``grantflow worker`` subprocesses, the hoop, Slack, Jira and SCIM stand-ins as real HTTP servers) runs 200
requests at once, each for its own (requester, connection): created through the REST API; once both of
its resource's approvers were asked in Slack, approved for one of them (an administrator's token voting on
their behalf, which the test policy allows); granted; extended, which asks the approvers again, and
approved again; a session opened under the grant as ``hoop connect`` would; then left to expire.
Meanwhile the worker is killed with SIGKILL at random points, five times, and started again each time.
Decisions and extensions reach a request as signalled commands: one sent while the worker is dead waits in
the history and is carried out when the next worker runs (the caller may be told it was delivered, not yet
carried out, and call again: the second call is refused as already done). An Update arriving at such a
moment used to leave a request stuck (``tests/histories/sdk_defects``); every history is replayed at the
end.

What must hold, counted in the stand-ins once everything has ended:

- every request ends ``expired``, with both of its decisions (request and extension) in its view;
- exactly one Jira ticket per request;
- exactly one Slack DM per approver and stage (request, extension) and one per outcome the requester is
  told, however often a call was sent again after a crash (grantflow marks every message with a key);
- every grant written to hoop is revoked, none is written twice, and every session opened under a grant
  is closed: killed by grantflow, or already ended at the deadline hoop itself enforces on it.

The kill points come from a seed, printed and recorded; ``GRANTFLOW_RELIABILITY_SEED=<seed>`` replays them.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from tests.reliability.results import record
from tests.reliability.rig import (
    REQUEST_ID,
    ROLE,
    Api,
    Rig,
    jira_labels,
    requester_email,
    running_stack,
    slack_keys,
)

pytestmark = [pytest.mark.long, pytest.mark.reliability]

# Read at import: the suite's conftest clears GRANTFLOW_* variables before each test runs.
SEED_GIVEN = os.environ.get("GRANTFLOW_RELIABILITY_SEED")
REQUESTS = int(os.environ.get("GRANTFLOW_RELIABILITY_REQUESTS", "200"))
RESOURCES = 10  # each with two approvers of its own: 20 requests, 40 asks in one approver's Slack DMs
KILLS = 5
# Long enough for the extension to be asked and approved before the first grant ends, with a crash or two
# delaying it (an activity lost with its worker is retried after its start-to-close timeout, 30-60 s), on a
# shared 2-core machine where 200 approvals alone can take two minutes.
INITIAL, EXTENSION = "240s", "20s"
KILL_WINDOW = (5.0, 300.0)  # the kills fall in these seconds of the scenario (drawn from the seed) …
KILL_GAP = 3.0  # … and never sooner than this after the previous worker was ready
SESSION_OPENS_AFTER = 30.0  # seconds after the extension's grant was written (when the grant lasts so long)
POLL = 1.5
SCENARIO_LIMIT = 660.0  # every request ended within this many seconds of the start, crashes included


def _seed() -> int:
    return int(SEED_GIVEN) if SEED_GIVEN else random.SystemRandom().randrange(2**31)


class Board:
    """The stored views of every request and the keys of the Slack messages posted, refreshed by one
    poller (not 200 pollers)."""

    def __init__(self, api: Api, slack: Any) -> None:
        self._api = api
        self._slack = slack
        self.views: dict[str, dict[str, Any]] = {}
        self.slack_keys: Counter[str] = Counter()
        self.timeline: list[tuple[float, dict[str, int]]] = []  # (seconds, requests by status) on change
        self.calls: dict[str, list[str]] = {}  # per request, the answers its calls got (to explain a miss)
        self.waiting: dict[str, str] = {}  # per request, what it waits for now
        self._changed = asyncio.Event()

    async def poll(self) -> None:
        started = time.monotonic()
        while True:
            self.views = await self._api.views()
            self.slack_keys = await asyncio.to_thread(slack_keys, self._slack)
            statuses = dict(sorted(Counter(v["status"] for v in self.views.values()).items()))
            if not self.timeline or self.timeline[-1][1] != statuses:
                self.timeline.append((round(time.monotonic() - started, 1), statuses))
            self._changed.set()
            self._changed = asyncio.Event()
            await asyncio.sleep(POLL)

    async def until(
        self, request_id: str, what: str, check: Any, limit: float = SCENARIO_LIMIT
    ) -> dict[str, Any]:
        deadline = time.monotonic() + limit
        self.waiting[request_id] = what
        while True:
            view = self.views.get(request_id)
            if view is not None and check(view, self.slack_keys):
                return view
            if time.monotonic() > deadline:
                posted = sorted(k for k in self.slack_keys if k.startswith(f"{request_id}:"))
                raise AssertionError(
                    f"{request_id}: timed out waiting for {what}; Slack messages {posted}; "
                    f"calls {self.calls.get(request_id)}; last view {view}"
                )
            await self._changed.wait()


def _asked(stage: str) -> Any:
    """Every eligible approver has the Slack DM asking them to decide this stage (as a person decides
    after being asked: a decision made before the DM was posted rightly leaves it unposted)."""

    def check(view: dict[str, Any], keys: Counter[str]) -> bool:
        return all(keys[f"{view['id']}:ask:{stage}:{p['id']}"] for p in view["eligible_approvers"])

    return check


def _stage_decisions(view: dict[str, Any], approver: str) -> list[str]:
    return sorted(d["stage"] for d in view["approvals"] if d["approver"]["email"] == approver)


async def _decide(api: Api, request_id: str, approver: str, stage: str) -> str:
    """Approve for ``approver``; a refusal after a retried call must mean the first call had landed."""
    status, document = await api.call(
        "POST", f"/requests/{request_id}/approve", body={"reason": f"ok ({stage})", "as": approver}
    )
    if status == 200:
        return "accepted"
    assert status == 409, (request_id, stage, status, document)
    view = await api.view(request_id)
    assert stage in _stage_decisions(view, approver), (request_id, stage, document, view)
    return "landed before its answer was lost"


async def _one_request(
    rig: Rig, api: Api, board: Board, n: int, approver: str, sessions: dict[str, str]
) -> str:
    requester = requester_email(n)
    resource = rig.resources[n % len(rig.resources)]
    status, document = await api.call(
        "POST",
        "/requests",
        body={
            "resource": resource.name,
            "role": ROLE,
            "duration": INITIAL,
            "reason": f"CHG-{n}",
            "requester": requester,
        },
    )
    if status == 409:  # a retried create whose first attempt had started the request
        found = REQUEST_ID.search(str(document))
        assert found, document
        request_id = found.group(0)
    else:
        assert status == 201, (n, status, document)
        request_id = document["id"]
    await board.until(request_id, "its approvers", lambda v, _: v["approvers_resolved"])
    await board.until(request_id, "the approvers asked in Slack", _asked("request"))
    await _decide(api, request_id, approver, "request")
    await board.until(request_id, "ACTIVE", lambda v, _: v["status"] == "ACTIVE")
    status, document = await api.call(
        "POST", f"/requests/{request_id}/extend", body={"by": EXTENSION, "reason": "more", "as": requester}
    )
    assert status in (200, 409), (request_id, status, document)
    board.calls.setdefault(request_id, []).append(f"extend {status} {document.get('detail', '')}".strip())
    await board.until(
        request_id,
        "the extension asked",
        lambda v, _: v["extensions_requested"] == 1 and v["pending_extension"],
    )
    await board.until(request_id, "the approvers asked again in Slack", _asked("extension"))
    await _decide(api, request_id, approver, "extension")
    # The extension is a second grant segment; a session opened now lives under it until it is killed.
    view = await board.until(
        request_id,
        "the extension's grant",
        lambda v, _: len(v["grants"]) == 2 and v["pending_extension"] is None,
    )
    assert view["status"] == "ACTIVE", view
    # hoop ends a session by itself at its connect time plus the grant's duration; opened this late in the
    # grant, it outlives the grant's expiry by as much, so ending it is grantflow's kill to make.
    expires_at = datetime.fromisoformat(view["expires_at"])
    await asyncio.sleep(min(SESSION_OPENS_AFTER, (expires_at - datetime.now(UTC)).total_seconds() - 5))
    sessions[request_id] = await asyncio.to_thread(rig.stand_ins.hoop.connect, requester, view["connection"])
    await board.until(request_id, "ENDED", lambda v, _: v["status"] == "ENDED")
    return request_id


async def _kill_worker_repeatedly(
    rig: Rig, board: Board, rng: random.Random, kills: list[dict[str, Any]], started: float
) -> None:
    for kill_at in sorted(rng.uniform(*KILL_WINDOW) for _ in range(KILLS)):
        await asyncio.sleep(max(KILL_GAP, kill_at - (time.monotonic() - started)))
        rig.kill_worker()
        killed_at = time.monotonic()
        statuses = Counter(v["status"] for v in board.views.values())  # where the requests were
        await asyncio.to_thread(rig.start_worker)
        kills.append(
            {
                "at_s": round(killed_at - started, 1),
                "down_s": round(time.monotonic() - killed_at, 1),
                "requests_by_status": dict(statuses),
            }
        )


async def _explain_unfinished(rig: Rig, board: Board) -> None:
    """For each request still running at the limit: what the scenario waited for, its view, the calls'
    answers, its Slack messages and the tail of its workflow history."""
    client = await Client.connect(rig.settings["temporal_address"])
    for request_id, view in sorted(board.views.items()):
        if view["status"] == "ENDED":
            continue
        keys = ("status", "expires_at", "extensions_requested", "pending_extension")
        shown = {k: view.get(k) for k in keys}
        waits = board.waiting.get(request_id)
        print(f"{request_id} waits for {waits}: {shown}, {len(view['grants'])} grants")
        print(f"  calls {board.calls.get(request_id)}")
        print(f"  Slack {sorted(k for k in board.slack_keys if k.startswith(request_id))}")
        history = await client.get_workflow_handle(request_id).fetch_history()
        saved = rig.tmp / f"{request_id}.history.json"  # replay it with temporalio.worker.Replayer
        saved.write_text(history.to_json())
        print(f"  history saved to {saved}")
        for event in history.events[-25:]:
            print(f"  {event.event_id} {event.event_time.ToDatetime():%H:%M:%S.%f} {event.event_type}")


async def _scenario(rig: Rig, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    approver_of = {
        n: rng.choice(rig.resources[n % len(rig.resources)].approvers) for n in range(1, REQUESTS + 1)
    }
    api = Api(rig)
    board = Board(api, rig.stand_ins.slack)
    poller = asyncio.create_task(board.poll())
    sessions: dict[str, str] = {}
    kills: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        killer = asyncio.create_task(_kill_worker_repeatedly(rig, board, rng, kills, started))
        requests = asyncio.gather(
            *(_one_request(rig, api, board, n, approver_of[n], sessions) for n in approver_of)
        )
        try:
            ids = await asyncio.wait_for(requests, SCENARIO_LIMIT)
        except TimeoutError:
            await _explain_unfinished(rig, board)
            raise
        await asyncio.wait_for(killer, 300)  # the five kills all happen, even if the requests were quick
        finals = {request_id: await api.view(request_id) for request_id in ids}
    finally:
        poller.cancel()
        await api.aclose()
        print("requests by status over time:", *board.timeline, sep="\n  ")
        print("worker kills:", *kills, sep="\n  ")
    return {
        "ids": ids,
        "approver_of": {ids[n - 1]: approver_of[n] for n in approver_of},
        "sessions": sessions,
        "finals": finals,
        "kills": kills,
        "retries": api.retries,
        "elapsed": time.monotonic() - started,
        "timeline": board.timeline,
    }


def test_worker_killed_five_times_during_200_requests(tmp_path: Path) -> None:
    seed = _seed()
    print(f"worker-crashes seed: {seed} (replay with GRANTFLOW_RELIABILITY_SEED={seed})")
    with running_stack(tmp_path, REQUESTS, RESOURCES) as rig:
        try:
            run = asyncio.run(_scenario(rig, seed))
        except BaseException:
            print(rig.logs())
            raise
        hoop, slack, jira = rig.stand_ins.hoop, rig.stand_ins.slack, rig.stand_ins.jira
        ids: list[str] = run["ids"]
        finals: dict[str, dict[str, Any]] = run["finals"]

        # No decision lost: each request ended by expiry, both decisions of its approver in its view.
        assert len(set(ids)) == REQUESTS
        for request_id, view in finals.items():
            assert (view["status"], view["end_reason"]) == ("ENDED", "expired"), view
            approver = run["approver_of"][request_id]
            assert _stage_decisions(view, approver) == ["extension", "request"], view

        # One Jira ticket per request.
        tickets = jira_labels(jira)
        assert set(tickets) == set(ids), set(tickets) ^ set(ids)
        duplicate_tickets = sum(count - 1 for count in tickets.values())

        # One Slack DM per approver and stage, one per outcome the requester is told; none twice.
        keys = slack_keys(slack)
        asks = {key for key in keys if ":ask:" in key}
        expected_asks = {
            f"{request_id}:ask:{stage}:{person['id']}"
            for request_id, view in finals.items()
            for stage in ("request", "extension")
            for person in view["eligible_approvers"]
        }
        assert asks == expected_asks, sorted(asks ^ expected_asks)[:10]
        outcomes = {key for key in keys if ":outcome:" in key}
        for request_id in ids:
            assert f"{request_id}:outcome:ENDED" in outcomes, request_id
        duplicate_messages = sum(count - 1 for count in keys.values())

        # Every grant written is revoked, once; no grant written twice (two segments per request: the
        # first grant and the extension's).
        written = hoop.events("grant.written")
        revoked = hoop.events("grant.revoked")
        granted_reviews = Counter(e.review_id for e in written)
        recorded_reviews = {g["review_id"] for view in finals.values() for g in view["grants"]}
        assert set(granted_reviews) == recorded_reviews, set(granted_reviews) ^ recorded_reviews
        assert len(written) == 2 * REQUESTS, len(written)
        assert Counter(e.review_id for e in revoked) == Counter(set(granted_reviews)), (
            "a grant not revoked once"
        )
        # hoop never deduplicates a provision: a grant written twice is a review no request knows of.
        duplicate_grants = len(set(granted_reviews) - recorded_reviews)

        # Every session opened under a grant is closed: killed by grantflow (logged by hoop) or ended by
        # hoop at its own deadline before the (crash-delayed) revocation came.
        opened = set(run["sessions"].values())
        killed = {e.session_id for e in hoop.events("session.killed")}
        still_open = [s["id"] for s in hoop.sessions(status="open") if s["id"] in opened]
        assert not still_open, still_open
        assert killed <= opened, killed - opened
        # The request saw each of its sessions. It names a session as killed only when the kill was in the
        # attempt whose result it got: a kill sent by an attempt lost with its worker is in hoop's log only.
        killed_by_record = set()
        for request_id, session_id in run["sessions"].items():
            assert session_id in finals[request_id]["sessions_used"], finals[request_id]
            killed_by_record.update(set(finals[request_id]["sessions_killed"]) & {session_id})
        assert killed_by_record <= killed, killed_by_record - killed
        ended_at_deadline = len(opened - killed)

        duplicates = duplicate_tickets + duplicate_messages + duplicate_grants
        assert duplicates == 0, (duplicate_tickets, duplicate_messages, duplicate_grants)
        assert len(run["kills"]) == KILLS

    kills = run["kills"]
    # the rig scanned every history for its secrets, and replayed each, when the stack stopped
    scan, replayed = rig.secrets_scan, rig.replay_check
    assert scan is not None and replayed is not None
    record(
        "worker-crashes",
        title="Worker killed during JIT requests",
        injected=(
            f"SIGKILL of the `grantflow worker` process {KILLS} times at random points (each restarted at "
            f"once) while {REQUESTS} concurrent JIT requests went through approval, grant, extension and "
            "expiry"
        ),
        counts={
            "requests": REQUESTS,
            "worker kills": len(kills),
            "requests ended by expiry": sum(1 for v in finals.values() if v["end_reason"] == "expired"),
            "decisions made": 2 * REQUESTS,
            "decisions lost": 0,
            "Jira tickets": sum(tickets.values()),
            "Slack messages": sum(keys.values()),
            "Slack messages asking an approver": len(asks),
            "grants written": len(written),
            "revocations applied": len(revoked),
            "sessions opened under grants": len(opened),
            "sessions killed": len(killed),
            "sessions killed, as recorded by their request": len(killed_by_record),
            "sessions ended at hoop's own deadline first": ended_at_deadline,
            "API calls retried": run["retries"],
            "duplicates found": duplicates,
            "workflow histories scanned for secrets": scan.workflows,
            "secrets found in histories": len(scan.found),
            "histories replayed on the current code": replayed.workflows,
            "histories that failed to replay": len(replayed.failures),
            "wall time (s)": round(run["elapsed"], 1),
        },
        outcome=(
            "every request ended by expiry with its decisions; one Jira ticket per request, one Slack "
            "message per approver and stage, every grant revoked once and every session closed"
        ),
        seed=seed,
        details={"kills": kills, "requests_by_status": run["timeline"]},
    )

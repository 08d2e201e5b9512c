"""The Temporal server is stopped and started again (same database file) while grants are active.

A production-like stack (:mod:`tests.reliability.rig`) with the Temporal dev server on a database file
(``--db-filename``) grants short JIT access to a batch of requesters, each grant ending a second after the
one before. The server is stopped just before the first of them is due and started again on the same file
a while later, so that some grants are due while it is down, some while it comes back, some after. The
worker and the web server keep running throughout, as they would in production.

The worker notices the server answering again and polls with fresh pollers at once
(``worker.ServerWatch``), instead of waiting out the SDK's task-poll backoff (up to 10 s).

What must hold: every grant still ends: it is revoked in the hoop stand-in (read from hoop's own log of
revocations, stamped with its clock) and the request ends ``expired``; none is revoked before it was due;
and none later than the downtime plus 2 seconds after it was due.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.results import record
from tests.reliability.rig import ROLE, Api, Rig, requester_email, running_stack
from tests.rigs.processes import wait_for_port

pytestmark = [pytest.mark.long, pytest.mark.reliability]

GRANTS = 20
RESOURCES = 4
FIRST_DURATION = 45  # seconds; grant n lasts FIRST_DURATION + n, so they fall due one a second apart
STOP_BEFORE_DUE = 3.0  # the server stops this long before the first grant is due …
DOWN_FOR = 12.0  # … and is started again after this long
ALLOWED_EXTRA = 2.0  # seconds a grant may end later than its due time, beyond the downtime
WAIT_ENDED = 180.0


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def _grant_all(rig: Rig, api: Api) -> list[str]:
    async def one(n: int) -> str:
        resource = rig.resources[n % len(rig.resources)]
        status, document = await api.call(
            "POST",
            "/requests",
            body={
                "resource": resource.name,
                "role": ROLE,
                "duration": f"{FIRST_DURATION + n}s",
                "reason": f"CHG-{n}",
                "requester": requester_email(n),
            },
        )
        assert status == 201, (status, document)
        request_id: str = document["id"]
        while True:  # the approvers are resolved a moment after the request is created
            status, document = await api.call(
                "POST", f"/requests/{request_id}/approve", body={"reason": "ok", "as": resource.approvers[0]}
            )
            if status != 409 or "being set up" not in str(document):
                break
            await asyncio.sleep(0.5)
        assert status == 200, (status, document)
        return request_id

    return list(await asyncio.gather(*(one(n) for n in range(1, GRANTS + 1))))


async def _views(api: Api, ids: list[str]) -> dict[str, dict[str, Any]]:
    views = await api.views()
    return {request_id: views[request_id] for request_id in ids if request_id in views}


def test_grants_end_when_the_temporal_server_restarts(tmp_path: Path) -> None:
    with running_stack(tmp_path, GRANTS, RESOURCES, temporal_db=tmp_path / "temporal.db") as rig:

        async def scenario() -> tuple[list[str], dict[str, dict[str, Any]], float]:
            api = Api(rig)
            try:
                ids = await _grant_all(rig, api)
                deadline = time.monotonic() + 120
                while True:  # every grant written, each with the expiry hoop reports
                    views = await _views(api, ids)
                    if len(views) == GRANTS and all(v["status"] == "ACTIVE" for v in views.values()):
                        break
                    assert time.monotonic() < deadline, views
                    await asyncio.sleep(0.5)
                first_due = min(_at(v["expires_at"]) for v in views.values())
                wait = (first_due - datetime.now(first_due.tzinfo)).total_seconds() - STOP_BEFORE_DUE
                assert wait > 0, f"the grants were written too slowly: the first is due in {wait:.1f}s"
                await asyncio.sleep(wait)
                stopped = time.monotonic()
                rig.stop_temporal()
                await asyncio.sleep(DOWN_FOR)
                await asyncio.to_thread(rig.start_temporal)
                wait_for_port(rig.temporal_port)
                downtime = time.monotonic() - stopped
                deadline = time.monotonic() + WAIT_ENDED
                while True:
                    views = await _views(api, ids)
                    if all(v["status"] == "ENDED" for v in views.values()):
                        return ids, views, downtime
                    assert time.monotonic() < deadline, [v["status"] for v in views.values()]
                    await asyncio.sleep(0.5)
            finally:
                await api.aclose()

        try:
            ids, views, downtime = asyncio.run(scenario())
        except BaseException:
            print(rig.logs())
            raise
        revoked_at = {e.review_id: e.wall for e in rig.stand_ins.hoop.events("grant.revoked")}
        temporal_log = rig.processes.log("temporal")
        worker_log = rig.processes.log(f"worker-{rig.worker_starts}")

    lateness: dict[str, float] = {}
    due_while_down = 0
    for request_id in ids:
        view = views[request_id]
        assert (view["status"], view["end_reason"]) == ("ENDED", "expired"), view
        assert len(view["grants"]) == 1, view
        review_id = view["grants"][0]["review_id"]
        assert review_id in revoked_at, f"{request_id}: grant {review_id} never revoked in hoop"
        due = _at(view["expires_at"])
        late = (revoked_at[review_id] - due).total_seconds()
        assert late >= 0, f"{request_id}: revoked {-late:.1f}s before it was due"
        lateness[request_id] = late
        if late > ALLOWED_EXTRA:
            due_while_down += 1
    worst = max(lateness.values())
    print(f"downtime {downtime:.1f}s; lateness per grant: {sorted(round(v, 1) for v in lateness.values())}")
    assert worst <= downtime + ALLOWED_EXTRA, (worst, downtime, lateness, temporal_log[-2000:])
    # The worker saw the outage end and polled afresh rather than waiting out the SDK's poll backoff
    # (worker.ServerWatch): without that, grants due in the outage were up to 10 s later still.
    renewals = worker_log.count("polling with fresh pollers")
    assert renewals == 1, worker_log[-3000:]

    # the rig scanned every history for its secrets, and replayed each, when the stack stopped
    scan, replayed = rig.secrets_scan, rig.replay_check
    assert scan is not None and replayed is not None
    record(
        "server-restart",
        title="Temporal server restarted while grants are active",
        injected=(
            f"the Temporal server stopped (SIGTERM) {STOP_BEFORE_DUE:.0f}s before the first of {GRANTS} "
            f"active grants was due and started again on the same database file {DOWN_FOR:.0f}s later; "
            "worker and web server kept running"
        ),
        counts={
            "grants active at the stop": GRANTS,
            "server downtime (s)": round(downtime, 2),
            "grants revoked in hoop": sum(1 for r in ids if views[r]["grants"][0]["review_id"] in revoked_at),
            "grants ended more than 2 s late": due_while_down,
            "max lateness (s)": round(worst, 2),
            "allowed lateness (s)": round(downtime + ALLOWED_EXTRA, 2),
            "worker pollers renewed when the server answered": renewals,
            "workflow histories scanned for secrets": scan.workflows,
            "secrets found in histories": len(scan.found),
            "histories replayed on the current code": replayed.workflows,
            "histories that failed to replay": len(replayed.failures),
        },
        outcome=(
            f"every grant was revoked in hoop, none early, the latest {worst:.1f}s after it was due "
            f"(downtime {downtime:.1f}s)"
        ),
    )

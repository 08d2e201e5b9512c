"""One side of the jit benchmark in its own process: ``--mode grantflow`` or ``--mode baseline``.

Both sides build the same generated organisation in an in-memory hoop stand-in (requesters in one access
group of ``CONNECTIONS`` connections, each with a jit access-request rule whose reviewers are one approver
group) and run two phases on the Temporal dev server given by ``--temporal``:

1. ``--grants`` grants whose expiries are spread uniformly over ``--spread`` seconds, all active (with a
   session open in the stand-in, as ``hoop connect`` opens one) before the first expires;
2. ``--burst`` grants expiring in the same second, once the first phase has ended.

Each grant has its own (person, connection). grantflow: every request is created and approved through
``web.service.RequestService`` (the edge's service), the worker built by ``worker.build_worker`` with the
real activities, a SQLite store holding the generated directory, and a generated policy (approvers: one
group; durations bounded just above the longest grant). Baseline: one :class:`bench.bare_jit.BareJitWorkflow`
per grant, started where grantflow's approval is made.

Expiries are aimed, not hoped for: hoop counts a grant's ``revoke_at`` from when it writes it, and a
request's duration is fixed when it is created. So each grant gets an integer duration ``D`` and is approved
at its own planned moment (``W + offset - D`` after the approvals start), which puts every expiry at
``W + offset`` after that start plus the approval-to-grant lag; ``W`` leaves room for every approval (at
``APPROVE_RATE`` a second) and every session before the first expiry. The scheduled expiry measured from
is each grant's own: grantflow's request ``expires_at`` (read back from hoop), the baseline's ``revoke_at``.
Sessions open ``SESSION_AFTER_S`` after their grant is written: hoop ends such a session by itself that
long after the grant's expiry, so until then only a kill ends it.

Everything is read from the stand-in's own event log (``sandbox.hoop.events``): approval → the grant
written, and the scheduled expiry → the grant revoked *and* the session killed (the later of the two).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from bench.bare_jit import BareGrantInput, BareJitActivities, BareJitWorkflow, BareSessions
from bench.expiry_path import expiry_path
from bench.harness import peak_rss_mib
from bench.hoop_process import hoop_in_its_own_process
from domain.identity import Actor, Person
from domain.policy import PolicySet, parse_policies
from domain.requests import RequestStatus, request_workflow_id
from domain.review_links import ReviewLinks
from integrations.hoop import HoopGateway
from integrations.notify import Message
from sandbox.hoop import HoopStandIn
from sandbox.hoop.clock import parse_ts
from sandbox.hoop.events import GRANT_REVOKED, GRANT_WRITTEN, SESSION_KILLED, GatewayEvent
from sandbox.seed import GRANTFLOW_GROUP
from store import Store
from web.service import RequestService
from web.service.errors import NotYetCarriedOut
from worker import build_activities, build_worker

HOOP_KEY = "hpk_bench_grantflow"
CONNECTIONS = 10
"""Connections (one resource with one role each): people hold a grant on each, so 1,000 grants need 100."""
APPROVERS = 5
ENGINEERS = "bench-engineers"
APPROVER_GROUP = "bench-approvers"
ROLE = "admin"
APPROVE_RATE = 4.0
"""Approvals started per second (each at its planned moment). grantflow must write grants as fast, or the
last ones are written late, expire late, and their approvals load the worker while the first grants end:
``timings_s.*.all_active_before_first_expiry_s`` must stay positive for the figures to mean what they say."""
SESSION_AFTER_S = 30.0
"""How long after its grant is written a session opens. hoop ends a session opened under a jit grant by
itself at connect time + the grant's duration, that is this long after the grant's expiry: a revocation
slower than that would find nothing left to kill."""
LEAD_S = 5.0
"""Between the last planned approval plus ``SESSION_AFTER_S`` and the first expiry: for the last grants to
be written and their sessions opened (``--lead``; the test suite's six grants need less)."""
CREATING_AT_ONCE = 16
"""Requests created concurrently (each ``create`` answers once the request waits for its approvers)."""
ENDED_WAIT_S = 300.0
"""How long after the last expiry a phase waits for every grant to be revoked and its session killed."""
POLL_S = 0.01


class CountingNotifier:
    def __init__(self) -> None:
        self.sent = 0

    async def send(self, message: Message) -> None:
        self.sent += 1


# ---------------------------------------------------------------------- the organisation and the plan


def connection(c: int) -> str:
    return f"bench-db-{c:02d}-admin"


def resource(c: int) -> str:
    return f"bench-db-{c:02d}"


def engineer(p: int) -> str:
    return f"eng{p:05d}@example.com"


def approver(a: int) -> str:
    return f"approver{a:02d}@example.com"


@dataclass
class Grant:
    """One grant of the plan, and what was seen of it."""

    phase: str
    index: int  # in its phase
    email: str
    connection: str
    resource: str
    duration_s: int
    approve_at: float  # seconds after the phase's approvals start
    session_after_s: float  # its session opens this long after the grant is written
    request_id: str = ""
    approved_mono: float | None = None
    approved_late_s: float = 0.0
    approval_unanswered: bool = False  # the decision was delivered, but not answered within the edge's wait
    session_id: str | None = None
    expires_at: datetime | None = None


def plan_phase(
    phase: str,
    first: int,
    count: int,
    spread_s: float,
    rate: float,
    session_after_s: float = SESSION_AFTER_S,
    lead_s: float = LEAD_S,
) -> list[Grant]:
    """``count`` grants (the ``first``-th of the population on), expiring ``spread_s`` apart at most: the
    ``i``-th at ``W + i * spread_s / count`` after the approvals start. Its duration is a whole number of
    seconds (hoop's unit), ``ceil(W + offset - i / rate)``, and its approval is planned at ``W + offset - D``
    (``i / rate`` less under a second)."""
    lead = count / rate + session_after_s + lead_s
    grants = []
    for i in range(count):
        k = first + i
        offset = i * spread_s / count
        duration = max(1, math.ceil(lead + offset - i / rate))
        c = k % CONNECTIONS
        grants.append(
            Grant(
                phase=phase,
                index=i,
                email=engineer(k // CONNECTIONS),
                connection=connection(c),
                resource=resource(c),
                duration_s=duration,
                approve_at=lead + offset - duration,
                session_after_s=session_after_s,
            )
        )
    return grants


def people_needed(total_grants: int) -> int:
    return max(1, math.ceil(total_grants / CONNECTIONS))


def directory(people: int) -> list[Person]:
    engineers = [
        Person(id=f"p-eng-{p:05d}", email=engineer(p), display_name=f"Engineer {p}", groups=(ENGINEERS,))
        for p in range(people)
    ]
    approvers = [
        Person(
            id=f"p-appr-{a:02d}", email=approver(a), display_name=f"Approver {a}", groups=(APPROVER_GROUP,)
        )
        for a in range(APPROVERS)
    ]
    return engineers + approvers


def policies(longest_s: int) -> PolicySet:
    """One resource per connection, one role each, approved by one of the approver group; durations up to
    just above the longest grant of the plan."""
    role = {
        "approver_groups": [APPROVER_GROUP],
        "min_approvals": 1,
        "max_duration": f"{longest_s + 60}s",
        "request_timeout": "1h",
    }
    return parse_policies(
        {
            "resources": {
                resource(c): {"roles": {ROLE: {"connection": connection(c), **role}}}
                for c in range(CONNECTIONS)
            }
        },
        "generated jit benchmark policy",
    )


def seed(hoop: HoopStandIn, people: Sequence[Person]) -> None:
    for person in people:
        hoop.add_user(person.email, name=person.display_name, groups=list(person.groups))
    for c in range(CONNECTIONS):
        hoop.add_connection(connection(c), access_groups=[ENGINEERS], tags={"resource": resource(c)})
        hoop.add_access_rule(
            f"{connection(c)}-jit",
            access_type="jit_command",
            connection_names=[connection(c)],
            reviewers_groups=[APPROVER_GROUP],
            force_approval_groups=[GRANTFLOW_GROUP],
            min_approvals=1,
        )


# ---------------------------------------------------------------------- watching the stand-in


class Watch:
    """The stand-in's events, indexed as they arrive (one poller for every waiting grant)."""

    def __init__(self, hoop: HoopStandIn) -> None:
        self._hoop = hoop
        self._seen = 0
        self.written: dict[tuple[str, str], GatewayEvent] = {}
        self.revoked: dict[str, GatewayEvent] = {}
        self.killed: dict[str, GatewayEvent] = {}

    def session(self, session_id: str) -> dict[str, Any]:
        return self._hoop.session(session_id)

    def refresh(self) -> None:
        new = self._hoop.events(start=self._seen)
        self._seen += len(new)
        for event in new:
            if event.kind == GRANT_WRITTEN:
                self.written.setdefault((event.user_email, event.connection), event)
            elif event.kind == GRANT_REVOKED and event.review_id:
                self.revoked.setdefault(event.review_id, event)
            elif event.kind == SESSION_KILLED and event.session_id:
                self.killed.setdefault(event.session_id, event)

    async def written_for(self, grant: Grant, timeout: float = 120.0) -> GatewayEvent:
        deadline = time.monotonic() + timeout
        key = (grant.email, grant.connection)
        while True:
            self.refresh()
            if key in self.written:
                return self.written[key]
            if time.monotonic() > deadline:
                raise RuntimeError(f"no grant written for {key} after {timeout:.0f} s")
            await asyncio.sleep(POLL_S)

    def ended(self, grant: Grant) -> bool:
        """Revoked, and its session killed."""
        written = self.written.get((grant.email, grant.connection))
        return (
            written is not None
            and written.review_id in self.revoked
            and grant.session_id is not None
            and grant.session_id in self.killed
        )

    def over(self, grant: Grant) -> bool:
        """Nothing left to wait for: revoked, and its session no longer open (killed, or ended by hoop
        at its own deadline — which counts as not killed)."""
        written = self.written.get((grant.email, grant.connection))
        if written is None or written.review_id not in self.revoked or grant.session_id is None:
            return False
        if grant.expires_at is None or datetime.now(grant.expires_at.tzinfo) < grant.expires_at + timedelta(
            seconds=grant.session_after_s
        ):
            return False  # only a kill can have ended it yet (and asking hoop would load it)
        return grant.session_id in self.killed or self.session(grant.session_id)["status"] != "open"


# ---------------------------------------------------------------------- the two sides


Approve = Callable[[Grant], Awaitable[None]]


async def run_phase(
    grants: list[Grant],
    hoop: HoopStandIn,
    watch: Watch,
    prepare: Callable[[list[Grant]], Awaitable[None]],
    approve: Approve,
    opened: Callable[[Grant], None] | None = None,
) -> dict[str, Any]:
    """Create (``prepare``), approve each grant at its planned moment, open its session once the grant is
    written (``opened`` is told), then wait for every grant to be revoked and its session killed."""
    phase = grants[0].phase
    began = time.monotonic()
    await prepare(grants)
    prepared_s = time.monotonic() - began
    print(f"    {phase}: {len(grants):,} prepared in {prepared_s:.1f} s; approving", flush=True)
    start = time.monotonic()

    async def one(grant: Grant) -> None:
        grant.approved_mono = time.monotonic()
        grant.approved_late_s = grant.approved_mono - (start + grant.approve_at)
        await approve(grant)
        written = await watch.written_for(grant)
        await asyncio.sleep(max(0.0, written.monotonic + grant.session_after_s - time.monotonic()))
        grant.session_id = await asyncio.to_thread(hoop.connect, grant.email, grant.connection)
        if opened is not None:
            opened(grant)

    tasks = []
    for grant in sorted(grants, key=lambda g: g.approve_at):
        wait = start + grant.approve_at - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(grant)))
    await asyncio.gather(*tasks)
    active_s = time.monotonic() - start
    print(f"    {phase}: {len(grants):,} active, with sessions, in {active_s:.1f} s; waiting", flush=True)
    for grant in grants:
        written = watch.written[(grant.email, grant.connection)]
        assert written.review_id is not None
        grant.expires_at = parse_ts(hoop.review(written.review_id)["revoke_at"])
    last = max(g.expires_at for g in grants if g.expires_at is not None)
    first = min(g.expires_at for g in grants if g.expires_at is not None)
    active_at = datetime.now(last.tzinfo)
    deadline = time.monotonic() + max(0.0, (last - active_at).total_seconds()) + ENDED_WAIT_S
    while time.monotonic() < deadline:
        watch.refresh()
        if all(watch.ended(g) or watch.over(g) for g in grants):
            break
        await asyncio.sleep(0.1)
    done = sum(watch.ended(g) for g in grants)
    print(f"    {phase}: {done:,} of {len(grants):,} revoked with their session killed", flush=True)
    return {
        "prepare_s": round(prepared_s, 3),
        "approvals_and_sessions_s": round(active_s, 3),
        "all_active_before_first_expiry_s": round((first - active_at).total_seconds(), 3),
    }


def figures(grants: list[Grant], watch: Watch) -> dict[str, Any]:
    """What was measured of one phase, from the stand-in's events."""
    visible: list[float] = []
    ended: list[float] = []
    revoked_only: list[float] = []
    written = revoked = killed = not_killed_ended_by_hoop = not_killed_open = 0
    for grant in grants:
        w = watch.written.get((grant.email, grant.connection))
        if w is None:
            continue
        written += 1
        if grant.approved_mono is not None:
            visible.append(w.monotonic - grant.approved_mono)
        r = watch.revoked.get(w.review_id or "")
        k = watch.killed.get(grant.session_id or "")
        revoked += r is not None
        killed += k is not None
        if k is None and grant.session_id is not None:
            session = watch.session(grant.session_id)
            if session["status"] != "open":
                not_killed_ended_by_hoop += 1
            else:
                not_killed_open += 1
        if grant.expires_at is not None and r is not None:
            revoked_only.append((r.wall - grant.expires_at).total_seconds())
            if k is not None:
                ended.append((max(r.wall, k.wall) - grant.expires_at).total_seconds())
    expiries = sorted(g.expires_at for g in grants if g.expires_at is not None)
    densest = 0
    j = 0
    for i, at in enumerate(expiries):  # the most expiries within one second
        while (at - expiries[j]).total_seconds() >= 1.0:
            j += 1
        densest = max(densest, i - j + 1)
    return {
        "grants": len(grants),
        "written": written,
        "revoked": revoked,
        "sessions_opened": sum(g.session_id is not None for g in grants),
        "sessions_killed": killed,
        "sessions_not_killed_ended_at_own_deadline": not_killed_ended_by_hoop,
        "sessions_not_killed_still_open": not_killed_open,
        "approval_to_visible_s": percentiles(visible),
        "expiry_to_revoked_and_killed_s": percentiles(ended),
        "expiry_to_revoked_s": percentiles(revoked_only),
        "expiry_spread_s": round((expiries[-1] - expiries[0]).total_seconds(), 3) if expiries else None,
        "most_expiries_in_one_second": densest,
        "approvals_late_max_s": round(max((g.approved_late_s for g in grants), default=0.0), 3),
        "approvals_unanswered_in_time": sum(g.approval_unanswered for g in grants),
    }


async def expiry_paths(
    client: Client, phases: list[list[Grant]], workflow_id: Callable[[str], str], activity_type: str
) -> dict[str, dict[str, Any]]:
    """Per phase, where each grant's expiry spent its time (:mod:`bench.expiry_path`): ``workflow_id`` names
    a grant's workflow from its request id, ``activity_type`` is the activity that ends the grant."""
    return {
        grants[0].phase: await expiry_path(
            client,
            [(workflow_id(g.request_id), g.expires_at) for g in grants if g.expires_at is not None],
            activity_type,
            percentiles,
        )
        for grants in phases
    }


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:  # nearest rank
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 3)

    return {
        "count": len(ordered),
        "p50": at(0.5),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": round(ordered[-1], 3),
    }


def new_stand_in() -> AbstractContextManager[HoopStandIn]:
    """Each side's hoop stand-in, in a process of its own (:mod:`bench.hoop_process`)."""
    return hoop_in_its_own_process(
        api_keys={HOOP_KEY: ["admin", GRANTFLOW_GROUP]}, api_key_names={HOOP_KEY: "grantflow"}
    )


async def grantflow_side(phases: list[list[Grant]], client: Client, folder: Path) -> dict[str, Any]:
    with new_stand_in() as hoop:
        return await _grantflow_side(phases, client, folder, hoop)


async def _grantflow_side(
    phases: list[list[Grant]], client: Client, folder: Path, hoop: HoopStandIn
) -> dict[str, Any]:
    total = sum(len(p) for p in phases)
    people = directory(people_needed(total))
    policy_set = policies(max(g.duration_s for p in phases for g in p))
    store = Store(
        f"sqlite:///{folder / 'grantflow.db'}",
        ledger_key=b"bench-ledger-key-0123456789abcdef",
        anchor_path=folder / "anchor",
    )
    store.migrate()
    store.replace_directory(people)
    gateway = HoopGateway(base_url=hoop.start(), api_key=HOOP_KEY)
    seed(hoop, people)
    watch = Watch(hoop)
    task_queue = f"bench-jit-{uuid.uuid4().hex[:8]}"
    activities = build_activities(
        store=store,
        gateway=gateway,
        notifier=CountingNotifier(),
        links=ReviewLinks("bench-link-secret", "http://127.0.0.1:9", timedelta(days=1)),
        policies=policy_set,
        evidence_key=Ed25519PrivateKey.generate(),
    )
    service = RequestService(client, store, policy_set, task_queue)
    by_email = {p.email: p for p in people}
    approvers = [by_email[approver(a)] for a in range(APPROVERS)]
    try:
        async with build_worker(client, task_queue, activities):
            gate = asyncio.Semaphore(CREATING_AT_ONCE)

            async def create(grant: Grant) -> None:
                async with gate:
                    view = await service.create(
                        Actor(person=by_email[grant.email].ref, channel="api"),
                        resource=grant.resource,
                        role=ROLE,
                        duration=f"{grant.duration_s}s",
                        reason="bench: INC-1",
                    )
                    grant.request_id = view.id

            async def prepare(grants: list[Grant]) -> None:
                await asyncio.gather(*(create(g) for g in grants))

            async def approve(grant: Grant) -> None:
                who = approvers[grant.index % APPROVERS]
                try:
                    view = await service.decide(
                        grant.request_id, Actor(person=who.ref, channel="web"), "approve", "ok"
                    )
                except NotYetCarriedOut:
                    # Delivered (the signal is in the history) but not carried out within the edge's wait:
                    # the grant is still written when the worker gets to it, and its latency counts.
                    grant.approval_unanswered = True
                    return
                if view.status.is_terminal:
                    raise RuntimeError(f"{grant.request_id} is {view.status.value} after its approval")

            timings = {}
            for grants in phases:
                timings[grants[0].phase] = await run_phase(grants, hoop, watch, prepare, approve)
            for grants in phases:  # the requests' last records are written after the revocation
                for grant in grants:
                    await client.get_workflow_handle(request_workflow_id(grant.request_id)).result()
            # grantflow's own expires_at (read back from hoop when the grant was written) is the schedule
            mismatched = 0
            for grants in phases:
                for grant in grants:
                    stored = store.get_request(grant.request_id)
                    assert stored is not None and stored.expires_at is not None
                    if stored.expires_at != grant.expires_at:
                        mismatched += 1
                    grant.expires_at = stored.expires_at
            ended = sum(
                1
                for grants in phases
                for g in grants
                if (s := store.get_request(g.request_id)) is not None and s.status is RequestStatus.ENDED
            )
            paths = await expiry_paths(client, phases, request_workflow_id, "revoke_access")
            return {
                **{g[0].phase: {**figures(g, watch), "expiry_path_s": paths[g[0].phase]} for g in phases},
                "timings_s": timings,
                "requests_ended": ended,
                "expires_at_differs_from_hoop": mismatched,
                "peak_rss_mib": peak_rss_mib(),
            }
    finally:
        await gateway.aclose()
        hoop.stop()
        store.close()


async def baseline_side(phases: list[list[Grant]], client: Client, folder: Path) -> dict[str, Any]:
    with new_stand_in() as hoop:
        return await _baseline_side(phases, client, hoop)


async def _baseline_side(phases: list[list[Grant]], client: Client, hoop: HoopStandIn) -> dict[str, Any]:
    total = sum(len(p) for p in phases)
    people = directory(people_needed(total))
    gateway = HoopGateway(base_url=hoop.start(), api_key=HOOP_KEY)
    seed(hoop, people)
    watch = Watch(hoop)
    sessions: BareSessions = {}
    bare = BareJitActivities(gateway, sessions)
    task_queue = f"bench-bare-jit-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        client, task_queue=task_queue, workflows=[BareJitWorkflow], activities=[bare.grant, bare.end]
    )
    handles = []
    try:
        async with worker:

            async def prepare(grants: list[Grant]) -> None:
                for grant in grants:
                    grant.request_id = f"bare-jit-{grant.phase}-{grant.index}-{uuid.uuid4().hex[:6]}"

            async def approve(grant: Grant) -> None:
                handles.append(
                    await client.start_workflow(
                        BareJitWorkflow.run,
                        BareGrantInput(
                            grant_id=grant.request_id,
                            user_email=grant.email,
                            connection=grant.connection,
                            duration_seconds=grant.duration_s,
                        ),
                        id=grant.request_id,
                        task_queue=task_queue,
                    )
                )

            def opened(grant: Grant) -> None:
                # the session the benchmark opened under the grant is the one the end kills
                assert grant.session_id is not None
                sessions[(grant.email, grant.connection)] = grant.session_id

            timings = {}
            for grants in phases:
                timings[grants[0].phase] = await run_phase(grants, hoop, watch, prepare, approve, opened)
            ended = 0
            for handle in handles:
                await handle.result()
                ended += 1
            paths = await expiry_paths(client, phases, lambda request_id: request_id, "bare_jit_end")
            return {
                **{g[0].phase: {**figures(g, watch), "expiry_path_s": paths[g[0].phase]} for g in phases},
                "timings_s": timings,
                "requests_ended": ended,
                "peak_rss_mib": peak_rss_mib(),
            }
    finally:
        await gateway.aclose()
        hoop.stop()


async def main(args: argparse.Namespace) -> None:
    phases = [
        plan_phase("spread", 0, args.grants, args.spread, args.approve_rate, args.session_after, args.lead),
        plan_phase("burst", args.grants, args.burst, 0.0, args.approve_rate, args.session_after, args.lead),
    ]
    phases = [p for p in phases if p]
    client = await Client.connect(args.temporal, data_converter=pydantic_data_converter)
    folder = Path(args.out).parent
    side = grantflow_side if args.mode == "grantflow" else baseline_side
    result = await side(phases, client, folder)
    result["plan"] = {
        p[0].phase: {
            "grants": len(p),
            "durations_s": [min(g.duration_s for g in p), max(g.duration_s for g in p)],
            "approvals_over_s": round(max(g.approve_at for g in p), 3),
        }
        for p in phases
    }
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.jit_run")
    parser.add_argument("--mode", choices=("grantflow", "baseline"), required=True)
    parser.add_argument("--grants", type=int, required=True)
    parser.add_argument("--spread", type=float, required=True)
    parser.add_argument("--burst", type=int, required=True)
    parser.add_argument("--approve-rate", type=float, default=APPROVE_RATE)
    parser.add_argument("--session-after", type=float, default=SESSION_AFTER_S)
    parser.add_argument("--lead", type=float, default=LEAD_S)
    parser.add_argument("--temporal", required=True, help="host:port of the Temporal dev server")
    parser.add_argument("--out", required=True)
    asyncio.run(main(parser.parse_args()))

"""The scim-sync scenario: a full identity sync of ``--users`` users and ``--groups`` groups, then an
incremental sync of ``--changes`` changes, through grantflow's ``IdentitySyncWorkflow`` on a Temporal dev
server, against the baseline: raw ``scim2-client`` paging of the same resources, in the same run.

The directory is scim2-server in memory (:class:`sandbox.scim.ScimDirectoryServer`): ``groups`` teams, each a
lead and members reporting to the lead, all in the team's group. It is seeded with a clock a day back, as a
directory that existed long before the sync, so an incremental listing (``meta.lastModified gt`` the
watermark less its overlap) finds only the changes made after the full sync: managers changed (movers),
emails changed, people added to another team's group, people deactivated (leavers), in the shares of
:data:`CHANGE_MIX`.

The baseline pages ``/Users`` (with the enterprise extension) and ``/Groups`` with scim2-client's
``AsyncSCIMClient`` on ``httpx2``, the page size grantflow asks for (:data:`DEFAULT_PAGE_SIZE`, capped by the
provider's ``maxResults``), reading responses as JSON as grantflow does, and keeps every resource: the floor
any sync pays to the provider. For the incremental sync it pages with the same filter grantflow used.
What grantflow adds on top is the workflow, the diff against its store, the store's transaction, the ledger
entries, and for leavers the gateway and the campaigns. Both sides talk to the same server in this process.
Targets: full sync at most 1.3 times the raw paging; incremental sync of 100 changes at most 2 s.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from scim2_client.engines.httpx2 import AsyncSCIMClient
from scim2_models import (
    EnterpriseUser,
    Group,
    Resource,
    ResourceType,
    ScimProvider,
    SearchRequest,
    ServiceProviderConfig,
    User,
)
from temporalio.client import Client

from activities.identity_sync import WATERMARK, WATERMARK_OVERLAP
from bench.harness import dev_server, peak_rss_mib, record
from domain.directory_sync import SyncInput, SyncReport
from domain.review_links import ReviewLinks
from integrations.hoop import HoopGateway
from integrations.notify import Message
from integrations.scim import DEFAULT_PAGE_SIZE, ScimDirectory
from integrations.scim.paging import modified_since_filter
from sandbox.hoop import HoopStandIn
from sandbox.scim import ScimDirectoryServer
from sandbox.seed import GRANTFLOW_GROUP
from store import Store
from worker import build_activities, build_worker
from workflows.identity_sync import IdentitySyncWorkflow

SCIM_TOKEN = "bench-scim-token"
HOOP_KEY = "hpk_bench_grantflow"
LEDGER_KEY = b"bench-ledger-key-0123456789abcdef"
USERS = 10_000
GROUPS = 1_000
CHANGES = 100
CHANGE_MIX = (("manager", 4), ("email", 3), ("group", 2), ("deactivate", 1))
"""Kinds of change and their weights: of 100 changes, 40 movers, 30 new emails, 20 people added to a
group, 10 leavers (0.1 % of 10,000, well under the sync's 10 % safety limit)."""
FULL_TARGET_RATIO = 1.3
INCREMENTAL_TARGET_S = 2.0
SEEDED_AGO = timedelta(days=1)

_USER_MODEL: type[Resource[Any]] = User[EnterpriseUser]
_PROVIDER = ScimProvider(
    models=[User, EnterpriseUser, Group],
    resource_types=[ResourceType.from_resource(_USER_MODEL), ResourceType.from_resource(Group)],
)


class CountingNotifier:
    def __init__(self) -> None:
        self.sent = 0

    async def send(self, message: Message) -> None:
        self.sent += 1


# --- the directory ------------------------------------------------------------------------------------


def team_sizes(users: int, groups: int) -> list[int]:
    """Users per team, as even as the numbers allow (every user in exactly one team)."""
    base, extra = divmod(users, groups)
    return [base + (1 if g < extra else 0) for g in range(groups)]


def lead(team: int) -> str:
    return f"t{team:04d}u00000@example.com"


def member(team: int, i: int) -> str:
    return f"t{team:04d}u{i:05d}@example.com"


def seed(server: ScimDirectoryServer, users: int, groups: int) -> None:
    """Teams of a lead and members reporting to the lead, each in the team's group; written with a clock
    :data:`SEEDED_AGO` back (scim2-server's storage dates every write with its ``clock``)."""
    storage = server._storage  # the stand-in's scim2-server storage: its clock dates meta.lastModified
    then = datetime.now(UTC) - SEEDED_AGO
    storage.clock = lambda: then
    try:
        for team, size in enumerate(team_sizes(users, groups)):
            group = f"team-{team:04d}"
            prefix = f"t{team:04d}u"
            if size == 0:
                server.add_users(0, prefix=prefix, group=group)
                continue
            server.add_users(1, prefix=prefix, group=group)
            server.add_users(size - 1, prefix=prefix, first=1, manager_email=lead(team), group=group)
    finally:
        storage.clock = lambda: datetime.now(UTC)


def change(server: ScimDirectoryServer, users: int, groups: int, changes: int) -> dict[str, int]:
    """``changes`` changes in the shares of :data:`CHANGE_MIX`, each to a different non-lead member."""
    sizes = team_sizes(users, groups)
    people = [(t, i) for i in range(1, max(sizes, default=0)) for t in range(groups) if i < sizes[t]]
    if len(people) < changes:
        raise SystemExit(
            f"{users} users in {groups} groups leave {len(people)} members to change, not {changes}"
        )
    weights = sum(w for _, w in CHANGE_MIX)
    plan = [kind for kind, w in CHANGE_MIX for _ in range(changes * w // weights)]
    plan += ["manager"] * (changes - len(plan))
    done: dict[str, int] = {}
    for (team, i), kind in zip(people, plan, strict=False):
        email = member(team, i)
        other = (team + 1) % groups
        if kind == "manager":
            server.set_manager(email, lead(other))
        elif kind == "email":
            server.set_email(email, f"t{team:04d}u{i:05d}.moved@example.com")
        elif kind == "group":
            server.add_to_group(f"team-{other:04d}", email)
        else:
            server.deactivate(email)
        done[kind] = done.get(kind, 0) + 1
    return done


# --- the baseline: raw scim2-client paging ------------------------------------------------------------


async def raw_paging(base_url: str, scim_filter: str | None) -> dict[str, Any]:
    """Every user and group (or, with ``scim_filter``, those it matches), page by page."""
    http = httpx2.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {SCIM_TOKEN}", "Accept": "application/scim+json"},
    )
    scim = AsyncSCIMClient(http, provider=_PROVIDER, check_response_payload=False)
    began = time.perf_counter()
    try:
        config = await scim.query(ServiceProviderConfig, expected_status_codes=[200])
        max_results = (config.get("filter") or {}).get("maxResults") if isinstance(config, dict) else None
        count = min(DEFAULT_PAGE_SIZE, max_results) if max_results else DEFAULT_PAGE_SIZE
        listed: dict[str, int] = {}
        pages = 0
        for name, model in (("users", _USER_MODEL), ("groups", Group)):
            start, kept = 1, list[Any]()
            while True:
                request: SearchRequest[Any] = (
                    SearchRequest(start_index=start, count=count)
                    if scim_filter is None
                    else SearchRequest(start_index=start, count=count, filter=scim_filter)
                )
                page: Any = await scim.query(model, query_parameters=request, expected_status_codes=[200])
                pages += 1
                resources = page.get("Resources") or []
                kept.extend(resources)  # JSON, as grantflow reads it (check_response_payload=False)
                if not resources or start + len(resources) > page["totalResults"]:
                    break
                start += len(resources)
            listed[name] = len(kept)
        return {
            "seconds": round(time.perf_counter() - began, 3),
            "listed": listed,
            "pages": pages,
            "page_size": count,
        }
    finally:
        await http.aclose()


# --- grantflow ----------------------------------------------------------------------------------------


async def grantflow_sync(client: Client, task_queue: str, *, full: bool) -> tuple[float, SyncReport]:
    began = time.perf_counter()
    report = await client.execute_workflow(
        IdentitySyncWorkflow.run,
        SyncInput(sync_id="", full=full),
        id=f"bench-sync-{'full' if full else 'incremental'}-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )
    return time.perf_counter() - began, report


def side(report: SyncReport, seconds: float) -> dict[str, Any]:
    return {
        "seconds": round(seconds, 3),
        "mode": report.mode,
        "applied": report.applied,
        "blocked_reason": report.blocked_reason,
        "listed": {"users": report.users_listed, "groups": report.groups_listed},
        "counts": report.counts,
        "gateway_error": report.gateway_error,
    }


# --- the scenario -------------------------------------------------------------------------------------


async def run(
    users: int = USERS, groups: int = GROUPS, changes: int = CHANGES, results: Path | None = None
) -> dict[str, Any]:
    command = "python -m bench scim-sync"
    if users != USERS:
        command += f" --users {users}"
    if groups != GROUPS:
        command += f" --groups {groups}"
    if changes != CHANGES:
        command += f" --changes {changes}"
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="grantflow-bench-scim-") as tmp:
        folder = Path(tmp)
        scim_server = ScimDirectoryServer(bearer_token=SCIM_TOKEN)
        hoop = HoopStandIn(
            api_keys={HOOP_KEY: ["admin", GRANTFLOW_GROUP]}, api_key_names={HOOP_KEY: "grantflow"}
        )
        print(f"seeding {users:,} users in {groups:,} groups", flush=True)
        began = time.perf_counter()
        seed(scim_server, users, groups)
        figures["seed_s"] = round(time.perf_counter() - began, 3)
        base_url = scim_server.start()
        scim = ScimDirectory(base_url, SCIM_TOKEN)
        gateway = HoopGateway(base_url=hoop.start(), api_key=HOOP_KEY)
        store = Store(
            f"sqlite:///{folder / 'grantflow.db'}", ledger_key=LEDGER_KEY, anchor_path=folder / "anchor"
        )
        store.migrate()
        try:
            async with dev_server(folder / "temporal.db") as env:
                task_queue = f"bench-sync-{uuid.uuid4().hex[:8]}"
                activities = build_activities(
                    store=store,
                    gateway=gateway,
                    notifier=CountingNotifier(),
                    links=ReviewLinks("bench-link-secret", "http://127.0.0.1:9", timedelta(days=1)),
                    scim=scim,
                    evidence_key=Ed25519PrivateKey.generate(),
                )
                async with build_worker(env.client, task_queue, activities):
                    # Untimed: the first connection and the client's first query are paid by neither side.
                    await raw_paging(base_url, modified_since_filter(datetime.now(UTC) + timedelta(days=1)))
                    print("full sync: raw scim2-client paging", flush=True)
                    bare_full = await raw_paging(base_url, None)
                    print("full sync: grantflow", flush=True)
                    seconds, report = await grantflow_sync(env.client, task_queue, full=True)
                    ours_full = side(report, seconds)
                    ours_full["people_stored"] = len(store.list_people())

                    made = change(scim_server, users, groups, changes)
                    watermark = store.directory_state(WATERMARK)
                    assert watermark is not None
                    since = datetime.fromisoformat(watermark) - WATERMARK_OVERLAP
                    print(f"incremental sync of {changes} changes: raw scim2-client paging", flush=True)
                    bare_incremental = await raw_paging(base_url, modified_since_filter(since))
                    print(f"incremental sync of {changes} changes: grantflow", flush=True)
                    seconds, report = await grantflow_sync(env.client, task_queue, full=False)
                    ours_incremental = side(report, seconds)
        finally:
            await gateway.aclose()
            await scim.aclose()
            scim_server.stop()
            hoop.stop()
            store.close()
    figures.update(
        {
            "full": {
                "grantflow": ours_full,
                "baseline": bare_full,
                "ratio": round(ours_full["seconds"] / bare_full["seconds"], 2),
            },
            "incremental": {
                "changes": made,
                "grantflow": ours_incremental,
                "baseline": bare_incremental,
                "ratio": round(ours_incremental["seconds"] / bare_incremental["seconds"], 2),
            },
            "peak_rss_mib": peak_rss_mib(),
        }
    )
    figures["targets"] = {
        "full_vs_raw_paging_at_most": FULL_TARGET_RATIO,
        "incremental_s_at_most": INCREMENTAL_TARGET_S,
    }
    figures["targets_met"] = {
        "full": figures["full"]["ratio"] <= FULL_TARGET_RATIO,
        "incremental": ours_incremental["seconds"] <= INCREMENTAL_TARGET_S,
    }
    summary = (
        f"{users:,} users / {groups:,} groups: full sync {ours_full['seconds']:.1f} s, raw paging "
        f"{bare_full['seconds']:.1f} s, **ratio {figures['full']['ratio']}**; "
        f"incremental of {changes} changes "
        f"{ours_incremental['seconds']:.2f} s (raw paging {bare_incremental['seconds']:.2f} s)"
    )
    parameters = {
        "size": users,
        "users": users,
        "groups": groups,
        "changes": changes,
        "page_size": bare_full["page_size"],
    }
    path = record("scim-sync", parameters, figures, summary, command, results)
    print(summary)
    print(f"written to {path}")
    return figures

"""One side of the campaign benchmark in its own process: ``--mode grantflow`` or ``--mode baseline``.

Both sides get the same generated organisation in an in-memory scim2-server and an in-memory hoop stand-in
(in a process of their own, :mod:`bench.standins`), run one campaign over it on the Temporal dev server
given by ``--temporal``, keep 7 in 10 items through the same batched decisions (one call per reviewer, as
the web page sends them), end the stage, and wait for the revocations (3 in 10) to be applied. Timings are
taken from launch to the workflow's result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from bench.activity_phases import activity_phases
from bench.bare_campaign import BareActivities, BareCampaign, BareCampaignWorkflow, BareInput
from bench.harness import peak_rss_mib
from bench.organisation import OWNER, Organisation, spec
from bench.standins import HOOP_KEY, SCIM_TOKEN, standins
from domain.directory_sync import SyncInput
from domain.identity import Actor
from domain.review_links import ReviewLinks
from integrations.hoop import HoopGateway
from integrations.notify import Message
from integrations.scim import ScimDirectory
from store import Store
from web.campaign_service import CampaignService, DecisionRequest
from worker import build_activities, build_worker
from workflows.campaign import CONTINUE_AS_NEW_AFTER, CampaignWorkflow
from workflows.identity_sync import IdentitySyncWorkflow

LEDGER_KEY = b"bench-ledger-key-0123456789abcdef"
DECIDING_AT_ONCE = 8
"""Reviewers deciding at the same moment (each one batch of their items)."""


class CountingNotifier:
    def __init__(self) -> None:
        self.sent = 0

    async def send(self, message: Message) -> None:
        self.sent += 1


class Clock:
    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.marks: dict[str, float] = {}

    def mark(self, name: str) -> None:
        self.marks[name] = round(time.perf_counter() - self.start, 3)


async def largest_history(client: Client, workflow_id: str) -> tuple[int, int]:
    """(largest history of any run of the workflow, number of runs): continue-as-new makes several."""
    runs = [w async for w in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    return max((w.history_length for w in runs), default=0), len(runs)


def member_index(email: str) -> int:
    return int(email.split("@")[0].split("u")[-1])


async def grantflow_side(org: Organisation, client: Client, folder: Path) -> dict[str, Any]:
    database = f"sqlite:///{folder / 'grantflow.db'}"
    store = Store(database, ledger_key=LEDGER_KEY, anchor_path=folder / "anchor")
    store.migrate()
    try:
        with standins(org) as (scim_url, hoop_url):
            return await _grantflow_side(org, client, store, scim_url, hoop_url)
    finally:
        store.close()


async def _grantflow_side(
    org: Organisation, client: Client, store: Store, scim_url: str, hoop_url: str
) -> dict[str, Any]:
    scim = ScimDirectory(scim_url, SCIM_TOKEN)
    gateway = HoopGateway(base_url=hoop_url, api_key=HOOP_KEY)
    notifier = CountingNotifier()
    task_queue = f"bench-{uuid.uuid4().hex[:8]}"
    activities = build_activities(
        store=store,
        gateway=gateway,
        notifier=notifier,
        links=ReviewLinks("bench-link-secret", "http://127.0.0.1:9", timedelta(days=31)),
        scim=scim,
        evidence_key=Ed25519PrivateKey.generate(),
    )
    try:
        async with build_worker(client, task_queue, activities):
            began = time.perf_counter()
            await client.execute_workflow(
                IdentitySyncWorkflow.run,
                SyncInput(sync_id="", full=True),
                id=f"bench-sync-{uuid.uuid4().hex[:8]}",
                task_queue=task_queue,
            )
            setup_sync_s = round(time.perf_counter() - began, 3)
            service = CampaignService(client, store, task_queue)
            owner = store.find_person_by_email(OWNER)
            assert owner is not None
            owner_actor = Actor(person=owner.ref, channel="api")
            clock = Clock()
            record = await service.launch(spec(org), owner_actor)
            handle = client.get_workflow_handle_for(CampaignWorkflow.run, record.workflow_id)
            while True:
                state = await handle.query(CampaignWorkflow.state)
                if state.stage_opened and state.notice_cursor is None:
                    break
                await asyncio.sleep(0.2)
            clock.mark("open")
            gate = asyncio.Semaphore(DECIDING_AT_ONCE)

            async def review(team: int) -> int:
                async with gate:
                    person = store.find_person_by_email(org.manager(team))
                    assert person is not None
                    items = await service.items_for_reviewer(record.id, person.id)
                    keep = [
                        DecisionRequest(item_id=i.id, verdict="keep")
                        for i in items
                        if org.kept(member_index(i.subject.name))
                    ]
                    if keep:
                        done = await service.decide(record.id, keep, Actor(person=person.ref, channel="web"))
                        assert not done.refused, done.refused
                    return len(keep)

            kept = sum(await asyncio.gather(*(review(t) for t in range(org.reviewers))))
            clock.mark("decided")
            await service.end_stage(record.id, owner_actor, "every reviewer has answered")
            result = await handle.result()
            clock.mark("closed")
            history, runs = await largest_history(client, record.workflow_id)
            phases = await activity_phases(client, record.workflow_id)
            closed = store.campaign(record.id)
            assert closed is not None
            return {
                "timings_s": clock.marks,
                "setup_identity_sync_s": setup_sync_s,
                "items": closed.item_count,
                "kept_by_reviewers": kept,
                "outcomes": result.outcomes,
                "notifications": notifier.sent,
                "largest_history_events": history,
                "workflow_runs": runs,
                "activity_phases": phases,
                "peak_rss_mib": peak_rss_mib(),
            }
    finally:
        await gateway.aclose()
        await scim.aclose()


async def baseline_side(org: Organisation, client: Client, folder: Path) -> dict[str, Any]:
    with standins(org) as (scim_url, hoop_url):
        return await _baseline_side(org, client, scim_url, hoop_url)


async def _baseline_side(org: Organisation, client: Client, scim_url: str, hoop_url: str) -> dict[str, Any]:
    scim = ScimDirectory(scim_url, SCIM_TOKEN)
    gateway = HoopGateway(base_url=hoop_url, api_key=HOOP_KEY)
    notifier = CountingNotifier()
    campaigns: dict[str, BareCampaign] = {}
    bare = BareActivities(gateway, scim, notifier, campaigns)
    task_queue = f"bench-bare-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[BareCampaignWorkflow],
        activities=[bare.snapshot, bare.step, bare.tell, bare.settle, bare.apply],
    )
    try:
        async with worker:
            clock = Clock()
            campaign_id = f"bare-{uuid.uuid4().hex[:8]}"
            handle = await client.start_workflow(
                BareCampaignWorkflow.run,
                BareInput(campaign_id=campaign_id, continue_as_new_after=CONTINUE_AS_NEW_AFTER),
                id=f"campaign-{campaign_id}",
                task_queue=task_queue,
            )
            # Filled by the snapshot activity; polled as grantflow's side polls its workflow.
            while campaign_id not in campaigns:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            clock.mark("open")
            by_reviewer: dict[str, list[Any]] = {}
            for items in campaigns[campaign_id].items.values():
                for item in items:
                    by_reviewer.setdefault(item.reviewer, []).append(item)
            gate = asyncio.Semaphore(DECIDING_AT_ONCE)

            async def review(items: list[Any]) -> int:
                async with gate:
                    keep = [i for i in items if org.kept(member_index(i.email))]
                    for item in keep:
                        item.kept = True
                    if keep:
                        await handle.signal(BareCampaignWorkflow.decisions_recorded, len(keep))
                    return len(keep)

            kept = sum(await asyncio.gather(*(review(items) for items in by_reviewer.values())))
            clock.mark("decided")
            await handle.execute_update(BareCampaignWorkflow.end_stage)
            await handle.result()
            clock.mark("closed")
            history, runs = await largest_history(client, handle.id)
            phases = await activity_phases(client, handle.id)
            return {
                "timings_s": clock.marks,
                "items": sum(len(i) for i in campaigns[campaign_id].items.values()),
                "kept_by_reviewers": kept,
                "outcomes": {"revoked": campaigns[campaign_id].revoked, "kept": kept},
                "notifications": notifier.sent,
                "largest_history_events": history,
                "workflow_runs": runs,
                "activity_phases": phases,
                "peak_rss_mib": peak_rss_mib(),
            }
    finally:
        await gateway.aclose()
        await scim.aclose()


async def main(args: argparse.Namespace) -> None:
    org = Organisation(size=args.size, reviewers=args.reviewers)
    client = await Client.connect(args.temporal, data_converter=pydantic_data_converter)
    folder = Path(args.out).parent
    side = grantflow_side if args.mode == "grantflow" else baseline_side
    result = await side(org, client, folder)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.campaign_run")
    parser.add_argument("--mode", choices=("grantflow", "baseline"), required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--reviewers", type=int, required=True)
    parser.add_argument("--temporal", required=True, help="host:port of the Temporal dev server")
    parser.add_argument("--out", required=True)
    asyncio.run(main(parser.parse_args()))

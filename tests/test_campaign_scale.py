"""A campaign of 2,000 items over 100 reviewers, end to end on the dev server (a long scenario).

The organisation grows by 100 teams of 20 in the SCIM directory and in hoop, each team's group allowed on
one connection. The campaign runs with the continue-as-new threshold lowered so those paths really run;
decisions arrive through the web page, the REST API and the CLI; one reviewer leaves mid-campaign (their
items go to the fallback reviewer); everything else defaults to revoke at the deadline. Then every
revocation must be applied and read back in hoop and in the IdP, the sessions they enabled killed, the
evidence bundle verify (and fail after one changed byte, or a manifest re-hashed without the key), and the
ledger verify.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from click.testing import CliRunner
from temporalio.testing import WorkflowEnvironment

from configuration.settings import Settings
from domain.campaign_state import CampaignStatus, ItemOutcome
from domain.directory_sync import SyncInput
from grantflow.commands.campaign import campaign
from store.evidence_bundle import BundleError, public_key_text, verify_bundle, write_files
from tests.stack import EVIDENCE_KEY, Stack, start_stack
from web.app import WebContext, create_app, running
from web.auth import TokenRegistry, issue_token
from web.service import RequestService
from workflows.campaign import CampaignWorkflow
from workflows.identity_sync import IdentitySyncWorkflow

pytestmark = pytest.mark.long

TEAMS = 100
TEAM_SIZE = 20
SPEC = """\
name = "Scale review"
owner = "margaret@example.com"
duration = "90s"
default_decision = "revoke"
fallback_reviewer = "margaret@example.com"
allow_admin_on_behalf = true
reminders = ["40s"]

[scope]
connections = ["scale-db"]
include_admins = false

[[stages]]
reviewers = "manager"
"""


def manager(team: int) -> str:
    return f"mgr{team:05d}@example.com"


def member(team: int, i: int) -> str:
    return f"t{team:03d}u{i:05d}@example.com"


@pytest_asyncio.fixture(loop_scope="session")
async def big(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with start_stack(dev_env, tmp_path, time_skipping=False, with_scim=True) as stack:
        scim, hoop = stack.scim_server, stack.hoop
        assert scim is not None
        scim.add_users(TEAMS, prefix="mgr", manager_email="grace@example.com")
        for team in range(TEAMS):
            group = f"team-{team:03d}"
            scim.add_users(TEAM_SIZE, prefix=f"t{team:03d}u", manager_email=manager(team), group=group)
            hoop.add_user(manager(team))
            for i in range(TEAM_SIZE):
                hoop.add_user(member(team, i), groups=[group])
        hoop.add_connection("scale-db", access_groups=[f"team-{t:03d}" for t in range(TEAMS)])
        await sync(stack)
        yield stack


async def sync(stack: Stack) -> None:
    report = await stack.env.client.execute_workflow(
        IdentitySyncWorkflow.run,
        SyncInput(sync_id="", full=True),
        id=f"sync-{uuid.uuid4().hex[:8]}",
        task_queue=stack.task_queue,
    )
    assert report.applied, report


async def test_two_thousand_items_over_a_hundred_reviewers(big: Stack, tmp_path: Path) -> None:
    stack = big
    tokens_file = tmp_path / "tokens.toml"
    tokens = {
        "margaret": issue_token(tokens_file, "margaret", "margaret@example.com", ["admin"]),
        "mgr1": issue_token(tokens_file, "mgr1", manager(1), []),
    }
    context = WebContext(
        settings=Settings(state_dir=tmp_path, task_queue=stack.task_queue, campaign_history_limit=200),
        store=stack.store,
        client=stack.env.client,
        policies=stack.policies,
        links=stack.links,
        tokens=TokenRegistry(tokens_file),
        service=RequestService(stack.env.client, stack.store, stack.policies, stack.task_queue),
    )
    async with running(create_app(context)) as url:
        api = httpx.AsyncClient(base_url=f"{url}/api/v1", timeout=60)
        launched = await api.post(
            "/campaigns", json={"spec": SPEC}, headers={"Authorization": f"Bearer {tokens['margaret']}"}
        )
        assert launched.status_code == 201, launched.text
        campaign_id = launched.json()["id"]
        for _ in range(1200):
            found = stack.store.campaign(campaign_id)
            if found is not None and found.status is CampaignStatus.OPEN:
                break
            await asyncio.sleep(0.1)
        record = stack.store.campaign(campaign_id)
        assert record is not None and record.item_count == TEAMS * TEAM_SIZE
        reviewers = {
            i.assignment.reviewer.name
            for i in stack.store.items(campaign_id, limit=1000)
            if i.assignment.reviewer
        }
        assert len(reviewers) > 40  # the first page already spans many teams

        # Sessions open now must end when the access that enabled them is revoked.
        sessions = [await stack.connect(member(t, 0), "scale-db") for t in (5, 6, 7)]

        # Team 0 keeps five on the web page.
        for _ in range(600):  # the notices go out page by page after the stage opened
            notices = [m for m in stack.notifier.messages if m.recipient.email == manager(0) and m.link]
            if notices:
                break
            await asyncio.sleep(0.1)
        notice = notices[0]
        page_path = notice.link.removeprefix("http://127.0.0.1:9")  # type: ignore[union-attr]
        async with httpx.AsyncClient(base_url=url, timeout=60) as browser:
            page = await browser.get(page_path)
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
            assert csrf is not None
            shown = re.findall(r'name="shown" value="([\w-]+)"', page.text)
            assert len(shown) == TEAM_SIZE
            kept = await browser.post(
                page_path, data={"csrf": csrf.group(1), **{f"d:{i}": "keep" for i in shown[:5]}}
            )
            assert "5 decisions recorded" in kept.text
        # Team 1's manager keeps five through the REST API with their own token.
        team1 = stack.store.items(campaign_id, reviewer_id=stack.ref(manager(1)).id)
        rest = await api.post(
            f"/campaigns/{campaign_id}/decisions",
            json={"decisions": [{"item_id": i.id, "verdict": "keep"} for i in team1[:5]]},
            headers={"Authorization": f"Bearer {tokens['mgr1']}"},
        )
        assert len(rest.json()["recorded"]) == 5
        # An admin keeps five of team 2 from the CLI, on its manager's behalf.
        team2 = stack.store.items(campaign_id, reviewer_id=stack.ref(manager(2)).id)
        settings = Settings(state_dir=tmp_path / "cli", api_url=url, api_token=tokens["margaret"])
        args = [
            "decide",
            campaign_id,
            *[a for i in team2[:5] for a in ("--item", i.id)],
            "--keep",
            "--as",
            manager(2),
        ]
        cli = await asyncio.to_thread(CliRunner().invoke, campaign, args, obj={"settings": settings})
        assert cli.exit_code == 0, cli.stderr

        # Team 3's manager leaves mid-campaign: their twenty items go to the fallback reviewer.
        assert stack.scim_server is not None
        stack.scim_server.deactivate(manager(3))
        await sync(stack)
        moved = stack.store.items(campaign_id, reviewer_id=stack.ref("margaret@example.com").id)
        assert len(moved) == TEAM_SIZE

        handle = stack.env.client.get_workflow_handle_for(CampaignWorkflow.run, record.workflow_id)
        outcome = await asyncio.wait_for(handle.result(), timeout=900)
        await api.aclose()

    assert outcome.status is CampaignStatus.CLOSED
    assert outcome.outcomes == {"kept": 15, "revoked": TEAMS * TEAM_SIZE - 15}
    assert stack.store.items(campaign_id, outcome=ItemOutcome.FAILED) == []
    # Read back where the memberships live: only the fifteen kept still have their team's group.
    kept_subjects = {i.subject.name for i in stack.store.items(campaign_id, outcome=ItemOutcome.KEPT)}
    assert len(kept_subjects) == 15 and {m.split("u")[0] for m in kept_subjects} == {"t000", "t001", "t002"}
    assert stack.scim_server is not None
    for team in range(TEAMS):
        for i in range(TEAM_SIZE):
            email = member(team, i)
            assert (f"team-{team:03d}" in stack.hoop.user(email)["groups"]) == (email in kept_subjects), email
    idp = {g.display_name: len(g.members or []) for g in stack.scim_server.groups()}
    assert [idp[f"team-{t:03d}"] for t in range(4)] == [5, 5, 5, 0]
    for session in sessions:
        assert stack.hoop.session(session)["status"] == "done"
    kinds = [e.kind for e in stack.store.ledger_entries(subject=campaign_id)]
    assert kinds.count("campaign.item_rerouted") == TEAM_SIZE
    assert kinds.count("campaign.item_revoked") == TEAMS * TEAM_SIZE - 15
    assert stack.store.verify_ledger().ok

    # The evidence verifies, and fails after one changed byte or a manifest re-hashed without the key.
    bundle = tmp_path / "bundle"
    write_files(bundle, stack.store.evidence(campaign_id))
    assert len(verify_bundle(bundle, EVIDENCE_KEY.public_key()).files) == 4
    csv_path = bundle / "items.csv"
    original = csv_path.read_bytes()
    csv_path.write_bytes(original.replace(b"revoke", b"reVoke", 1))
    with pytest.raises(BundleError, match=r"items\.csv does not match"):
        verify_bundle(bundle, EVIDENCE_KEY.public_key())
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["items.csv"]["sha256"] = hashlib.sha256(csv_path.read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="signature does not verify"):
        verify_bundle(bundle, EVIDENCE_KEY.public_key())
    assert public_key_text(EVIDENCE_KEY)

    history = await handle.fetch_history()  # the last run's: it continues an earlier one, and stays short
    assert history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
    assert len(history.events) < 400

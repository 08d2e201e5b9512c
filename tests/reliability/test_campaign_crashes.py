"""The worker is SIGKILLed five times while a campaign of 5,000 items runs from snapshot to evidence.

A production-like stack (:mod:`tests.reliability.rig`) gets a generated organisation
(:mod:`bench.organisation`: 100 teams of 50, each team's group allowed on one connection, in the SCIM
directory and in hoop, every manager in Slack and Jira). One campaign reviews everyone who reaches the
connection, each member by their manager, with a Slack digest and a Jira digest issue per reviewer. Each
manager decides their team in one batch through the REST API (an administrator's token on their behalf,
which the spec allows): 7 in 10 kept, 2 in 10 revoked, 1 in 10 left to the default (revoke); the owner then
ends the stage, and the revocations are applied in hoop and in the IdP, then the evidence bundle is written.

The worker is killed at seeded points spread over the phases (snapshot, digests, decisions, revocations) and
started again each time. What must hold, counted in the stand-ins and the store once the campaign closed:

- the campaign closed with every item settled: 3,500 kept, 1,500 revoked, none failed, none lost;
- exactly one Slack digest and one Jira digest issue per reviewer (a retried activity finds what it posted);
- each revocation applied and read back: the member's team group is gone in hoop and in the IdP, a kept
  member's is still there; one ``campaign.item_revoked`` ledger entry per revoked item, none twice;
- one evidence bundle, and the ledger verifies.

``GRANTFLOW_RELIABILITY_SEED=<seed>`` replays the kill points.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench.organisation import OWNER, Organisation
from bench.organisation import spec as bench_spec
from store import Store
from store.ledger import LedgerEntry
from tests.reliability.results import record
from tests.reliability.rig import (
    LEDGER_KEY,
    Api,
    Rig,
    jira_labels,
    running_stack,
    slack_keys,
)
from tests.rigs.processes import grantflow_env, run_grantflow

pytestmark = [pytest.mark.long, pytest.mark.reliability]

SEED_GIVEN = os.environ.get("GRANTFLOW_RELIABILITY_SEED")
ITEMS = int(os.environ.get("GRANTFLOW_RELIABILITY_CAMPAIGN_ITEMS", "5000"))
REVIEWERS = 100
KILLS = 5
DECIDING_AT_ONCE = 8
PHASE_LIMIT = 600.0  # seconds any one phase may take, crashes included
POLL = 1.0


def _seed() -> int:
    return int(SEED_GIVEN) if SEED_GIVEN else random.SystemRandom().randrange(2**31)


def _spec(org: Organisation) -> str:
    return bench_spec(org).replace(
        'fallback_reviewer = "',
        'channels = ["slack", "jira"]\nallow_admin_on_behalf = true\nfallback_reviewer = "',
    )


def _verdict(member_index: int) -> str | None:
    """7 in 10 kept, 2 in 10 revoked, 1 in 10 left to the default (revoke)."""
    tenth = member_index % 10
    return None if tenth == 0 else "revoke" if tenth in (1, 2) else "keep"


class Campaign:
    """The campaign as the REST API shows it, and where the scenario is (for the kills)."""

    def __init__(self, api: Api, rig: Rig) -> None:
        self.api = api
        self.rig = rig
        self.id = ""
        self.phase = "launch"
        self.decided_reviewers = 0

    async def status(self) -> dict[str, Any]:
        status, document = await self.api.call("GET", f"/campaigns/{self.id}")
        assert status == 200, (status, document)
        return document

    async def until(self, what: str, check: Any) -> dict[str, Any]:
        deadline = time.monotonic() + PHASE_LIMIT
        while True:
            document = await self.status()
            if check(document):
                return document
            assert time.monotonic() < deadline, (
                f"campaign {self.id}: timed out waiting for {what}: {document}"
            )
            await asyncio.sleep(POLL)

    def digests_posted(self) -> int:
        return sum(1 for key in slack_keys(self.rig.stand_ins.slack) if key.startswith(f"{self.id}:digest:"))


async def _decide_team(campaign: Campaign, org: Organisation, team: int) -> dict[str, int]:
    manager = org.manager(team)
    items: list[dict[str, Any]] = []
    after = ""
    while True:
        status, page = await campaign.api.call(
            "GET", f"/campaigns/{campaign.id}/items?reviewer={manager}&limit=1000&after={after}"
        )
        assert status == 200, (status, page)
        items += page["items"]
        if not page["next_after"]:
            break
        after = page["next_after"]
    assert len(items) == org.team_size, (manager, len(items))
    decisions = []
    for item in items:
        index = int(item["subject"]["name"].split("@")[0].split("u")[-1])
        verdict = _verdict(index)
        if verdict is not None:
            decisions.append({"item_id": item["id"], "verdict": verdict, "reason": f"{verdict} by {manager}"})
    status, answer = await campaign.api.call(
        "POST", f"/campaigns/{campaign.id}/decisions", body={"decisions": decisions, "as": manager}
    )
    assert status == 200, (manager, status, answer)
    assert not answer["refused"] and len(answer["recorded"]) == len(decisions), (manager, answer)
    campaign.decided_reviewers += 1
    return Counter(d["verdict"] for d in decisions)


async def _kill_at_phases(
    rig: Rig, campaign: Campaign, rng: random.Random, kills: list[dict[str, Any]]
) -> None:
    """Five kills spread over the campaign's phases, each at a point drawn from the seed: during the
    snapshot, while digests go out, while decisions arrive, and twice while revocations are applied."""

    def kill(reason: str) -> None:
        rig.kill_worker()
        killed_at = time.monotonic()
        rig.start_worker()
        kills.append(
            {"phase": campaign.phase, "when": reason, "down_s": round(time.monotonic() - killed_at, 1)}
        )

    async def until(check: Any) -> None:
        deadline = time.monotonic() + PHASE_LIMIT
        while not check() and time.monotonic() < deadline:  # noqa: ASYNC110 (the state is polled)
            await asyncio.sleep(0.2)

    await until(lambda: bool(campaign.id))
    await asyncio.sleep(rng.uniform(0.5, 4.0))
    await asyncio.to_thread(kill, "while the snapshot is taken")
    share = rng.uniform(0.1, 0.7)
    await until(lambda: campaign.phase != "snapshot" and campaign.digests_posted() >= share * REVIEWERS)
    await asyncio.to_thread(kill, f"after {campaign.digests_posted()} digests were posted")
    deciders = rng.randrange(10, 80)
    await until(lambda: campaign.decided_reviewers >= deciders)
    await asyncio.to_thread(kill, f"after {campaign.decided_reviewers} reviewers decided")
    await until(lambda: campaign.phase == "revocations")
    for _ in range(2):
        await asyncio.sleep(rng.uniform(1.0, 8.0))
        await asyncio.to_thread(kill, "while revocations are applied")


async def _scenario(rig: Rig, org: Organisation, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    api = Api(rig)
    campaign = Campaign(api, rig)
    kills: list[dict[str, Any]] = []
    started = time.monotonic()
    marks: dict[str, float] = {}
    killer = asyncio.create_task(_kill_at_phases(rig, campaign, rng, kills))
    try:
        campaign.phase = "snapshot"
        status, launched = await api.call("POST", "/campaigns", body={"spec": _spec(org)})
        assert status == 201, (status, launched)
        campaign.id = launched["id"]
        opened = await campaign.until("the stage to open", lambda d: d["campaign"]["status"] == "OPEN")
        assert opened["progress"]["total"] == ITEMS, opened["progress"]
        marks["open"] = time.monotonic() - started
        campaign.phase = "digests and decisions"
        semaphore = asyncio.Semaphore(DECIDING_AT_ONCE)

        async def decide(team: int) -> dict[str, int]:
            async with semaphore:
                return await _decide_team(campaign, org, team)

        verdicts: Counter[str] = Counter()
        for counted in await asyncio.gather(*(decide(team) for team in range(REVIEWERS))):
            verdicts.update(counted)
        marks["decided"] = time.monotonic() - started
        # Every digest posted before the stage ends (a digest is the notice: it goes out in any case).
        await campaign.until("every digest posted", lambda _: campaign.digests_posted() >= REVIEWERS)
        campaign.phase = "revocations"
        status, answer = await api.call(
            "POST", f"/campaigns/{campaign.id}/end-stage", body={"reason": "every reviewer answered"}
        )
        assert status == 200, (status, answer)
        closed = await campaign.until("the campaign to close", lambda d: d["campaign"]["status"] == "CLOSED")
        marks["closed"] = time.monotonic() - started
        # The outcomes are told, then the evidence bundle is written: fetched as an auditor would.
        deadline = time.monotonic() + PHASE_LIMIT
        while True:
            status, bundle = await api.call("GET", f"/campaigns/{campaign.id}/evidence")
            if status == 200:
                break
            assert status in (404, 409) and time.monotonic() < deadline, (status, bundle)
            await asyncio.sleep(POLL)
        marks["evidence"] = time.monotonic() - started
        await asyncio.wait_for(killer, PHASE_LIMIT)
    finally:
        killer.cancel()
        await api.aclose()
        print("worker kills:", *kills, sep="\n  ")
    return {
        "id": campaign.id,
        "closed": closed,
        "verdicts": verdicts,
        "kills": kills,
        "marks": marks,
        "bundle_files": sorted(bundle["files"]),
    }


def _ledger_entries(rig: Rig, kind: str, campaign_id: str) -> list[LedgerEntry]:
    """The campaign's ledger entries of one kind, read from the store the worker wrote."""
    store = Store(rig.settings["database_url"], ledger_key=LEDGER_KEY.encode(), anchor_path=None)
    try:
        return [e for e in store.ledger_entries(subject=campaign_id) if e.kind == kind]
    finally:
        store.close()


def test_worker_killed_five_times_during_a_campaign_of_5000_items(tmp_path: Path) -> None:
    seed = _seed()
    print(f"campaign-crashes seed: {seed} (replay with GRANTFLOW_RELIABILITY_SEED={seed})")
    org = Organisation(size=ITEMS, reviewers=REVIEWERS)
    with running_stack(tmp_path, requesters=2, resources=1) as rig:
        scim, hoop, slack, jira = (
            rig.stand_ins.scim,
            rig.stand_ins.hoop,
            rig.stand_ins.slack,
            rig.stand_ins.jira,
        )
        org.build(scim, hoop)
        for email in [OWNER, *(org.manager(team) for team in range(REVIEWERS))]:
            slack.add_user(email, email)
            jira.add_user(email, email)
        cli = grantflow_env(
            rig.settings | {"api_url": rig.api_url, "api_token": rig.admin_token}, rig.tmp / "operator"
        )
        synced = json.loads(run_grantflow(cli, "sync", "--full", "--json").stdout)
        assert synced["users_listed"] >= ITEMS + REVIEWERS, synced
        try:
            run = asyncio.run(_scenario(rig, org, seed))
        except BaseException:
            print(rig.logs())
            raise
        campaign_id = run["id"]
        closed = run["closed"]
        by_outcome = closed["progress"]["by_outcome"]
        kept = sum(1 for i in range(org.team_size) if _verdict(i) == "keep") * REVIEWERS
        assert by_outcome == {"kept": kept, "revoked": ITEMS - kept}, by_outcome

        # One digest per reviewer in each channel, however often an activity was tried again.
        digests = {k: n for k, n in slack_keys(slack).items() if k.startswith(f"{campaign_id}:digest:")}
        assert len(digests) == REVIEWERS and set(digests.values()) == {1}, sorted(digests.items())[:3]
        issues = {k: n for k, n in jira_labels(jira).items() if k.startswith(f"{campaign_id}:digest:")}
        assert len(issues) == REVIEWERS and set(issues.values()) == {1}, sorted(issues.items())[:3]

        # Each revocation applied and read back where the membership lives; kept ones untouched.
        email_of = {u.id: u.user_name for u in scim.users()}
        idp_groups = {g.display_name: {email_of.get(m.value) for m in g.members or []} for g in scim.groups()}
        wrong = []
        for team in range(REVIEWERS):
            group = org.group(team)
            for i in range(org.team_size):
                email = org.member(team, i)
                keeps = _verdict(i) == "keep"
                if (group in hoop.user(email)["groups"]) != keeps:
                    wrong.append(("hoop", email))
                if (email in idp_groups.get(group, set())) != keeps:
                    wrong.append(("idp", email))
        assert not wrong, wrong[:10]
        revoked_entries = _ledger_entries(rig, "campaign.item_revoked", campaign_id)
        per_item = Counter(e.data["item"] for e in revoked_entries)
        assert len(per_item) == ITEMS - kept and set(per_item.values()) == {1}, per_item.most_common(3)
        evidence = _ledger_entries(rig, "campaign.evidence", campaign_id)
        assert len(evidence) == 1, evidence
        assert "manifest.json" in run["bundle_files"], run["bundle_files"]
        # Checked against the anchor the worker (which wrote most of it) kept beside the table.
        verified = run_grantflow(grantflow_env(rig.settings, rig.tmp / "worker"), "ledger", "verify")
        assert verified.returncode == 0, verified.stdout
        assert len(run["kills"]) == KILLS, run["kills"]

    # the rig scanned every history for its secrets, and replayed each, when the stack stopped
    scan, replayed = rig.secrets_scan, rig.replay_check
    assert scan is not None and replayed is not None
    record(
        "campaign-crashes",
        title="Worker killed during a campaign",
        injected=(
            f"SIGKILL of the `grantflow worker` process {KILLS} times (each restarted at once) during a "
            f"campaign of {ITEMS:,} items over {REVIEWERS} reviewers: while the snapshot was taken, while "
            "digests went out, while decisions arrived and twice while revocations were applied"
        ),
        counts={
            "items": ITEMS,
            "reviewers": REVIEWERS,
            "worker kills": len(run["kills"]),
            "items kept": by_outcome.get("kept", 0),
            "items revoked": by_outcome.get("revoked", 0),
            "items failed or lost": ITEMS - sum(by_outcome.values()) + by_outcome.get("failed", 0),
            "decisions made": sum(run["verdicts"].values()),
            "Slack digests": sum(digests.values()),
            "Jira digest issues": sum(issues.values()),
            "revocations in the ledger": len(revoked_entries),
            "evidence bundles": len(evidence),
            "workflow histories scanned for secrets": scan.workflows,
            "secrets found in histories": len(scan.found),
            "histories replayed on the current code": replayed.workflows,
            "histories that failed to replay": len(replayed.failures),
            "wall time to close (s)": round(run["marks"]["closed"], 1),
        },
        outcome=(
            "the campaign closed with every item settled as decided or defaulted; one Slack digest and "
            "one Jira digest issue per reviewer; every revocation applied once and read back in hoop and "
            "the IdP; one evidence bundle; the ledger verifies"
        ),
        seed=seed,
        details={"kills": run["kills"], "phases_s": {k: round(v, 1) for k, v in run["marks"].items()}},
    )

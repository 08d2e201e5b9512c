"""End to end: ``grantflow dev`` as a newcomer runs it, driven by the ``grantflow`` CLI in a second process.

This is the walk-through of the README: a JIT request for pg-prod admin approved by two db-owners,
a live session through the hoop stand-in, refused self- and ineligible approvals, the end at expiry
with the session killed, a restart of the whole stack in the middle that does not delay the end, and
``grantflow ledger verify`` catching an edited row and a deleted last row.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.rigs.ports import free_port as _free_port

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[1]


def _installed() -> bool:
    try:
        importlib.metadata.distribution("grantflow")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@dataclass
class DevStack:
    cwd: Path
    ports: dict[str, int]
    channels: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRANTFLOW_")}
        env["GRANTFLOW_API_URL"] = f"http://127.0.0.1:{self.ports['web']}"
        # The scheduled identity sync runs on every quarter hour of the clock (its interval is aligned to the
        # epoch). A test's own `grantflow sync` started in the same seconds finds the leaver already applied
        # by the scheduled run and reports none; the tests sync by hand, so the schedule waits a day.
        env["GRANTFLOW_SYNC_INTERVAL"] = "24h"
        if not _installed():
            # Not installed (running from a bare checkout): use the checkout's code. When installed, the
            # installed package runs, so what the wheel lacks (a template, a subpackage) fails here.
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        return env

    def start(self) -> None:
        with (self.cwd / "dev.out").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "grantflow",
                    "dev",
                    "--temporal-port",
                    str(self.ports["temporal"]),
                    "--temporal-ui-port",
                    str(self.ports["ui"]),
                    "--web-port",
                    str(self.ports["web"]),
                    "--hoop-port",
                    str(self.ports["hoop"]),
                    "--scim-port",
                    str(self.ports["scim"]),
                    "--slack-port",
                    str(self.ports["slack"]),
                    "--jira-port",
                    str(self.ports["jira"]),
                    "--smtp-port",
                    str(self.ports["smtp"]),
                    *[arg for channel in self.channels for arg in ("--with", channel)],
                ],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"grantflow dev exited: {(self.cwd / 'dev.out').read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.ports['web']}/healthz", timeout=1).status_code == 200:
                    if "grantflow dev is running" in (self.cwd / "dev.out").read_text():
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"grantflow dev did not come up: {(self.cwd / 'dev.out').read_text()}")

    def kill_everything(self) -> None:
        """The whole stack dies at once (power cut): grantflow dev and its Temporal server."""
        assert self.process is not None
        temporal_pid = int((self.cwd / ".grantflow" / "temporal.pid").read_text())
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        os.killpg(temporal_pid, signal.SIGKILL)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # Ctrl-C
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def cli(self, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "grantflow", *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if expect is not None:
            assert done.returncode == expect, f"{args} exited {done.returncode}: {done.stdout} {done.stderr}"
        return done

    def show(self, request_id: str) -> dict[str, Any]:
        return json.loads(self.cli("request", "show", request_id, "--json").stdout)


PORTS = ("temporal", "ui", "web", "hoop", "scim", "slack", "jira", "smtp")


@pytest.fixture
def dev_stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[DevStack]:
    channels = getattr(request, "param", ())
    stack = DevStack(cwd=tmp_path, ports={name: _free_port() for name in PORTS}, channels=channels)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def _wait_status(stack: DevStack, request_id: str, status: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view = stack.show(request_id)
        if view["status"] == status:
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"request {request_id} is {view['status']}, not {status}: {view}")
        time.sleep(0.3)


def test_jit_request_through_grantflow_dev(dev_stack: DevStack) -> None:
    stack = dev_stack
    created = json.loads(
        stack.cli(
            "request", "create", "--resource", "pg-prod", "--role", "admin", "--duration", "30s",
            "--reason", "INC-1", "--requester", "alice@example.com", "--json",
        ).stdout
    )  # fmt: skip
    request_id = created["id"]
    assert created["status"] == "PENDING"

    own = stack.cli("--user", "alice@example.com", "request", "approve", request_id, expect=1)
    assert "cannot approve their own request" in own.stderr
    erin = stack.cli("--user", "erin@example.com", "request", "approve", request_id, expect=1)
    assert "not an approver for pg-prod admin" in erin.stderr
    for_bob = stack.cli("request", "approve", request_id, "--as", "bob@example.com", expect=1)
    assert "allow_admin_on_behalf" in for_bob.stderr  # the admin token does not vote for approvers

    stack.cli("--user", "bob@example.com", "request", "approve", request_id)
    stack.cli("--user", "carol@example.com", "request", "approve", request_id)
    view = _wait_status(stack, request_id, "ACTIVE", 15)
    assert {a["approver"]["email"] for a in view["approvals"]} == {"bob@example.com", "carol@example.com"}
    expires_at = datetime.fromisoformat(view["expires_at"])

    hoop_state = json.loads((stack.cwd / ".grantflow" / "hoop.json").read_text())
    grant_review = hoop_state["reviews"][view["grants"][0]["review_id"]]
    assert grant_review["status"] == "APPROVED" and grant_review["type"] == "jit"

    session = json.loads(
        stack.cli(
            "sandbox", "connect", "--user", "alice@example.com", "--connection", "pg-prod-admin", "--json"
        ).stdout
    )["session_id"]
    refused = stack.cli(
        "sandbox", "connect", "--user", "erin@example.com", "--connection", "pg-prod-admin", expect=1
    )
    assert "refused" in refused.stderr

    # The whole stack dies while the grant is active, stays down a while, and comes back.
    stack.kill_everything()
    time.sleep(3)
    stack.start()
    restarted_at = datetime.now(expires_at.tzinfo)

    view = _wait_status(stack, request_id, "ENDED", 40)
    assert view["end_reason"] == "expired"
    ended_at = datetime.fromisoformat(view["ended_at"])
    # The end is not delayed beyond the downtime: it happens at the expiry, or right after the restart
    # when the expiry fell inside the downtime.
    assert (ended_at - max(expires_at, restarted_at)).total_seconds() < 5

    sessions = json.loads(stack.cli("sandbox", "sessions", "--user", "alice@example.com", "--json").stdout)
    assert {s["id"]: s["status"] for s in sessions}[session] == "done"
    hoop_state = json.loads((stack.cwd / ".grantflow" / "hoop.json").read_text())
    assert hoop_state["reviews"][view["grants"][0]["review_id"]]["status"] == "REVOKED"

    # The refused attempts are in the ledger, and the ledger verifies.
    verified = stack.cli("ledger", "verify", "--json")
    assert json.loads(verified.stdout)["ok"] is True
    stack.stop()
    db = sqlite3.connect(stack.cwd / ".grantflow" / "grantflow.db")
    kinds = [row[0] for row in db.execute("select kind from ledger where subject = ?", (request_id,))]
    # Refused: alice's own vote, erin's, and the admin token's for bob.
    assert kinds.count("decision.refused") == 3 and kinds.count("decision.approved") == 2

    # One row edited by hand: verify fails and names it.
    (seq,) = db.execute("select min(seq) from ledger where subject = ?", (request_id,)).fetchone()
    db.execute("update ledger set data = replace(data, 'INC-1', 'INC-2') where seq = ?", (seq,))
    db.commit()
    broken = json.loads(stack.cli("ledger", "verify", "--json", expect=1).stdout)
    assert broken["ok"] is False and broken["first_bad_seq"] == seq
    db.execute("update ledger set data = replace(data, 'INC-2', 'INC-1') where seq = ?", (seq,))
    db.commit()
    stack.cli("ledger", "verify")
    # The last row deleted: the anchor outside the table catches the truncation.
    db.execute("delete from ledger where seq = (select max(seq) from ledger)")
    db.commit()
    truncated = json.loads(stack.cli("ledger", "verify", "--json", expect=1).stdout)
    assert "truncated" in truncated["problem"]
    db.close()


def test_hoop_gates_refuse_at_once_in_grantflow_dev(dev_stack: DevStack) -> None:
    """The example organisation's hoop: zoe (a contractor) is outside pg-prod-admin's access control, dan (a
    db-owner) reaches pg-prod-ro without a review. Both are answered at once; nobody is asked."""
    stack = dev_stack
    zoe = stack.cli(
        "request", "create", "--resource", "pg-prod", "--role", "admin", "--duration", "30s",
        "--reason", "INC-2", "--requester", "zoe@example.com", expect=1,
    )  # fmt: skip
    assert "zoe@example.com is not eligible for pg-prod admin" in zoe.stderr
    assert "db-owners, engineering" in zoe.stderr
    # a grant made behind grantflow's back does not get her past hoop's access control either
    behind = stack.cli("sandbox", "grant", "--user", "zoe@example.com", "--connection", "pg-prod-admin")
    assert "grantflow knows nothing of it" in behind.stdout
    refused = stack.cli(
        "sandbox", "connect", "--user", "zoe@example.com", "--connection", "pg-prod-admin", expect=1
    )
    assert "connection not found" in refused.stderr

    dan = stack.cli(
        "request", "create", "--resource", "pg-prod", "--role", "read", "--duration", "1h",
        "--reason", "INC-3", "--requester", "dan@example.com", expect=1,
    )  # fmt: skip
    assert "dan@example.com already has access to pg-prod read (pg-prod-ro) without a review" in dan.stderr
    stack.cli("sandbox", "connect", "--user", "dan@example.com", "--connection", "pg-prod-ro")

    listed = json.loads(stack.cli("request", "list", "--json").stdout)["requests"]
    assert [r["status"] for r in listed] == ["FAILED", "FAILED"]
    hoop_state = json.loads((stack.cwd / ".grantflow" / "hoop.json").read_text())
    # only the grant made behind grantflow's back exists: grantflow provisioned nothing
    assert [r["owner_email"] for r in hoop_state["reviews"].values()] == ["zoe@example.com"]


def test_leaver_in_the_dev_directory_loses_everything_at_the_next_sync(dev_stack: DevStack) -> None:
    stack = dev_stack
    active = json.loads(
        stack.cli(
            "request", "create", "--resource", "pg-prod", "--role", "admin", "--duration", "1h",
            "--reason", "INC-7", "--requester", "alice@example.com", "--json",
        ).stdout
    )["id"]  # fmt: skip
    for approver in ("bob@example.com", "carol@example.com"):
        stack.cli("--user", approver, "request", "approve", active)
    _wait_status(stack, active, "ACTIVE", 15)
    session = json.loads(
        stack.cli(
            "sandbox", "connect", "--user", "alice@example.com", "--connection", "pg-prod-admin", "--json"
        ).stdout
    )["session_id"]
    pending = json.loads(
        stack.cli(
            "request", "create", "--resource", "warehouse", "--role", "read", "--duration", "1h",
            "--reason", "report", "--requester", "alice@example.com", "--json",
        ).stdout
    )["id"]  # fmt: skip

    stack.cli("sandbox", "deactivate", "--user", "alice@example.com")
    report = json.loads(stack.cli("sync", "--json").stdout)
    synced = time.monotonic()  # the sync has applied the leaver and told her requests
    assert [leaver["person"]["email"] for leaver in report["leavers"]] == ["alice@example.com"]
    ended = _wait_status(stack, active, "ENDED", 5)
    cancelled = _wait_status(stack, pending, "CANCELLED", 5)
    # the 5 s the promise allows after the sync, plus the CLI processes the polls above start
    assert time.monotonic() - synced < 5 + 2
    assert ended["end_reason"] == "leaver"
    assert cancelled["status"] == "CANCELLED"
    sessions = json.loads(stack.cli("sandbox", "sessions", "--user", "alice@example.com", "--json").stdout)
    assert {s["id"]: s["status"] for s in sessions}[session] == "done"
    hoop_state = json.loads((stack.cwd / ".grantflow" / "hoop.json").read_text())
    assert hoop_state["reviews"][ended["grants"][0]["review_id"]]["status"] == "REVOKED"
    # hoop itself: her user is inactive (read back), so she can neither connect nor sign in again
    assert report["gateway"]["deactivated"] == ["alice@example.com"]
    assert session in report["gateway"]["sessions_killed"]["alice@example.com"]
    assert [u["status"] for u in hoop_state["users"].values() if u["email"] == "alice@example.com"] == [
        "inactive"
    ]
    refused = stack.cli(
        "sandbox", "connect", "--user", "alice@example.com", "--connection", "pg-prod-ro", expect=1
    )
    assert "user is not active" in refused.stderr
    assert "refuse" in stack.cli("sandbox", "login", "--user", "alice@example.com", expect=1).stderr
    stack.stop()
    db = sqlite3.connect(stack.cwd / ".grantflow" / "grantflow.db")
    last = {
        subject: kind
        for subject, kind in db.execute(
            "select subject, kind from ledger where subject in (?, ?) order by seq", (active, pending)
        )
    }
    assert last == {active: "request.ended", pending: "request.cancelled"}
    assert db.execute("select count(*) from ledger where kind = 'person.left'").fetchone()[0] == 1
    gateway_kinds = {kind for (kind,) in db.execute("select kind from ledger where kind like 'gateway.%'")}
    assert {"gateway.user_deactivated", "gateway.sessions_killed"} <= gateway_kinds
    db.close()


@pytest.mark.parametrize("dev_stack", [("slack", "jira", "email")], indirect=True)
def test_channels_in_grantflow_dev_decide_in_slack_and_jira(dev_stack: DevStack) -> None:
    stack = dev_stack
    request_id = json.loads(
        stack.cli(
            "request", "create", "--resource", "pg-prod", "--role", "admin", "--duration", "1h",
            "--reason", "INC-9", "--requester", "alice@example.com", "--json",
        ).stdout
    )["id"]  # fmt: skip

    def slack_click(user: str) -> subprocess.CompletedProcess[str]:
        deadline = time.monotonic() + 20
        while True:  # the DMs are posted in the background right after the request is created
            done = stack.cli("sandbox", "slack-click", "--user", user, "--request", request_id, expect=None)
            if "no Slack message" not in done.stderr or time.monotonic() > deadline:
                return done
            time.sleep(0.3)

    bob = slack_click("bob@example.com")
    assert bob.returncode == 0 and "Slack answered 200" in bob.stdout
    own = stack.cli(
        "sandbox", "slack-click", "--user", "alice@example.com", "--request", request_id, expect=1
    )
    assert "no Slack message" in own.stderr  # the requester is never asked to decide
    erin = stack.cli("sandbox", "jira-move", "--user", "erin@example.com", "--request", request_id,
                     "--transition", "Approve")  # fmt: skip
    assert "not an approver for pg-prod admin" in erin.stdout
    stack.cli(
        "sandbox",
        "jira-move",
        "--user",
        "carol@example.com",
        "--request",
        request_id,
        "--transition",
        "Approve",
    )
    view = _wait_status(stack, request_id, "ACTIVE", 15)
    assert {(a["approver"]["email"], a["channel"]) for a in view["approvals"]} == {
        ("bob@example.com", "slack"),
        ("carol@example.com", "jira"),
    }
    stack.cli("request", "relinquish", request_id, "--as", "alice@example.com")
    _wait_status(stack, request_id, "ENDED", 15)
    # acting on a decided request: a sentence saying why (no traceback), and JSON when asked
    late = stack.cli(
        "sandbox", "slack-click", "--user", "dan@example.com", "--request", request_id, "--json", expect=1
    )
    assert json.loads(late.stdout)["status"] == 409 and "no approve button any more" in late.stderr
    moved = stack.cli("sandbox", "jira-move", "--user", "dan@example.com", "--request", request_id,
                      "--transition", "Approve", expect=1)  # fmt: skip
    assert "is not available" in moved.stderr
    out = (stack.cwd / "dev.out").read_text()
    assert "Traceback" not in out
    assert "Slack stand-in" in out and "Jira stand-in" in out and "SMTP sink" in out
    assert "📧 bob@example.com" in out  # the approver's email with the review link, printed by grantflow dev
    assert out.count("📧 bob@example.com") == len(set(re.findall(r"📧 bob@example.com: [^\n]*", out)))
    assert "✉ bob@example.com" not in out  # with the SMTP sink on, each message is printed once, as an email


@pytest.mark.parametrize("dev_stack", [("jira",)], indirect=True)
def test_request_made_in_a_jira_intake_issue_in_grantflow_dev(dev_stack: DevStack) -> None:
    stack = dev_stack
    made = stack.cli(
        "sandbox", "jira-request", "--user", "heidi@example.com", "--resource", "pg-prod", "--role", "admin",
        "--duration", "1h", "--reason", "INC-11",
    )  # fmt: skip
    started = re.match(r"(ACCREQ-\d+): request (\S+) started\n", made.stdout)
    assert started, made.stdout
    issue, request_id = started.groups()
    assert f"comment: grantflow request {request_id} is PENDING" in made.stdout
    view = stack.show(request_id)
    assert view["requester"]["email"] == "heidi@example.com" and view["reason"] == "INC-11"

    # The intake issue is the request's ticket: a transition of it is a decision on the request.
    carol = stack.cli("sandbox", "jira-move", "--user", "carol@example.com", "--request", request_id,
                      "--transition", "Approve")  # fmt: skip
    assert carol.stdout.split()[0] == issue
    assert "counted the approval of carol@example.com" in carol.stdout
    assert [(a["approver"]["email"], a["channel"]) for a in stack.show(request_id)["approvals"]] == [
        ("carol@example.com", "jira")
    ]

    bad = stack.cli(
        "sandbox", "jira-request", "--user", "heidi@example.com", "--resource", "pg-nowhere",
        "--duration", "1h", "--reason", "INC-12", expect=1,
    )  # fmt: skip
    assert re.match(r"ACCREQ-\d+: no request started\n", bad.stdout), bad.stdout
    assert "comment: grantflow did not start a request: unknown resource 'pg-nowhere'" in bad.stdout
    unknown = stack.cli(
        "sandbox", "jira-request", "--user", "nobody@example.com", "--resource", "pg-prod",
        "--duration", "1h", "--reason", "INC-13", expect=1,
    )  # fmt: skip
    assert "nobody@example.com has no Jira account" in unknown.stderr

    stack.cli("request", "cancel", request_id, "--as", "heidi@example.com")
    _wait_status(stack, request_id, "CANCELLED", 15)
    assert "Jira stand-in" in (stack.cwd / "dev.out").read_text()


@pytest.mark.parametrize("dev_stack", [("slack",)], indirect=True)
def test_request_made_with_the_slash_command_in_grantflow_dev(dev_stack: DevStack) -> None:
    stack = dev_stack
    made = stack.cli("sandbox", "slack-command", "--user", "ivan@example.com",
                     "--text", "pg-prod admin 1h INC-21 fix the orders table")  # fmt: skip
    started = re.search(r"^request (\S+) started$", made.stdout, re.MULTILINE)
    assert started, made.stdout
    request_id = started.group(1)
    assert f"Slack told ivan@example.com: Request `{request_id}` for pg-prod / admin (1h) is PENDING" in (
        made.stdout
    )
    view = stack.show(request_id)
    assert view["status"] == "PENDING" and view["requester"]["email"] == "ivan@example.com"
    assert view["reason"] == "INC-21 fix the orders table"

    bad = stack.cli("sandbox", "slack-command", "--user", "ivan@example.com",
                    "--text", "pg-nowhere 1h INC-22", expect=1)  # fmt: skip
    assert "unknown resource 'pg-nowhere'" in bad.stdout and "no request started" in bad.stdout
    unusable = stack.cli("sandbox", "slack-command", "--user", "ivan@example.com", "--text", "pg-prod",
                         expect=1)  # fmt: skip
    assert "Usage: `/access" in unusable.stdout
    nobody = stack.cli("sandbox", "slack-command", "--user", "nobody@example.com", "--text", "pg-prod 1h x",
                       expect=1)  # fmt: skip
    assert "nobody@example.com has no Slack account" in nobody.stderr

    stack.cli("request", "cancel", request_id, "--as", "ivan@example.com")
    _wait_status(stack, request_id, "CANCELLED", 15)


def test_reviews_left_pending_in_hoop_become_requests_in_grantflow_dev(dev_stack: DevStack) -> None:
    stack = dev_stack
    made = stack.cli("sandbox", "hoop-review", "--user", "mallory@example.com",
                     "--connection", "pg-prod-admin", "--duration", "1h")  # fmt: skip
    started = re.search(r"^request (hoop-(\S+)) started \(PENDING\)$", made.stdout, re.MULTILINE)
    assert started, made.stdout
    request_id, review_id = started.groups()
    view = stack.show(request_id)
    assert view["requester"]["email"] == "mallory@example.com"
    assert (view["resource"], view["role"]) == ("pg-prod", "admin")
    assert view["origin"]["review_id"] == review_id and view["origin"]["review_type"] == "jit"
    for approver in ("bob@example.com", "carol@example.com"):
        stack.cli("--user", approver, "request", "approve", request_id)
    _wait_status(stack, request_id, "ACTIVE", 15)
    hoop_state = json.loads((stack.cwd / ".grantflow" / "hoop.json").read_text())
    assert hoop_state["reviews"][review_id]["status"] == "APPROVED"
    stack.cli("sandbox", "connect", "--user", "mallory@example.com", "--connection", "pg-prod-admin")

    onetime = json.loads(
        stack.cli("sandbox", "hoop-review", "--user", "judy@example.com", "--connection", "pg-prod-admin",
                  "--command", "VACUUM orders;", "--json").stdout
    )  # fmt: skip
    assert onetime["type"] == "onetime" and onetime["request_status"] == "PENDING"
    shown = stack.show(onetime["request_id"])
    assert shown["origin"]["review_type"] == "onetime" and shown["origin"]["command"] == "VACUUM orders;"

    unknown = stack.cli("sandbox", "hoop-review", "--user", "judy@example.com", "--connection", "pg-nowhere",
                        expect=1)  # fmt: skip
    assert "connection not found: pg-nowhere" in unknown.stderr
    stranger = stack.cli("sandbox", "hoop-review", "--user", "nobody@example.com",
                         "--connection", "pg-prod-admin", expect=1)  # fmt: skip
    assert "nobody@example.com has never signed in to hoop" in stranger.stderr


@pytest.mark.parametrize("dev_stack", [("slack", "jira", "email")], indirect=True)
def test_campaign_digests_decided_in_slack_jira_and_email_in_grantflow_dev(dev_stack: DevStack) -> None:
    """The README's campaign walk-through: every reviewer of ``examples/campaign_channels.toml`` gets a Slack
    digest, a Jira issue and an email; decisions clicked in Slack and made in Jira land in the campaign,
    each digest is updated in place (never a second message) whichever channel decided, and the campaign's
    end replaces the digest by the outcome."""
    stack = dev_stack
    spec = REPO_ROOT / "examples" / "campaign_channels.toml"
    campaign_id = json.loads(stack.cli("campaign", "launch", str(spec), "--json").stdout)["id"]

    def sent(user: str, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + 20
        while True:  # the stage's notices go out once the snapshot is taken; digests update after decisions
            done = stack.cli("sandbox", "campaign-digest", "--user", user, "--campaign", campaign_id,
                             "--json", expect=None)  # fmt: skip
            found: dict[str, Any] = json.loads(done.stdout) if done.returncode == 0 else {}
            if found and ready(found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"what {user} was sent: {done.stdout} {done.stderr}")
            time.sleep(0.3)

    judy = sent("judy@example.com", lambda f: bool(f.get("slack") and f.get("jira") and f.get("emails")))
    rows = {row["text"]: row["item"] for row in judy["slack"]["rows"]}
    assert len(rows) == 4 and judy["slack_messages"] == 1, judy
    bea = next(item for text, item in rows.items() if text.startswith("bea@example.com"))
    cyrus = next(item for text, item in rows.items() if text.startswith("cyrus@example.com"))
    dina_wh = next(
        item for text, item in rows.items() if text.startswith("dina@") and "warehouse-owners" in text
    )
    assert judy["jira"]["status"] == "Waiting for approval" and dina_wh in judy["jira"]["description"]
    assert judy["emails"][0]["subject"] == "Access review: Analytics access review — 4 items to review"

    # Slack: Revoke on bea's row; the digest is the same message, updated in place.
    click = ("sandbox", "campaign-click", "--campaign", campaign_id)
    revoked = json.loads(
        stack.cli(*click, "--user", "judy@example.com", "--item", bea, "--revoke", "--json").stdout
    )
    assert revoked["told"] == ["Recorded: revoke for 1 item. You can change it until the stage closes."]
    assert revoked["digest"]["ts"] == judy["slack"]["ts"] and revoked["digest_messages"] == 1
    assert any(r["item"] == bea and r["text"].startswith("🚫 Revoked") for r in revoked["digest"]["rows"])
    # Keep needs a reason here: without one Slack's form stays open and nothing is recorded.
    bare = stack.cli(*click, "--user", "judy@example.com", "--item", cyrus, "--keep", expect=1)
    assert "the reason form stays open: Say why" in bare.stdout
    kept = stack.cli(*click, "--user", "judy@example.com", "--item", cyrus, "--keep", "--reason", "on call")
    assert "Slack told judy@example.com: Recorded: keep for 1 item." in kept.stdout
    dina = sent("dina@example.com", lambda f: bool(f.get("slack") and f.get("jira")))
    fay = dina["slack"]["rows"][0]["item"]
    not_hers = stack.cli(*click, "--user", "judy@example.com", "--item", fay, "--revoke", expect=1)
    assert f"has no row for {fay}" in not_hers.stderr

    # Jira: dina moves her issue by "Keep all" (the move's comment is the reason); judy comments a command.
    jira = ("sandbox", "campaign-jira", "--campaign", campaign_id)
    moved = stack.cli(*jira, "--user", "dina@example.com", "--transition", "Keep all",
                      "--comment", "reason: on the warehouse rota until March")  # fmt: skip
    assert moved.stdout.startswith(f"{dina['jira']['issue']} is now All kept")
    assert "Recorded: keep for 3 items." in moved.stdout
    commented = stack.cli(*jira, "--user", "judy@example.com", "--comment", f"revoke {dina_wh} reason: moved")
    assert "Recorded: revoke for 1 item." in commented.stdout
    # ... and judy's Slack digest follows the decision made in Jira, in place
    judy = sent(
        "judy@example.com",
        lambda f: any(r["item"] == dina_wh and "Revoked" in r["text"] for r in f["slack"]["rows"]),
    )
    assert (
        judy["slack_messages"] == 1 and "1 of 4 items pending · 1 kept, 2 revoked." in judy["slack"]["head"]
    )
    # "Revoke all shown" in dan's digest decides the one item he reviews
    bulk = stack.cli(*click, "--user", "dan@example.com", "--all", "--revoke")
    assert "Slack told dan@example.com: Recorded: revoke for 1 item." in bulk.stdout
    nobody = stack.cli(*jira, "--user", "alice@example.com", "--comment", "keep all", expect=1)
    assert "alice@example.com has no Jira digest issue" in nobody.stderr
    unknown = stack.cli(*click, "--user", "judy@example.com", "--all", "--revoke", "--campaign", "cmp-nope",
                        expect=1)  # fmt: skip
    assert "campaign cmp-nope does not exist" in unknown.stderr

    # Email: the signed link opens judy's review page.
    page = httpx.get(judy["emails"][0]["link"], timeout=10)
    assert page.status_code == 200 and "bea@example.com" in page.text

    status = json.loads(stack.cli("campaign", "status", campaign_id, "--json").stdout)
    by_reviewer = {r["reviewer"]: (r["decided"], r["pending"]) for r in status["progress"]["reviewers"]}
    assert by_reviewer["judy@example.com"] == (3, 1) and by_reviewer["dina@example.com"] == (3, 0)

    # The end: the digest is replaced, in place, by how judy's items ended; the evidence names the channels.
    stack.cli("--user", "margaret@example.com", "campaign", "end-stage", campaign_id)
    judy = sent("judy@example.com", lambda f: bool(f["slack"]["outcome"]))
    assert judy["slack_messages"] == 1 and "· closed" in judy["slack"]["head"]
    assert any(line.startswith("🚫 Revoked · bea@example.com") for line in judy["slack"]["outcome"])
    late = stack.cli(*click, "--user", "judy@example.com", "--item", cyrus, "--revoke", expect=1)
    assert "has no buttons any more: it says 'Access review: Analytics access review · closed" in late.stderr
    deadline = time.monotonic() + 20
    while (done := stack.cli("campaign", "report", campaign_id, "--out", "bundle", expect=None)).returncode:
        assert time.monotonic() < deadline, done.stderr
        time.sleep(0.5)
    lines = (stack.cwd / "bundle" / "decisions.jsonl").read_text().splitlines()
    made = {
        (d["item_id"], d["verdict"], d["decided_by"], (d["actor"] or {}).get("channel"))
        for d in map(json.loads, lines)
    }
    assert {
        (bea, "revoke", "judy@example.com", "slack"),
        (cyrus, "keep", "judy@example.com", "slack"),
        (dina_wh, "revoke", "judy@example.com", "jira"),
    } <= made
    assert sum(1 for d in made if d[1:] == ("keep", "dina@example.com", "jira")) == 3
    assert "Traceback" not in (stack.cwd / "dev.out").read_text()

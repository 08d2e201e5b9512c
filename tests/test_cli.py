"""``grantflow request`` and ``grantflow ledger`` against a live web app over a real socket.

The CLI is synchronous and the web app runs in the test's event loop, so each invocation runs in a
thread (``asyncio.to_thread``) while the loop keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import click
import pytest
import pytest_asyncio
from click.testing import CliRunner, Result

from configuration.settings import Settings
from grantflow.client import ApiError
from grantflow.commands.ledger import ledger
from grantflow.commands.requests import request
from tests.rigs.ports import free_port
from tests.stack import LEDGER_KEY, Stack
from web.app import WebContext, create_app, running
from web.auth import TokenRegistry, issue_token
from web.service import RequestService


@dataclass
class Cli:
    url: str
    stack: Stack
    tokens: dict[str, str]

    def settings(self, token: str | None = "grace", url: str | None = None, **extra: Any) -> Settings:
        values: dict[str, Any] = {"state_dir": self.stack.tmp_path / "state", "api_url": url or self.url}
        if token is not None:
            values["api_token"] = self.tokens[token]
        return Settings(**values, **extra)

    async def run(
        self,
        *args: str,
        token: str | None = "grace",
        group: click.Group = request,
        settings: Settings | None = None,
    ) -> Result:
        obj = {"settings": settings or self.settings(token)}
        return await asyncio.to_thread(CliRunner().invoke, group, list(args), obj=obj, catch_exceptions=False)


@pytest_asyncio.fixture(loop_scope="session")
async def cli(stack: Stack) -> AsyncIterator[Cli]:
    tokens_file = stack.tmp_path / "tokens.toml"
    tokens = {
        "grace": issue_token(tokens_file, "grace", "grace@example.com", ["admin"]),
        "alice": issue_token(tokens_file, "alice", "alice@example.com", ["requester"]),
        "bob": issue_token(tokens_file, "bob", "bob@example.com", []),
        "carol": issue_token(tokens_file, "carol", "carol@example.com", ["requester"]),
    }
    service = RequestService(stack.env.client, stack.store, stack.policies, stack.task_queue, stack.timings)
    context = WebContext(
        settings=Settings(state_dir=stack.tmp_path),
        store=stack.store,
        client=stack.env.client,
        policies=stack.policies,
        links=stack.links,
        tokens=TokenRegistry(tokens_file),
        service=service,
    )
    async with running(create_app(context)) as url:
        yield Cli(url=url, stack=stack, tokens=tokens)


def one_json(result: Result) -> dict[str, Any]:
    doc = json.loads(result.stdout)  # exactly one document: json.loads refuses trailing data
    assert isinstance(doc, dict)
    return doc


async def test_create_approve_show_as_json(cli: Cli) -> None:
    created = await cli.run(
        "create", "--resource", "pg-prod", "--role", "admin", "--duration", "1h", "--reason", "INC-1",
        "--requester", "alice@example.com", "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    view = one_json(created)
    rid = view["id"]
    assert view["status"] == "PENDING" and view["requester"]["email"] == "alice@example.com"
    assert view["submitted_by"] == "admin grace@example.com on behalf of alice@example.com"

    own = await cli.run("approve", rid, "--as", "alice@example.com", "--json")
    assert own.exit_code == 1
    assert one_json(own) == {
        "error": "refused",
        "detail": "alice@example.com cannot approve their own request",
        "status": 409,
    }
    assert "cannot approve their own request" in own.stderr

    # the approvers with their own tokens: the policy does not let an administrator vote for them
    for approver in ("bob", "carol"):
        approved = await cli.run("approve", rid, "--reason", "ok", "--json", token=approver)
        assert approved.exit_code == 0, approved.output
        assert one_json(approved)["id"] == rid
    await cli.stack.wait_for(
        cli.stack.env.client.get_workflow_handle(rid), lambda v: v.status.value == "ACTIVE"
    )

    shown = await cli.run("show", rid, "--json")
    assert shown.exit_code == 0
    doc = one_json(shown)
    for key in ("id", "status", "end_reason", "requester", "resource", "role", "expires_at", "approvals"):
        assert key in doc, key
    assert doc["status"] == "ACTIVE" and doc["end_reason"] is None and doc["expires_at"]
    assert [d["channel"] for d in doc["approvals"]] == ["cli", "cli"]

    human = await cli.run("show", rid)
    assert human.exit_code == 0 and f"{rid}  ACTIVE" in human.stdout and "pg-prod admin" in human.stdout
    listed = await cli.run("list", "--status", "ACTIVE", "--json")
    assert listed.exit_code == 0 and [v["id"] for v in one_json(listed)["requests"]] == [rid]
    table = await cli.run("list")
    assert table.exit_code == 0 and rid in table.stdout

    duplicate = await cli.run(
        "create", "--resource", "pg-prod", "--role", "admin", "--duration", "1h", "--reason", "INC-2",
        "--requester", "alice@example.com",
    )  # fmt: skip
    assert duplicate.exit_code == 1
    assert f"grantflow request extend {rid} --by 1h" in duplicate.stderr

    too_long = await cli.run("extend", rid, "--by", "1d", "--json")
    assert too_long.exit_code == 1 and "cumulative maximum" in one_json(too_long)["detail"]
    relinquished = await cli.run("relinquish", rid, "--as", "alice@example.com", "--reason", "done")
    assert relinquished.exit_code == 0, relinquished.output
    assert f"relinquished {rid}" in relinquished.stdout


async def test_requester_token_and_its_limits(cli: Cli) -> None:
    created = await cli.run(
        "create", "--resource", "pg-prod", "--role", "admin", "--duration", "30m", "--reason", "x", "--json",
        token="alice",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    rid = one_json(created)["id"]
    as_bob = await cli.run("approve", rid, "--as", "bob@example.com", token="alice")
    assert as_bob.exit_code == 1 and "needs an admin token" in as_bob.stderr
    for_bob = await cli.run(
        "create", "--resource", "pg-prod", "--role", "read", "--duration", "30m", "--reason", "x",
        "--requester", "bob@example.com", "--json", token="alice",
    )  # fmt: skip
    assert for_bob.exit_code == 1 and one_json(for_bob)["error"] == "forbidden"
    cancelled = await cli.run("cancel", rid, "--json", token="alice")
    assert cancelled.exit_code == 0 and one_json(cancelled)["status"] == "CANCELLED"
    revoked = await cli.run("revoke", rid, "--reason", "x", "--json")
    assert revoked.exit_code == 1 and "only ACTIVE access can be revoked" in one_json(revoked)["detail"]
    missing = await cli.run("show", "req-000000000000", "--json")
    assert missing.exit_code == 1 and one_json(missing)["error"] == "not_found"


@pytest.mark.parametrize("duration", ["0s", "-1h", "soon", "PT", "99999999999999999999s", "3651d"])
async def test_bad_durations_are_refused_before_any_http_call(cli: Cli, duration: str) -> None:
    # The API URL points nowhere: reaching for it would exit 3, not 2.
    nowhere = cli.settings(url=f"http://127.0.0.1:{free_port()}")
    result = await cli.run(
        "create", "--resource", "pg-prod", "--duration", duration, "--reason", "x", settings=nowhere
    )
    assert result.exit_code == 2
    assert "Invalid value for '--duration'" in result.stderr
    extend = await cli.run("extend", "req-000000000000", "--by", duration, settings=nowhere)
    assert extend.exit_code == 2


async def test_server_side_bad_input_and_usage_errors_exit_2(cli: Cli) -> None:
    over = await cli.run(
        "create", "--resource", "pg-prod", "--role", "admin", "--duration", "5h", "--reason", "x", "--json"
    )
    assert over.exit_code == 2
    assert one_json(over) == {
        "error": "bad_input",
        "detail": "duration 5h is too long: 4h is the most pg-prod admin allows",
        "status": 422,
    }
    unknown = await cli.run("create", "--resource", "pg-nope", "--duration", "1h", "--reason", "x")
    assert unknown.exit_code == 2 and "unknown resource 'pg-nope'" in unknown.stderr
    nobody = await cli.run(
        "create",
        "--resource",
        "bastion",
        "--duration",
        "1h",
        "--reason",
        "x",
        "--requester",
        "nobody@example.com",
    )
    assert nobody.exit_code == 2 and "not a person in the directory" in nobody.stderr
    usage = await cli.run("create", "--resource", "pg-prod")
    assert usage.exit_code == 2 and "Missing option" in usage.stderr
    assert cli.stack.store.list_requests() == []


async def test_unreachable_server_no_token_and_token_file(cli: Cli) -> None:
    nowhere = cli.settings(url=f"http://127.0.0.1:{free_port()}")
    down = await cli.run("show", "req-000000000000", "--json", settings=nowhere)
    assert down.exit_code == 3 and one_json(down)["error"] == "unreachable"
    no_token = await cli.run("list", "--json", settings=cli.settings(token=None))
    assert no_token.exit_code == 2
    assert "GRANTFLOW_API_TOKEN" in one_json(no_token)["detail"] and "admin.token" in no_token.stderr
    state = cli.stack.tmp_path / "state"
    state.mkdir(exist_ok=True)
    (state / "admin.token").write_text(cli.tokens["grace"] + "\n")
    from_file = await cli.run("list", "--json", settings=cli.settings(token=None))
    assert from_file.exit_code == 0, from_file.output
    assert one_json(from_file)["count"] == 0
    bad = await cli.run("list", settings=cli.settings(token=None, api_token="gf_nope"))
    assert bad.exit_code == 1 and "not valid" in bad.stderr


def test_exit_codes_of_api_errors() -> None:
    assert ApiError(None, "unreachable", "").exit_code == 3
    assert ApiError(500, "internal", "").exit_code == 3
    assert ApiError(503, "unavailable", "").exit_code == 3
    assert ApiError(422, "bad_input", "").exit_code == 2
    assert ApiError(400, "bad_input", "").exit_code == 2
    for status in (401, 403, 404, 409):
        assert ApiError(status, "x", "").exit_code == 1


async def test_ledger_verify_then_tamper(cli: Cli) -> None:
    tmp = cli.stack.tmp_path
    created = await cli.run(
        "create", "--resource", "pg-prod", "--role", "admin", "--duration", "1h", "--reason", "INC-9",
        "--requester", "alice@example.com",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    settings = Settings(
        state_dir=tmp / "state",
        database_url=f"sqlite:///{tmp / 'grantflow.db'}",
        ledger_key=LEDGER_KEY.decode(),
        ledger_anchor_path=tmp / "anchor",
    )
    intact = await cli.run("verify", group=ledger, settings=settings)
    assert intact.exit_code == 0, intact.output
    assert intact.stdout.startswith("ledger intact: ")
    # The request's workflow may append to the ledger meanwhile: the head verified is the table's entry
    # of that number, whatever came after it.
    verified = re.search(r"head #(\d+) ([0-9a-f]{12})", intact.stdout)
    assert verified is not None, intact.stdout
    entry = cli.stack.store.ledger_entries(after_seq=int(verified.group(1)) - 1, limit=1)[0]
    assert (entry.seq, entry.hash[:12]) == (int(verified.group(1)), verified.group(2))
    as_json = await cli.run("verify", "--json", group=ledger, settings=settings)
    assert as_json.exit_code == 0 and one_json(as_json)["ok"] is True

    with sqlite3.connect(tmp / "grantflow.db") as db:
        db.execute("UPDATE ledger SET actor = 'mallory@example.com' WHERE seq = 2")
    broken = await cli.run("verify", group=ledger, settings=settings)
    assert broken.exit_code == 1
    # the entry is named once, by the problem itself
    assert "ledger NOT intact: entry 2 was altered" in broken.stdout and "#2" not in broken.stdout
    broken_json = await cli.run("verify", "--json", group=ledger, settings=settings)
    assert broken_json.exit_code == 1
    doc = one_json(broken_json)
    assert doc["ok"] is False and doc["first_bad_seq"] == 2 and doc["problem"]

    no_key = await cli.run("verify", group=ledger, settings=Settings(state_dir=tmp / "state"))
    assert no_key.exit_code == 4 and "GRANTFLOW_LEDGER_KEY" in no_key.stderr


def test_request_show_says_how_a_request_was_decided_and_what_it_is_for() -> None:
    """``request show``'s summary: an auto-approved request needs no approvals, a one-time hoop review has
    a command and no duration, and the sessions a grant enabled are named with those killed."""
    from domain.requests import HoopReviewOrigin, HoopReviewType, RequestStatus
    from grantflow.commands.requests import describe
    from tests.test_jira_adapter import request_view

    auto = "\n".join(describe(request_view(status=RequestStatus.ACTIVE, auto_approved=True)))
    assert "approved automatically" in auto and "approvals: 0 of" not in auto
    origin = HoopReviewOrigin(
        review_id="r-1", review_type=HoopReviewType.ONETIME, session_id="s-1", command="VACUUM orders;"
    )
    onetime = "\n".join(describe(request_view(origin=origin)))
    assert "one command" in onetime and "command: VACUUM orders;" in onetime and "for 1h" not in onetime
    ended = "\n".join(
        describe(
            request_view(sessions_used=["s-9", "s-8"], sessions_killed=["s-9"], sessions_left_open=["s-7"])
        )
    )
    assert "sessions used: 2; killed: s-9" in ended and "STILL OPEN after the kills" in ended


def test_help_lists_whole_command_summaries_never_cut() -> None:
    """Every group's ``--help`` shows each command's whole first sentence (click would cut it with "...")."""
    from click.testing import CliRunner

    from grantflow.cli import main
    from grantflow.help import summary

    def groups(group: click.Group, path: list[str]) -> list[tuple[list[str], click.Group]]:
        found = [(path, group)]
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                found += groups(command, [*path, name])
        return found

    checked = 0
    for path, group in groups(main, []):
        shown = CliRunner().invoke(main, [*path, "--help"], terminal_width=80)
        assert shown.exit_code == 0, shown.output
        listing = shown.output.split("Commands:", 1)[1]
        assert "..." not in listing, shown.output
        flat = " ".join(listing.split())
        for command in group.commands.values():
            assert " ".join(summary(command).split()) in flat.replace("- ", "-")
            checked += 1
    assert checked > 20


def test_every_sandbox_and_request_command_takes_json() -> None:
    """The README promises `--json` on every command; the sandbox commands included."""
    from grantflow.commands.requests import request
    from grantflow.commands.sandbox import sandbox

    for group in (sandbox, request):
        for name, command in group.commands.items():
            options = {opt for param in command.params for opt in getattr(param, "opts", [])}
            assert "--json" in options, f"grantflow {group.name} {name} has no --json"

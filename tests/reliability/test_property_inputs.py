"""Property tests of every way bad input enters grantflow: durations, policy files, campaign specs and
access requests (the REST API's body, ``grantflow request`` on the command line, Slack's ``/access`` text).

The property is the same for each: an input either parses into a valid object, or is refused with the
module's own error (``DurationError``, ``PolicyError``, ``CampaignSpecError``, ``CommandError``; a 4xx with
``{"error", "detail"}`` at the REST edge; exit code 1 or 2 with a message from the CLI) — never a bare
``KeyError``, ``TypeError``, ``OverflowError``, ``UnicodeError`` or a 5xx. Inputs are drawn from what people
and probes send: the example organisation's own files with a few fields changed, text that looks like a
duration with far too many digits, bytes that are not UTF-8, values of the wrong type.

Hypothesis runs from a fixed seed (``GRANTFLOW_PROPERTY_SEED`` chooses another) so a failure replays; the
seed is printed and recorded with the counts (``record("property-inputs", ...)``).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w
from click.testing import CliRunner
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from configuration.settings import Settings
from domain.campaign_spec import CampaignSpecError, load_campaign_spec, parse_campaign_spec
from domain.durations import MAX_DURATION, DurationError, PositiveDuration, format_duration, parse_duration
from domain.policy import PolicyError, load_policies, parse_policies
from domain.requests import request_workflow_id
from examples import POLICIES_FILE
from grantflow.commands.campaign import campaign as campaign_command
from grantflow.commands.requests import request as request_command
from tests.reliability.results import REPO_ROOT, record
from tests.stack import Stack
from tests.test_api import Api
from tests.test_api import api as api
from tests.test_cli import Cli
from tests.test_cli import cli as cli
from web.slack_app import CommandError, parse_access_command
from workflows.access_request import AccessRequestWorkflow

pytestmark = [pytest.mark.long, pytest.mark.reliability]

SEED = int(os.environ.get("GRANTFLOW_PROPERTY_SEED", "20261206"))
CAMPAIGN_FILE = Path(POLICIES_FILE).with_name("campaign.toml")

EXAMPLES = {
    "durations": 2000,
    "policies": 500,
    "policy files": 300,
    "campaign specs": 500,
    "campaign spec files": 300,
    "slack /access text": 1000,
    "REST request bodies": 150,
    "CLI request commands": 40,
}
"""Examples tried per target (hypothesis's ``max_examples``): the pure parsers take thousands in seconds,
the targets behind a running stack a few hundred at most, to keep the module near a minute."""

TALLY: dict[str, dict[str, int]] = {}


def explore(target: str, strategy: st.SearchStrategy[Any], check: Callable[[Any], bool]) -> None:
    """Run ``check`` on examples of ``strategy`` (from the fixed seed), counting what was tried, what was
    accepted (``check`` returns True for an input that parsed) and what failed."""
    tally = TALLY.setdefault(target, {"examples": 0, "accepted": 0, "failures": 0})

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES[target],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(value: Any) -> None:
        tally["examples"] += 1
        tally["accepted"] += check(value)

    try:
        run()
    except BaseException:
        tally["failures"] += 1
        raise


@pytest.fixture(scope="module", autouse=True)
def _record_results() -> Iterator[None]:
    print(f"hypothesis seed {SEED} (GRANTFLOW_PROPERTY_SEED)")
    yield
    if not TALLY:
        return
    # the module is the scenario: its rerun command names the module, not the last test that ran
    os.environ["PYTEST_CURRENT_TEST"] = f"{Path(__file__).relative_to(REPO_ROOT)} (teardown)"
    counts: dict[str, int | float] = {}
    for target, tally in TALLY.items():
        counts[f"{target}: examples"] = tally["examples"]
        counts[f"{target}: accepted"] = tally["accepted"]
        counts[f"{target}: failures"] = tally["failures"]
    failures = sum(t["failures"] for t in TALLY.values())
    record(
        "property-inputs",
        title="Bad input, property-tested",
        injected="hypothesis-generated durations, policy files, campaign specs and access requests "
        "(REST bodies, CLI arguments, Slack /access text): changed fields, wrong types, overflowing "
        "numbers, text that is not UTF-8 or carries NUL and lone surrogates",
        counts=counts,
        outcome=(
            "every input parsed into a valid object or was refused with the module's own error "
            "(4xx / CLI exit 1-2 at the edges)"
            if failures == 0
            else f"{failures} target(s) found an input answered with a bare exception or a 5xx"
        ),
        seed=SEED,
        details={"targets": sorted(TALLY)},
    )


# ----------------------------------------------------------------------------------- strategies

NO_SURROGATES = st.characters(exclude_categories=["Cs"])
DIGITS = st.text("0123456789", min_size=1, max_size=30)

duration_like = st.one_of(
    st.builds(
        lambda sign, n, unit: f"{sign}{n}{unit}",
        st.sampled_from(["", "-", "+", " ", "0"]),
        DIGITS,
        st.sampled_from(["s", "m", "h", "d", "D", "H", "", "w", "hours", "1m", "h30m", "d2h"]),
    ),
    st.builds(
        lambda prefix, parts: prefix + "".join(parts),
        st.sampled_from(["P", "PT", "p", "pt", "P1DT", "-P", "PT-"]),
        st.lists(st.builds(lambda n, u: f"{n}{u}", DIGITS, st.sampled_from("DHMS.")), max_size=4),
    ),
    st.from_regex(r"\A[\d.]{1,40}[smhd]\Z", fullmatch=True),
    st.sampled_from(
        ["", " ", "0s", "PT0S", "P", "PT", "1e9d", "nan", "inf", "\u0663h", "\U0001d7d9h", "1h\x00", "PT1.5S"]
    ),
    st.text(max_size=20),
)

toml_keys = st.one_of(
    st.sampled_from(["connection", "roles", "max_duration", "stages", "scope", "group", "time_zone", "x"]),
    st.text(NO_SURROGATES, max_size=12),
)
toml_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.text(NO_SURROGATES, max_size=40),
    duration_like.filter(lambda s: "\ud800" not in s),
    st.dates(),
    st.datetimes(timezones=st.one_of(st.none(), st.just(UTC), st.just(timezone(timedelta(hours=-5))))),
    st.times(),
    st.sampled_from(
        [
            "manager",
            "group",
            "resource_owner",
            "identity_owner",
            "keep",
            "revoke",
            "recommendation",
            "quarter",
            "month",
            "api_key",
            "Europe/Berlin",
            "Mars/Olympus",
            "../../etc/passwd",
            "",
            "a@b",
            "not an email",
            "env=prod",
            "=",
            "pg-prod-ro",
            "db-owners",
        ]
    ),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(toml_keys, inner, max_size=4),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside nested dicts and lists (the root excluded)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*prefix, key)
            yield from _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield (*prefix, index)
            yield from _paths(inner, (*prefix, index))


def _apply(base: dict[str, Any], edits: list[tuple[tuple[Any, ...], str, Any, str]]) -> dict[str, Any]:
    """``base`` with each edit applied where its path still exists: ``set`` a new value, ``drop`` the key or
    element, ``add`` a sibling key, ``copy`` another value of the same document there."""
    data = copy.deepcopy(base)
    for path, op, value, new_key in edits:
        parent: Any = data
        for part in path[:-1]:
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        last = path[-1]
        if parent is None or not isinstance(parent, dict | list):
            continue
        if isinstance(parent, dict) != isinstance(last, str):
            continue
        if isinstance(parent, list) and last >= len(parent):
            continue
        if isinstance(parent, dict) and last not in parent:
            continue  # dropped by an earlier edit
        if op == "drop":
            del parent[last]
        elif op == "add" and isinstance(parent, dict):
            parent[new_key] = value
        elif op == "copy":
            parent[last] = copy.deepcopy(value)
        else:
            parent[last] = value
    return data


def mutated(base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``base`` (a valid document) with one to four of its values changed, dropped or joined by others."""
    paths = sorted(set(_paths(base)), key=repr)
    originals = [_get(base, p) for p in paths]
    edit = st.tuples(
        st.sampled_from(paths),
        st.sampled_from(["set", "set", "drop", "add", "copy"]),
        st.one_of(toml_values, st.sampled_from(originals)),
        toml_keys,
    )
    return st.lists(edit, min_size=1, max_size=4).map(lambda edits: _apply(base, edits))


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def toml_text(data: dict[str, Any]) -> str | None:
    try:
        return tomli_w.dumps(data)
    except (TypeError, ValueError):
        return None  # not every generated tree has a TOML form (e.g. a list of tables and values)


POLICIES = tomllib.loads(Path(POLICIES_FILE).read_text())
CAMPAIGN = tomllib.loads(CAMPAIGN_FILE.read_text())


# ----------------------------------------------------------------------------------- durations


def test_durations_parse_or_are_refused_with_a_duration_error() -> None:
    adapter = TypeAdapter(PositiveDuration)

    def check(value: Any) -> bool:
        if isinstance(value, str):
            try:
                parsed = parse_duration(value)
            except DurationError as exc:
                assert repr(value.strip()) in str(exc) or repr(value) in str(exc), str(exc)
            else:
                assert timedelta(0) < parsed <= MAX_DURATION, (value, parsed)
                assert format_duration(parsed)  # every accepted duration can be shown
                if parsed.total_seconds() >= 1:
                    whole = timedelta(seconds=int(parsed.total_seconds()))
                    assert parse_duration(format_duration(parsed)) == whole
        # the same values through pydantic, as policies, specs and workflow inputs read them
        try:
            held = adapter.validate_python(value)
        except ValidationError:
            return False
        assert isinstance(held, timedelta) and timedelta(0) < held <= MAX_DURATION, (value, held)
        assert adapter.validate_json(adapter.dump_json(held)) == held  # a workflow can read it back
        return True

    values = st.one_of(
        duration_like,
        st.integers(),
        st.floats(),
        st.timedeltas(),
        st.booleans(),
        st.none(),
        st.lists(st.integers(), max_size=2),
    )
    explore("durations", values, check)
    # found by this test: pydantic read false as 0 s and true as 1 s, a tiny float as 0 s, and accepted a
    # timedelta longer than MAX_DURATION whose JSON form it then refused (a workflow could not decode it)
    for refused in (False, True, 2.6e-56, float("nan"), MAX_DURATION + timedelta(microseconds=1)):
        assert check(refused) is False, refused


# ----------------------------------------------------------------------------------- policies


def _check_policy_set(data: Any) -> bool:
    try:
        policies = parse_policies(data, "fuzzed.toml")
    except PolicyError as exc:
        assert str(exc).startswith("fuzzed.toml: ") and len(str(exc)) > len("fuzzed.toml: "), str(exc)
        return False
    for resource_name, resource in policies.resources.items():
        for role_name, role in resource.roles.items():
            assert policies.role(resource_name, role_name) == (role_name, role)
            assert timedelta(0) < role.extension_step <= role.cumulative_limit
            assert role.describe_approvers()
            found = policies.for_connection(role.connection)
            assert found is not None and found[:2] == (resource_name, role_name)
    return True


def test_policies_parse_or_are_refused_with_a_policy_error() -> None:
    explore("policies", st.one_of(mutated(POLICIES), toml_values), _check_policy_set)


def test_policy_files_load_or_are_refused_with_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "policies.toml"

    def check(content: bytes) -> bool:
        path.write_bytes(content)
        try:
            load_policies(path)
        except PolicyError as exc:
            assert str(exc).startswith(f"{path}: "), str(exc)
            return False
        return True

    files = st.one_of(
        mutated(POLICIES).map(toml_text).filter(bool).map(lambda t: str(t).encode()),
        st.text().map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.binary(max_size=200),
        st.just(Path(POLICIES_FILE).read_bytes()).flatmap(
            lambda raw: st.integers(0, len(raw)).map(lambda cut: raw[:cut] + b"\xff" + raw[cut:])
        ),
    )
    explore("policy files", files, check)
    assert check(b"\xff\xfe") is False  # found by this test: UnicodeDecodeError, not a PolicyError
    path.unlink(missing_ok=True)
    path.mkdir()
    with pytest.raises(PolicyError, match="cannot be read"):
        load_policies(path)  # a folder where the file should be


# ----------------------------------------------------------------------------------- campaign specs


def _check_campaign_text(text: str) -> bool:
    try:
        spec = parse_campaign_spec(text, "fuzzed.toml")
    except CampaignSpecError as exc:
        assert str(exc).startswith("fuzzed.toml: "), str(exc)
        return False
    launched = datetime(2027, 1, 4, 9, tzinfo=UTC)
    durations = spec.stage_durations(launched)
    assert len(durations) == len(spec.stages) >= 1
    assert spec.total_duration(launched) is not None
    if spec.duration is not None:
        assert all(d > timedelta(0) for d in durations) or len(spec.stages) == sum(
            1 for s in spec.stages if s.duration is not None
        )
    return True


def test_campaign_specs_parse_or_are_refused_with_a_campaign_spec_error() -> None:
    texts = st.one_of(
        mutated(CAMPAIGN).map(toml_text).filter(bool),
        st.text(max_size=200),
    )
    explore("campaign specs", texts, _check_campaign_text)


def test_campaign_spec_files_load_or_are_refused_with_a_campaign_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "campaign.toml"

    def check(content: bytes) -> bool:
        path.write_bytes(content)
        try:
            load_campaign_spec(path)
        except CampaignSpecError as exc:
            assert str(exc).startswith(f"{path}: "), str(exc)
            return False
        return True

    files = st.one_of(
        st.binary(max_size=200),
        st.just(CAMPAIGN_FILE.read_bytes()).flatmap(
            lambda raw: st.integers(0, len(raw)).map(lambda cut: raw[:cut] + b"\xc3" + raw[cut:])
        ),
        mutated(CAMPAIGN).map(toml_text).filter(bool).map(lambda t: str(t).encode()),
    )
    explore("campaign spec files", files, check)
    path.unlink(missing_ok=True)
    path.mkdir()
    with pytest.raises(CampaignSpecError, match="cannot be read"):
        load_campaign_spec(path)
    # the CLI reads the file itself before sending its text: not UTF-8 is exit 2, not a traceback
    not_text = tmp_path / "latin1.toml"
    not_text.write_bytes(
        CAMPAIGN_FILE.read_bytes().replace(b"production", "produktion äöü".encode("latin-1"))
    )
    settings = Settings(state_dir=tmp_path, api_url="http://127.0.0.1:9", api_token="gf_unused")
    for command in ("launch", "schedule"):
        result = CliRunner().invoke(campaign_command, [command, str(not_text)], obj={"settings": settings})
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit), (command, result.output)
        assert "not UTF-8 text" in result.output, result.output


# ----------------------------------------------------------------------------------- access requests

RESOURCES = ["pg-prod", "k8s-prod", "billing-api", "bastion", "PG-PROD", "", " ", "pg-prod\x00"]
ROLES = ["read", "admin", "view", "operator", "ssh", "ADMIN", "", None]
PEOPLE = ["alice@example.com", "bob@example.com", "mallory@example.com", "nobody@example.com", "", "x"]
GOOD_DURATIONS = ["1h", "30m", "PT2H", "15m", "2h30m"]
GOOD_REASONS = ["INC-1", "CHG-42 fix the orders table"]


def plausible(good: list[Any], junk: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value that works, else junk: so that valid inputs are reached too, not only refusals."""
    return st.integers(0, 3).flatmap(lambda roll: junk if roll == 0 else st.sampled_from(good))


text_or_junk = st.one_of(
    st.text(max_size=30),
    st.text(max_size=3000, alphabet="ab "),
    st.sampled_from(["INC-1", " ", "\x00", "\ud800", "é" * 10]),
)


def test_slack_access_text_parses_or_is_refused_with_usage() -> None:
    def check(text: str) -> bool:
        try:
            asked = parse_access_command(text)
        except CommandError as exc:
            assert "Usage: `/access" in str(exc), str(exc)
            return False
        assert asked.resource and not any(c.isspace() for c in asked.resource)
        assert asked.duration and asked.reason == asked.reason.strip() and asked.reason
        return True

    words = st.one_of(
        st.sampled_from([*RESOURCES[:4], "admin", "read", "help"]), duration_like, st.text(max_size=8)
    )
    texts = st.one_of(st.text(), st.lists(words, max_size=6).map(" ".join))
    explore("slack /access text", texts, check)


GOOD_ROLES = [("pg-prod", "read"), ("pg-prod", "admin"), ("k8s-prod", "view"), ("billing-api", None)]
resource_and_role = plausible(
    GOOD_ROLES,
    st.tuples(
        st.one_of(st.sampled_from(RESOURCES), st.text(max_size=10), st.integers()),
        st.one_of(st.sampled_from(ROLES), st.text(max_size=10), st.lists(st.text(), max_size=1)),
    ),
)


def _body(resource_role: tuple[Any, Any], fields: dict[str, Any], left_out: frozenset[str]) -> dict[str, Any]:
    resource, role = resource_role
    body = {"resource": resource, **({"role": role} if role is not None else {}), **fields}
    return {k: v for k, v in body.items() if k not in left_out} | (
        {"surplus": 1} if "surplus" in left_out else {}
    )


request_bodies = st.builds(
    _body,
    resource_and_role,
    st.fixed_dictionaries(
        {
            "duration": plausible(GOOD_DURATIONS, st.one_of(duration_like, st.integers(), st.floats())),
            "reason": plausible(GOOD_REASONS, st.one_of(text_or_junk, st.integers(), st.none())),
        },
        optional={
            "requester": plausible(PEOPLE[:2], st.one_of(st.sampled_from(PEOPLE), st.text(max_size=20))),
            "break_glass": plausible([False, True], st.sampled_from(["yes", 1, None])),
        },
    ),
    plausible([frozenset()], st.frozensets(st.sampled_from(["resource", "duration", "reason", "surplus"]))),
)


async def test_rest_request_bodies_create_a_request_or_get_a_4xx(api: Api) -> None:
    """``POST /api/v1/requests`` with generated bodies (as the tokens of a requester, an approver without
    roles, an admin and an admin service token): 201 with a view, or a 4xx naming what is wrong."""
    tokens = {who: api.tokens[who] for who in ("alice", "bob", "grace", "robot")}

    def check(case: tuple[str, dict[str, Any]]) -> bool:
        who, body = case
        raw = json.dumps(body).encode()  # ASCII: lone surrogates travel as \ud800 escapes
        with httpx.Client(base_url=f"{api.url}/api/v1", timeout=30) as http:
            answer = http.post(
                "/requests",
                content=raw,
                headers={"Authorization": f"Bearer {tokens[who]}", "Content-Type": "application/json"},
            )
        assert answer.status_code in (201, 403, 409, 422), (who, body, answer.status_code, answer.text)
        doc = answer.json()
        if answer.status_code == 201:
            assert doc["status"] in ("PENDING", "ACTIVE", "FAILED") and doc["id"].startswith("req-"), doc
            return True
        assert doc["error"] and doc["detail"], doc
        return False

    cases = st.tuples(st.sampled_from(sorted(tokens)), request_bodies)
    await asyncio.to_thread(explore, "REST request bodies", cases, check)
    await _every_request_workflow_reads_its_input(api.stack)


async def test_cli_request_commands_succeed_or_exit_1_or_2_with_a_message(cli: Cli) -> None:
    """``grantflow request create`` and ``extend`` with generated arguments against the running API: exit
    0, or 1 (refused) / 2 (bad input) with a message; never a traceback, never 3 (a 5xx)."""
    settings = cli.settings("grace")

    def check(args: list[str]) -> bool:
        result = CliRunner().invoke(request_command, args, obj={"settings": settings})
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            args,
            repr(result.exception),
            result.output,
        )
        assert result.exit_code in (0, 1, 2), (args, result.exit_code, result.output)
        if result.exit_code:
            assert result.output.strip(), args
        return result.exit_code == 0

    create = st.builds(
        lambda resource_role, duration, reason, requester: [
            "create",
            "--resource",
            str(resource_role[0]),
            "--duration",
            duration,
            "--reason",
            reason,
            *(["--role", str(resource_role[1])] if resource_role[1] is not None else []),
            *(["--requester", requester] if requester is not None else []),
        ],
        resource_and_role,
        plausible(GOOD_DURATIONS, duration_like),
        plausible(GOOD_REASONS, st.one_of(st.sampled_from([" ", "x" * 2500]), st.text(max_size=20))),
        st.one_of(st.none(), st.sampled_from(PEOPLE)),
    )
    extend = st.builds(
        lambda rid, by: ["extend", rid, "--by", by],
        st.sampled_from(["req-000000000000", "req-\udc80", "", "../../etc"]),
        plausible(GOOD_DURATIONS, duration_like),
    )
    await asyncio.to_thread(explore, "CLI request commands", st.one_of(create, extend), check)
    await _every_request_workflow_reads_its_input(cli.stack)


async def _every_request_workflow_reads_its_input(stack: Stack) -> None:
    """Each request the generated input created has a workflow that decoded its input: it answers the
    view query (a workflow given input it cannot decode never runs a task, and the query times out)."""
    for stored in stack.store.list_requests():
        handle = stack.env.client.get_workflow_handle_for(
            AccessRequestWorkflow.run, request_workflow_id(stored.id)
        )
        view = await asyncio.wait_for(handle.query(AccessRequestWorkflow.view), timeout=15)
        assert view.id == stored.id

"""Contract test: every call grantflow's Jira adapter makes (through the real ``jira`` client), and every
answer the Jira stand-in gives, checked against Jira Cloud's published OpenAPI spec
(``../shared/specs/jira-platform-v3.json``, a July 2022 copy of the v3 platform spec), as frozen in
``tests/contracts/jira.json`` so that this runs in a fresh clone too.

The exchanges are the ones the stand-in recorded. v2 and ``latest`` paths are checked against the v3
operations: the two versions differ only in description and comment bodies (strings vs ADF), which the spec
leaves free-form. Schemas are strict (``tests/hoop_spec.py``): an object that declares its properties accepts
no others. ``IssueBean.fields`` is free-form in the spec, so the objects inside it (status, issue type,
project, people, resolution, comments) are checked against their own components as well.

Where Jira (and so the stand-in) departs from the spec, the difference is listed below with the reason; a
listed difference that no longer happens fails ``test_every_known_difference_still_happens``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import pytest
from jsonschema import Draft4Validator, FormatChecker

from integrations.jira_tickets import JiraTickets, build_jira
from sandbox.hoop import ManualClock
from sandbox.jira import JiraCall, JiraStandIn
from tests.contracts import NOT_FROZEN, NOT_FROZEN_HINT, load_contract
from tests.hoop_spec import Exchange, KnownDifference, SpecValidator, _fields_along
from tests.test_jira_standin import BOT, T0, TOKEN, seed

SPEC = load_contract("jira")

JiraKind = Literal["not_in_spec", "error_body", "ignored_query", "request_type"]


@dataclass(frozen=True)
class JiraDifference:
    """A departure that ``KnownDifference`` (made for hoop) has no kind for.

    not_in_spec    ``operation`` (a regex over "METHOD /rest/api/3/path") is missing from the spec: its
                   answer is checked against ``schema`` (see ``JiraSpecValidator.schema_for``) instead
    error_body     error statuses the spec lists without a body answer an ErrorCollection
    ignored_query  ``operation`` gets ``params`` that the spec does not declare and Jira ignores
    request_type   a request's ``field`` is sent with a JSON type in ``types`` the spec does not allow
    """

    key: str
    kind: JiraKind
    why: str
    operation: str | None = None
    params: tuple[str, ...] = ()
    field: str | None = None
    types: tuple[type, ...] = ()
    schema: str | None = None


KNOWN_DIFFERENCES: list[KnownDifference | JiraDifference] = [
    JiraDifference(
        key="search-jql",
        kind="not_in_spec",
        why="The spec predates Cloud's enhanced search (2024), where the jira client searches on Cloud (and "
        "/search is retired). Its answer is checked against Atlassian's documented shape: {issues: "
        "IssueBean[], nextPageToken?, isLast}.",
        operation=r"(GET|POST) /rest/api/3/search/jql",
        schema="SearchAndReconcileResults",
    ),
    JiraDifference(
        key="error-bodies",
        kind="error_body",
        why="The spec lists 401, 404 and several 400s without a body; Jira answers them with an "
        "ErrorCollection ({errorMessages, errors}), which the jira client parses into JIRAError.text.",
    ),
    JiraDifference(
        key="user-search-server-params",
        kind="ignored_query",
        why="jira.JIRA.search_users always sends includeActive/includeInactive (Server/DC parameters); Cloud "
        "ignores them (and returns active users only).",
        operation="GET /rest/api/3/user/search",
        params=("includeActive", "includeInactive"),
    ),
    JiraDifference(
        key="transition-id-number",
        kind="request_type",
        why="jira.JIRA.transition_issue sends the transition id as a number ({'id': 11}); Jira accepts it, "
        "the spec says string.",
        field="IssueTransition.id",
        types=(int,),
    ),
    *(
        KnownDifference(
            key=f"changelog-{prop}-null",
            kind="nullable",
            why="Jira writes null for the ids of text fields (summary, description) and for the side of a "
            "resolution change that had none; the spec types them as strings.",
            field=f"ChangeDetails.{prop}",
        )
        for prop in ("from", "fromString", "to", "toString")
    ),
]

# the operations the adapter uses: the scenario must exercise each of them
ADAPTER_OPERATIONS = {
    "GET /rest/api/3/serverInfo",
    "GET /rest/api/3/field",
    "GET /rest/api/3/search/jql",
    "POST /rest/api/3/issue",
    "GET /rest/api/3/issue/{issueIdOrKey}",
    "PUT /rest/api/3/issue/{issueIdOrKey}",
    "GET /rest/api/3/issue/{issueIdOrKey}/transitions",
    "POST /rest/api/3/issue/{issueIdOrKey}/transitions",
    "GET /rest/api/3/issue/{issueIdOrKey}/comment",
    "POST /rest/api/3/issue/{issueIdOrKey}/comment",
    "GET /rest/api/3/user/search",
}

# objects inside IssueBean.fields and the component each must match
EMBEDDED = {
    "status": "StatusDetails",
    "issuetype": "IssueTypeDetails",
    "project": "ProjectDetails",
    "assignee": "UserDetails",
    "reporter": "UserDetails",
    "creator": "UserDetails",
    "resolution": "Resolution",
    "comment": "PageOfComments",
}

_FORMATS = FormatChecker(["uuid", "email"])


class JiraSpecValidator(SpecValidator):
    """``SpecValidator`` for Jira: canonical v3 paths, the ``JiraDifference`` kinds, embedded issue fields."""

    def __init__(self, spec: dict[str, Any], differences: Sequence[KnownDifference | JiraDifference]) -> None:
        super().__init__(spec, [d for d in differences if isinstance(d, KnownDifference)])
        self.jira_differences = [d for d in differences if isinstance(d, JiraDifference)]

    def _convert(self, node: Any, *, owner: str | None, stack: tuple[str, ...]) -> Any:
        # Jira's components recurse (LinkGroup holds LinkGroups); the inline expansion stops at the repeat
        if isinstance(node, dict) and "$ref" in node and node["$ref"].rsplit("/", 1)[-1] in stack:
            return {"type": "object"}
        return super()._convert(node, owner=owner, stack=stack)

    def _jira(self, kind: JiraKind) -> list[JiraDifference]:
        return [d for d in self.jira_differences if d.kind == kind]

    def schema_for(self, name: str) -> dict[str, Any]:
        if name == "SearchAndReconcileResults":
            return {
                "type": "object",
                "properties": {
                    "issues": {"type": "array", "items": self.component("IssueBean")},
                    "nextPageToken": {"type": "string"},
                    "isLast": {"type": "boolean"},
                    "names": {"type": "object"},
                    "schema": {"type": "object"},
                },
                "additionalProperties": False,
            }
        return self.component(name)

    def check_exchange(self, exchange: Exchange) -> list[str]:
        for diff in self._jira("not_in_spec"):
            if diff.operation and re.fullmatch(diff.operation, f"{exchange.method} {exchange.path}"):
                self.used.add(diff.key)
                assert diff.schema is not None
                problems = self._validate(
                    f"{exchange} response", self.schema_for(diff.schema), exchange.response_json
                )
                return problems + self.check_issue_fields(exchange)
        return self.check(exchange) + self.check_issue_fields(exchange)

    def check_issue_fields(self, exchange: Exchange) -> list[str]:
        body = exchange.response_json
        if exchange.status != 200 or not isinstance(body, dict):
            return []
        issues = body.get("issues") if "issues" in body else [body] if "fields" in body else []
        problems = []
        for issue in issues or []:
            for name, component in EMBEDDED.items():
                value = (issue.get("fields") or {}).get(name)
                if value is not None:
                    problems += self._validate(f"{exchange} fields.{name}", self.component(component), value)
        return problems

    def _check_query(self, name: str, op: dict[str, Any], exchange: Exchange) -> list[str]:
        ignored = {p for d in self._jira("ignored_query") if d.operation == name for p in d.params}
        kept = [(k, v) for k, v in exchange.query if k not in ignored]
        if len(kept) != len(exchange.query):
            self.used.update(d.key for d in self._jira("ignored_query") if d.operation == name)
        return super()._check_query(name, op, dataclasses.replace(exchange, query=kept))

    def _check_response(self, name: str, op: dict[str, Any], exchange: Exchange) -> list[str]:
        declared = op.get("responses", {}).get(str(exchange.status))
        if (
            exchange.status >= 400
            and declared is not None
            and self._media_schema(declared) is None
            and exchange.response_json is not None
        ):
            for diff in self._jira("error_body"):
                self.used.add(diff.key)
                return self._validate(
                    f"{exchange} response", self.component("ErrorCollection"), exchange.response_json
                )
        return super()._check_response(name, op, exchange)

    def _validate(self, label: str, schema: dict[str, Any], instance: Any) -> list[str]:
        problems = []
        for error in Draft4Validator(schema, format_checker=_FORMATS).iter_errors(instance):
            forgiven = self._forgiving(schema, error)
            if forgiven is not None:
                self.used.add(forgiven.key)
                continue
            fields = _fields_along(schema, error.absolute_schema_path)
            typed = next(
                (
                    d
                    for d in self._jira("request_type")
                    if fields
                    and d.field == fields[-1]
                    and error.validator == "type"
                    and type(error.instance) in d.types
                    and label.endswith(" request")
                ),
                None,
            )
            if typed is not None:
                self.used.add(typed.key)
                continue
            where = "/".join(str(p) for p in error.absolute_path) or "(body)"
            problems.append(f"{label}: at {where}: {error.message}")
        return problems


def to_exchange(call: JiraCall) -> Exchange:
    path = re.sub(r"^/rest/api/(2|latest)/", "/rest/api/3/", call.path)
    return Exchange(call.method, path, call.query, {}, call.json, call.status, call.response)


@dataclass
class Recorded:
    calls: list[JiraCall]
    adapter_calls: list[JiraCall]

    @property
    def exchanges(self) -> list[Exchange]:
        return [to_exchange(c) for c in self.calls]


@pytest.fixture(scope="module")
def recorded() -> Iterator[Recorded]:
    """Every adapter operation, then the rest of what the stand-in serves, against one stand-in."""
    jira = JiraStandIn(users={BOT: TOKEN}, clock=ManualClock(T0))
    seed(jira)
    jira.start()
    client = build_jira(jira.url, BOT, TOKEN, timeout=5)
    raw = httpx.Client(base_url=f"{jira.url}/rest/api", auth=(BOT, TOKEN), timeout=5)
    try:
        tickets = JiraTickets(
            client,
            project_key="ACC",
            issue_type="Task",
            transition_names={"Approve": "Approved", "Close": "Done"},
            extra_fields={"customfield_10050": "pg-prod"},
        )
        key = tickets.open_ticket(
            label="req-1", summary="alice@corp.example: pg-prod admin", description="why", labels=["jit"]
        )
        tickets.open_ticket(label="req-1", summary="again", description="again")  # found, not created
        bob = tickets.account_id_for_email("bob@corp.example")
        assert bob is not None
        tickets.assign(key, bob)
        tickets.transition(key, "Approve", comment="approved by bob@corp.example")
        tickets.comment(key, "bob@corp.example approved")
        tickets.transition(key, "Close")
        tickets.status(key)
        adapter_calls = list(jira.calls)

        # Beyond the adapter: the rest of what the stand-in serves, checked the same way.
        doc = {
            "type": "doc",
            "version": 1,
            "content": [{"type": "paragraph", "content": [{"type": "text", "text": "x"}]}],
        }
        base = {"project": {"key": "ACC"}, "issuetype": {"name": "Task"}}
        assert (
            raw.post("/3/issue", json={"fields": {**base, "summary": "v3", "description": doc}}).status_code
            == 201
        )
        assert raw.post("/3/issue/ACC-2/comment", json={"body": doc}).status_code == 201
        raw.get("/3/issue/ACC-2/comment")
        jira.transition_as(key, "Reopen", jira.account_id("alice@corp.example"))
        raw.put(f"/2/issue/{key}", json={"fields": {"summary": "renamed"}})
        raw.get(f"/2/issue/{key}", params={"expand": "changelog,transitions"})
        raw.get("/3/myself")
        raw.get("/3/project/ACC")
        raw.get("/2/user", params={"accountId": bob})
        raw.get(
            "/2/search", params={"jql": "project = ACC", "startAt": 0, "maxResults": 1, "fields": "summary"}
        )
        raw.post("/2/search", json={"jql": "project = ACC", "maxResults": 5, "fields": ["summary", "status"]})
        raw.post("/3/search/jql", json={"jql": "project = ACC", "maxResults": 1, "fields": ["*all"]})
        assert raw.post("/2/issue", json={"fields": base}).status_code == 400
        assert raw.get("/2/issue/ACC-99").status_code == 404
        assert raw.post(f"/2/issue/{key}/transitions", json={"transition": {"id": "31"}}).status_code == 400
        assert httpx.get(f"{jira.url}/rest/api/2/myself").status_code == 401
        assert not any(c.injected for c in jira.calls)
        yield Recorded(calls=list(jira.calls), adapter_calls=adapter_calls)
    finally:
        raw.close()
        client.close()
        jira.stop()


@pytest.fixture(scope="module")
def validated(recorded: Recorded) -> tuple[list[str], set[str]]:
    validator = JiraSpecValidator(SPEC, KNOWN_DIFFERENCES)
    problems = [p for exchange in recorded.exchanges for p in validator.check_exchange(exchange)]
    return problems, validator.used


def test_every_exchange_matches_the_spec(validated: tuple[list[str], set[str]]) -> None:
    problems, _ = validated
    assert problems == [], "drift from Jira's spec:\n" + "\n".join(problems)


def test_every_known_difference_still_happens(validated: tuple[list[str], set[str]]) -> None:
    _, used = validated
    assert {d.key for d in KNOWN_DIFFERENCES} - used == set(), "listed differences no longer seen"


def test_the_scenario_covers_every_adapter_operation(recorded: Recorded) -> None:
    validator = SpecValidator(SPEC, [])
    seen = set()
    for exchange in (to_exchange(c) for c in recorded.adapter_calls):
        found = validator.operation(exchange.method, exchange.path)
        seen.add(f"{exchange.method} {found[0]}" if found else f"{exchange.method} {exchange.path}")
    assert seen == ADAPTER_OPERATIONS


def test_every_call_authenticates_as_the_spec_declares(recorded: Recorded) -> None:
    assert SPEC["components"]["securitySchemes"]["basicAuth"] == {
        "type": "http",
        "description": "You can access this resource via basic auth.",
        "scheme": "basic",
    }
    validator = SpecValidator(SPEC, [])
    for call in recorded.calls:
        exchange = to_exchange(call)
        found = validator.operation(exchange.method, exchange.path)
        if found is not None:
            assert not found[1].get(NOT_FROZEN), exchange
            assert {"basicAuth": []} in found[1]["security"], exchange
        if call.status != 401:
            assert call.user == BOT or call.api_path == "/serverInfo", exchange


def test_without_the_list_the_stand_in_fails_its_spec(recorded: Recorded) -> None:
    strict = JiraSpecValidator(SPEC, [])
    problems = [p for exchange in recorded.exchanges for p in strict.check_exchange(exchange)]
    assert any("/search/jql" in p and "no such operation in the spec" in p for p in problems)
    assert any("answered a body where the spec declares none" in p for p in problems)
    assert any("query parameter 'includeActive' is not declared" in p for p in problems)
    assert any("is not of type 'string'" in p and "request" in p for p in problems)
    assert any("None is not of type 'string'" in p for p in problems)


# ---------------------------------------------------------------------- the validator rejects drift


@pytest.fixture
def validator() -> JiraSpecValidator:
    return JiraSpecValidator(SPEC, KNOWN_DIFFERENCES)


@pytest.fixture(scope="module")
def good(recorded: Recorded) -> dict[str, Exchange]:
    """One recorded exchange per operation (the one with the most to say), to change and check again."""
    by_name: dict[str, Exchange] = {}
    for exchange in recorded.exchanges:
        if exchange.status < 300:
            name = f"{exchange.method} {re.sub(r'ACC-[0-9]+', 'KEY', exchange.path)}"
            if name not in by_name or len(repr(exchange.response_json)) > len(
                repr(by_name[name].response_json)
            ):
                by_name[name] = exchange
    return by_name


def drifted(
    exchange: Exchange, response: Any = None, request: Any = None, status: int | None = None
) -> Exchange:
    return dataclasses.replace(
        exchange,
        response_json=exchange.response_json if response is None else response,
        request_json=exchange.request_json if request is None else request,
        status=exchange.status if status is None else status,
    )


def test_the_good_exchanges_pass(validator: JiraSpecValidator, good: dict[str, Exchange]) -> None:
    assert {
        "POST /rest/api/3/issue",
        "GET /rest/api/3/issue/KEY",
        "GET /rest/api/3/issue/KEY/transitions",
        "POST /rest/api/3/issue/KEY/comment",
        "GET /rest/api/3/user/search",
        "POST /rest/api/3/search/jql",
    } <= set(good)
    for exchange in good.values():
        assert validator.check_exchange(exchange) == [], exchange


@pytest.mark.parametrize(
    ("operation", "change", "complaint"),
    [
        (
            "POST /rest/api/3/issue",
            lambda b: {**b, "status": "created"},
            "Additional properties are not allowed",
        ),
        ("POST /rest/api/3/issue", lambda b: {**b, "id": 10001}, "10001 is not of type 'string'"),
        ("GET /rest/api/3/user/search", lambda b: {"values": b}, "is not of type 'array'"),
        (
            "GET /rest/api/3/user/search",
            lambda b: [{**b[0], "emailAddress": None}],
            "None is not of type 'string'",
        ),
        (
            "GET /rest/api/3/user/search",
            lambda b: [{**b[0], "accountType": "robot"}],
            "'robot' is not one of",
        ),
        (
            "GET /rest/api/3/issue/KEY/transitions",
            lambda b: {"transitions": [{**b["transitions"][0], "to": {"statusCategory": {"id": "2"}}}]},
            "'2' is not of type 'integer'",
        ),
        (
            "GET /rest/api/3/issue/KEY/transitions",
            lambda b: {**b, "transitions": {}},
            "is not of type 'array'",
        ),
        (
            "POST /rest/api/3/issue/KEY/comment",
            lambda b: {**b, "author": {**b["author"], "locale": "en_US"}},  # UserDetails has no locale
            "Additional properties are not allowed ('locale'",
        ),
        ("GET /rest/api/3/issue/KEY", lambda b: {**b, "fields": []}, "[] is not of type 'object'"),
        (
            "GET /rest/api/3/issue/KEY",
            lambda b: {**b, "fields": {**b["fields"], "status": {**b["fields"]["status"], "id": 10000}}},
            "10000 is not of type 'string'",
        ),
        (
            "GET /rest/api/3/issue/KEY",
            lambda b: {**b, "fields": {**b["fields"], "project": {**b["fields"]["project"], "lead": "x"}}},
            "Additional properties are not allowed ('lead'",
        ),
        ("POST /rest/api/3/search/jql", lambda b: {**b, "nextPageToken": 5}, "5 is not of type 'string'"),
        ("POST /rest/api/3/search/jql", lambda b: {**b, "total": 1}, "Additional properties are not allowed"),
        (
            "GET /rest/api/3/serverInfo",
            lambda b: {**b, "versionNumbers": "1001.0.0"},
            "is not of type 'array'",
        ),
    ],
)
def test_a_drifting_answer_fails(
    validator: JiraSpecValidator, good: dict[str, Exchange], operation: str, change: Any, complaint: str
) -> None:
    problems = validator.check_exchange(
        drifted(good[operation], response=change(good[operation].response_json))
    )
    assert any(complaint in p for p in problems), problems


def test_other_drift_fails(validator: JiraSpecValidator, good: dict[str, Exchange]) -> None:
    create = good["POST /rest/api/3/issue"]
    assert validator.check_exchange(drifted(create, status=200))  # 201 only
    assert validator.check_exchange(drifted(create, request=[create.request_json]))
    not_found = Exchange("GET", "/rest/api/3/issue/ACC-9", [], {}, None, 404, {"message": "gone"})
    assert any(
        "Additional properties" in p for p in validator.check_exchange(not_found)
    )  # not an ErrorCollection
    unknown_param = dataclasses.replace(
        good["GET /rest/api/3/issue/KEY/transitions"], query=[("verbose", "1")]
    )
    assert any("'verbose' is not declared" in p for p in validator.check_exchange(unknown_param))
    assert validator.check_exchange(Exchange("GET", "/rest/api/3/nowhere", [], {}, None, 200, {}))
    # in the spec, but not among the operations frozen for the stand-in
    votes = Exchange("GET", "/rest/api/3/issue/ACC-1/votes", [], {}, None, 200, {})
    assert validator.check_exchange(votes) == [
        f"{votes}: GET /rest/api/3/issue/{{issueIdOrKey}}/votes {NOT_FROZEN_HINT}"
    ]
    transition = Exchange(
        "POST", "/rest/api/3/issue/ACC-1/transitions", [], {}, {"transition": {"id": True}}, 204, None
    )
    assert any(
        "True is not of type 'string'" in p for p in validator.check_exchange(transition)
    )  # only numbers

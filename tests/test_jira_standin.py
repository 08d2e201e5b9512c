"""The Jira Cloud stand-in over real HTTP (``sandbox/jira/``): auth, API versions, issues, transitions,
comments, users, search, injected faults, and the webhooks it signs and redelivers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from sandbox._server import BackgroundServer
from sandbox.hoop import ManualClock
from sandbox.jira import JiraStandIn, JiraStatus, JiraTransition, JiraWorkflow

BOT, TOKEN = "grantflow-bot@corp.example", "api-token-1"
SECRET = "whsec-test-secret"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FAST_RETRIES = (0.01, 0.02, 0.04)
CANNOT_BE_SET = "cannot be set. It is not on the appropriate screen, or unknown."
_TLS = ssl.create_default_context()  # one context for every client: building one costs more than a request


# ---------------------------------------------------------------------- a webhook endpoint


@dataclass
class Delivered:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """A webhook endpoint on 127.0.0.1: keeps every POST, answers with the queued statuses (then 200)."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.received: list[Delivered] = []
        self.answers: list[int] = []
        self.delay = delay
        self._cond = threading.Condition()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            request = Request(scope, receive)
            body = await request.body()
            if self.delay:
                await asyncio.sleep(self.delay)
            with self._cond:
                self.received.append(Delivered({k.lower(): v for k, v in request.headers.items()}, body))
                status = self.answers.pop(0) if self.answers else 200
                self._cond.notify_all()
            await Response(status_code=status)(scope, receive, send)

        self._server = BackgroundServer(app)
        self.url = ""

    def start(self) -> str:
        self.url = self._server.start() + "/hooks/jira"
        return self.url

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        with self._cond:
            self.received.clear()
            self.answers.clear()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Delivered]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.received) >= count, timeout):
                raise TimeoutError(f"{len(self.received)} of {count} webhooks arrived")
            return list(self.received)


def seed(jira: JiraStandIn) -> dict[str, str]:
    """The project and people every test uses; returns their accountIds by short name."""
    jira.add_project("ACC", "Access requests", issue_types=("Task", "Access"))
    jira.add_custom_field("Resource", field_id="customfield_10050")
    return {
        "alice": jira.add_user("alice@corp.example", "Alice Admin"),
        "bob": jira.add_user("bob@corp.example", "Bob Builder", email_visible=False),
        "carol": jira.add_user("carol@corp.example", "Carol Gone", active=False),
        "bot": jira.account_id(BOT),
    }


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    # one endpoint for the module (a uvicorn server takes ~0.1 s to stop), emptied before each test
    endpoint = WebhookReceiver()
    endpoint.start()
    yield endpoint
    endpoint.stop()


@pytest.fixture(autouse=True)
def _empty_receiver(receiver: WebhookReceiver) -> None:
    receiver.reset()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def jira(receiver: WebhookReceiver, clock: ManualClock) -> Iterator[JiraStandIn]:
    stand_in = JiraStandIn(
        users={BOT: TOKEN},
        webhook_secret=SECRET,
        webhook_url=receiver.url,
        clock=clock,
        webhook_retry_delays=FAST_RETRIES,
    )
    seed(stand_in)
    stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def people(jira: JiraStandIn) -> dict[str, str]:
    return {
        "alice": jira.account_id("alice@corp.example"),
        "bob": jira.account_id("bob@corp.example"),
        "carol": jira.account_id("carol@corp.example"),
        "bot": jira.account_id(BOT),
    }


def client(
    jira: JiraStandIn, version: str = "2", auth: tuple[str, str] | None = (BOT, TOKEN)
) -> httpx.Client:
    return httpx.Client(base_url=f"{jira.url}/rest/api/{version}", auth=auth, verify=_TLS, timeout=5)


@pytest.fixture
def api(jira: JiraStandIn) -> Iterator[httpx.Client]:
    with client(jira) as c:
        yield c


@pytest.fixture(scope="module")
def untouched() -> Iterator[httpx.Client]:
    """A client of a stand-in shared by the tests that never change it (refusals)."""
    stand_in = JiraStandIn(users={BOT: TOKEN})
    seed(stand_in)
    stand_in.start()
    with client(stand_in) as c:
        yield c
    assert stand_in.issues() == []
    stand_in.stop()


@pytest.fixture(scope="module")
def three_issues() -> Iterator[httpx.Client]:
    """A client of a stand-in with ACC-1 (label grantflow-a), ACC-2 (grantflow-b, Approved) and ACC-3."""
    stand_in = JiraStandIn(users={BOT: TOKEN}, clock=ManualClock(T0))
    seed(stand_in)
    stand_in.start()
    with client(stand_in) as c:
        create(c, labels=["grantflow-a"])
        second = create(c, labels=["grantflow-b"])
        create(c)
        c.post(
            f"/issue/{second}/transitions", json={"transition": {"id": transition_id(c, second, "Approve")}}
        )
        yield c
    stand_in.stop()


def create(api: httpx.Client, summary: str = "Access to pg-prod", **fields: Any) -> str:
    body = {"project": {"key": "ACC"}, "issuetype": {"name": "Task"}, "summary": summary, **fields}
    answer = api.post("/issue", json={"fields": body})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["key"])


def transition_id(api: httpx.Client, key: str, name: str) -> str:
    offered = api.get(f"/issue/{key}/transitions").json()["transitions"]
    return next(str(t["id"]) for t in offered if t["name"] == name)


# ---------------------------------------------------------------------- auth and API versions


def test_server_info_answers_as_cloud_without_credentials(jira: JiraStandIn) -> None:
    with client(jira, auth=None) as anonymous:
        info = anonymous.get("/serverInfo")
        assert info.status_code == 200
        assert info.json()["deploymentType"] == "Cloud"
        assert info.json()["versionNumbers"][0] >= 1000
        assert anonymous.get("/myself").status_code == 401
        assert anonymous.post("/issue", json={"fields": {}}).status_code == 401
    with client(jira, auth=(BOT, "wrong-token")) as wrong:
        answer = wrong.get("/serverInfo")  # Cloud rejects bad credentials even where none are needed
        assert answer.status_code == 401
        assert answer.json() == {
            "errorMessages": ["Client must be authenticated to access this resource."],
            "errors": {},
        }
    with client(jira, auth=("alice@corp.example", "")) as no_token:  # a person without an API token
        assert no_token.get("/myself").status_code == 401


def test_myself_shows_the_callers_own_email(api: httpx.Client, people: dict[str, str]) -> None:
    me = api.get("/myself").json()
    assert me["accountId"] == people["bot"]
    assert me["emailAddress"] == BOT
    assert me["self"].endswith(f"/rest/api/2/user?accountId={people['bot']}")


def test_v2_latest_and_v3_paths_share_issues(jira: JiraStandIn, api: httpx.Client) -> None:
    key = create(api, description="Line one\nline two\n\nSecond paragraph")
    with client(jira, "3") as v3, client(jira, "latest") as latest:
        adf = v3.get(f"/issue/{key}").json()
        assert adf["self"].endswith(f"/rest/api/3/issue/{adf['id']}")
        assert adf["fields"]["description"] == {
            "type": "doc",
            "version": 1,
            "content": [
                {
                    "type": "paragraph",
                    "content": [
                        {"type": "text", "text": "Line one"},
                        {"type": "hardBreak"},
                        {"type": "text", "text": "line two"},
                    ],
                },
                {"type": "paragraph", "content": [{"type": "text", "text": "Second paragraph"}]},
            ],
        }
        assert (
            latest.get(f"/issue/{key}").json()["fields"]["description"]
            == "Line one\nline two\n\nSecond paragraph"
        )

        doc = {
            "type": "doc",
            "version": 1,
            "content": [{"type": "paragraph", "content": [{"type": "text", "text": "ADF"}]}],
        }
        created = v3.post(
            "/issue",
            json={
                "fields": {
                    "project": {"key": "ACC"},
                    "issuetype": {"name": "Task"},
                    "summary": "v3",
                    "description": doc,
                }
            },
        )
        assert created.status_code == 201
        assert api.get(f"/issue/{created.json()['key']}").json()["fields"]["description"] == "ADF"
        refused = v3.post(
            "/issue",
            json={
                "fields": {
                    "project": {"key": "ACC"},
                    "issuetype": {"name": "Task"},
                    "summary": "v3",
                    "description": "text",
                }
            },
        )
        assert refused.status_code == 400
        assert "Atlassian Document" in refused.json()["errors"]["description"]
        v3_comment = v3.post(f"/issue/{key}/comment", json={"body": doc})
        assert v3_comment.status_code == 201 and v3_comment.json()["body"] == doc
        assert v3.post(f"/issue/{key}/comment", json={"body": "plain"}).status_code == 400
    assert api.post(f"/issue/{key}/comment", json={"body": doc}).status_code == 400  # v2 wants a string
    assert httpx.get(f"{jira.url}/rest/api/4/serverInfo", verify=_TLS).status_code == 404


# ---------------------------------------------------------------------- issues


def test_create_answers_201_with_id_key_and_self(jira: JiraStandIn, api: httpx.Client) -> None:
    answer = api.post(
        "/issue",
        json={
            "fields": {
                "project": {"key": "ACC"},
                "issuetype": {"name": "access"},  # issue type names match case-insensitively
                "summary": "Access to pg-prod",
                "labels": ["grantflow-req-1", "jit"],
                "customfield_10050": "pg-prod",
                "duedate": "2026-03-03",
            }
        },
    )
    assert answer.status_code == 201
    body = answer.json()
    assert set(body) == {"id", "key", "self"}
    assert body["key"] == "ACC-1"
    assert body["self"] == f"{jira.url}/rest/api/2/issue/{body['id']}"
    issue = api.get("/issue/ACC-1").json()
    assert issue["id"] == body["id"]
    assert api.get(f"/issue/{body['id']}").json()["key"] == "ACC-1"  # by id as well as by key
    fields = issue["fields"]
    assert fields["labels"] == ["grantflow-req-1", "jit"]
    assert fields["customfield_10050"] == "pg-prod"
    assert fields["issuetype"]["name"] == "Access"
    assert fields["status"]["name"] == "Waiting for approval"
    assert fields["status"]["statusCategory"]["key"] == "new"
    assert fields["reporter"]["accountId"] == fields["creator"]["accountId"] == jira.account_id(BOT)
    assert fields["created"] == "2026-03-02T09:00:00.000+0000"
    for part in ("status", "issuetype", "project", "reporter", "creator"):
        assert fields[part]["self"].startswith(jira.url), part  # the client needs a self link on objects
    assert fields["status"]["statusCategory"]["self"].startswith(jira.url)
    only = api.get("/issue/ACC-1", params={"fields": "status,labels"}).json()["fields"]
    assert set(only) == {"status", "labels"}


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        (
            {},
            {
                "project": "Specify a valid project ID or key",
                "issuetype": "Specify an issue type",
                "summary": "You must specify a summary of the issue.",
            },
        ),
        ({"project": {"key": "NOPE"}}, {"project": "Specify a valid project ID or key"}),
        ({"issuetype": {"name": "Bug"}}, {"issuetype": "The issue type selected is invalid."}),
        (
            {"summary": "two\nlines"},
            {"summary": "The summary is invalid because it contains newline characters."},
        ),
        ({"summary": "x" * 256}, {"summary": "Summary must be less than 255 characters."}),
        ({"labels": ["has space"]}, {"labels": "The label 'has space' contains spaces which is invalid."}),
        (
            {"customfield_99999": "x"},
            {"customfield_99999": f"Field 'customfield_99999' {CANNOT_BE_SET}"},
        ),
        ({"assignee": {"accountId": "nobody"}}, {"assignee": "User 'nobody' cannot be assigned issues."}),
        (
            {"assignee": {"name": "bob"}},
            {"assignee": "Use 'accountId': Jira Cloud has no 'name' or 'key' for users (GDPR)"},
        ),
        ({"description": {"type": "doc"}}, {"description": "Operation value must be a string"}),
        (
            {"status": {"name": "Approved"}},
            {"status": "Field 'status' cannot be set. It is not on the appropriate screen, or unknown."},
        ),
    ],
)
def test_create_refuses_bad_fields_with_jiras_error_collection(
    untouched: httpx.Client, fields: dict[str, Any], errors: dict[str, str]
) -> None:
    base: dict[str, Any] = {"project": {"key": "ACC"}, "issuetype": {"name": "Task"}, "summary": "ok"}
    body = {**base, **fields} if fields else {}
    answer = untouched.post("/issue", json={"fields": body})
    assert answer.status_code == 400
    assert answer.json() == {"errorMessages": [], "errors": errors}


def test_unknown_issue_is_404_and_bad_json_is_400(api: httpx.Client) -> None:
    answer = api.get("/issue/ACC-99")
    assert answer.status_code == 404
    assert answer.json()["errorMessages"] == ["Issue does not exist or you do not have permission to see it."]
    garbled = api.post("/issue", content=b"{not json", headers={"Content-Type": "application/json"})
    assert garbled.status_code == 400
    assert api.delete("/issue/ACC-1").status_code == 405


def test_edit_sets_assignee_by_account_id(
    jira: JiraStandIn, api: httpx.Client, people: dict[str, str]
) -> None:
    key = create(api)
    assert (
        api.put(f"/issue/{key}", json={"fields": {"assignee": {"accountId": people["bob"]}}}).status_code
        == 204
    )
    assignee = api.get(f"/issue/{key}").json()["fields"]["assignee"]
    assert assignee["accountId"] == people["bob"]
    assert "emailAddress" not in assignee  # bob's email is private
    answer = api.put(f"/issue/{key}", json={"fields": {"project": {"key": "ACC"}}})
    assert answer.status_code == 400 and "project" in answer.json()["errors"]
    updated = api.put(f"/issue/{key}", json={"update": {"labels": [{"add": "extra"}, {"remove": "missing"}]}})
    assert updated.status_code == 204
    assert api.get(f"/issue/{key}").json()["fields"]["labels"] == ["extra"]
    assert (
        api.put(f"/issue/{key}", json={"fields": {"assignee": {"accountId": people["carol"]}}}).status_code
        == 400
    )


def test_transitions_follow_the_workflow(
    jira: JiraStandIn, api: httpx.Client, people: dict[str, str]
) -> None:
    key = create(api)
    offered = api.get(f"/issue/{key}/transitions").json()
    assert [t["name"] for t in offered["transitions"]] == ["Approve", "Deny", "Cancel"]
    approve = offered["transitions"][0]
    assert approve["to"]["name"] == "Approved" and approve["to"]["self"].startswith(jira.url)
    answer = api.post(
        f"/issue/{key}/transitions",
        json={
            "transition": {"id": approve["id"]},
            "update": {"comment": [{"add": {"body": "ok by policy"}}]},
        },
    )
    assert answer.status_code == 204 and answer.content == b""
    issue = api.get(f"/issue/{key}").json()
    assert issue["fields"]["status"]["name"] == "Approved"
    assert issue["fields"]["resolution"] is None
    assert [c["body"] for c in issue["fields"]["comment"]["comments"]] == ["ok by policy"]
    refused = api.post(f"/issue/{key}/transitions", json={"transition": {"id": approve["id"]}})
    assert refused.status_code == 400
    assert refused.json()["errorMessages"] == [
        f"Transition id '{approve['id']}' is not valid for this issue."
    ]
    assert api.post(f"/issue/{key}/transitions", json={}).status_code == 400
    close = transition_id(api, key, "Close")
    assert api.post(f"/issue/{key}/transitions", json={"transition": {"id": int(close)}}).status_code == 204
    done = api.get(f"/issue/{key}", params={"expand": "changelog"}).json()
    assert done["fields"]["status"]["statusCategory"]["key"] == "done"
    assert done["fields"]["resolution"]["name"] == "Done"
    items = [i for h in done["changelog"]["histories"] for i in h["items"]]
    assert [(i["field"], i["from"], i["to"]) for i in items] == [
        ("status", "10000", "10001"),
        ("resolution", None, "10000"),
        ("status", "10001", "10003"),
    ]
    jira.transition_as(key, "reopen", people["alice"])  # by name, like the button; case does not matter
    assert jira.status_of(key) == "Waiting for approval"
    assert api.get(f"/issue/{key}").json()["fields"]["resolution"] is None
    with pytest.raises(ValueError, match="not available"):
        jira.transition_as(key, "Close", people["alice"])


def test_a_project_can_have_its_own_workflow(jira: JiraStandIn, api: httpx.Client) -> None:
    workflow = JiraWorkflow(
        statuses=(JiraStatus("20000", "Open"), JiraStatus("20001", "Granted", "done")),
        transitions=(JiraTransition("7", "Grant", "Granted", ("Open",)), JiraTransition("8", "Back", "Open")),
        initial="Open",
    )
    jira.add_project("OPS", workflow=workflow)
    answer = api.post(
        "/issue", json={"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "x"}}
    )
    key = answer.json()["key"]
    assert key == "OPS-1"
    assert [t["name"] for t in api.get(f"/issue/{key}/transitions").json()["transitions"]] == ["Grant"]
    with pytest.raises(ValueError, match="unknown status"):
        JiraWorkflow(
            statuses=(JiraStatus("1", "A"),), transitions=(JiraTransition("1", "T", "B"),), initial="A"
        )


def test_comments_are_added_and_listed(jira: JiraStandIn, api: httpx.Client, people: dict[str, str]) -> None:
    key = create(api)
    added = api.post(f"/issue/{key}/comment", json={"body": "first"})
    assert added.status_code == 201
    comment = added.json()
    assert comment["body"] == "first" and comment["author"]["accountId"] == people["bot"]
    assert (
        comment["self"]
        == f"{jira.url}/rest/api/2/issue/{api.get(f'/issue/{key}').json()['id']}/comment/{comment['id']}"
    )
    jira.comment_as(key, "second, from a person", people["alice"])
    page = api.get(f"/issue/{key}/comment").json()
    assert page["total"] == 2 and [c["body"] for c in page["comments"]] == ["first", "second, from a person"]
    assert [
        c["body"] for c in api.get(f"/issue/{key}/comment", params={"orderBy": "-created"}).json()["comments"]
    ] == [
        "second, from a person",
        "first",
    ]
    empty = api.post(f"/issue/{key}/comment", json={"body": "  "})
    assert empty.status_code == 400 and empty.json()["errors"] == {
        "comment": "Comment body can not be empty!"
    }


# ---------------------------------------------------------------------- users


def test_user_search_hides_private_emails_but_finds_them_by_exact_address(
    api: httpx.Client, people: dict[str, str]
) -> None:
    def search(query: str) -> list[dict[str, Any]]:
        answer = api.get("/user/search", params={"query": query})
        assert answer.status_code == 200
        result: list[dict[str, Any]] = answer.json()
        return result

    [bob] = search("bob@corp.example")
    assert bob["accountId"] == people["bob"] and "emailAddress" not in bob
    assert bob["self"].endswith(f"user?accountId={people['bob']}")
    assert search("bob@corp") == []  # a private address is found only whole
    assert [u["accountId"] for u in search("builder")] == [people["bob"]]  # any word of the display name
    [alice] = search("alice@")
    assert alice["emailAddress"] == "alice@corp.example" and alice["displayName"] == "Alice Admin"
    assert search("carol@corp.example") == []  # inactive users are not returned
    assert api.get("/user/search").status_code == 400
    assert api.get("/user", params={"accountId": people["bob"]}).json()["displayName"] == "Bob Builder"
    assert api.get("/user", params={"accountId": "nobody"}).status_code == 404


# ---------------------------------------------------------------------- search


def test_search_jql_pages_with_next_page_token(
    jira: JiraStandIn, api: httpx.Client, clock: ManualClock
) -> None:
    keys = []
    for n in range(5):
        keys.append(create(api, f"request {n}", labels=["grantflow-batch"]))
        clock.advance(minutes=1)
    create(api, "other", labels=["unrelated"])
    jql = 'project = ACC AND labels = "grantflow-batch" ORDER BY created DESC'
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"jql": jql, "maxResults": 2, "fields": "labels,status"}
        if token:
            params["nextPageToken"] = token
        page = api.get("/search/jql", params=params).json()
        pages += 1
        seen += [i["key"] for i in page["issues"]]
        assert all(set(i["fields"]) == {"labels", "status"} for i in page["issues"])
        if page["isLast"]:
            assert "nextPageToken" not in page
            break
        token = page["nextPageToken"]
    assert pages == 3 and seen == list(reversed(keys))
    posted = api.post("/search/jql", json={"jql": jql, "maxResults": 10, "fields": ["summary"]}).json()
    assert [i["key"] for i in posted["issues"]] == seen and posted["isLast"] is True
    assert set(posted["issues"][0]["fields"]) == {"summary"}
    bare = api.get("/search/jql", params={"jql": jql}).json()
    assert bare["issues"][0]["fields"] == {}  # Cloud returns no fields unless asked
    assert api.get("/search/jql", params={"jql": jql, "nextPageToken": "garbage"}).status_code == 400
    other_query_token = api.get("/search/jql", params={"jql": jql, "maxResults": 1}).json()["nextPageToken"]
    assert (
        api.get(
            "/search/jql", params={"jql": "project = ACC", "nextPageToken": other_query_token}
        ).status_code
        == 400
    )


@pytest.mark.parametrize(
    ("jql", "expected"),
    [
        ('labels = "grantflow-a"', ["ACC-1"]),
        ("labels in (grantflow-a, grantflow-b) ORDER BY key DESC", ["ACC-2", "ACC-1"]),
        ("labels != grantflow-a", ["ACC-2"]),  # Jira skips issues without labels for !=
        ("labels is EMPTY", ["ACC-3"]),
        ("project = acc AND status = Approved", ["ACC-2"]),
        ('statusCategory = "In Progress"', ["ACC-2"]),
        ("status not in (Approved) ORDER BY created ASC", ["ACC-1", "ACC-3"]),
        ("key = ACC-3", ["ACC-3"]),
        ("assignee is EMPTY and issuetype = Task", ["ACC-1", "ACC-2", "ACC-3"]),
    ],
)
def test_the_jql_subset(api: httpx.Client, people: dict[str, str], jql: str, expected: list[str]) -> None:
    create(api, labels=["grantflow-a"])
    second = create(api, labels=["grantflow-b"])
    create(api)
    api.post(
        f"/issue/{second}/transitions", json={"transition": {"id": transition_id(api, second, "Approve")}}
    )
    found = api.get("/search/jql", params={"jql": jql}).json()["issues"]
    assert [i["key"] for i in found] == expected


@pytest.mark.parametrize(
    ("jql", "message"),
    [
        ("", "Unbounded JQL queries are not allowed here."),
        ("ORDER BY created", "Unbounded JQL queries are not allowed here."),
        ("labels = a OR labels = b", "supports only AND"),
        ("summary ~ x", "Field 'summary' does not exist"),
        ("project = NOPE", "The value 'NOPE' does not exist for the field 'project'."),
        ("labels =", "Expecting either a value, list or function"),
        ("(labels = a)", "parentheses"),
    ],
)
def test_search_jql_refuses_what_it_cannot_answer(untouched: httpx.Client, jql: str, message: str) -> None:
    answer = untouched.get("/search/jql", params={"jql": jql})
    assert answer.status_code == 400
    assert message in answer.json()["errorMessages"][0]


def test_legacy_search_pages_by_start_at(jira: JiraStandIn, api: httpx.Client) -> None:
    for _ in range(3):
        create(api, labels=["grantflow-x"])
    page = api.get("/search", params={"jql": "labels = grantflow-x", "startAt": 1, "maxResults": 1}).json()
    assert (page["startAt"], page["maxResults"], page["total"]) == (1, 1, 3)
    assert [i["key"] for i in page["issues"]] == ["ACC-2"]
    assert "comment" not in page["issues"][0]["fields"]  # *navigable by default
    posted = api.post("/search", json={"jql": "", "maxResults": 2}).json()  # unbounded is fine here
    assert posted["total"] == 3 and len(posted["issues"]) == 2
    jira.legacy_search_gone = True  # as Cloud answers since the API was retired
    assert api.get("/search", params={"jql": "labels = grantflow-x"}).status_code == 410


# ---------------------------------------------------------------------- faults and recording


def test_injected_429_and_503(jira: JiraStandIn, api: httpx.Client) -> None:
    jira.fail_next("/issue", 429, retry_after=7)
    limited = api.post("/issue", json={"fields": {}})
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7" and limited.headers["X-Sandbox-Fault"] == "injected"
    jira.fail_next("/rest/api/2/issue", 503, count=2, method="GET")
    key = create(api)  # a POST: not matched by the GET fault
    assert [api.get(f"/issue/{key}").status_code for _ in range(3)] == [503, 503, 200]
    jira.fail_next("/search/jql", 503, retry_after="Wed, 21 Oct 2026 07:28:00 GMT")
    assert api.get("/search/jql", params={"jql": "project = ACC"}).headers["Retry-After"].startswith("Wed")
    assert [c.status for c in jira.calls if c.injected] == [429, 503, 503, 503]


def test_a_failure_after_the_write_still_writes(jira: JiraStandIn, api: httpx.Client) -> None:
    jira.fail_next("/issue", 503, after_write=True, method="POST")
    answer = api.post(
        "/issue", json={"fields": {"project": {"key": "ACC"}, "issuetype": {"name": "Task"}, "summary": "x"}}
    )
    assert answer.status_code == 503
    assert [i["key"] for i in jira.issues()] == ["ACC-1"]


def test_dropped_connections_before_and_after_the_write(jira: JiraStandIn, api: httpx.Client) -> None:
    fields = {
        "project": {"key": "ACC"},
        "issuetype": {"name": "Task"},
        "summary": "x",
        "labels": ["grantflow-d"],
    }
    jira.drop_next("/issue", method="POST")
    with pytest.raises(httpx.RemoteProtocolError):
        api.post("/issue", json={"fields": fields})
    assert jira.issues() == []
    jira.drop_next("/issue", method="POST", after_write=True)
    with pytest.raises(httpx.RemoteProtocolError):
        api.post("/issue", json={"fields": fields})
    assert [i["key"] for i in jira.issues(label="grantflow-d")] == ["ACC-1"]
    assert api.get("/issue/ACC-1").status_code == 200  # the server is fine afterwards
    dropped = [c for c in jira.calls if c.injected]
    assert [(c.method, c.status) for c in dropped] == [("POST", 0), ("POST", 0)]


def test_every_call_is_recorded(jira: JiraStandIn, api: httpx.Client) -> None:
    key = create(api)
    api.get(f"/issue/{key}", params={"fields": "status"})
    with client(jira, auth=None) as anonymous:
        anonymous.get("/myself")
    recorded = [(c.method, c.api_path, c.version, c.status, c.user) for c in jira.calls]
    assert recorded == [
        ("POST", "/issue", "2", 201, BOT),
        ("GET", f"/issue/{key}", "2", 200, BOT),
        ("GET", "/myself", "2", 401, None),
    ]
    assert jira.calls[0].json["fields"]["summary"] == "Access to pg-prod"
    assert jira.calls[1].query == [("fields", "status")]
    assert [c.api_path for c in jira.calls_to("get", "/rest/api/2/issue")] == [f"/issue/{key}"]


# ---------------------------------------------------------------------- webhooks


def signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def test_a_person_transitioning_sends_a_signed_issue_updated(
    jira: JiraStandIn, api: httpx.Client, receiver: WebhookReceiver, people: dict[str, str]
) -> None:
    key = create(api, labels=["grantflow-req-7"])
    identifier = jira.transition_as(key, "Approve", people["alice"], comment="fine by me")
    jira.wait_idle()
    created, updated = receiver.wait_for(2)
    assert created.json["webhookEvent"] == "jira:issue_created"
    assert created.json["user"]["accountId"] == people["bot"]
    assert updated.headers["x-hub-signature"] == signature(updated.body)
    assert updated.headers["x-atlassian-webhook-identifier"] == identifier
    assert "x-atlassian-webhook-retry" not in updated.headers
    assert updated.headers["content-type"].startswith("application/json")
    payload = updated.json
    assert payload["webhookEvent"] == "jira:issue_updated"
    assert payload["issue_event_type_name"] == "issue_generic"
    assert payload["timestamp"] == int(T0.timestamp() * 1000)
    assert payload["user"]["accountId"] == people["alice"] and payload["user"]["displayName"] == "Alice Admin"
    assert payload["issue"]["key"] == key and payload["issue"]["self"].startswith(jira.url)
    assert payload["issue"]["fields"]["labels"] == ["grantflow-req-7"]
    assert payload["issue"]["fields"]["status"]["id"] == "10001"
    assert payload["changelog"]["items"] == [
        {
            "field": "status",
            "fieldtype": "jira",
            "fieldId": "status",
            "from": "10000",
            "fromString": "Waiting for approval",
            "to": "10001",
            "toString": "Approved",
        }
    ]
    assert payload["comment"]["body"] == "fine by me"
    assert jira.event(identifier).payload == payload


def test_api_transitions_and_edits_send_webhooks_too(
    jira: JiraStandIn, api: httpx.Client, receiver: WebhookReceiver, people: dict[str, str]
) -> None:
    key = create(api)
    api.post(f"/issue/{key}/transitions", json={"transition": {"id": transition_id(api, key, "Deny")}})
    api.put(f"/issue/{key}", json={"fields": {"assignee": {"accountId": people["bob"]}}})
    api.post(f"/issue/{key}/comment", json={"body": "noted"})
    jira.wait_idle()
    events = [d.json for d in receiver.wait_for(4)]
    assert [(e["webhookEvent"], e["issue_event_type_name"]) for e in events] == [
        ("jira:issue_created", "issue_created"),
        ("jira:issue_updated", "issue_generic"),
        ("jira:issue_updated", "issue_assigned"),
        ("jira:issue_updated", "issue_commented"),
    ]
    denied = events[1]
    assert denied["user"]["accountId"] == people["bot"]
    assert [i["field"] for i in denied["changelog"]["items"]] == ["resolution", "status"]  # Denied is "done"
    assert events[2]["changelog"]["items"][0]["to"] == people["bob"]
    assert "changelog" not in events[3] and events[3]["comment"]["body"] == "noted"
    assert len({d.headers["x-atlassian-webhook-identifier"] for d in receiver.received}) == 4


def test_the_transition_returns_before_the_webhook_is_delivered(
    jira: JiraStandIn, api: httpx.Client, people: dict[str, str]
) -> None:
    key = create(api)
    approve = transition_id(api, key, "Approve")
    jira.wait_idle()
    slow = WebhookReceiver(delay=0.6)  # an endpoint that takes its time to acknowledge
    jira.set_webhook(slow.start(), SECRET)
    try:
        started = time.monotonic()
        assert api.post(f"/issue/{key}/transitions", json={"transition": {"id": approve}}).status_code == 204
        assert time.monotonic() - started < 0.4
        jira.wait_idle()
        assert len(slow.received) == 1
    finally:
        slow.stop()


def test_webhooks_are_redelivered_on_5xx_with_the_same_identifier(
    jira: JiraStandIn, api: httpx.Client, receiver: WebhookReceiver, people: dict[str, str]
) -> None:
    key = create(api)
    jira.wait_idle()
    receiver.answers = [500, 503, 429]
    identifier = jira.transition_as(key, "Approve", people["alice"])
    jira.wait_idle()
    attempts = receiver.wait_for(5)[1:]
    assert [d.headers["x-atlassian-webhook-identifier"] for d in attempts] == [identifier] * 4
    assert [d.headers.get("x-atlassian-webhook-retry") for d in attempts] == [None, "1", "2", "3"]
    assert len({d.body for d in attempts}) == 1 and len({d.headers["x-hub-signature"] for d in attempts}) == 1
    assert [(d.retry, d.status) for d in jira.deliveries_of(identifier)] == [
        (0, 500),
        (1, 503),
        (2, 429),
        (3, 200),
    ]


def test_redelivery_is_bounded_and_follows_atlassians_status_list(
    jira: JiraStandIn, api: httpx.Client, receiver: WebhookReceiver, people: dict[str, str]
) -> None:
    key = create(api)
    jira.wait_idle()
    receiver.answers = [502] * 10
    gave_up = jira.transition_as(key, "Approve", people["alice"])
    jira.wait_idle()
    assert [d.status for d in jira.deliveries_of(gave_up)] == [502] * (1 + len(FAST_RETRIES))
    receiver.answers = [401]  # e.g. the receiver refused the signature: Jira does not retry a 401
    refused = jira.transition_as(key, "Close", people["alice"])
    jira.wait_idle()
    assert [d.status for d in jira.deliveries_of(refused)] == [401]
    jira.webhook_retry_statuses = frozenset(range(300, 600))  # "any non-2xx" instead
    receiver.answers = [401]
    retried = jira.transition_as(key, "Reopen", people["alice"])
    jira.wait_idle()
    assert [d.status for d in jira.deliveries_of(retried)] == [401, 200]


def test_unreachable_endpoints_are_retried(
    jira: JiraStandIn, api: httpx.Client, people: dict[str, str]
) -> None:
    gone = WebhookReceiver()
    jira.set_webhook(gone.start(), SECRET)
    gone.stop()  # nothing listens there any more
    create(api)
    jira.wait_idle()
    [event] = jira.events
    deliveries = jira.deliveries_of(event.identifier)
    assert len(deliveries) == 1 + len(FAST_RETRIES)
    assert all(d.status is None and d.error for d in deliveries)


def test_redeliver_on_demand_keeps_the_identifier(
    jira: JiraStandIn, api: httpx.Client, receiver: WebhookReceiver, people: dict[str, str]
) -> None:
    key = create(api)
    identifier = jira.transition_as(key, "Approve", people["alice"])
    jira.wait_idle()
    jira.redeliver(identifier)
    jira.redeliver(identifier)
    jira.wait_idle()
    again = [d for d in receiver.wait_for(4) if d.headers["x-atlassian-webhook-identifier"] == identifier]
    assert [d.headers.get("x-atlassian-webhook-retry") for d in again] == [None, "1", "2"]
    assert len({d.body for d in again}) == 1
    with pytest.raises(KeyError):
        jira.redeliver("no-such-event")


def test_without_a_secret_nothing_is_signed(
    jira: JiraStandIn, api: httpx.Client, receiver: WebhookReceiver
) -> None:
    jira.set_webhook(receiver.url, None)
    create(api)
    jira.wait_idle()
    [delivery] = receiver.wait_for(1)
    assert "x-hub-signature" not in delivery.headers
    jira.set_webhook(None)
    create(api)
    jira.wait_idle()
    assert len(receiver.received) == 1 and len(jira.events) == 2  # recorded, not sent


def test_state_survives_a_restart_and_ticket_keys_go_on(tmp_path: Path) -> None:
    """A restarted Jira keeps its tickets and numbers new ones after them: a new request must never get
    an old request's ticket key (``grantflow dev`` keeps ``.grantflow/jira.json``)."""
    state = tmp_path / "jira.json"

    def started() -> tuple[JiraStandIn, httpx.Client]:
        stand_in = JiraStandIn(users={BOT: TOKEN}, state_file=state)
        if not stand_in.has_project("ACC"):
            stand_in.add_project("ACC", "Access requests")
        stand_in.add_user("carol@example.com", "Carol")
        stand_in.start()
        return stand_in, httpx.Client(base_url=f"{stand_in.url}/rest/api/2", auth=(BOT, TOKEN))

    first, api = started()
    field = first.add_custom_field("Resource")
    try:
        for n in (1, 2):
            made = api.post(
                "/issue",
                json={
                    "fields": {
                        "project": {"key": "ACC"},
                        "issuetype": {"name": "Task"},
                        "summary": f"r{n}",
                        field: "pg-prod",
                    }
                },
            )
            assert made.status_code == 201 and made.json()["key"] == f"ACC-{n}"
        first.transition_as("ACC-1", "Approve", first.account_id("carol@example.com"), comment="ok")
        assert api.post("/issue/ACC-2/comment", json={"body": "noted"}).status_code == 201
    finally:
        api.close()
        first.stop()

    again, api = started()
    try:
        assert again.add_custom_field("Resource") == field  # the same field, not a second one
        assert again.status_of("ACC-1") == first.status_of("ACC-1") != "Waiting for approval"
        assert again.comments("ACC-2") == ["noted"]
        assert api.get("/issue/ACC-1").json()["fields"]["customfield_10050"] == "pg-prod"
        made = api.post(
            "/issue",
            json={"fields": {"project": {"key": "ACC"}, "issuetype": {"name": "Task"}, "summary": "r3"}},
        )
        assert made.json()["key"] == "ACC-3"
        assert int(made.json()["id"]) > max(int(api.get(f"/issue/ACC-{n}").json()["id"]) for n in (1, 2))
    finally:
        api.close()
        again.stop()

"""A revocation grantflow cannot apply gets a remediation ticket in Jira (once per item, found again on a
retry), or stays a record in the evidence when Jira is not configured or cannot be reached."""

from __future__ import annotations

from pathlib import Path

from jira import JIRA

from activities.campaigns import CampaignActivities
from domain.campaigns import AccessVia, CampaignItem, ItemAccess, Source, Subject, SubjectKind
from sandbox.jira import JiraStandIn
from store import Store
from tests.stack import LEDGER_KEY
from tests.test_jira_adapter import client, jira, make_tickets, receiver  # noqa: F401  (fixtures)

ITEM = CampaignItem.of(
    Subject(kind=SubjectKind.SERVICE_ACCOUNT, id="svc-etl", name="svc-etl"),
    ItemAccess(via=AccessVia.GROUP, group="analytics", sources=(Source.HOOP,), connections=("pg",)),
)


def activities(tmp_path: Path, tickets: object = None) -> CampaignActivities:
    store = Store(f"sqlite:///{tmp_path / 'g.db'}", ledger_key=LEDGER_KEY, anchor_path=None)
    return CampaignActivities(store, None, None, None, None, tickets=tickets)  # type: ignore[arg-type]


async def test_a_remediation_ticket_is_opened_once(
    jira: JiraStandIn,  # noqa: F811
    client: JIRA,  # noqa: F811
    tmp_path: Path,
) -> None:
    tickets = make_tickets(client)
    work = activities(tmp_path, lambda: tickets)
    first = await work._remediation("cmp-1", ITEM, "service accounts are not revoked automatically")
    again = await work._remediation("cmp-1", ITEM, "service accounts are not revoked automatically")
    assert first.status == "remediation" and first.remediation is not None
    assert first.remediation == again.remediation and first.remediation.startswith("ACC-")
    assert sum(1 for c in jira.calls if c.method == "POST" and c.api_path == "/issue") == 1
    issue = client.issue(first.remediation)
    assert issue.fields.summary == "Revoke by hand: svc-etl, member of analytics (hoop) → pg"
    assert "could not apply it: service accounts are not revoked automatically" in str(
        issue.fields.description
    )


async def test_without_jira_or_when_it_fails_the_record_stays(
    jira: JiraStandIn,  # noqa: F811
    client: JIRA,  # noqa: F811
    tmp_path: Path,
) -> None:
    plain = await activities(tmp_path)._remediation("cmp-1", ITEM, "nope")
    assert plain.remediation == f"remediation record cmp-1:{ITEM.id}"
    tickets = make_tickets(client)
    jira.fail_next("/search", 400)  # a Jira that refuses the search: permanent
    failed = await activities(tmp_path, lambda: tickets)._remediation("cmp-1", ITEM, "nope")
    assert failed.remediation is not None and failed.remediation.startswith(
        f"remediation record cmp-1:{ITEM.id}"
    )
    assert "the Jira ticket could not be opened" in failed.remediation

"""A campaign over hoop's service accounts and machine identities on the time-skipping server: the example
organisation's ``etl-nightly-client`` and ``billing-worker`` are snapshotted, routed to their owners, and —
nobody answering — revoked at the deadline in hoop, each read back."""

from __future__ import annotations

from datetime import timedelta

from tests.stack import Stack
from tests.test_campaign_workflow import finished, item_of_subject, synced, until_open

SERVICE_IDENTITIES = """\
name = "Service identities"
owner = "margaret@example.com"
duration = "7d"
default_decision = "revoke"
fallback_reviewer = "margaret@example.com"

[scope]
identities = ["service_account", "machine_identity"]
include_admins = false

[[stages]]
reviewers = "identity_owner"

[owners]
identities = { etl-nightly-client = "linus@example.com", billing-worker = "ken@example.com" }
"""


async def test_service_accounts_and_machine_identities_are_reviewed_and_revoked(scim_stack: Stack) -> None:
    stack = scim_stack
    service = await synced(stack)
    record = await service.launch(SERVICE_IDENTITIES, stack.actor("margaret@example.com"))
    await until_open(stack, record.id)
    items = stack.store.items(record.id)
    seen = {
        (i.subject.kind.value, i.subject.name, i.access.group, i.access.connections): (
            i.assignment.reviewer.name if i.assignment.reviewer else None
        )
        for i in items
    }
    assert seen == {
        ("service_account", "etl-nightly-client", "analytics", ("pg-prod-ro", "warehouse-ro")): (
            "linus@example.com"
        ),
        ("machine_identity", "billing-worker", None, ("billing-api-operator",)): "ken@example.com",
    }  # nobody else: no person, no API key
    outcome = await finished(stack, record.id, after=timedelta(days=8))
    assert outcome.outcomes == {"revoked": 2}
    account = stack.hoop.service_account("etl-nightly-client")
    assert (account["groups"], account["status"]) == ([], "inactive")  # its only group: deactivated
    machine = stack.hoop.machine_identity("billing-worker")
    assert (machine["connection_names"], machine["credentials"]) == ([], [])  # unbound, credential revoked
    revoked = item_of_subject(stack, record.id, "etl-nightly-client")
    assert revoked.revocation is not None
    assert revoked.revocation.read_back == "hoop service account etl-nightly-client: inactive (no group left)"
    unbound = item_of_subject(stack, record.id, "billing-worker")
    assert unbound.revocation is not None and unbound.revocation.status == "applied"
    assert "bound to no connection by name" in unbound.revocation.read_back

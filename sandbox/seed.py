"""Seeding the hoop stand-in from the example organisation and policies, configured as a real hoop would be.

Every person has signed in to hoop (has a user there, with their directory groups, as the IdP's groups
claim gives them at login) except those listed in ``never_signed_in``. Every policy role's connection
exists with:

- an **access-control list** (``ACCESS_GROUPS``): who may reach it at all. Most engineers are eligible
  for most connections; the contractor is eligible for none, so a request of theirs is refused before
  anyone is asked;
- one **access-request rule** (``<connection>-jit``, type ``jit_command``: it reviews both ``hoop connect``
  and ``hoop exec``): reviewers are the policy's approver groups,
  ``force_approval_groups`` is grantflow's own group (its API key decides reviews in one call), and
  ``SKIP_REVIEW`` groups reach the connection without a review (their standing access), so a request of
  theirs is answered "you already have access".

The seed is hoop's configuration, not grantflow's policy: grantflow reads it back through hoop's API.
"""

from __future__ import annotations

from collections.abc import Iterable

from domain.identity import Organisation
from domain.policy import PolicySet
from sandbox.hoop import HoopStandIn

GRANTFLOW_GROUP = "grantflow"
"""The group grantflow's hoop API key belongs to (besides ``admin``): every rule's force-approval group."""

# Connection -> the access-control groups whose members may reach it (with or without a review).
ACCESS_GROUPS: dict[str, tuple[str, ...]] = {
    "pg-prod-ro": ("engineering", "db-owners", "analytics"),
    "pg-prod-admin": ("engineering", "db-owners"),
    "k8s-prod-view": ("engineering", "platform", "k8s-admins"),
    "k8s-prod-admin": ("engineering", "platform", "k8s-admins"),
    "billing-api-operator": ("engineering", "finance", "platform", "billing-owners"),
    "warehouse-ro": ("analytics", "engineering", "finance", "warehouse-owners"),
    "bastion-ssh": ("security", "platform", "security-oncall"),
}

# Connection -> groups that reach it without a review (the jit rule's skip_review_groups).
SKIP_REVIEW: dict[str, tuple[str, ...]] = {
    "pg-prod-ro": ("db-owners",),
    "warehouse-ro": ("analytics",),
    "k8s-prod-view": ("platform",),
}


# (kind, name, groups, created by): hoop's API keys and AI agents of the example organisation.
NON_HUMAN_IDENTITIES: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("api_keys", "ci-deploy", ("platform",), "linus@example.com"),
    ("ai_agents", "sql-helper", ("analytics",), "dina@example.com"),
)

# (subject, name, groups): hoop's service accounts (an IdP client each, signing in with its groups).
SERVICE_ACCOUNTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("etl-nightly-client", "etl-nightly", ("analytics",)),
)

# (name, bound connections): hoop's machine identities, each with a credential per connection.
MACHINE_IDENTITIES: tuple[tuple[str, tuple[str, ...]], ...] = (("billing-worker", ("billing-api-operator",)),)


def seed_hoop(
    hoop: HoopStandIn,
    organisation: Organisation,
    policies: PolicySet,
    *,
    never_signed_in: Iterable[str] = (),
) -> None:
    absent = {e.lower() for e in never_signed_in}
    for person in organisation.people:
        if person.email.lower() in absent:
            continue
        hoop.add_user(person.email, name=person.display_name, groups=list(person.groups))
    for resource_name, resource in policies.resources.items():
        for role_name, role in resource.roles.items():
            connection = role.connection
            hoop.add_connection(
                connection,
                access_groups=ACCESS_GROUPS.get(connection, ()),
                tags={"resource": resource_name, "env": "prod"},  # every example connection is production
            )
            hoop.add_access_rule(
                f"{connection}-jit",
                access_type="jit_command",  # reviews `hoop connect` (jit) and `hoop exec` (one command)
                connection_names=[connection],
                reviewers_groups=list(role.approver_groups),
                force_approval_groups=[GRANTFLOW_GROUP],
                skip_review_groups=SKIP_REVIEW.get(connection, ()),
                min_approvals=role.min_approvals,
                description=f"jit access to {resource_name} {role_name}",
            )
    # The example's non-human identities: a deploy pipeline's API key and an analytics AI agent, each with
    # the groups that let them reach production (what a campaign with identities in scope reviews).
    for kind, name, groups, creator in NON_HUMAN_IDENTITIES:
        hoop.add_identity_key(kind, name, groups, created_by=creator)
    # A nightly ETL job's service account, reaching production through its group, and the billing worker's
    # machine identity, bound to the connection it holds a credential for.
    for subject, display_name, groups in SERVICE_ACCOUNTS:
        hoop.add_service_account(subject, display_name, groups)
    for name, connections in MACHINE_IDENTITIES:
        hoop.add_machine_identity(name, connections, description=f"{name}: credentials per connection")

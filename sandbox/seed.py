"""Seeding the hoop stand-in from the example organisation and policies.

Every person has signed in to hoop (has a user there) except those listed in ``never_signed_in``; every
policy role's connection exists; a few connections are reachable through standing group access, as
in a real organisation, so revocation tests can check that standing-access sessions are left alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from domain.identity import Organisation
from domain.policy import PolicySet
from sandbox.hoop import HoopStandIn

# Standing access in the example organisation: group -> connections its members reach without a grant.
STANDING_ACCESS: dict[str, tuple[str, ...]] = {
    "db-owners": ("pg-prod-ro",),
    "analytics": ("warehouse-ro",),
    "platform": ("k8s-prod-view",),
}


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
        for role in resource.roles.values():
            groups = [g for g, conns in STANDING_ACCESS.items() if role.connection in conns]
            hoop.add_connection(
                role.connection,
                access_groups=groups,
                reviewers=list(role.approver_groups),
                tags={"resource": resource_name},
            )

"""A generated organisation large enough for any campaign size: ``reviewers`` teams, each a manager and
``size / reviewers`` members, every team's group in the SCIM directory and in hoop, each group allowed on
one shared connection. A campaign over that connection has exactly ``size`` items, one per member, each
reviewed by the member's manager."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.hoop import HoopStandIn
from sandbox.scim import ScimDirectoryServer

OWNER = "owner00000@example.com"
CONNECTION = "bench-db"


@dataclass(frozen=True)
class Organisation:
    size: int
    reviewers: int

    @property
    def team_size(self) -> int:
        return max(1, self.size // self.reviewers)

    def manager(self, team: int) -> str:
        return f"mgr{team:05d}@example.com"

    def group(self, team: int) -> str:
        return f"team-{team:05d}"

    def member(self, team: int, i: int) -> str:
        return f"t{team:05d}u{i:05d}@example.com"

    def kept(self, i: int) -> bool:
        """Which members their manager keeps: 7 in 10; the other 3 go to the default (revoke)."""
        return i % 10 >= 3

    def build(self, scim: ScimDirectoryServer, hoop: HoopStandIn) -> None:
        (owner_id,) = scim.add_users(1, prefix="owner")
        manager_ids = scim.add_users(self.reviewers, prefix="mgr", manager_id=owner_id)
        hoop.add_user(OWNER)
        for team in range(self.reviewers):
            scim.add_users(
                self.team_size,
                prefix=f"t{team:05d}u",
                manager_id=manager_ids[team],
                group=self.group(team),
            )
            hoop.add_user(self.manager(team))
            for i in range(self.team_size):
                hoop.add_user(self.member(team, i), groups=[self.group(team)])
        hoop.add_connection(CONNECTION, access_groups=[self.group(t) for t in range(self.reviewers)])


def spec(org: Organisation) -> str:
    """The campaign: everyone who reaches the connection, reviewed by their manager; what is not kept is
    revoked at the close; the owner ends the stage once every reviewer has answered."""
    return f"""\
name = "Bench review {org.size}"
owner = "{OWNER}"
duration = "30d"
default_decision = "revoke"
fallback_reviewer = "{OWNER}"

[scope]
connections = ["{CONNECTION}"]
include_admins = false

[[stages]]
reviewers = "manager"
"""

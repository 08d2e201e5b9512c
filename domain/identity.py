"""People as the directory knows them, and who is acting at an edge.

Identities are keyed by the directory's stable id (``Person.id``), never by email: emails change,
ids do not. Emails are carried alongside for messages and for the gateway, which keys users by email.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class PersonRef(BaseModel):
    """The smallest handle on a person that workflows keep: stable id plus current email."""

    model_config = ConfigDict(frozen=True)

    id: str
    email: str

    def __str__(self) -> str:
        return self.email


class Person(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    email: str
    display_name: str = ""
    manager_id: str | None = None
    active: bool = True
    groups: tuple[str, ...] = ()
    department: str = ""  # SCIM enterprise extension ``department``; campaigns filter on it
    employment_type: str = ""  # SCIM ``userType`` (employee, contractor …); campaigns filter on it

    @property
    def ref(self) -> PersonRef:
        return PersonRef(id=self.id, email=self.email)


class Actor(BaseModel):
    """Who is acting, as established by an edge (bearer token, signed link, Slack, Jira).

    ``person`` is whose decision or request it is. ``admin`` is set when an administrator acts on behalf
    of ``person`` (``--as`` / ``--requester``); the ledger records both ("admin X on behalf of Y")."""

    model_config = ConfigDict(frozen=True)

    person: PersonRef
    channel: str = Field(description="api, cli, web, slack, jira, email, hoop or system")
    admin: PersonRef | None = None
    channel_user_id: str | None = Field(
        default=None, description="the channel's own id, e.g. a Slack user id"
    )

    @property
    def is_admin(self) -> bool:
        return self.admin is not None

    def describe(self) -> str:
        if self.admin is not None and self.admin.id != self.person.id:
            return f"admin {self.admin.email} on behalf of {self.person.email}"
        return self.person.email

    def ledger_data(self) -> dict[str, str]:
        """What the ledger keeps about the acting account beside the identity: the channel's own user id
        (a Slack user id, a Jira accountId), so an auditor can tie the entry to the click or transition."""
        return {"channel_user_id": self.channel_user_id} if self.channel_user_id else {}


class Organisation(BaseModel):
    """A directory snapshot: people and group names. Loaded from the example file until SCIM sync."""

    people: list[Person]

    def by_email(self) -> dict[str, Person]:
        return {p.email.lower(): p for p in self.people}


def load_organisation(path: Path) -> Organisation:
    """Read an organisation file: ``[[people]]`` tables with id, email, display_name, manager, groups."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    people = []
    emails = {p["id"]: p["email"] for p in data.get("people", [])}
    for raw in data.get("people", []):
        manager = raw.get("manager")
        if manager is not None and manager not in emails:
            raise ValueError(f"{path}: person {raw['id']} has unknown manager {manager!r}")
        people.append(
            Person(
                id=raw["id"],
                email=raw["email"],
                display_name=raw.get("display_name", ""),
                manager_id=manager,
                active=raw.get("active", True),
                groups=tuple(raw.get("groups", ())),
                department=raw.get("department", ""),
                employment_type=raw.get("employment_type", ""),
            )
        )
    return Organisation(people=people)

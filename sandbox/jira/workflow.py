"""Jira workflows: statuses (each in one of Jira's fixed categories) and the transitions between them.

A project has one workflow for all its issue types. A transition with no source statuses is global: offered
from every other status. Pure data, checked when built; applying a transition to an issue (resolution,
changelog, webhook) is done by the transition routes (``transitions.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

# Jira's fixed status categories: key -> (id, name, colour)
CATEGORIES: dict[str, tuple[int, str, str]] = {
    "undefined": (1, "No Category", "medium-gray"),
    "new": (2, "To Do", "blue-gray"),
    "done": (3, "Done", "green"),
    "indeterminate": (4, "In Progress", "yellow"),
}

# set on entering a done-category status, cleared on leaving it, as the default Jira workflows do
RESOLUTION_DONE = {"id": "10000", "name": "Done", "description": "Work has been completed on this issue."}


@dataclass(frozen=True)
class JiraStatus:
    id: str
    name: str
    category: str = "new"  # a key of CATEGORIES: new, indeterminate, done

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"status {self.name!r}: unknown category {self.category!r}")


@dataclass(frozen=True)
class JiraTransition:
    id: str
    name: str
    to: str  # the name of the status it leads to
    sources: tuple[
        str, ...
    ] = ()  # the statuses it leaves from; empty: a global transition (any other status)


@dataclass(frozen=True)
class JiraWorkflow:
    statuses: tuple[JiraStatus, ...]
    transitions: tuple[JiraTransition, ...]
    initial: str

    def __post_init__(self) -> None:
        names = [s.name for s in self.statuses]
        if len(set(names)) != len(names) or len({s.id for s in self.statuses}) != len(names):
            raise ValueError("status names and ids must be unique in a workflow")
        if len({t.id for t in self.transitions}) != len(self.transitions):
            raise ValueError("transition ids must be unique in a workflow")
        for status in (
            self.initial,
            *(t.to for t in self.transitions),
            *(s for t in self.transitions for s in t.sources),
        ):
            if status not in names:
                raise ValueError(f"workflow refers to unknown status {status!r}")

    def status(self, name_or_id: str) -> JiraStatus:
        for status in self.statuses:
            if name_or_id in (status.id, status.name):
                return status
        raise KeyError(name_or_id)

    def available(self, current: JiraStatus) -> list[JiraTransition]:
        """Transitions offered from ``current``: its own, and global ones that lead elsewhere."""
        return [
            t
            for t in self.transitions
            if (current.name in t.sources) or (not t.sources and t.to != current.name)
        ]


DEFAULT_WORKFLOW = JiraWorkflow(
    statuses=(
        JiraStatus("10000", "Waiting for approval", "new"),
        JiraStatus("10001", "Approved", "indeterminate"),
        JiraStatus("10002", "Denied", "done"),
        JiraStatus("10003", "Done", "done"),
        JiraStatus("10004", "Cancelled", "done"),
    ),
    transitions=(
        JiraTransition("11", "Approve", "Approved", ("Waiting for approval",)),
        JiraTransition("21", "Deny", "Denied", ("Waiting for approval",)),
        JiraTransition("31", "Close", "Done", ("Approved",)),
        JiraTransition("41", "Cancel", "Cancelled", ("Waiting for approval", "Approved")),
        JiraTransition("51", "Reopen", "Waiting for approval", ("Approved", "Denied", "Done", "Cancelled")),
    ),
    initial="Waiting for approval",
)

"""Resolving, from the directory, who may approve a request and whether policy approves it outright."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.identity import PersonRef
from store import Store


class ResolveApproversInput(BaseModel):
    request_id: str
    requester: PersonRef
    approver_groups: list[str]
    auto_approve_groups: list[str] = []


class ApproverResolution(BaseModel):
    """Eligible approvers never include the requester, so self-approval is impossible by construction."""

    eligible: list[PersonRef]
    auto_approve_group: str | None = None


class DirectoryActivities:
    def __init__(self, store: Store) -> None:
        self._store = store

    @activity.defn(name="resolve_approvers")
    async def resolve_approvers(self, inp: ResolveApproversInput) -> ApproverResolution:
        return await asyncio.to_thread(self._resolve, inp)

    def _resolve(self, inp: ResolveApproversInput) -> ApproverResolution:
        requester = self._store.get_person(inp.requester.id)
        if requester is None or not requester.active:
            raise ApplicationError(
                f"{inp.requester.email} is not an active person in the directory",
                type="RequesterNotActive",
                non_retryable=True,
            )
        eligible: dict[str, PersonRef] = {}
        for group in inp.approver_groups:
            for person in self._store.group_members(group):
                if person.id != requester.id and person.active:
                    eligible[person.id] = person.ref
        auto = next((g for g in inp.auto_approve_groups if g in requester.groups), None)
        return ApproverResolution(
            eligible=sorted(eligible.values(), key=lambda p: p.email), auto_approve_group=auto
        )

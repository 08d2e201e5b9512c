"""Settling a campaign's items after a stage closes, and applying the revocations — partition by partition.

All of one person's items share a partition (``domain.campaigns.partition``), so their revocations in hoop
(whose ``PUT /users`` replaces the whole user) happen one after the other in one activity, never in
parallel. Each revocation is read back in hoop and the identity provider before the item is marked revoked;
one that cannot be applied gets a remediation record and stays open in the evidence.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Literal

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.campaign_base import CampaignBase, PartitionInput, PartitionResult, StorePeople
from activities.standing_access import GroupSource, RevokeMembershipInput
from domain.campaign_decisions import ItemDecision, default_decision
from domain.campaign_report import Revocation
from domain.campaign_spec import CampaignSpec
from domain.campaign_state import ItemOutcome
from domain.campaigns import (
    CampaignItem,
    People,
    SubjectKind,
    assign_reviewer,
)
from domain.identity import PersonRef
from integrations.gateway import GatewayError, GatewayNotFoundError, GatewayTransientError
from integrations.jira_tickets import JiraError
from store.campaigns import Settled, StoredItem, outcome_update

GIVE_UP_AFTER_ATTEMPTS = 5
"""A partition's revocations still failing transiently after this many attempts get a remediation record."""


class CampaignSettlement(CampaignBase):
    @activity.defn(name="campaign_settle_partition")
    async def settle_partition(self, inp: PartitionInput) -> PartitionResult:
        """After a stage closed: revokes end an item's review; keeps and undecided items move to the next
        stage's reviewer — or, after the last stage, keeps are kept and the default decides the rest. A
        page's outcomes (and the defaults behind them) are written in one transaction."""
        spec, _ = await self._spec(inp.campaign_id)
        people = StorePeople(self._store)
        counts: dict[str, int] = {}
        async for page in self._pages(inp, ItemOutcome.OPEN, stage=inp.stage):
            settled: list[Settled] = []
            defaults: list[ItemDecision] = []
            for item in page:
                outcome = await self._settle(inp, spec, people, item, settled, defaults)
                counts[outcome] = counts.get(outcome, 0) + 1
                activity.heartbeat(item.id)  # a move to the next stage is written item by item
            await asyncio.to_thread(self._store.settle_items, inp.campaign_id, settled, defaults)
        return PartitionResult(counts=counts)

    async def _pages(
        self, inp: PartitionInput, outcome: ItemOutcome, *, stage: int | None = None
    ) -> AsyncIterator[list[StoredItem]]:
        """The partition's items with ``outcome``, page by page, each page read after the previous one was
        worked on (items it changed are not read again)."""
        after = ""
        while page := await asyncio.to_thread(
            self._store.items,
            inp.campaign_id,
            after=after,
            stage=stage,
            outcome=outcome,
            partition=inp.partition,
        ):
            yield page
            after = page[-1].id

    async def _settle(
        self,
        inp: PartitionInput,
        spec: CampaignSpec,
        people: People,
        item: StoredItem,
        settled: list[Settled],
        defaults: list[ItemDecision],
    ) -> str:
        """What becomes of ``item``: an outcome added to ``settled`` (and ``defaults``), written with its
        page, or a move to the next stage's reviewer, written now."""
        if item.verdict == "revoke":
            settled.append(Settled(item.id, ItemOutcome.REVOKE))
            return "revoke"
        if not inp.final:
            assignment = assign_reviewer(item, inp.stage + 1, spec, people)
            await asyncio.to_thread(self._store.reassign, inp.campaign_id, item.id, assignment)
            return "next_stage"
        if item.verdict == "keep":
            settled.append(Settled(item.id, ItemOutcome.KEPT))
            return "kept"
        verdict, basis = default_decision(item, spec)
        defaults.append(
            ItemDecision(
                item_id=item.id,
                stage=inp.stage,
                verdict=verdict,
                actor=None,
                decided_at=datetime.now(UTC),
                default=True,
                default_basis=basis,
            )
        )
        outcome = ItemOutcome.KEPT if verdict == "keep" else ItemOutcome.REVOKE
        settled.append(Settled(item.id, outcome, verdict))
        return f"default_{verdict}"

    @activity.defn(name="campaign_apply_partition")
    async def apply_partition(self, inp: PartitionInput) -> PartitionResult:
        """Apply the partition's revocations one item after the other, each read back; an item that cannot
        be revoked gets a remediation record and stays open in the evidence."""
        counts: dict[str, int] = {}
        async for page in self._pages(inp, ItemOutcome.REVOKE):
            for item in page:
                revocation = await self._revoke(inp.campaign_id, item)
                outcome = ItemOutcome.REVOKED if revocation.status == "applied" else ItemOutcome.FAILED
                await self._ledger(
                    f"campaign.item_{outcome.value}",
                    inp.campaign_id,
                    f"apply:{item.id}",
                    {"item": item.id, "subject": item.subject.name, **revocation.model_dump(mode="json")},
                    with_record=outcome_update(inp.campaign_id, item.id, outcome, revocation=revocation),
                )
                counts[outcome.value] = counts.get(outcome.value, 0) + 1
                activity.heartbeat(item.id)
        return PartitionResult(counts=counts)

    async def _revoke(self, campaign_id: str, item: StoredItem) -> Revocation:
        access, subject = item.access, item.subject
        kind = KEY_KINDS.get(subject.kind)
        if kind is not None and access.group is not None and self._gateway is not None:
            return await self._revoke_key(campaign_id, item, kind, access.group)
        if subject.kind is SubjectKind.SERVICE_ACCOUNT and access.group is not None and self._gateway:
            return await self._revoke_service_account(campaign_id, item, access.group)
        if subject.kind is SubjectKind.MACHINE_IDENTITY and access.connections and self._gateway:
            return await self._unbind_machine_identity(campaign_id, item, access.connections)
        if not subject.is_person or access.group is None:
            return await self._remediation(
                campaign_id,
                item,
                f"removing {subject.kind.value.replace('_', ' ')} access is not automated: remove "
                f"{subject.name}'s {access.describe()} in hoop by hand",
            )
        source = GroupSource.IDP if any(s.value == "scim" for s in access.sources) else GroupSource.GATEWAY
        request = RevokeMembershipInput(
            person=PersonRef(id=subject.id, email=subject.name),
            group=access.group,
            source=source,
            reason=f"campaign {campaign_id}: revoked",
            subject=f"{campaign_id}:{item.id}",
        )
        try:
            result = await self._revoker.revoke_membership(request)
        except ApplicationError as exc:
            if exc.non_retryable or activity.info().attempt >= GIVE_UP_AFTER_ATTEMPTS:
                return await self._remediation(campaign_id, item, exc.message)
            raise
        return Revocation(
            status="applied",
            systems=("scim", "hoop") if result.removed_in_idp is not None else ("hoop",),
            applied_at=datetime.now(UTC),
            read_back=(
                f"hoop: not in {access.group}"
                + ("; identity provider: not a member" if result.removed_in_idp is not None else "")
            ),
            sessions_killed=tuple(k.id for k in result.sessions_killed),
        )

    async def _revoke_key(
        self, campaign_id: str, item: StoredItem, kind: Literal["api_keys", "ai_agents"], group: str
    ) -> Revocation:
        """An API key or AI agent loses the group; with no group left it is revoked. Read back either way."""
        assert self._gateway is not None
        name = item.subject.name
        try:
            current = next((k for k in await self._gateway.list_identity_keys(kind) if k.name == name), None)
            if current is None or current.status != "active":
                state = "gone" if current is None else current.status
                return Revocation(
                    status="applied", systems=("hoop",), applied_at=datetime.now(UTC), read_back=state
                )
            left = [g for g in current.groups if g != group]
            if left:
                after = await self._gateway.set_identity_key_groups(kind, name, left)
                read_back = f"hoop {KEY_NOUNS[kind]} {name}: groups {', '.join(after.groups)}"
            else:
                after = await self._gateway.revoke_identity_key(kind, name)
                read_back = f"hoop {KEY_NOUNS[kind]} {name}: {after.status} (no group left)"
        except GatewayError as exc:
            if isinstance(exc, GatewayTransientError) and activity.info().attempt < GIVE_UP_AFTER_ATTEMPTS:
                raise ApplicationError(exc.message, type="GatewayTransient") from exc
            return await self._remediation(campaign_id, item, exc.message)
        return Revocation(
            status="applied", systems=("hoop",), applied_at=datetime.now(UTC), read_back=read_back
        )

    async def _revoke_service_account(self, campaign_id: str, item: StoredItem, group: str) -> Revocation:
        """A service account loses the group (hoop's PUT replaces every group: read, modify, write); with no
        group left it is also set inactive, so it cannot use hoop at all. Read back either way."""
        assert self._gateway is not None
        subject = item.subject.name
        try:
            current = next(
                (a for a in await self._gateway.list_service_accounts() if a.subject == subject), None
            )
            if current is None:
                return Revocation(
                    status="applied", systems=("hoop",), applied_at=datetime.now(UTC), read_back="gone"
                )
            left = [g for g in current.groups if g != group]
            if left == current.groups and (left or current.status == "inactive"):
                read_back = f"hoop service account {subject}: not in {group} ({current.status})"
                return Revocation(
                    status="applied", systems=("hoop",), applied_at=datetime.now(UTC), read_back=read_back
                )
            wanted = current.model_copy(
                update={"groups": left, "status": current.status if left else "inactive"}
            )
            after = await self._gateway.put_service_account(wanted)
            if left:
                read_back = (
                    f"hoop service account {subject}: groups {', '.join(after.groups)} ({after.status})"
                )
            else:
                read_back = f"hoop service account {subject}: {after.status} (no group left)"
        except GatewayError as exc:
            return await self._gateway_failure(campaign_id, item, exc)
        return Revocation(
            status="applied", systems=("hoop",), applied_at=datetime.now(UTC), read_back=read_back
        )

    async def _unbind_machine_identity(
        self, campaign_id: str, item: StoredItem, connections: tuple[str, ...]
    ) -> Revocation:
        """A machine identity is unbound from the item's connections: hoop's PUT (read, modify, write the
        whole identity) revokes the credential of each connection no longer named. A connection one of its
        attributes links keeps its credential whatever the names say (hoop's update revokes only
        connections dropped from the names), and an attribute links other connections too: that part gets
        a remediation record, after the rest was unbound."""
        assert self._gateway is not None
        name = item.subject.name
        try:
            try:
                current = await self._gateway.get_machine_identity(name)
            except GatewayNotFoundError:
                return Revocation(
                    status="applied", systems=("hoop",), applied_at=datetime.now(UTC), read_back="gone"
                )
            drop = set(connections)
            left = [c for c in current.connection_names if c not in drop]
            if left != current.connection_names:
                current = await self._gateway.put_machine_identity(
                    current.model_copy(update={"connection_names": left})
                )
            linked = sorted(drop & set(current.attribute_connections))
            bound = ", ".join(current.connection_names) or "no connection by name"
        except GatewayError as exc:
            return await self._gateway_failure(campaign_id, item, exc)
        if linked:
            via = ", ".join(current.attributes)
            return await self._remediation(
                campaign_id,
                item,
                f"hoop machine identity {name} still reaches {', '.join(linked)} through its attributes "
                f"({via}), and hoop's update revokes a credential only for a connection dropped from its "
                "names: unlink the attribute from the connection in hoop by hand, which revokes it "
                f"(bound by name now: {bound})",
            )
        return Revocation(
            status="applied",
            systems=("hoop",),
            applied_at=datetime.now(UTC),
            read_back=f"hoop machine identity {name}: bound to {bound}",
        )

    async def _gateway_failure(self, campaign_id: str, item: StoredItem, exc: GatewayError) -> Revocation:
        """A transient failure is retried (until ``GIVE_UP_AFTER_ATTEMPTS``); anything else, or one still
        failing then, gets a remediation record."""
        if isinstance(exc, GatewayTransientError) and activity.info().attempt < GIVE_UP_AFTER_ATTEMPTS:
            raise ApplicationError(exc.message, type="GatewayTransient") from exc
        return await self._remediation(campaign_id, item, exc.message)

    async def _remediation(self, campaign_id: str, item: CampaignItem, error: str) -> Revocation:
        """A revocation that cannot be applied automatically: a Jira ticket for whoever can remove the access
        by hand (one per item: retried, it finds its own ticket), or a record in the evidence without Jira.
        The item stays open in the evidence until someone resolves it."""
        remediation = f"remediation record {campaign_id}:{item.id}"
        if self._tickets is not None:
            tickets = self._tickets
            description = (
                f"Campaign {campaign_id} decided to revoke {item.subject.name}'s {item.access.describe()}, "
                f"but grantflow could not apply it: {error}\n\nRemove the access by hand, then close this "
                "ticket. The campaign's evidence lists this item as not revoked until then."
            )
            try:
                remediation = await asyncio.to_thread(
                    lambda: tickets().open_ticket(
                        label=f"{campaign_id}-{item.id}",
                        summary=f"Revoke by hand: {item.subject.name}, {item.access.describe()}",
                        description=description,
                    )
                )
            except JiraError as exc:
                remediation += f" (the Jira ticket could not be opened: {exc.message})"
        return Revocation(status="remediation", systems=(), error=error, remediation=remediation)


KEY_NOUNS = {"api_keys": "API key", "ai_agents": "AI agent"}
KEY_KINDS: dict[SubjectKind, Literal["api_keys", "ai_agents"]] = {
    SubjectKind.API_KEY: "api_keys",
    SubjectKind.AI_AGENT: "ai_agents",
}

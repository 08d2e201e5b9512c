"""Identity sync over SCIM: list the provider, work out what changed, apply it in one transaction.

Safety: the provider is listed completely before anything is written; an error or an inconsistent
page raises (the previous state stays intact); a sync that trips :func:`domain.directory_sync.guard`
(mass deactivation, an emptied group) applies nothing, writes an alert to the ledger and says why.
The activity returns which running requests must hear about it; the workflow sends those signals.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.directory_sync import DirectoryChanges, GroupChange, Leaver, ManagerChange, diff_directory, guard
from domain.identity import Person, PersonRef
from domain.requests import ApproversChanged, PersonLeft, RequestView
from integrations.scim import (
    DirectoryGroup,
    DirectoryUser,
    ScimDirectory,
    ScimError,
    ScimFilterUnsupported,
    ScimPermanentError,
    ScimTransientError,
)
from store import Store

log = logging.getLogger("grantflow.sync")

WATERMARK = "scim.watermark"
LAST_FULL = "scim.last_full_sync"
# Listings since the watermark overlap a little, so a clock skew between provider and us loses nothing.
WATERMARK_OVERLAP = timedelta(minutes=2)


class SyncInput(BaseModel):
    sync_id: str
    full: bool = False
    dry_run: bool = False


class RequestSignal(BaseModel):
    """What one running request must be told: a person left, or its eligible approvers changed."""

    request_id: str
    person_left: PersonLeft | None = None
    approvers_changed: ApproversChanged | None = None


class SyncReport(BaseModel):
    sync_id: str
    mode: str  # full or incremental
    dry_run: bool
    applied: bool
    blocked_reason: str | None = None
    users_listed: int
    groups_listed: int
    counts: dict[str, int]
    joiners: list[PersonRef] = Field(default_factory=list)
    leavers: list[Leaver] = Field(default_factory=list)
    movers: list[ManagerChange] = Field(default_factory=list)
    group_changes: list[GroupChange] = Field(default_factory=list)
    signals: list[RequestSignal] = Field(default_factory=list)
    """For a dry run: the requests that *would* be told."""


def _person(user: DirectoryUser) -> Person:
    return Person(
        id=user.id,
        email=user.primary_email,
        display_name=user.display_name or "",
        manager_id=user.manager_id,
        active=user.active,
    )


class IdentitySyncActivities:
    def __init__(
        self, store: Store, directory: ScimDirectory | None, *, max_deactivation_share: float = 0.10
    ) -> None:
        self._store = store
        self._directory = directory
        self._max_share = max_deactivation_share

    @activity.defn(name="sync_directory")
    async def sync_directory(self, inp: SyncInput) -> SyncReport:
        try:
            return await self._sync(inp)
        except ScimTransientError as exc:
            delay = timedelta(seconds=exc.retry_after) if exc.retry_after is not None else None
            raise ApplicationError(
                f"the SCIM provider failed: {exc}", type="ScimTransient", next_retry_delay=delay
            ) from exc
        except ScimPermanentError as exc:
            raise ApplicationError(
                f"the SCIM provider refused: {exc}", type="ScimPermanent", non_retryable=True
            ) from exc
        except ScimError as exc:
            raise ApplicationError(f"the SCIM provider failed: {exc}", type="ScimError") from exc

    async def _sync(self, inp: SyncInput) -> SyncReport:
        if self._directory is None:
            raise ApplicationError(
                "no SCIM identity provider is configured (set GRANTFLOW_SCIM_URL and GRANTFLOW_SCIM_TOKEN)",
                type="NotConfigured",
                non_retryable=True,
            )
        started = datetime.now(UTC)
        capabilities = await self._directory.capabilities()
        watermark_text = await asyncio.to_thread(self._store.directory_state, WATERMARK)
        full = inp.full or watermark_text is None or not capabilities.filter_supported
        since = None if full else datetime.fromisoformat(watermark_text) - WATERMARK_OVERLAP  # type: ignore[arg-type]
        try:
            users, groups = await self._list(since)
        except ScimFilterUnsupported:
            full, since = True, None
            users, groups = await self._list(None)

        current = await asyncio.to_thread(self._store.list_people)
        incoming = [_person(u) for u in users]
        group_members = {g.display_name: list(g.member_ids) for g in groups}
        changes = diff_directory(current, incoming, group_members, full=full)
        active_before = sum(1 for p in current if p.active)
        blocked = guard(changes, active_before, self._max_share)

        report = SyncReport(
            sync_id=inp.sync_id,
            mode="full" if full else "incremental",
            dry_run=inp.dry_run,
            applied=False,
            blocked_reason=blocked,
            users_listed=len(users),
            groups_listed=len(groups),
            counts=changes.counts(),
            joiners=changes.joiners,
            leavers=changes.leavers,
            movers=changes.movers,
            group_changes=changes.group_changes,
        )
        if inp.dry_run:
            report.signals = await asyncio.to_thread(self._signals, inp.sync_id, changes, dry_run=True)
            return report
        if blocked is not None:
            log.error("identity sync %s blocked: %s", inp.sync_id, blocked)
            await asyncio.to_thread(
                self._store.append_ledger,
                kind="directory.sync_blocked",
                subject="directory",
                actor="identity sync",
                channel="scim",
                data={"reason": blocked, "counts": changes.counts(), "mode": report.mode},
                idempotency_key=f"{inp.sync_id}:blocked",
            )
            return report

        await asyncio.to_thread(self._apply, inp, changes, groups, started, full)
        report.applied = True
        report.signals = await asyncio.to_thread(self._signals, inp.sync_id, changes, dry_run=False)
        return report

    async def _list(self, since: datetime | None) -> tuple[list[DirectoryUser], list[DirectoryGroup]]:
        assert self._directory is not None
        users = await self._directory.list_users(modified_since=since, on_page=self._heartbeat)
        groups = await self._directory.list_groups(modified_since=since)
        return users, groups

    @staticmethod
    def _heartbeat(done: int, total: int) -> None:
        activity.heartbeat({"listed": done, "total": total})

    def _apply(
        self,
        inp: SyncInput,
        changes: DirectoryChanges,
        groups: list[DirectoryGroup],
        started: datetime,
        full: bool,
    ) -> None:
        state = {WATERMARK: started.isoformat()}
        if full:
            state[LAST_FULL] = started.isoformat()
        self._store.apply_directory_changes(
            upserts=changes.upserts,
            leavers=[(leaver.person.id, leaver.reason.value) for leaver in changes.leavers],
            memberships=changes.memberships,
            group_ids={g.display_name: g.id for g in groups},
            state=state,
            at=started,
        )
        self._store.append_ledger(
            kind="directory.synced",
            subject="directory",
            actor="identity sync",
            channel="scim",
            data={
                "mode": "full" if full else "incremental",
                "counts": changes.counts(),
                "joiners": [p.email for p in changes.joiners],
                "movers": [m.person.email for m in changes.movers],
                "groups": [g.group for g in changes.group_changes],
            },
            idempotency_key=f"{inp.sync_id}:synced",
        )
        for leaver in changes.leavers:
            self._store.append_ledger(
                kind="person.left",
                subject=leaver.person.id,
                actor="identity sync",
                channel="scim",
                data={"email": leaver.person.email, "reason": leaver.reason.value},
                idempotency_key=f"{inp.sync_id}:left:{leaver.person.id}",
            )

    def _signals(self, sync_id: str, changes: DirectoryChanges, *, dry_run: bool) -> list[RequestSignal]:
        """Leavers first (their requests end or are cancelled; their votes are withdrawn), then new
        eligible sets for requests whose approver groups changed. Signals to one workflow arrive in
        the order sent."""
        leavers = {leaver.person.id: leaver for leaver in changes.leavers}
        changed_groups = {g.group for g in changes.group_changes}
        signals: list[RequestSignal] = []
        for view in self._store.open_requests():
            for person in self._leavers_in(view, leavers):
                leaver = leavers[person]
                signals.append(
                    RequestSignal(
                        request_id=view.id,
                        person_left=PersonLeft(
                            person=leaver.person, reason=leaver.reason.value, sync_id=sync_id
                        ),
                    )
                )
            if dry_run or not changed_groups & set(view.policy.approver_groups):
                continue
            eligible = self._eligible(view)
            if {p.id for p in eligible} != {p.id for p in view.eligible_approvers}:
                signals.append(
                    RequestSignal(
                        request_id=view.id,
                        approvers_changed=ApproversChanged(eligible=eligible, sync_id=sync_id),
                    )
                )
        return signals

    @staticmethod
    def _leavers_in(view: RequestView, leavers: dict[str, Leaver]) -> list[str]:
        involved = [view.requester.id] + [p.id for p in view.eligible_approvers]
        return [pid for pid in involved if pid in leavers]

    def _eligible(self, view: RequestView) -> list[PersonRef]:
        eligible: dict[str, PersonRef] = {}
        for group in view.policy.approver_groups:
            for person in self._store.group_members(group):
                if person.id != view.requester.id:
                    eligible[person.id] = person.ref
        return sorted(eligible.values(), key=lambda p: p.email)

"""Identity sync over SCIM: list the provider, work out what changed, apply it in one transaction.

Safety: the provider is listed completely before anything is written; an error or an inconsistent
page raises (the previous state stays intact); a sync that trips :func:`domain.directory_sync.guard`
(mass deactivation, an emptied group) applies nothing, writes an alert to the ledger and says why.
The activity returns which running requests must hear about it; the workflow sends those signals.

Leavers and re-activations are then made effective in the gateway at once (``apply_in_gateway``, run by
the workflow only after a sync was applied, so never for a dry run nor one the guard stopped): a leaver's
hoop user is set ``inactive`` (hoop refuses them at connect from then on) and every session they have open,
on any connection, is killed; a person re-activated in the IdP is set ``active`` again. Both read back;
every step is a ledger entry. Someone who never signed in to hoop has nothing there to change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.gateway_people import GatewayWriteNotVerified, kill_open_sessions, set_user_status
from activities.heartbeat import heartbeating
from domain.directory_sync import (
    REPORT_DETAIL_LIMIT,
    DirectoryChanges,
    GatewayChanges,
    Leaver,
    RequestSignal,
    SyncInput,
    SyncReport,
    diff_directory,
    guard,
)
from domain.identity import Person, PersonRef
from domain.requests import ApproversChanged, PersonLeft, RequestView
from integrations.gateway import Gateway, GatewayError, GatewayTransientError
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


class GatewayChangesInput(BaseModel):
    sync_id: str
    leavers: list[Leaver] = Field(default_factory=list)
    reactivated: list[PersonRef] = Field(default_factory=list)
    final_attempt: int
    """The retry policy's last attempt: a transient failure then is escalated instead of retried."""


def _person(user: DirectoryUser) -> Person:
    return Person(
        id=user.id,
        email=user.primary_email,
        display_name=user.display_name or "",
        manager_id=user.manager_id,
        active=user.active,
        department=user.department,
        employment_type=user.user_type.lower(),
    )


class IdentitySyncActivities:
    def __init__(
        self,
        store: Store,
        directory: ScimDirectory | None,
        *,
        max_deactivation_share: float = 0.10,
        gateway: Gateway | None = None,
    ) -> None:
        self._store = store
        self._directory = directory
        self._max_share = max_deactivation_share
        self._gateway = gateway

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

    @activity.defn(name="sync_apply_in_gateway")
    async def apply_in_gateway(self, inp: GatewayChangesInput) -> GatewayChanges:
        """Make an applied sync's leavers and re-activations effective in the gateway now. Idempotent:
        a retry finds users already changed and sessions already killed, and its ledger entries are the
        first attempt's (same idempotency keys)."""
        if self._gateway is None:
            raise ApplicationError(
                "no gateway is configured to deactivate leavers in", type="NotConfigured", non_retryable=True
            )
        try:
            # a leaver with many sessions takes several hoop calls: heartbeat while any of them is slow
            return await heartbeating(self._apply_in_gateway(inp, self._gateway))
        except GatewayError as exc:
            transient = isinstance(exc, GatewayTransientError)
            if isinstance(exc, GatewayTransientError) and activity.info().attempt < inp.final_attempt:
                delay = timedelta(seconds=exc.retry_after) if exc.retry_after else None
                raise ApplicationError(exc.message, type="GatewayTransient", next_retry_delay=delay) from exc
            await asyncio.to_thread(
                self._store.append_ledger,
                kind="gateway.sync_escalated",
                subject="directory",
                actor="identity sync",
                channel="gateway",
                data={
                    "sync_id": inp.sync_id,
                    "error": exc.message,
                    "attempts": activity.info().attempt,
                    "leavers": [leaver.person.email for leaver in inp.leavers],
                    "reactivated": [p.email for p in inp.reactivated],
                },
                idempotency_key=f"{inp.sync_id}:gateway:escalated",
            )
            log.error("identity sync %s could not update the gateway: %s", inp.sync_id, exc.message)
            raise ApplicationError(
                f"the gateway was not updated for this sync's leavers: {exc.message}",
                type="GatewayTransient" if transient else "GatewayRefused",
                non_retryable=True,
            ) from exc

    async def _apply_in_gateway(self, inp: GatewayChangesInput, gateway: Gateway) -> GatewayChanges:
        result = GatewayChanges()
        for leaver in inp.leavers:
            person = leaver.person
            # Inactive first: hoop then refuses any new session, so none opens behind the kill listing.
            change = await set_user_status(gateway, person.email, "inactive")
            await self._ledger(
                inp.sync_id,
                "gateway.user_deactivated",
                person,
                {"reason": leaver.reason.value, **change.model_dump()},
            )
            if not change.in_gateway:
                result.never_signed_in.append(person.email)
                continue
            result.deactivated.append(person.email)
            kills = await kill_open_sessions(gateway, person.email)
            if kills.open_after:
                raise GatewayWriteNotVerified(
                    f"sessions {', '.join(kills.open_after)} of {person.email} are still open after the kill"
                )
            await self._ledger(inp.sync_id, "gateway.sessions_killed", person, kills.model_dump())
            result.sessions_killed[person.email] = [k.id for k in kills.killed]
            activity.heartbeat({"done": person.email})
        for person in inp.reactivated:
            # Only a user this sync (or an admin) made inactive: an invited one stays as hoop has it.
            change = await set_user_status(gateway, person.email, "active", only_from=("inactive",))
            await self._ledger(inp.sync_id, "gateway.user_reactivated", person, change.model_dump())
            activity.heartbeat({"done": person.email})
            if not change.in_gateway:
                result.never_signed_in.append(person.email)
            elif change.status_after == "active":
                result.reactivated.append(person.email)
        return result

    async def _ledger(self, sync_id: str, kind: str, person: PersonRef, data: dict[str, Any]) -> None:
        await asyncio.to_thread(
            self._store.append_ledger,
            kind=kind,
            subject=person.id,
            actor="identity sync",
            channel="gateway",
            data={"sync_id": sync_id, "email": person.email, **data},
            idempotency_key=f"{sync_id}:{kind}:{person.id}",
        )

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

        current = await heartbeating(asyncio.to_thread(self._store.list_people))
        incoming = [_person(u) for u in users]
        group_members = {g.display_name: list(g.member_ids) for g in groups}
        changes = diff_directory(current, incoming, group_members, full=full)
        active_before = sum(1 for p in current if p.active)
        inactive_before = {p.id for p in current if not p.active}
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
            joiners=changes.joiners[:REPORT_DETAIL_LIMIT],
            leavers=changes.leavers,
            reactivated=[p for p in changes.joiners if p.id in inactive_before],
            movers=changes.movers,
            department_changes=changes.department_changes,
            group_changes=[
                g.cut_short(REPORT_DETAIL_LIMIT) for g in changes.group_changes[:REPORT_DETAIL_LIMIT]
            ],
            details_cut_short=max(len(changes.joiners), len(changes.group_changes)) > REPORT_DETAIL_LIMIT,
        )
        if inp.dry_run:
            report.signals = await heartbeating(
                asyncio.to_thread(self._signals, inp.sync_id, changes, dry_run=True)
            )
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

        # One transaction for the whole directory (and the ledger entries after it): minutes for a large
        # provider, longer than the heartbeat timeout, so the wait heartbeats.
        await heartbeating(asyncio.to_thread(self._apply, inp, changes, groups, started, full))
        report.applied = True
        report.signals = await heartbeating(
            asyncio.to_thread(self._signals, inp.sync_id, changes, dry_run=False)
        )
        return report

    async def _list(self, since: datetime | None) -> tuple[list[DirectoryUser], list[DirectoryGroup]]:
        assert self._directory is not None
        # Heartbeats after every page, and while a page (a group with all its members) is slow to come.
        users = await heartbeating(
            self._directory.list_users(modified_since=since, on_page=self._listed("users"))
        )
        groups = await heartbeating(
            self._directory.list_groups(modified_since=since, on_page=self._listed("groups"))
        )
        return users, groups

    @staticmethod
    def _listed(what: str) -> Callable[[int, int], None]:
        def heartbeat(done: int, total: int) -> None:
            activity.heartbeat({"listing": what, "listed": done, "total": total})

        return heartbeat

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

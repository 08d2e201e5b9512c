"""The jit benchmark's baseline: one bare Temporal workflow per grant, of the same shape as a JIT grant's
life in ``AccessRequestWorkflow`` once approved, making the same gateway calls, and nothing else.

Same shape: an activity writes the grant (``HoopGateway.provision_grant``, which looks for an earlier grant
under the correlation id, provisions and reads the grant back, as grantflow's ``grant_access`` does), a
durable timer until the grant's ``revoke_at`` as hoop reports it, and one activity at the end that revokes
the grant (``revoke_grant``: PUT then read back) and kills the person's session (``kill_session``). The
session's id is known to the baseline (the benchmark opened it and keeps it in ``BareSessions``), so it does
not look for it; grantflow has to (hoop links no session to a grant). What it leaves out is what grantflow
adds: the policy, approvers, access checks, the store, the ledger, notifications, the read-backs of
sessions and grants, and its escalations.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from integrations.gateway import Gateway

RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))


class BareGrantInput(BaseModel):
    grant_id: str
    user_email: str
    connection: str
    duration_seconds: int


class BareGrant(BaseModel):
    review_id: str
    revoke_at: datetime


class BareEndInput(BaseModel):
    user_email: str
    connection: str
    review_id: str


BareSessions = dict[tuple[str, str], str]
"""(user email, connection) → the id of the session the benchmark opened under the grant."""


class BareJitActivities:
    def __init__(self, gateway: Gateway, sessions: BareSessions) -> None:
        self._gateway = gateway
        self._sessions = sessions

    @activity.defn(name="bare_jit_grant")
    async def grant(self, inp: BareGrantInput) -> BareGrant:
        grant = await self._gateway.provision_grant(
            user_email=inp.user_email,
            connection=inp.connection,
            duration_seconds=inp.duration_seconds,
            correlation_id=f"{inp.grant_id}:grant:0",
        )
        assert grant.revoke_at is not None
        return BareGrant(review_id=grant.review_id, revoke_at=grant.revoke_at)

    @activity.defn(name="bare_jit_end")
    async def end(self, inp: BareEndInput) -> None:
        await self._gateway.revoke_grant(inp.review_id)
        session_id = self._sessions.get((inp.user_email, inp.connection))
        if session_id is not None:
            await self._gateway.kill_session(session_id)


@workflow.defn
class BareJitWorkflow:
    @workflow.run
    async def run(self, inp: BareGrantInput) -> None:
        grant = await workflow.execute_activity(
            "bare_jit_grant",
            inp,
            result_type=BareGrant,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RETRY,
        )
        remaining = grant.revoke_at - workflow.now()
        if remaining > timedelta(0):
            await workflow.sleep(remaining)
        await workflow.execute_activity(
            "bare_jit_end",
            BareEndInput(user_email=inp.user_email, connection=inp.connection, review_id=grant.review_id),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RETRY,
        )

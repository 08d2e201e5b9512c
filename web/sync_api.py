"""``POST /api/v1/sync``: run an identity sync now (admin), as ``grantflow sync`` does.

A real sync runs under the fixed workflow id ``identity-sync`` (a second caller while one runs waits
for the same run instead of starting another); a dry run gets its own id and changes nothing.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict
from temporalio.common import WorkflowIDConflictPolicy

from domain.directory_sync import SyncInput, SyncReport
from web.actors import forbid
from web.callers import API_PREFIX, AUTH_ERRORS, Caller
from web.context import context_of
from web.service import Unavailable
from workflows.identity_sync import SYNC_WORKFLOW_ID, IdentitySyncWorkflow

router = APIRouter(prefix=API_PREFIX, tags=["identity sync"])


class SyncBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: bool = False
    full: bool = False


@router.post(
    "/sync", response_model=SyncReport, responses=AUTH_ERRORS, summary="Run an identity sync now (admin)"
)
async def run_sync(request: Request, caller: Caller, body: SyncBody | None = None) -> SyncReport:
    """Lists the SCIM provider and applies joiners, movers, leavers and group changes (or, with
    ``dry_run``, reports what would happen and changes nothing)."""
    if not caller.is_admin:
        await forbid(
            request, caller, f"token {caller.name!r} is not an admin token; running a sync needs one"
        )
    body = body or SyncBody()
    context = context_of(request)
    workflow_id = f"identity-sync-dry-run-{uuid.uuid4().hex[:8]}" if body.dry_run else SYNC_WORKFLOW_ID
    try:
        return await context.client.execute_workflow(
            IdentitySyncWorkflow.run,
            SyncInput(sync_id="", full=body.full, dry_run=body.dry_run),
            id=workflow_id,
            task_queue=context.settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
    except Exception as exc:
        raise Unavailable(f"the identity sync did not complete: {exc}") from exc

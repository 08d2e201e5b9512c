"""Every request's workflow history stays bounded, however long its access lives (issue #9, item 4).

Two things bound it: the policy (``min_extension``, ``max_extensions``: a request can ask for only so
many extensions) and continue-as-new (an ACTIVE request whose history reaches ``CONTINUE_AS_NEW_AFTER``
events goes on in a new run carrying its state, so renewals every 48 h never pile up in one history).
The long test runs the worst case the policy allows on the time-skipping server and counts the events
of every run.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowHistory,
    WorkflowUpdateFailedError,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from domain.policy import MAX_EXTENSIONS_LIMIT, PolicyError, RolePolicy, parse_policies
from domain.requests import (
    AccessRequestInput,
    DecisionInput,
    EndReason,
    ExtendInput,
    RequestStatus,
    RequestView,
    Verdict,
)
from tests.stack import Stack
from workflows.access_request import AccessRequestWorkflow
from workflows.request_policies import CONTINUE_AS_NEW_AFTER

HISTORY_BOUND = 2000

Handle = WorkflowHandle[AccessRequestWorkflow, RequestView]


def _policy(**fields: object) -> dict[str, object]:
    role = {"connection": "c", "approver_groups": ["g"], "max_duration": "1h", "max_cumulative": "4h"}
    return {"resources": {"r": {"roles": {"x": {**role, **fields}}}}}


def test_the_extension_limits_have_defaults_and_are_validated() -> None:
    policy = RolePolicy(connection="c", approver_groups=["g"])
    assert policy.extension_step == timedelta(minutes=15) and policy.max_extensions == 10
    brief = RolePolicy(connection="c", approver_groups=["g"], max_duration=timedelta(minutes=10))
    assert brief.extension_step == timedelta(seconds=150)  # a quarter of a short cumulative maximum
    over = MAX_EXTENSIONS_LIMIT + 1
    with pytest.raises(
        PolicyError, match=rf"resources\.r\.roles\.x\.max_extensions: .*{MAX_EXTENSIONS_LIMIT}"
    ):
        parse_policies(_policy(max_extensions=over))
    with pytest.raises(PolicyError, match=r"min_extension \(4h\) leaves no room to extend"):
        parse_policies(_policy(min_extension="4h"))
    parse_policies(_policy(min_extension="4h", max_extensions=0))  # no extensions: no step to check
    with pytest.raises(PolicyError, match="max_extensions"):
        parse_policies(_policy(max_extensions=-1))


async def _start(stack: Stack, policy: RolePolicy, duration: timedelta) -> Handle:
    """erin's request for warehouse read, presented in every channel: the worker's presentation activity
    runs for each change as in production (this worker has no channel configured, so it reaches nobody)."""
    actor = stack.actor("erin@example.com")
    request_id = f"req-{uuid.uuid4().hex[:12]}"
    inp = AccessRequestInput(
        request_id=request_id,
        requester=actor.person,
        submitted_by=actor,
        resource="warehouse",
        role="read",
        policy=policy,
        duration=duration,
        reason="INC-9",
        created_at=await stack.now(),
        timings=stack.timings,
        channels=["slack", "jira", "email"],
    )
    await stack.env.client.start_workflow(
        AccessRequestWorkflow.run, inp, id=request_id, task_queue=stack.task_queue
    )
    # Always the newest run: updates and queries must reach the request across continue-as-new.
    return stack.env.client.get_workflow_handle_for(AccessRequestWorkflow.run, request_id)


def _decision(stack: Stack, email: str, verdict: Verdict) -> DecisionInput:
    return DecisionInput(actor=stack.actor(email), verdict=verdict, reason="r")


async def _runs(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """The history of each run of the workflow, first run first (following continue-as-new)."""
    first = await client.get_workflow_handle(workflow_id).describe()
    run_id: str | None = first.raw_description.workflow_execution_info.first_run_id or first.run_id
    runs = []
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs.append(history)
        last = history.events[-1]
        if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
        else:
            run_id = None
    return runs


async def test_the_longest_request_a_policy_allows_stays_under_2000_events_per_run(time_stack: Stack) -> None:
    stack = time_stack
    _, warehouse = stack.policies.role("warehouse", "read")
    # The worst case: every extension needs an approval (asked and presented in every channel), as many
    # as any policy may allow, with access long enough to be renewed in 48 h windows for over 100 days.
    policy = warehouse.model_copy(
        update={
            "self_extension": False,
            "max_cumulative": timedelta(days=120),
            "max_extensions": MAX_EXTENSIONS_LIMIT,
            "reminder_before": timedelta(hours=12),
        }
    )
    handle = await _start(stack, policy, timedelta(days=7))
    await stack.wait_for(handle, lambda v: v.approvers_resolved)
    await stack.env.sleep(timedelta(hours=13))  # the approvers are reminded
    await handle.execute_update(
        AccessRequestWorkflow.decide, _decision(stack, "dina@example.com", Verdict.APPROVE)
    )
    await stack.wait_for(handle, lambda v: v.status is RequestStatus.ACTIVE)
    erin = stack.actor("erin@example.com")
    for n in range(MAX_EXTENSIONS_LIMIT):
        await handle.execute_update(
            AccessRequestWorkflow.extend, ExtendInput(actor=erin, by=timedelta(days=5), reason=f"ext {n}")
        )
        verdict = Verdict.DENY if n % 5 == 4 else Verdict.APPROVE  # denied ones count too
        await handle.execute_update(
            AccessRequestWorkflow.decide, _decision(stack, "dina@example.com", verdict)
        )
        await stack.env.sleep(timedelta(days=4))  # renewals happen between the extensions
    view = await handle.query(AccessRequestWorkflow.view)
    assert view.status is RequestStatus.ACTIVE and view.extensions_requested == MAX_EXTENSIONS_LIMIT
    # One more is refused, with the reason; a step below the policy's minimum too.
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            AccessRequestWorkflow.extend, ExtendInput(actor=erin, by=timedelta(days=1))
        )
    assert "asked for 20 extension(s), the most the policy for warehouse read allows" in str(
        refused.value.cause
    )
    for _ in range(30):  # let the access run out (time skips while the test sleeps)
        if (await handle.describe()).status is WorkflowExecutionStatus.COMPLETED:
            break
        await stack.env.sleep(timedelta(days=5))
    result = await handle.result()  # the last run's
    assert result.status is RequestStatus.ENDED and result.end_reason is EndReason.EXPIRED
    assert result.granted_total == timedelta(days=7 + 5 * 16)  # 16 approved, 4 denied
    assert len(result.grants) > 40  # renewed in 48 h windows all along
    runs = await _runs(stack.env.client, handle.id)
    counts = [len(run.events) for run in runs]
    # Observed: three runs of about 1,010, 1,030 and 365 events (one run would hold about 2,400).
    assert len(counts) >= 2, f"never continued as new: {counts}"
    assert max(counts) < HISTORY_BOUND, f"a run's history has {max(counts)} events: {counts}"
    assert all(c < CONTINUE_AS_NEW_AFTER + 100 for c in counts), counts
    # Each run replays on this code, a continued one from the state it was carried over with.
    replayer = Replayer(workflows=[AccessRequestWorkflow], data_converter=pydantic_data_converter)
    for run in runs:
        await replayer.replay_workflow(run)
    # The ledger saw every step once, in order, across the runs.
    kinds = [e.kind for e in stack.store.ledger_entries(subject=handle.id)]
    assert kinds.count("extension.requested") == MAX_EXTENSIONS_LIMIT
    assert kinds.count("extension.applied") == 16 and kinds[-1] == "request.ended"


async def test_an_extension_below_the_minimum_step_is_refused(time_stack: Stack) -> None:
    stack = time_stack
    handle = await stack.start_request("frank@example.com", "pg-prod", "read", timedelta(hours=1))
    await stack.wait_for(handle, lambda v: v.status is RequestStatus.ACTIVE)  # auto-approved (on call)
    frank = stack.actor("frank@example.com")
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            AccessRequestWorkflow.extend, ExtendInput(actor=frank, by=timedelta(minutes=5))
        )
    assert re.search(
        r"an extension of 5m is too short: .* at least 15m \(min_extension\)", str(refused.value.cause)
    )
    await handle.execute_update(
        AccessRequestWorkflow.extend, ExtendInput(actor=frank, by=timedelta(minutes=15))
    )
    await handle.terminate("done")

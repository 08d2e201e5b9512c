"""check_access: hoop's two gates for the requester, asked before anyone is asked to approve and again
before anything is granted (``domain.access`` says what the verdict means).

It fails the request (recorded, and told to the requester) when a JIT grant is not what the person needs,
or when hoop's configuration cannot be read for ``ACCESS_CHECK_DEADLINE``. It never asks approvers,
never grants and never rejects a hoop review: the request does what follows.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.access_check import AccessCheckActivities, CheckAccessInput
    from domain.requests import RequestView
    from workflows.request_ledger import RequestLedger, fail
    from workflows.request_policies import ACCESS_CHECK_DEADLINE, CRITICAL_RETRY, cause_message


async def check_access(view: RequestView, ledger: RequestLedger, *, before_granting: bool) -> bool:
    """hoop's two gates for the requester (``domain.access``): True when a JIT grant is what they need.
    Otherwise the request is FAILED with the sentence saying why (not eligible: the groups that would
    make them so; no review needed: they already have access) and nobody is asked or granted anything.
    A gateway that cannot be read for ``ACCESS_CHECK_DEADLINE`` fails the request the same way."""
    what = f"{view.resource} {view.role}"
    try:
        verdict = await workflow.execute_activity_method(
            AccessCheckActivities.check_access,
            CheckAccessInput(person=view.requester, connection=view.connection),
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=ACCESS_CHECK_DEADLINE,
            retry_policy=CRITICAL_RETRY,
        )
    except ActivityError as err:
        reason = f"could not check {view.requester.email}'s access to {what} in hoop: {cause_message(err)}"
        await ledger.fail(reason, notify=True)
        return False
    view.access_check = verdict
    refusal = verdict.refusal(view.requester.email, what)
    if refusal is None:
        await ledger.record(
            "access.checked",
            data={"before_granting": before_granting, **verdict.model_dump(mode="json")},
        )
        return True
    fail(view, f"before granting: {refusal}" if before_granting else refusal)
    await ledger.record(
        "request.refused",
        data={
            "failure_reason": view.failure_reason,
            "before_granting": before_granting,
            **verdict.model_dump(mode="json"),
        },
    )
    await ledger.notify("closed", [view.requester])
    return False

"""The shared ledger anchor (S3 with Object Lock, against moto's server) and idempotency that drops nothing.

* Anchors are write-once objects in one bucket: each carries an Object Lock retention, every process
  verifies against the same anchor, and a truncation is caught even when every local anchor file is gone.
* ``ledger verify`` reports the anchored head, when it was written and how far the table is ahead of it.
* The anchoring job (LedgerAnchorWorkflow) writes heads, and a failing write alerts in the ledger and log.
* Idempotency: the same key with the same content is a no-op, with other content an error; a request's
  keys carry the workflow run, so a new run of the same workflow id records its own entries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.records import (
    LEDGER_ANCHOR_SUBJECT,
    LedgerAnchorActivities,
    LedgerEvent,
    RecordActivities,
    RecordInput,
    event_content_hash,
)
from configuration.settings import Settings, parse_s3_url
from domain.requests import AccessRequestInput, EndInput, RequestStatus, RequestView
from store import LedgerHead, Store
from store.anchors import S3Anchor
from store.ledger import IdempotencyConflict, content_hash
from store.opening import open_store
from tests.db import TEST_LEDGER_KEY
from tests.rigs.ports import free_port as _free_port
from tests.stack import Stack
from worker import build_worker
from workflows.access_request import AccessRequestWorkflow
from workflows.ledger_anchor import LedgerAnchorInput, LedgerAnchorWorkflow, ensure_ledger_anchoring

pytest_plugins = ["tests.db"]

ACCESS_KEY = "testing"
SECRET_KEY = "testing"  # moto accepts any credentials
REGION = "us-east-1"


# --- moto's S3 server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, started by the test (skipped, saying why, only if it cannot start)."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        pytest.skip(f"moto[server] is not installed ({exc}); pip install '.[test]'")
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    try:
        server.start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"moto's S3 server cannot start on 127.0.0.1:{port}: {exc}")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    return _client(s3_endpoint)


@pytest.fixture
def bucket(s3: Any) -> str:
    """A fresh bucket with Object Lock enabled, as an operator creates it."""
    name = f"grantflow-anchor-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


@pytest.fixture
def anchor(s3: Any, bucket: str) -> S3Anchor:
    return S3Anchor(s3, bucket=bucket, prefix="ledger/", retention=timedelta(days=2))


@pytest.fixture
def anchor_settings(s3_endpoint: str, bucket: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings of one process (its own state folder) anchored in the shared bucket."""

    def make(state: str = "one", **extra: Any) -> Settings:
        return Settings(
            state_dir=tmp_path / state,
            database_url=f"sqlite:///{tmp_path / 'shared.db'}",
            ledger_key=TEST_LEDGER_KEY.decode(),
            ledger_anchor=f"s3://{bucket}/ledger",
            ledger_anchor_endpoint_url=s3_endpoint,
            ledger_anchor_region=REGION,
            ledger_anchor_access_key_id=ACCESS_KEY,
            ledger_anchor_secret_access_key=SECRET_KEY,
            ledger_anchor_retention=timedelta(days=1),
            **extra,
        )

    return make


def append(store: Store, n: int, subject: str = "req-1") -> None:
    for i in range(n):
        store.append_ledger(
            kind="t.step", subject=subject, actor="grantflow", channel="system", data={"i": i}
        )


def cut_table(store: Store, keep: int) -> None:
    """What a database administrator can do: delete the newest entries."""
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"DELETE FROM ledger WHERE seq > {keep}")


# --- the anchor itself --------------------------------------------------------------------------


def test_each_anchor_object_is_write_once_with_a_retention(anchor: S3Anchor, s3: Any, bucket: str) -> None:
    store_head = LedgerHead(seq=7, hash="a" * 64)
    before = datetime.now(UTC)
    record = anchor.write(store_head)
    head = s3.head_object(Bucket=bucket, Key=anchor.object_key(7, "a" * 64))
    assert head["ObjectLockMode"] == "COMPLIANCE"
    retain = head["ObjectLockRetainUntilDate"]
    assert (
        before + timedelta(days=2) - timedelta(minutes=1) <= retain <= before + timedelta(days=2, minutes=1)
    )
    body = json.loads(s3.get_object(Bucket=bucket, Key=anchor.object_key(7, "a" * 64))["Body"].read())
    assert body["seq"] == 7 and body["hash"] == "a" * 64
    # The retention holds: the locked version cannot be deleted, even with the bucket's credentials.
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):
        s3.delete_object(Bucket=bucket, Key=anchor.object_key(7, "a" * 64), VersionId=head["VersionId"])
    reading = anchor.read()
    assert reading.seq == 7 and reading.hash == "a" * 64 and reading.location == f"s3://{bucket}/ledger/"
    assert reading.written_at is not None and record.seq == 7


def test_anchor_locations_are_checked_where_they_enter() -> None:
    assert parse_s3_url("s3://my-bucket/grantflow/ledger/") == ("my-bucket", "grantflow/ledger/")
    assert parse_s3_url("s3://my-bucket") == ("my-bucket", "")
    with pytest.raises(ValueError, match="not an S3 anchor location"):
        parse_s3_url("/var/lib/anchor")
    from configuration.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match=r"GRANTFLOW_LEDGER_ANCHOR .*not an S3 anchor location"):
        load_settings(ledger_anchor="https://bucket.example.com")


# --- verify against the shared anchor -----------------------------------------------------------


def test_truncation_by_another_process_is_caught_with_the_local_anchor_files_deleted(
    anchor_settings: Callable[..., Settings], tmp_path: Path, s3: Any, bucket: str
) -> None:
    first = open_store(anchor_settings("one"))
    second = open_store(anchor_settings("two"), migrate=False)
    try:
        assert first.anchor_path is None and first.shared_anchor is not None  # no per-process file
        append(first, 3, "req-a")
        append(second, 3, "req-b")  # entries 4-6 were written by the other machine
        jobs = LedgerAnchorActivities(first, first.shared_anchor)
        from activities.records import AnchorHeadInput

        result = jobs._anchor_head(AnchorHeadInput())
        assert result.written and result.seq == 6
        assert jobs._anchor_head(AnchorHeadInput(last_seq=6, last_hash=result.hash)).written is False
        assert first.verify_ledger().ok and second.verify_ledger().ok

        cut_table(first, keep=4)  # the newest entries, written by `second`, go
        # Whoever may delete in the bucket can only hide the anchor behind a delete marker.
        shared = first.shared_anchor
        assert isinstance(shared, S3Anchor)
        s3.delete_object(Bucket=bucket, Key=shared.object_key(6, result.hash))
        assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="ledger/")
        for leftover in tmp_path.rglob("*.anchor"):
            leftover.unlink()  # and whatever anchor files exist, cut back or deleted with the table
        result_one, result_two = first.verify_ledger(), second.verify_ledger()
        for verification in (result_one, result_two):
            assert not verification.ok
            assert verification.problem is not None
            assert "truncated: the anchor records entry 6 but the table ends at 4" in verification.problem

        # Rewritten past the anchored head and anchored again: the old anchor still shows it.
        append(second, 4, "req-c")
        jobs._anchor_head(AnchorHeadInput(last_seq=6, last_hash=result.hash))
        again = first.verify_ledger()
        assert not again.ok and again.problem is not None
        assert again.first_bad_seq == 6
        assert "entry 6 does not match the anchor" in again.problem, again.problem
    finally:
        first.close()
        second.close()


def test_verify_reports_the_anchored_head_when_it_was_written_and_the_lag(
    anchor_settings: Callable[..., Settings],
) -> None:
    settings = anchor_settings("one")
    store = open_store(settings)
    try:
        assert not store.verify_ledger().ok or store.verify_ledger().entries == 0
        append(store, 3)
        missing = store.verify_ledger()
        assert not missing.ok and missing.problem is not None and "is missing although" in missing.problem
        assert store.shared_anchor is not None
        store.shared_anchor.write(store.ledger_head())
        append(store, 2)
        result = store.verify_ledger()
        assert result.ok, result.problem
        assert result.anchored_seq == 3 and result.head_seq == 5 and result.anchor_lag == 2
        assert result.anchored_at is not None
        assert abs(result.anchored_at - datetime.now(UTC)) < timedelta(minutes=1)
        assert result.anchor is not None and result.anchor.startswith("s3://")
    finally:
        store.close()

    from grantflow.cli import main

    env = {
        "GRANTFLOW_STATE_DIR": str(settings.state_dir),
        "GRANTFLOW_DATABASE_URL": settings.database_url,
        "GRANTFLOW_LEDGER_KEY": TEST_LEDGER_KEY.decode(),
        "GRANTFLOW_LEDGER_ANCHOR": settings.ledger_anchor,
        "GRANTFLOW_LEDGER_ANCHOR_ENDPOINT_URL": settings.ledger_anchor_endpoint_url,
        "GRANTFLOW_LEDGER_ANCHOR_REGION": REGION,
        "GRANTFLOW_LEDGER_ANCHOR_ACCESS_KEY_ID": ACCESS_KEY,
        "GRANTFLOW_LEDGER_ANCHOR_SECRET_ACCESS_KEY": SECRET_KEY,
    }
    out = CliRunner().invoke(main, ["ledger", "verify"], env=env)
    assert out.exit_code == 0, out.output
    assert "ledger intact: 5 entries" in out.output
    assert "head #3, written " in out.output and "the table is 2 entries ahead of it" in out.output
    as_json = CliRunner().invoke(main, ["ledger", "verify", "--json"], env=env)
    document = json.loads(as_json.output)
    assert document["anchor_lag"] == 2 and document["anchored_seq"] == 3 and document["anchored_at"]


def test_the_dev_anchor_file_still_reports_its_head(store: Store) -> None:
    append(store, 2)
    result = store.verify_ledger()
    assert result.ok and result.anchored_seq == 2 and result.anchor_lag == 0
    assert result.anchor == str(store.anchor_path) and result.anchored_at is not None


# --- the anchoring job --------------------------------------------------------------------------


async def _run_anchor_job(
    env: WorkflowEnvironment, store: Store, anchor: Any, until: Callable[[], bool]
) -> tuple[str, str]:
    """Run the job (a tick every 5 s, continuing as new every 3 ticks) until ``until()``; returns the
    first and the latest run id."""
    task_queue = f"tq-{uuid.uuid4().hex}"
    jobs = LedgerAnchorActivities(store, anchor)
    worker = build_worker(env.client, task_queue, [jobs.anchor_head, jobs.alert])
    async with worker:
        handle = await env.client.start_workflow(
            LedgerAnchorWorkflow.run,
            LedgerAnchorInput(interval=timedelta(seconds=5), ticks_per_run=3),
            id=f"ledger-anchor-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
        )
        deadline = asyncio.get_running_loop().time() + 30
        while not await asyncio.to_thread(until):
            assert asyncio.get_running_loop().time() < deadline, "the anchoring job did not get there"
            await env.sleep(5)
            await asyncio.sleep(0.05)
        latest = await env.client.get_workflow_handle(handle.id).describe()
        await handle.terminate("test over")
    assert handle.result_run_id is not None
    return handle.result_run_id, latest.run_id


async def test_the_anchoring_job_writes_the_head_every_few_seconds(
    time_env: WorkflowEnvironment, make_store: Callable[..., Store], anchor: S3Anchor
) -> None:
    store = make_store(anchor_path=None)
    append(store, 2)
    checks_after_the_first_anchor: list[int] = []

    def appended_later_and_anchored() -> bool:
        reading = anchor.read()
        if reading.seq == 2:
            checks_after_the_first_anchor.append(1)
            if len(checks_after_the_first_anchor) == 4:  # a few idle ticks, then new entries
                append(store, 3)
        return reading.seq == 5

    first_run, latest_run = await _run_anchor_job(time_env, store, anchor, appended_later_and_anchored)
    assert sorted(anchor.read().anchored) == [2, 5]  # one object per head that moved, not per tick
    assert latest_run != first_run  # it continued as new (bounded history) and kept going
    assert store.verify_ledger().ok


async def test_every_worker_starting_the_job_gets_the_one_running_job(
    time_env: WorkflowEnvironment, anchor_settings: Callable[..., Settings]
) -> None:
    settings = anchor_settings(
        task_queue=f"tq-{uuid.uuid4().hex}", ledger_anchor_interval=timedelta(seconds=7)
    )
    job_id = f"ledger-anchor-{uuid.uuid4().hex[:8]}"
    first = await ensure_ledger_anchoring(time_env.client, settings, workflow_id=job_id)
    second = await ensure_ledger_anchoring(time_env.client, anchor_settings("two"), workflow_id=job_id)
    try:
        assert first.result_run_id == second.result_run_id  # processes never race: one writer
        started = (await first.fetch_history()).events[0].workflow_execution_started_event_attributes
        [inp] = await time_env.client.data_converter.decode(started.input.payloads, [LedgerAnchorInput])
        assert inp.interval == timedelta(seconds=7)
        assert "testing" not in started.input.payloads[0].data.decode()  # no credentials in history
    finally:
        await first.terminate("test over")


async def test_a_failing_anchor_write_is_retried_and_alerts(
    time_env: WorkflowEnvironment,
    make_store: Callable[..., Store],
    s3: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = make_store(anchor_path=None)
    append(store, 1)
    name = f"not-yet-{uuid.uuid4().hex[:12]}"
    anchor = S3Anchor(s3, bucket=name, prefix="ledger/")  # the bucket is missing: every write fails

    def alerts() -> list[str]:
        return [e.kind for e in store.ledger_entries(subject=LEDGER_ANCHOR_SUBJECT)]

    def failed_attempts() -> int:
        return sum("not anchored (retried)" in r.getMessage() for r in caplog.records)

    def alerted_then_restored() -> bool:
        kinds = alerts()
        if kinds == ["ledger.anchor_failed"] and failed_attempts() >= 4:  # a tick's retries and more
            s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)  # an operator fixes it
        return "ledger.anchor_restored" in kinds

    with caplog.at_level(logging.ERROR, logger="activities.records"):
        await _run_anchor_job(time_env, store, anchor, alerted_then_restored)
    failed, restored = store.ledger_entries(subject=LEDGER_ANCHOR_SUBJECT)
    assert failed.kind == "ledger.anchor_failed"  # one alert for the whole failing streak
    assert failed.data["anchor"] == f"s3://{name}/ledger/"
    assert "NoSuchBucket" in failed.data["problem"] or "does not exist" in failed.data["problem"]
    assert restored.kind == "ledger.anchor_restored" and restored.data["since"] == failed.data["since"]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("ALERT: the ledger head cannot be anchored" in m for m in messages) == 1
    assert failed_attempts() >= 4  # each attempt of each tick, alerted once
    # The alerts are evidence too: anchored with the rest once the bucket exists.
    reading = anchor.read()
    assert reading.seq is not None and reading.seq >= failed.seq


# --- idempotency --------------------------------------------------------------------------------


def _event(data: dict[str, Any]) -> LedgerEvent:
    return LedgerEvent(kind="request.approved", actor="bob@example.com", channel="slack", data=data)


def test_the_same_key_with_the_same_content_is_a_no_op_and_with_other_content_an_error(store: Store) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = _event({"status": "PENDING", "decided_at": at, "approvals": 1})
    digest = event_content_hash("req-1", event)
    plain = event.model_dump(mode="json")  # what the activity receives from the workflow
    first = store.append_ledger(
        subject="req-1", idempotency_key="wf:run:1", content_hash=digest, **plain, at=at
    )
    # Retried later: the activity's own timestamp differs, the content does not.
    again = store.append_ledger(
        subject="req-1", idempotency_key="wf:run:1", content_hash=digest, **plain, at=at + timedelta(hours=1)
    )
    assert again == first and store.ledger_head().seq == 1

    other = _event({"status": "PENDING", "decided_at": at, "approvals": 2})
    with pytest.raises(IdempotencyConflict, match="arrived again with different content: entry 1"):
        store.append_ledger(
            subject="req-1",
            idempotency_key="wf:run:1",
            content_hash=event_content_hash("req-1", other),
            **other.model_dump(mode="json"),
        )
    assert store.ledger_head().seq == 1
    assert content_hash(subject="req-1", **plain) == digest


def test_the_record_activity_refuses_a_key_arriving_with_other_content(store: Store) -> None:
    view = _a_view()
    event = _event({"status": "PENDING", "note": "first"})
    inp = RecordInput(
        view=view, event=event, idempotency_key="wf:run:3", content_hash=event_content_hash(view.id, event)
    )
    delivered = RecordInput.model_validate_json(inp.model_dump_json())  # through the data converter
    records = RecordActivities(store)
    seq = records._record(delivered)
    assert records._record(RecordInput.model_validate_json(inp.model_dump_json())) == seq
    changed = _event({"status": "PENDING", "note": "second"})
    clash = RecordInput(
        view=view,
        event=changed,
        idempotency_key="wf:run:3",
        content_hash=event_content_hash(view.id, changed),
    )
    with pytest.raises(ApplicationError, match="arrived again with different content") as refused:
        records._record(RecordInput.model_validate_json(clash.model_dump_json()))
    assert refused.value.non_retryable and refused.value.type == "LedgerIdempotencyConflict"
    assert [e.data["note"] for e in store.ledger_entries(subject=view.id)] == ["first"]


def _a_view() -> RequestView:
    from domain.identity import PersonRef
    from domain.policy import load_policies
    from examples import POLICIES_FILE

    _, policy = load_policies(POLICIES_FILE).role("pg-prod", "admin")
    now = datetime(2026, 1, 2, tzinfo=UTC)
    return RequestView(
        id="req-idem",
        status=RequestStatus.PENDING,
        requester=PersonRef(id="p-alice", email="alice@example.com"),
        submitted_by="alice@example.com",
        resource="pg-prod",
        role="admin",
        connection="pg-prod-admin",
        reason="INC-1",
        requested_duration=timedelta(hours=1),
        required_approvals=2,
        created_at=now,
        updated_at=now,
        policy=policy,
    )


async def test_a_new_run_of_the_same_workflow_records_its_own_entries(time_stack: Stack) -> None:
    """What a Temporal reset does: a new run under the same workflow id counts its steps again. Its
    entries must be recorded, not mistaken for the old run's."""
    stack = time_stack

    async def start_and_cancel(handle: WorkflowHandle[AccessRequestWorkflow, RequestView]) -> None:
        await stack.wait_for(handle, lambda v: v.approvers_resolved)
        await handle.execute_update(
            AccessRequestWorkflow.cancel, EndInput(actor=stack.actor("alice@example.com"), reason="again")
        )
        assert (await handle.result()).status is RequestStatus.CANCELLED

    first = await stack.start_request("alice@example.com", "pg-prod", "admin", timedelta(hours=1))
    await start_and_cancel(first)
    request_id = first.id
    kinds_first = [e.kind for e in stack.store.ledger_entries(subject=request_id)]

    history = await first.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    [inp] = await stack.env.client.data_converter.decode(started.input.payloads, [AccessRequestInput])
    # The same input, but asked now: the time-skipping clock may have passed the first run's timeout.
    inp = inp.model_copy(update={"created_at": await stack.now()})
    second = await stack.env.client.start_workflow(
        AccessRequestWorkflow.run, inp, id=request_id, task_queue=stack.task_queue
    )
    await start_and_cancel(second)

    entries = stack.store.ledger_entries(subject=request_id)
    assert [e.kind for e in entries] == kinds_first * 2
    runs = {e.idempotency_key.split(":")[1] for e in entries if e.idempotency_key}
    assert runs == {first.result_run_id, second.result_run_id}
    assert stack.store.verify_ledger().ok

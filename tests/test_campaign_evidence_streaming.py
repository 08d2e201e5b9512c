"""The evidence bundle written page by page: byte for byte what the whole report renders, with the store's
paged reads (decisions of a page of items, every decision by time) in the order the report needs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import store.campaigns as store_campaigns
from activities.campaign_report import REPORT_FILES, ReportFilesWriter, report_files
from domain.campaign_report import CampaignReport
from domain.campaign_state import CampaignStatus
from domain.campaigns import Assignment
from store.campaigns import CampaignRecords
from store.evidence_bundle import MANIFEST, file_entry_of, signed_bundle, signed_manifest
from tests.db import TEST_LEDGER_KEY
from tests.test_campaign_report import _report
from tests.test_campaign_store import DANA, KEN, T0, _campaign, _decision, _item

pytest_plugins = ["tests.db"]


def _streamed(report: CampaignReport, folder: Path, page: int) -> dict[str, bytes]:
    heading = report.model_copy(update={"items": (), "decisions": ()})
    writer = ReportFilesWriter(folder, heading)
    for start in range(0, len(report.items), page):
        writer.add_items(report.items[start : start + page])
    # The store hands them over by time, then item and stage, then in the order recorded.
    writer.add_decisions(sorted(report.decisions, key=lambda d: (d.decided_at, d.item_id, d.stage)))
    writer.close()
    writer.write_summary(heading)
    assert writer.item_count == len(report.items)
    return {name: (folder / name).read_bytes() for name in REPORT_FILES}


@pytest.mark.parametrize("page", [1, 3, 1000])
def test_streamed_files_are_the_whole_reports_byte_for_byte(tmp_path: Path, page: int) -> None:
    report = _report()
    assert _streamed(report, tmp_path, page) == report_files(report)


def test_a_campaign_without_items_or_decisions_streams_the_same_files(tmp_path: Path) -> None:
    empty = _report().model_copy(update={"items": (), "decisions": (), "refused": ()})
    assert _streamed(empty, tmp_path, 10) == report_files(empty)


def test_the_manifest_of_files_on_disk_is_the_one_signed_in_memory(tmp_path: Path) -> None:
    files = report_files(_report())
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    key = Ed25519PrivateKey.generate()  # Ed25519 signatures are deterministic: equal bodies, equal bytes
    about = {"campaign_id": "cmp-1", "generated_at": "2027-01-18T10:00:00+00:00"}
    entries = {name: file_entry_of(tmp_path / name) for name in files}
    assert (
        signed_manifest(entries, about=about, signing_key=key)
        == signed_bundle(files, about=about, signing_key=key)[MANIFEST]
    )


@pytest.fixture
def records(store_url: str, tmp_path: Path) -> Iterator[CampaignRecords]:
    store = CampaignRecords(store_url, ledger_key=TEST_LEDGER_KEY, anchor_path=tmp_path / "anchor")
    store.migrate()
    yield store
    store.close()


def test_decisions_are_read_by_item_page_and_by_time(records: CampaignRecords, tmp_path: Path) -> None:
    records.create_campaign(_campaign())
    items = [_item(k) for k in range(4)]
    records.add_items(
        "cmp-1",
        [
            (item, Assignment(stage=0, reviewer=KEN if k % 2 else DANA, via="manager"))
            for k, item in enumerate(items)
        ],
    )
    records.update_campaign("cmp-1", T0, status=CampaignStatus.OPEN, stage=0, stage_open=True, item_count=4)
    # Recorded out of time order; two at the same moment on different items, and one item decided twice.
    records.record_decisions("cmp-1", [_decision(items[2], minutes=5), _decision(items[0], minutes=3)])
    records.record_decisions("cmp-1", [_decision(items[1], "revoke", minutes=3)])
    records.record_decisions("cmp-1", [_decision(items[0], "revoke", minutes=1)])

    of_two = records.decisions_of_items("cmp-1", [items[0].id, items[3].id])
    assert [(d.item_id, d.verdict) for d in of_two] == [(items[0].id, "keep"), (items[0].id, "revoke")]

    by_time = list(records.decisions_by_time("cmp-1"))
    same_minute = sorted([items[0].id, items[1].id])
    assert [(d.decided_at - T0).seconds // 60 for d in by_time] == [1, 3, 3, 5]
    assert [d.item_id for d in by_time[1:3]] == same_minute
    assert list(records.decisions_by_time("cmp-other")) == []


def test_evidence_files_are_stored_whole_from_disk_and_replace_the_last_bundle(
    records: CampaignRecords, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_campaigns, "EVIDENCE_BLOCK", 7)  # several blocks per file, one partial
    records.create_campaign(_campaign())
    records.save_evidence("cmp-1", {"old.txt": b"gone after the next bundle"})
    contents = {"items.csv": bytes(range(256)) * 3 + b"tail", "decisions.jsonl": b"", MANIFEST: b"{}\n"}
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
    records.save_evidence_files("cmp-1", {name: tmp_path / name for name in contents})
    assert records.evidence("cmp-1") == dict(sorted(contents.items()))

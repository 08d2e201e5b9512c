"""A closed campaign's evidence bundle: built from the store, rendered, signed, kept; its hash in the ledger.

The report is built from the records, never from workflow state: the population with its provenance, every
item with its reviewer, the decision that counted (and every decision in ``decisions.jsonl``), defaults,
refused attempts and each revocation as it was read back. The bundle is signed with the worker's Ed25519
key (``GRANTFLOW_EVIDENCE_SIGNING_KEY``) and stored whole, so what the API serves later is byte for byte what
was signed; the manifest's SHA-256 goes to the ledger, tying the bundle to the chain. Without a key nothing is
written but a ledger entry saying why: an unsigned bundle is not evidence.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel
from temporalio import activity

from activities.campaign_base import CampaignBase, CampaignRef
from activities.campaign_report import REPORT_FILES, ReportFilesWriter
from domain.campaign_decisions import ItemDecision, final_verdict
from domain.campaign_report import CampaignReport, ItemEvidence, Provenance
from domain.campaigns import CampaignItem
from store.campaigns import StoredItem
from store.evidence_bundle import MANIFEST, file_entry_of, signed_manifest


class EvidenceResult(BaseModel):
    written: bool
    manifest_sha256: str = ""
    reason: str = ""


class CampaignEvidence(CampaignBase):
    @activity.defn(name="campaign_evidence")
    async def evidence(self, inp: CampaignRef) -> EvidenceResult:
        if self._evidence_key is None:
            reason = "GRANTFLOW_EVIDENCE_SIGNING_KEY is not set: the evidence bundle was not written"
            await self._ledger(
                "campaign.evidence_not_written", inp.campaign_id, "evidence", {"reason": reason}
            )
            return EvidenceResult(written=False, reason=reason)
        loop = asyncio.get_running_loop()

        def progress(detail: str) -> None:  # from the rendering thread: heartbeats belong to the loop
            loop.call_soon_threadsafe(activity.heartbeat, detail)

        with tempfile.TemporaryDirectory(prefix="grantflow-evidence-") as folder:
            written = await asyncio.to_thread(self._write_bundle, inp.campaign_id, Path(folder), progress)
        await self._ledger(
            "campaign.evidence",
            inp.campaign_id,
            "evidence",
            {"manifest_sha256": written.manifest_sha256, "files": written.files, "items": written.items},
        )
        return EvidenceResult(written=True, manifest_sha256=written.manifest_sha256)

    def _write_bundle(self, campaign_id: str, folder: Path, progress: Callable[[str], None]) -> _Written:
        """Render the bundle's files into ``folder`` a page of items at a time, sign their manifest and
        store them: the files are byte for byte what :func:`report_files` renders from the whole report,
        but a campaign of a million items is never held in memory, nor is its bundle (one file at a time,
        as it is stored)."""
        assert self._evidence_key is not None
        store = self._store
        heading = self._heading(campaign_id)
        writer = ReportFilesWriter(folder, heading)
        try:
            after = ""
            while items := store.items(campaign_id, after=after):
                decisions: dict[str, list[ItemDecision]] = {}
                for decision in store.decisions_of_items(campaign_id, [i.id for i in items]):
                    decisions.setdefault(decision.item_id, []).append(decision)
                writer.add_items([_evidence(item, decisions.get(item.id, [])) for item in items])
                after = items[-1].id
                progress(f"{writer.item_count} items in the evidence")
            writer.add_decisions(store.decisions_by_time(campaign_id), progress)
        finally:
            writer.close()
        head = store.ledger_head()  # after the records were read, as the whole report reads it
        heading = heading.model_copy(update={"ledger_head": (head.seq, head.hash) if head.seq else None})
        writer.write_summary(heading)
        about = {
            "campaign_id": heading.campaign_id,
            "workflow_id": heading.workflow_id,
            "run_ids": list(heading.run_ids),
            "ledger_head": {"seq": head.seq, "hash": head.hash} if head.seq else None,
            "generated_at": datetime.now(UTC).isoformat(),
        }
        files = {name: folder / name for name in REPORT_FILES}
        manifest = signed_manifest(
            {name: file_entry_of(path) for name, path in files.items()},
            about=about,
            signing_key=self._evidence_key,
        )
        (folder / MANIFEST).write_bytes(manifest)
        store.save_evidence_files(campaign_id, {**files, MANIFEST: folder / MANIFEST})
        return _Written(
            manifest_sha256=hashlib.sha256(manifest).hexdigest(),
            files=sorted([*files, MANIFEST]),
            items=writer.item_count,
        )

    def _heading(self, campaign_id: str) -> CampaignReport:
        """The report without its items, decisions or ledger head (:class:`ReportFilesWriter` streams
        those)."""
        store = self._store
        record = store.campaign(campaign_id)
        assert record is not None, campaign_id
        provenance = (
            Provenance.model_validate(json.loads(record.provenance_json))
            if record.provenance_json
            else Provenance(
                extracted_at=record.launched_at, sources=(), population_hash="", item_count=0, connections=()
            )
        )
        return CampaignReport(
            campaign_id=record.id,
            name=record.name,
            owner=record.owner,
            status=record.status.value,
            launched_at=record.launched_at,
            deadline=record.deadline or record.stage_closes_at or record.launched_at,
            closed_at=record.closed_at,
            spec_sha256=record.spec_sha256,
            workflow_id=record.workflow_id,
            run_ids=(activity.info().workflow_run_id,),
            provenance=provenance,
            items=(),
            refused=tuple(store.refusals(campaign_id)),
        )


def _evidence(item: StoredItem, decisions: list[ItemDecision]) -> ItemEvidence:
    reviewer = item.assignment.reviewer
    return ItemEvidence(
        item=CampaignItem.model_validate(item.model_dump(include=set(CampaignItem.model_fields))),
        reviewer=reviewer.name if reviewer is not None else None,
        assigned_via=item.assignment.via,
        assignment_notes=item.assignment.notes,
        decision=final_verdict(decisions),
        revocation=item.revocation,
    )


@dataclass(frozen=True)
class _Written:
    manifest_sha256: str
    files: list[str]
    items: int

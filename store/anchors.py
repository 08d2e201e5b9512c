"""The shared ledger anchor: the ledger head written, write-once, to an S3-compatible bucket with Object Lock.

Why: the per-process anchor file (:mod:`store.ledger`) only sees the appends of the process that writes it,
and whoever can cut the table back can usually cut a local file back too. In production one anchoring job
(``workflows/ledger_anchor.py``) writes the head every few seconds to one bucket that every process reads
and that nobody — the database administrators included — can rewrite: each anchor is its own object,
locked with an Object Lock retention (COMPLIANCE by default) until ``retention`` has passed.

One object per anchored head, named ``<prefix><seq, 20 digits>-<hash>.json``: listing the prefix's
object versions gives every anchored (seq, hash) without reading a body — including versions someone hid
behind a delete marker — and a truncated-then-rewritten ledger anchored again shows up as two objects
(two hashes) for one seq. The body repeats seq, hash and the time
it was written, for a person reading the bucket.

The bucket must be created with Object Lock enabled (which implies versioning); grantflow never creates or
reconfigures it. Credentials come from the settings or, when unset, boto3's usual chain (environment,
instance role). They stay in the worker and the processes that verify; never in workflow history.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from configuration.settings import Settings, parse_s3_url
from store.ledger import AnchorReading, LedgerHead, format_at

_OBJECT_NAME = re.compile(r"^([0-9]{20})-([0-9a-f]{64})\.json$")

LockMode = Literal["COMPLIANCE", "GOVERNANCE"]


class AnchorWriteError(Exception):
    """The head could not be anchored (the sentence says where and why)."""


@dataclass(frozen=True, slots=True)
class AnchorRecord:
    """One anchored head and when it was written."""

    seq: int
    hash: str
    written_at: datetime
    location: str


class SharedAnchor(Protocol):
    """An anchor every process reads and one job writes."""

    @property
    def location(self) -> str: ...

    def write(self, head: LedgerHead) -> AnchorRecord: ...

    def read(self) -> AnchorReading: ...


class S3Anchor:
    """The ledger head in an S3-compatible bucket with Object Lock (see the module docstring)."""

    def __init__(
        self,
        client: Any,
        *,
        bucket: str,
        prefix: str = "",
        retention: timedelta = timedelta(days=400),
        mode: LockMode = "COMPLIANCE",
    ) -> None:
        if retention <= timedelta(0):
            raise ValueError("the anchor retention must be positive")
        self._client = client
        self._bucket = bucket
        self._prefix = prefix
        self._retention = retention
        self._mode = mode

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Anchor:
        import boto3
        from botocore.config import Config

        bucket, prefix = parse_s3_url(settings.ledger_anchor)
        secret = settings.ledger_anchor_secret_access_key
        client = boto3.client(
            "s3",
            endpoint_url=settings.ledger_anchor_endpoint_url or None,
            region_name=settings.ledger_anchor_region or None,
            aws_access_key_id=settings.ledger_anchor_access_key_id or None,
            aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
            # Failures are retried by the anchoring workflow, which also raises the alert.
            config=Config(
                retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=10
            ),
        )
        return cls(
            client,
            bucket=bucket,
            prefix=prefix,
            retention=settings.ledger_anchor_retention,
            mode=settings.ledger_anchor_lock_mode,
        )

    @property
    def location(self) -> str:
        return f"s3://{self._bucket}/{self._prefix}"

    def object_key(self, seq: int, digest: str) -> str:
        return f"{self._prefix}{seq:020d}-{digest}.json"

    def write(self, head: LedgerHead, *, now: datetime | None = None) -> AnchorRecord:
        """Put one locked object for ``head``; raises :class:`AnchorWriteError` with the reason."""
        from botocore.exceptions import BotoCoreError, ClientError

        written_at = now or datetime.now(UTC)
        body = json.dumps({"seq": head.seq, "hash": head.hash, "written_at": format_at(written_at)})
        try:
            self._client.put_object(
                Bucket=self._bucket,
                Key=self.object_key(head.seq, head.hash),
                Body=body.encode(),
                ContentType="application/json",
                ObjectLockMode=self._mode,
                ObjectLockRetainUntilDate=written_at + self._retention,
                ChecksumAlgorithm="SHA256",  # S3 requires an integrity checksum on Object Lock puts
            )
        except (BotoCoreError, ClientError) as exc:
            raise AnchorWriteError(f"cannot write the ledger anchor to {self.location}: {exc}") from exc
        return AnchorRecord(seq=head.seq, hash=head.hash, written_at=written_at, location=self.location)

    def read(self) -> AnchorReading:
        """Every anchored (seq, hash) under the prefix; the head is the highest seq."""
        from botocore.exceptions import BotoCoreError, ClientError

        anchored: dict[int, str] = {}
        written: dict[int, datetime] = {}
        try:
            # Versions, not the current listing: a plain DELETE hides an object behind a delete marker
            # (Object Lock allows that); the locked version underneath still counts.
            pages = self._client.get_paginator("list_object_versions").paginate(
                Bucket=self._bucket, Prefix=self._prefix
            )
            for page in pages:
                for obj in page.get("Versions", []):
                    match = _OBJECT_NAME.match(obj["Key"][len(self._prefix) :])
                    if match is None:
                        continue  # not an anchor (a folder marker, a note); cannot hide a truncation
                    seq, digest = int(match.group(1)), match.group(2)
                    if anchored.setdefault(seq, digest) != digest:
                        return AnchorReading(
                            problem=(
                                f"the anchor {self.location} records two different hashes for entry {seq}: "
                                f"entries from {seq} on were removed and written again"
                            ),
                            seq=seq,
                            location=self.location,
                        )
                    if seq not in written or obj["LastModified"] < written[seq]:
                        written[seq] = obj["LastModified"]  # first anchored (the job may write it again)
        except (BotoCoreError, ClientError) as exc:
            return AnchorReading(
                problem=f"the anchor {self.location} cannot be read: {exc}", location=self.location
            )
        if not anchored:
            return AnchorReading(missing=True, location=self.location)
        head = max(anchored)
        return AnchorReading(
            seq=head,
            hash=anchored[head],
            anchored=anchored,
            written_at=written[head].astimezone(UTC),
            location=self.location,
        )


def shared_anchor_from_settings(settings: Settings) -> SharedAnchor | None:
    """The configured shared anchor, or None when the ledger is anchored in a local file (dev)."""
    if not settings.ledger_anchor:
        return None
    return S3Anchor.from_settings(settings)

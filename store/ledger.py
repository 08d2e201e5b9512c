"""The evidence ledger: a keyed hash chain whose head is anchored outside the database.

Threat model: someone with write access to the database but not to grantflow's configuration must not be
able to alter, remove, reorder or truncate entries unnoticed.

* Every entry's ``hash`` is ``HMAC-SHA256(ledger_key, canonical input)`` in hex, where the canonical input is
  the canonical JSON of ``{seq, at, kind, subject, actor, channel, data, idempotency_key, prev_hash}``.
  Without the key nobody can compute a valid hash for changed contents.
* ``prev_hash`` is the previous entry's hash (64 zeros for entry 1) and ``seq`` runs 1..N without gaps, so
  removing or reordering entries breaks the chain.
* Removing the *last* entries leaves a valid shorter chain; the anchor catches that. Every (seq, hash) it
  records must still be in the table with exactly that hash; it may lag the table, never lead it. Two
  anchors exist: for ``grantflow dev`` (and the tests) an append-only file to which every committed append
  adds the line ``<seq> <hash>``; in production one shared, write-once S3 location written every few
  seconds by one anchoring job (:mod:`store.anchors`, ``workflows/ledger_anchor.py``), which every process
  reads, so truncation of entries written by any machine is seen. Verification reports the anchored head,
  when it was written and how many entries the table is ahead of it.
* An idempotency key seen again returns the stored entry, but only if the content is the same: callers
  that pass a ``content_hash`` (:func:`content_hash`, computed in the workflow over everything but the
  time) get :class:`IdempotencyConflict` when the stored entry's content differs.

Canonical JSON: sorted keys, no whitespace, ASCII only (``\\uXXXX`` escapes), no NaN/Infinity; datetimes as
``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC, microseconds). ``at`` and ``data`` are stored as exactly that text,
so PostgreSQL and SQLite give back byte-identical input for the hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path, PurePath
from typing import Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict

GENESIS_HASH = "0" * 64
"""``prev_hash`` of entry 1."""

_AT_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_MOVE_WINDOW = 1000  # how far around a bad entry to look for the position it was written at
_ANCHOR_LINE = re.compile(r"^([1-9][0-9]*) ([0-9a-f]{64})$")


class LedgerEntry(BaseModel):
    """One evidence entry, as stored and as verified."""

    model_config = ConfigDict(frozen=True)

    seq: int
    at: AwareDatetime
    kind: str
    subject: str
    actor: str
    channel: str
    data: dict[str, Any]
    idempotency_key: str | None = None
    prev_hash: str
    hash: str


class LedgerHead(BaseModel):
    """The newest entry's sequence number and hash (``0`` and the genesis hash for an empty ledger),
    as evidence bundles record it in their manifest."""

    model_config = ConfigDict(frozen=True)

    seq: int
    hash: str


class IdempotencyConflict(Exception):
    """An idempotency key arrived again with different content: evidence would silently be dropped."""


class LedgerVerification(BaseModel):
    """The result of checking the whole chain and the anchor. ``problem`` is a sentence for a person and
    ``first_bad_seq`` the first entry concerned (None when the problem is the anchor file itself).
    ``anchor`` says where the anchor is, ``anchored_at`` when its head was written and ``anchor_lag`` how
    many entries the table is ahead of it."""

    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None
    anchored_seq: int | None = None
    anchor: str | None = None
    anchored_at: AwareDatetime | None = None
    anchor_lag: int | None = None


# --- canonical form --------------------------------------------------------------------------------


def content_hash(*, kind: str, subject: str, actor: str, channel: str, data: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of what an entry says, without its time or its place in the chain: what must be the
    same when an idempotency key arrives again. ``data`` as it reaches the store (JSON types)."""
    plain = json.loads(canonical_data(data))
    fields = {"kind": kind, "subject": subject, "actor": actor, "channel": channel, "data": plain}
    text = canonical_json(fields)
    return hashlib.sha256(text.encode()).hexdigest()


def format_at(value: datetime) -> str:
    """The canonical text of an entry time: UTC with microseconds and a ``Z``. Naive values are refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"ledger times must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC).strftime(_AT_FORMAT)


def parse_at(text: str) -> datetime:
    return datetime.strptime(text, _AT_FORMAT).replace(tzinfo=UTC)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_at(value if value.tzinfo is not None else value.replace(tzinfo=UTC))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=canonical_json)
    if isinstance(value, Decimal | UUID | PurePath):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot be recorded in the ledger: {value!r}")


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, ASCII, no NaN; datetimes, enums, models and the like made plain."""
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
        default=_json_default,
    )


def canonical_data(data: Mapping[str, Any]) -> str:
    """The stored text of an entry's ``data``: its canonical JSON (an object)."""
    if not isinstance(data, Mapping):
        raise TypeError(f"ledger data must be a mapping, got {type(data).__name__}")
    try:
        return canonical_json(dict(data))
    except ValueError as exc:  # NaN / Infinity
        raise ValueError(f"ledger data cannot be recorded: {exc}") from None


def canonical_input(
    *,
    seq: int,
    at: str,
    kind: str,
    subject: str,
    actor: str,
    channel: str,
    data: str,
    idempotency_key: str | None,
    prev_hash: str,
) -> bytes:
    """The bytes an entry's HMAC covers: the canonical JSON of the entry without its hash.

    ``at`` and ``data`` are the stored canonical texts; ``data`` is embedded verbatim, so this equals
    ``canonical_json({..., "data": json.loads(data), ...})`` for canonical ``data`` while any change to the
    stored text (even whitespace) changes the hash."""
    d = json.dumps
    return (
        f'{{"actor":{d(actor)},"at":{d(at)},"channel":{d(channel)},"data":{data},'
        f'"idempotency_key":{d(idempotency_key)},"kind":{d(kind)},"prev_hash":{d(prev_hash)},'
        f'"seq":{int(seq)},"subject":{d(subject)}}}'
    ).encode()


def entry_hash(
    key: bytes,
    *,
    seq: int,
    at: str,
    kind: str,
    subject: str,
    actor: str,
    channel: str,
    data: str,
    idempotency_key: str | None,
    prev_hash: str,
) -> str:
    """HMAC-SHA256 (hex) of an entry under the ledger key; arguments as stored (:func:`canonical_input`)."""
    message = canonical_input(
        seq=seq,
        at=at,
        kind=kind,
        subject=subject,
        actor=actor,
        channel=channel,
        data=data,
        idempotency_key=idempotency_key,
        prev_hash=prev_hash,
    )
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class StoredEntry:
    """A ledger row exactly as the table holds it (``at`` and ``data`` as text)."""

    seq: int
    at: str
    kind: str
    subject: str
    actor: str
    channel: str
    data: str
    idempotency_key: str | None
    prev_hash: str
    hash: str

    def computed_hash(self, key: bytes, *, seq: int | None = None) -> str:
        return entry_hash(
            key,
            seq=self.seq if seq is None else seq,
            at=self.at,
            kind=self.kind,
            subject=self.subject,
            actor=self.actor,
            channel=self.channel,
            data=self.data,
            idempotency_key=self.idempotency_key,
            prev_hash=self.prev_hash,
        )

    def to_entry(self) -> LedgerEntry:
        return LedgerEntry(
            seq=self.seq,
            at=parse_at(self.at),
            kind=self.kind,
            subject=self.subject,
            actor=self.actor,
            channel=self.channel,
            data=json.loads(self.data),
            idempotency_key=self.idempotency_key,
            prev_hash=self.prev_hash,
            hash=self.hash,
        )


# --- anchor ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class AnchorReading:
    """What the anchor file says: the highest anchored (seq, hash), or a problem with the file."""

    seq: int | None = None
    hash: str | None = None
    missing: bool = False
    problem: str | None = None
    anchored: dict[int, str] = dataclasses.field(default_factory=dict)
    """Every (seq, hash) the anchor records. All are checked: after a truncation, later appends reuse the
    truncated sequence numbers with new hashes, and only the older anchors still show it."""
    written_at: datetime | None = None
    """When the anchored head was written (the file's modification time; the object's for S3)."""
    location: str | None = None
    """Where the anchor is, for messages: ``s3://…`` (None for the file: the caller names its path)."""


def read_anchor(path: Path) -> AnchorReading:
    """Read every line of the anchor file; the anchored head is the line with the highest seq.

    Lines are written in seq order, so that is the last line; taking the maximum keeps a reordered file
    from hiding a newer anchor. Any line that is not ``<seq> <hash>`` makes the anchor unusable."""
    try:
        fh = path.open("r", encoding="ascii", newline="")
    except FileNotFoundError:
        return AnchorReading(missing=True)
    except OSError as exc:
        return AnchorReading(problem=f"the anchor file {path} cannot be read: {exc.strerror or exc}")
    best_seq: int | None = None
    best_hash: str | None = None
    anchored: dict[int, str] = {}
    with fh:
        try:
            for number, line in enumerate(fh, start=1):
                text = line[:-1] if line.endswith("\n") else line
                match = _ANCHOR_LINE.match(text)
                if match is None or not line.endswith("\n"):
                    return AnchorReading(
                        problem=(
                            f"the anchor file {path} is garbled: line {number} is not '<seq> <hash>' "
                            f"(found {text[:80]!r})"
                        )
                    )
                seq = int(match.group(1))
                if anchored.setdefault(seq, match.group(2)) != match.group(2):
                    return AnchorReading(
                        problem=(
                            f"the anchor file {path} records two different hashes for entry {seq}: entries "
                            f"from {seq} on were removed and written again"
                        ),
                        seq=seq,
                    )
                if best_seq is None or seq >= best_seq:
                    best_seq, best_hash = seq, match.group(2)
        except UnicodeDecodeError:
            return AnchorReading(problem=f"the anchor file {path} is garbled: it is not ASCII text")
    if best_seq is None:
        return AnchorReading(problem=f"the anchor file {path} is empty")
    try:
        written_at: datetime | None = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        written_at = None
    return AnchorReading(seq=best_seq, hash=best_hash, anchored=anchored, written_at=written_at)


# --- verification ----------------------------------------------------------------------------------


def verify_chain(
    rows: Iterable[StoredEntry],
    key: bytes,
    *,
    anchor: AnchorReading | None,
    anchor_path: Path | None = None,
    positions_of: Callable[[StoredEntry], Iterable[int]] | None = None,
) -> LedgerVerification:
    """Check ``rows`` (in seq order) against the key and the anchor; name the first bad entry.

    ``anchor`` None means no anchor is configured. ``positions_of(row)`` (the positions the row's neighbours
    suggest it was written at) lets a moved entry be reported as a reordering rather than an alteration."""
    expected_seq = 1
    prev_hash = GENESIS_HASH
    entries = 0
    bad_hashes = 0
    first_seq: int | None = None
    first_bad: int | None = None
    problem: str | None = None
    anchored_hash_found: str | None = None

    for row in rows:
        entries += 1
        if first_seq is None:
            first_seq = row.seq
        hash_ok = hmac.compare_digest(row.computed_hash(key), row.hash)
        if not hash_ok:
            bad_hashes += 1
        if anchor is not None and anchor.seq == row.seq:
            anchored_hash_found = row.hash
        anchored_hash = anchor.anchored.get(row.seq) if anchor is not None else None
        if problem is None:
            if row.seq != expected_seq:
                first_bad = expected_seq
                if row.seq < 1:
                    problem = f"entry {row.seq} has an impossible sequence number"
                elif expected_seq == 1:
                    first_bad = 1
                    gap = "entry 1 is" if row.seq == 2 else f"entries 1 to {row.seq - 1} are"
                    problem = f"{gap} missing: the ledger starts at entry {row.seq}"
                elif row.seq == expected_seq + 1:
                    problem = (
                        f"entry {expected_seq} is missing: "
                        f"sequence jumps from {expected_seq - 1} to {row.seq}"
                    )
                else:
                    problem = (
                        f"entries {expected_seq} to {row.seq - 1} are missing: sequence jumps from "
                        f"{expected_seq - 1} to {row.seq}"
                    )
            elif not hash_ok:
                first_bad = row.seq
                problem = _altered_or_moved(row, key, positions_of)
            elif not hmac.compare_digest(row.prev_hash, prev_hash):
                first_bad = row.seq
                problem = f"entry {row.seq} does not follow entry {row.seq - 1}: its prev_hash differs"
            elif anchored_hash is not None and not hmac.compare_digest(anchored_hash, row.hash):
                first_bad = row.seq
                problem = (
                    f"entry {row.seq} does not match the anchor: the anchor records a different hash for it "
                    "(entries were removed and written again, or the ledger was rewritten)"
                )
        expected_seq = row.seq + 1
        prev_hash = row.hash

    head_seq = expected_seq - 1 if entries else 0
    head_hash = prev_hash

    if entries >= 2 and bad_hashes == entries:
        first_bad = first_seq
        problem = (
            f"none of the {entries} entries matches its hash under the configured ledger key: the key is not "
            "the one this ledger was written with (or every entry was rewritten)"
        )

    anchored_seq = anchor.seq if anchor is not None else None
    if problem is None and anchor is not None:
        if anchor.location is not None:
            where = f"the anchor {anchor.location}"
        else:
            where = f"the anchor file {anchor_path}" if anchor_path is not None else "the anchor file"
        if anchor.problem is not None:
            first_bad = anchor.seq  # named when the anchor itself says which entry (two hashes for one)
            problem = anchor.problem + "; truncation of the ledger cannot be ruled out"
        elif anchor.missing:
            if entries:
                problem = (
                    f"{where} is missing although the ledger has {entries} entries: "
                    "truncation of the ledger cannot be ruled out"
                )
        elif anchor.seq is not None and anchor.seq > head_seq:
            first_bad = head_seq + 1
            ends = f"the table ends at {head_seq}" if entries else "the table is empty"
            problem = f"the ledger was truncated: the anchor records entry {anchor.seq} but {ends}"
        elif anchor.seq is not None and anchored_hash_found is None:
            first_bad = anchor.seq
            problem = f"entry {anchor.seq}, recorded in the anchor, is missing from the table"
        elif anchored_hash_found is not None and not hmac.compare_digest(
            anchored_hash_found, anchor.hash or ""
        ):
            first_bad = anchor.seq
            problem = (
                f"entry {anchor.seq} does not match the anchor: the anchor records a different hash for it "
                "(the entry was rewritten or the ledger replaced)"
            )

    return LedgerVerification(
        ok=problem is None,
        entries=entries,
        head_seq=head_seq,
        head_hash=head_hash,
        first_bad_seq=first_bad if problem is not None else None,
        problem=problem,
        anchored_seq=anchored_seq,
        anchor=_anchor_name(anchor, anchor_path),
        anchored_at=anchor.written_at if anchor is not None and anchored_seq is not None else None,
        anchor_lag=max(0, head_seq - anchored_seq) if anchored_seq is not None else None,
    )


def _anchor_name(anchor: AnchorReading | None, anchor_path: Path | None) -> str | None:
    if anchor is None:
        return None
    if anchor.location is not None:
        return anchor.location
    return str(anchor_path) if anchor_path is not None else None


def _altered_or_moved(
    row: StoredEntry, key: bytes, positions_of: Callable[[StoredEntry], Iterable[int]] | None
) -> str:
    """Distinguish a moved entry (valid contents written for another position) from an altered one."""
    candidates = {1} if row.prev_hash == GENESIS_HASH else set()
    if positions_of is not None:
        candidates.update(positions_of(row))
    nearby = range(max(1, row.seq - _MOVE_WINDOW), row.seq + _MOVE_WINDOW + 1)
    for original in [*sorted(candidates), *nearby]:
        if original == row.seq or original < 1:
            continue
        if hmac.compare_digest(row.computed_hash(key, seq=original), row.hash):
            return (
                f"entry {row.seq} was moved: it holds the contents written as entry {original} "
                "(entries were reordered or renumbered)"
            )
    return f"entry {row.seq} was altered: its hash does not match its contents"

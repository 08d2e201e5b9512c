"""The ledger scenario: evidence appends per second, and the time ``grantflow ledger verify`` takes.

Appends. ``Store.append_ledger`` (keyed hash chain; appends made at the same moment by threads of one
process share a transaction, :mod:`store.group_commit`) from 1, 4 and 16 concurrent writers,
on SQLite (a file) and on PostgreSQL (when reachable), against the baseline: plain INSERTs of the same rows
(same columns and payload sizes, one transaction per row) into a table of the same shape and indexes but
without the chain, from the same number of writers, on the same engine. grantflow is measured twice: with an
anchor file, as ``grantflow dev`` and a deployment without the shared anchor append (each transaction
writes a line per entry and fsyncs them after its commit), and with the shared anchor of a deployment (the
anchoring job writes the head every few seconds; an append does no anchoring).

Writers are threads sharing one store, because that is how a grantflow worker appends: its activities run
on the worker's thread pool (16 threads) and call the store through ``asyncio.to_thread``, all on one engine
and one anchor file. Appends are serialised by a database lock (SQLite's write lock, PostgreSQL's advisory
lock), so from several writers what counts is how many appends share each lock and commit; the GIL weighs
on both sides alike. (Several workers on several machines would be processes; on PostgreSQL they
queue on the same advisory lock.)

Verify. A ledger of ``--verify-entries`` entries is written in bulk (hashes computed with the product's own
:func:`store.ledger.entry_hash`, the anchor file holding one line per entry as appends leave it), then
``Store.verify_ledger`` — what ``grantflow ledger verify`` runs — is timed on a freshly opened store.

PostgreSQL work happens in a schema of its own (``gf_bench_<hex>``), dropped at the end, so nothing collides
with the tests' schemas. Targets: appends at least half the plain inserts' rate; 1,000,000 entries verified
in at most 60 s.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any
from urllib.parse import quote

from sqlalchemy import Column, Engine, Index, Integer, MetaData, Table, insert, select

import store.schema as schema
from bench.harness import record
from store import GENESIS_HASH, Store
from store.engine import make_engine
from store.ledger import canonical_data, entry_hash, format_at

LEDGER_KEY = b"bench-ledger-key-0123456789abcdef"
WRITERS = (1, 4, 16)
APPENDS = 4000
"""Appends per configuration (engine and writer count), shared out evenly between the writers."""
ROUNDS = 4
"""Turns each side takes per configuration, a quarter of its appends each time."""
VERIFY_ENTRIES = 1_000_000
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
POSTGRES_URL_ENV = "GRANTFLOW_BENCH_POSTGRES_URL"
APPEND_TARGET = 0.5
VERIFY_TARGET_S_PER_MILLION = 60.0
_BULK = 5000

plain_metadata = MetaData()
plain = Table(
    "bench_plain_ledger",
    plain_metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    *(column._copy() for column in schema.ledger.columns if column.name != "seq"),
    *(
        Index(
            str(index.name).replace("ledger", "bench_plain"),
            *(column.name for column in index.columns),
            unique=index.unique,
        )
        for index in schema.ledger.indexes
    ),
)
"""The ledger table's columns and indexes (copied from ``store.schema.ledger``), without the chain:
``seq`` is the database's own counter and ``prev_hash``/``hash`` hold 64 hex characters that nothing
computes or checks (``seq`` is an INTEGER: SQLite only numbers an INTEGER primary key itself)."""


@dataclass(frozen=True)
class Row:
    """One evidence event, as an activity would append it (a reviewer's decision with its reason)."""

    kind: str
    subject: str
    actor: str
    channel: str
    data: dict[str, Any]
    idempotency_key: str


def rows(count: int, run: str) -> list[Row]:
    """``count`` decision-like events of about 400 bytes of data each, unique idempotency keys."""
    made = []
    for i in range(count):
        request = f"req-{run}-{i:07d}"
        made.append(
            Row(
                kind="request.approved",
                subject=request,
                actor=f"approver{i % 97:03d}@example.com",
                channel="slack",
                data={
                    "request_id": request,
                    "connection": "pg-prod",
                    "role": "admin",
                    "duration_s": 7200,
                    "approvers": [f"approver{i % 97:03d}@example.com"],
                    "reason": f"incident INC-{i:06d}: read the failed migration's rows " + "x" * 200,
                    "policy": {"approver_groups": ["db-owners"], "quorum": 1},
                },
                idempotency_key=f"{request}:approved",
            )
        )
    return made


# --- databases ----------------------------------------------------------------------------------------


def postgres_url() -> str:
    return os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL


def postgres_unavailable(url: str) -> str | None:
    """None when PostgreSQL answers at ``url``, else why not."""
    try:
        import psycopg

        with psycopg.connect(_libpq(url), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    return None


def _libpq(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep and scheme.startswith("postgres") else url


def _admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(_libpq(url), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.encode())  # identifiers generated here, never input


@contextmanager
def database(engine: str, folder: Path, name: str, pg_url: str) -> Iterator[str]:
    """A database URL nobody else uses: a new SQLite file, or a new PostgreSQL schema dropped afterwards."""
    if engine == "sqlite":
        yield f"sqlite:///{folder / f'{name}.db'}"
        return
    schema_name = f"gf_bench_{uuid.uuid4().hex[:16]}"
    _admin(pg_url, f'CREATE SCHEMA "{schema_name}"')
    separator = "&" if "?" in pg_url else "?"
    try:
        yield f"{pg_url}{separator}options={quote(f'-csearch_path={schema_name}', safe='-')}"
    finally:
        _admin(pg_url, f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')


# --- appends ------------------------------------------------------------------------------------------


def concurrently(writers: int, work: list[Row], one: Callable[[Row], None]) -> float:
    """Run ``one`` over ``work`` from ``writers`` threads (each its own even share); seconds from the
    moment every thread is ready to the last one's end."""
    shares = [work[w::writers] for w in range(writers)]
    ready = threading.Barrier(writers + 1)
    failures: list[BaseException] = []

    def writer(share: list[Row]) -> None:
        ready.wait()
        try:
            for row in share:
                one(row)
        except BaseException as exc:  # reported below: a failed side must not pass for a fast one
            failures.append(exc)

    threads = [
        threading.Thread(target=writer, args=(share,), name=f"bench-writer-{i}")
        for i, share in enumerate(shares)
    ]
    for thread in threads:
        thread.start()
    ready.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise failures[0]
    return elapsed


def append_side(store: Store, writers: int, work: list[Row]) -> dict[str, Any]:
    before = store.ledger_head().seq

    def one(row: Row) -> None:
        store.append_ledger(
            kind=row.kind,
            subject=row.subject,
            actor=row.actor,
            channel=row.channel,
            data=row.data,
            idempotency_key=row.idempotency_key,
        )

    elapsed = concurrently(writers, work, one)
    appended = store.ledger_head().seq - before
    return {"rows": appended, "seconds": round(elapsed, 3), "per_s": round(appended / elapsed, 1)}


def plain_side(engine: Engine, writers: int, work: list[Row]) -> dict[str, Any]:
    """Plain INSERTs, one transaction each (``engine`` has grantflow's connection settings)."""
    filler = "0123456789abcdef" * 4
    newest = select(plain.c.seq).order_by(plain.c.seq.desc()).limit(1)

    def one(row: Row) -> None:
        values = {
            "at": format_at(datetime.now(UTC)),
            "kind": row.kind,
            "subject": row.subject,
            "actor": row.actor,
            "channel": row.channel,
            "data": json.dumps(row.data, sort_keys=True, separators=(",", ":")),
            "idempotency_key": row.idempotency_key,
            "prev_hash": filler,
            "hash": filler,
        }
        with engine.begin() as conn:
            conn.execute(insert(plain), values)

    with engine.connect() as conn:
        before = conn.execute(newest).scalar() or 0
    elapsed = concurrently(writers, work, one)
    with engine.connect() as conn:
        after = conn.execute(newest).scalar() or 0
    inserted = int(after) - int(before)
    return {"rows": inserted, "seconds": round(elapsed, 3), "per_s": round(inserted / elapsed, 1)}


def appends(
    engine: str, url: str, folder: Path, writer_counts: tuple[int, ...], count: int
) -> dict[str, Any]:
    """Plain inserts, then appends as ``grantflow dev`` makes them (the anchor file: a line and an fsync per
    append), then as a deployment with the shared anchor makes them (the anchoring job writes the head
    every few seconds; an append does no anchoring). Both stores append to one chain."""
    filed = Store(url, ledger_key=LEDGER_KEY, anchor_path=folder / f"{engine}.anchor")
    filed.migrate()
    shared = Store(url, ledger_key=LEDGER_KEY, anchor_path=None)
    bare = make_engine(url)  # one engine for every turn, as each store keeps its own: warm pools alike
    plain_metadata.create_all(bare)
    by_writers: dict[str, Any] = {}
    sides: dict[str, Callable[[int, list[Row]], dict[str, Any]]] = {
        "baseline": lambda writers, work: plain_side(bare, writers, work),
        "anchor_file": lambda writers, work: append_side(filed, writers, work),
        "shared_anchor": lambda writers, work: append_side(shared, writers, work),
    }
    try:
        for writers in writer_counts:
            print(f"  {engine}: {count:,} appends from {writers} writer(s), each way", flush=True)
            work = {name: rows(count, f"{engine[:2]}{writers}{name[0]}") for name in sides}
            done = {name: {"rows": 0, "seconds": 0.0} for name in sides}
            # In rounds, the sides taking turns: a burst of load from elsewhere hits all of them alike.
            for turn in range(ROUNDS):
                for name, side in sides.items():
                    part = side(writers, work[name][turn::ROUNDS])
                    done[name]["rows"] += part["rows"]
                    done[name]["seconds"] += part["seconds"]
            rates = {
                name: {
                    "rows": int(d["rows"]),
                    "seconds": round(d["seconds"], 3),
                    "per_s": round(d["rows"] / d["seconds"], 1),
                }
                for name, d in done.items()
            }
            by_writers[str(writers)] = {
                **rates,
                "ratio_anchor_file": round(rates["anchor_file"]["per_s"] / rates["baseline"]["per_s"], 2),
                "ratio_shared_anchor": round(rates["shared_anchor"]["per_s"] / rates["baseline"]["per_s"], 2),
            }
        # the anchor file lags the appends of the shared-anchor store: allowed, never a problem
        verification = filed.verify_ledger()
    finally:
        filed.close()
        shared.close()
        bare.dispose()
    return {
        "writers": by_writers,
        "chain_intact_after_appends": verification.ok,
        "chain_problem": verification.problem,
        "ledger_entries": verification.entries,
    }


# --- verify -------------------------------------------------------------------------------------------


def write_ledger(store: Store, count: int) -> None:
    """``count`` entries as appends would have left them: a valid chain under :data:`LEDGER_KEY`, and the
    anchor file with one ``<seq> <hash>`` line per entry."""
    assert store.anchor_path is not None
    prev = GENESIS_HASH
    start = datetime(2026, 1, 1, tzinfo=UTC)
    work = rows(min(count, 1000), "v")
    with store.anchor_path.open("w", encoding="ascii") as anchor:
        for first in range(1, count + 1, _BULK):
            batch = []
            for seq in range(first, min(first + _BULK, count + 1)):
                row = work[seq % len(work)]
                fields = {
                    "seq": seq,
                    "at": format_at(start + timedelta(seconds=seq)),
                    "kind": row.kind,
                    "subject": row.subject,
                    "actor": row.actor,
                    "channel": row.channel,
                    "data": canonical_data(row.data),
                    "idempotency_key": f"{row.idempotency_key}:{seq}",
                    "prev_hash": prev,
                }
                prev = entry_hash(LEDGER_KEY, **fields)  # type: ignore[arg-type]
                batch.append({**fields, "hash": prev})
            with store.engine.begin() as conn:
                conn.execute(insert(schema.ledger), batch)
            anchor.writelines(f"{entry['seq']} {entry['hash']}\n" for entry in batch)


def verify(engine: str, url: str, folder: Path, count: int) -> dict[str, Any]:
    anchor = folder / f"{engine}-verify.anchor"
    with Store(url, ledger_key=LEDGER_KEY, anchor_path=anchor) as writer:
        writer.migrate()
        print(f"  {engine}: writing a ledger of {count:,} entries", flush=True)
        began = time.perf_counter()
        write_ledger(writer, count)
        written_s = time.perf_counter() - began
    with Store(url, ledger_key=LEDGER_KEY, anchor_path=anchor) as reader:
        print(f"  {engine}: verifying it", flush=True)
        began = time.perf_counter()
        result = reader.verify_ledger()
        verify_s = time.perf_counter() - began
    return {
        "entries": result.entries,
        "ok": result.ok,
        "problem": result.problem,
        "anchored_seq": result.anchored_seq,
        "seconds": round(verify_s, 3),
        "per_s": round(result.entries / verify_s, 1) if verify_s else None,
        "write_seconds": round(written_s, 3),
    }


# --- the scenario -------------------------------------------------------------------------------------


def run(
    *,
    appends_per_config: int = APPENDS,
    writer_counts: tuple[int, ...] = WRITERS,
    verify_entries: int = VERIFY_ENTRIES,
    postgres: bool = True,
    results: Path | None = None,
) -> dict[str, Any]:
    command = "python -m bench ledger"
    if appends_per_config != APPENDS:
        command += f" --appends {appends_per_config}"
    if writer_counts != WRITERS:
        command += f" --writers {','.join(str(w) for w in writer_counts)}"
    if verify_entries != VERIFY_ENTRIES:
        command += f" --verify-entries {verify_entries}"
    if not postgres:
        command += " --no-postgres"
    pg_url = postgres_url()
    engines = ["sqlite"]
    skipped: dict[str, str] = {}
    if postgres:
        reason = postgres_unavailable(pg_url)
        if reason is None:
            engines.append("postgresql")
        else:
            skipped["postgresql"] = reason
            print(f"PostgreSQL skipped: {reason}", flush=True)
    figures: dict[str, Any] = {"engines": {}, "skipped": skipped}
    with TemporaryDirectory(prefix="grantflow-bench-ledger-") as tmp:
        folder = Path(tmp)
        for engine in engines:
            print(f"ledger on {engine}", flush=True)
            with database(engine, folder, "appends", pg_url) as url:
                side = appends(engine, url, folder, writer_counts, appends_per_config)
            with database(engine, folder, "verify", pg_url) as url:
                side["verify"] = verify(engine, url, folder, verify_entries)
            figures["engines"][engine] = side
    figures["targets"] = {
        "appends_vs_plain_at_least": APPEND_TARGET,
        "verify_s_per_million_at_most": VERIFY_TARGET_S_PER_MILLION,
    }
    figures["targets_met"] = targets_met(figures)
    summary = summarise(figures, writer_counts, verify_entries)
    parameters = {
        "appends_per_config": appends_per_config,
        "writers": list(writer_counts),
        "writer_kind": "threads sharing one Store",
        "verify_entries": verify_entries,
        "engines": engines,
        "anchors": ["file, a line and an fsync per append", "shared, not written by appends"],
    }
    path = record("ledger", parameters, figures, summary, command, results)
    print(summary)
    print(f"written to {path}")
    return figures


def targets_met(figures: dict[str, Any]) -> dict[str, bool]:
    met = {}
    for engine, side in figures["engines"].items():
        for anchor in ("anchor_file", "shared_anchor"):
            met[f"{engine}_appends_{anchor}"] = all(
                w[f"ratio_{anchor}"] >= APPEND_TARGET for w in side["writers"].values()
            )
        check = side["verify"]
        per_million = check["seconds"] * 1_000_000 / max(1, check["entries"])
        met[f"{engine}_verify"] = check["ok"] and per_million <= VERIFY_TARGET_S_PER_MILLION
    return met


def summarise(figures: dict[str, Any], writer_counts: tuple[int, ...], verify_entries: int) -> str:
    parts = []
    for engine, side in figures["engines"].items():
        name = "SQLite" if engine == "sqlite" else "PostgreSQL"
        rates = []
        for w in writer_counts:
            both = side["writers"][str(w)]
            rates.append(
                f"{w}w {both['anchor_file']['per_s']:,.0f} / {both['shared_anchor']['per_s']:,.0f}/s "
                f"(plain {both['baseline']['per_s']:,.0f}/s, "
                f"**ratio {both['ratio_anchor_file']} / {both['ratio_shared_anchor']}**)"
            )
        check = side["verify"]
        verdict = "intact" if check["ok"] else "NOT intact"
        parts.append(
            f"{name}: appends (anchor file / shared anchor) {', '.join(rates)}; "
            f"verify {check['entries']:,} entries {check['seconds']:.1f} s ({verdict})"
        )
    for engine, reason in figures["skipped"].items():
        parts.append(f"{engine} skipped ({reason[:60]})")
    return "; ".join(parts)

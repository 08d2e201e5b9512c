"""What a reliability scenario injected and counted, kept as one JSON file per scenario.

The records live in ``tests/reliability/results/`` (or ``$GRANTFLOW_RELIABILITY_RESULTS``), one file per
scenario, rewritten by each run of that scenario; ``docs/reliability.md`` is regenerated from them by one
command (``python -m tests.reliability.report``), never by the tests themselves, so a test run changes the
figures and a person decides when the page shows them.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def results_dir() -> Path:
    return Path(os.environ.get("GRANTFLOW_RELIABILITY_RESULTS") or Path(__file__).parent / "results")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _commit() -> str:
    """The code the scenario ran on: HEAD, ``+changes`` when tracked product files differ from it (the
    suite's own records, rewritten by every run, do not count)."""
    head = _git("rev-parse", "--short", "HEAD")
    if not head:
        return ""
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!tests/reliability/results")
    return f"{head}+changes" if changed else head


def _command() -> str:
    """The pytest command that reruns the current test (from pytest's own PYTEST_CURRENT_TEST)."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
    return f"pytest -m long '{current}'" if current else "pytest -m long tests/reliability"


def record(
    scenario: str,
    *,
    title: str,
    injected: str,
    counts: dict[str, int | float],
    outcome: str,
    seed: int | None = None,
    details: dict[str, Any] | None = None,
) -> Path:
    """Write one scenario's record: ``injected`` says what was done to the system, ``counts`` what was
    counted (requests, faults, duplicates …), ``outcome`` what held, in one sentence."""
    if not scenario.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"scenario {scenario!r}: letters, digits, '-' and '_' only")
    folder = results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{scenario}.json"
    body = {
        "scenario": scenario,
        "title": title,
        "injected": injected,
        "counts": counts,
        "outcome": outcome,
        "seed": seed,
        "details": details or {},
        "command": _command(),
        "commit": _commit(),
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    return path


def load_all(folder: Path | None = None) -> list[dict[str, Any]]:
    folder = folder or results_dir()
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]

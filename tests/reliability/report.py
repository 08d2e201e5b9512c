"""``python -m tests.reliability.report``: write docs/reliability.md from the suite's recorded results.

Each scenario of ``tests/reliability`` records what it injected and what it counted
(:mod:`tests.reliability.results`); this page puts them side by side, with the command that reruns each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tests.reliability.results import REPO_ROOT, load_all, results_dir

DOC = REPO_ROOT / "docs" / "reliability.md"

HEADER = """# Reliability

What grantflow's reliability suite (`tests/reliability`, in the long-running set: `pytest -m long`) did to
a running stack and what it counted. Every figure below comes from the suite's own last recorded run of
that scenario; the page is regenerated from those records with `python -m tests.reliability.report`.
A scenario that finds a fault fails until the product is fixed, so every row here is a scenario that held
when it was recorded; those marked "on demand" have also missed on a loaded CI run, as their sections say.
"""


FOUND = {
    "worker-crashes": (
        "An SDK defect (temporalio 1.35): a decision or extension sent as a Temporal Update while the worker "
        "was dead after a timed-out workflow task was accepted after the task's activity results by the next "
        "worker and before them on replay, a nondeterminism error that left 1 to 3 of 200 requests stuck in "
        "3 of 4 runs on 2026-12-06 (the history is in `tests/histories/sdk_defects/`). Decisions and "
        "actions on requests, and a campaign owner's commands, are now signalled commands answered by a "
        "query: a signal replays in the order it was written. Then, on a slower machine (2026-12-07), a "
        "worker restarted after a kill took every open request's workflow task at once (the SDK's default of "
        "100 slots): with workflow code sharing one interpreter, tasks ran 9-22 s, past Temporal's 10 s "
        "workflow-task timeout, and were retried for minutes. A worker now runs at most 32 workflow tasks "
        "at once (`worker.MAX_CONCURRENT_WORKFLOW_TASKS`); the rest wait on the task queue, where no timeout "
        "runs."
    ),
}
"""What a scenario found in the product and what was changed, shown in its section."""

ON_DEMAND: dict[str, str] = {}
"""Scenarios ``.ci/run`` leaves out (marker ``on_demand``), and why: shown with their figures, which come
from runs that held."""


def _figure(value: int | float) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}"


def render(results: list[dict[str, Any]]) -> str:
    lines = [HEADER]
    if not results:
        lines.append("No scenario has recorded a result yet: run `pytest -m long tests/reliability`.\n")
        return "\n".join(lines)
    lines.append("| Scenario | Injected | Outcome |")
    lines.append("|---|---|---|")
    for r in results:
        flag = " (on demand, not in CI)" if r["scenario"] in ON_DEMAND else ""
        lines.append(f"| [{r['title']}](#{r['scenario']}){flag} | {r['injected']} | {r['outcome']} |")
    lines.append("")
    for r in results:
        lines.append(f'<a id="{r["scenario"]}"></a>\n## {r["title"]}\n')
        lines.append(f"**Injected:** {r['injected']}\n")
        lines.append(f"**Outcome:** {r['outcome']}\n")
        if r["scenario"] in FOUND:
            lines.append(f"**Found and fixed:** {FOUND[r['scenario']]}\n")
        if r["scenario"] in ON_DEMAND:
            lines.append(f"**Not in CI:** {ON_DEMAND[r['scenario']]}\n")
        lines.append("| Counted | |")
        lines.append("|---|--:|")
        for name, value in r["counts"].items():
            lines.append(f"| {name} | {_figure(value)} |")
        lines.append("")
        seed = f", seed {r['seed']}" if r.get("seed") is not None else ""
        commit = f" on {r['commit']}" if r.get("commit") else ""
        lines.append(f"Recorded {r['recorded_at']}{commit}{seed}. Rerun: `{r['command']}`\n")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--results", type=Path, default=None, help="folder of recorded results")
    parser.add_argument("--out", type=Path, default=DOC)
    args = parser.parse_args(argv)
    results = load_all(args.results or results_dir())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(results))
    print(f"{args.out}: {len(results)} scenarios", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m bench plot``: wall time against campaign size for grantflow and its baseline, from the newest
result of each size in ``bench/results/``, drawn to ``bench/campaign.png`` (linked from the README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no screen: draw straight to a file

import matplotlib.pyplot as plt

from bench.harness import BENCH_DIR, RESULTS_DIR

PLOT = BENCH_DIR / "campaign.png"


def newest_per_size(results: Path = RESULTS_DIR) -> list[dict[str, Any]]:
    newest: dict[int, dict[str, Any]] = {}
    for path in sorted(results.glob("campaign-*.json")):
        doc = json.loads(path.read_text())
        size = doc["parameters"]["size"]
        if size not in newest or doc["finished_at"] >= newest[size]["finished_at"]:
            newest[size] = doc
    return [newest[s] for s in sorted(newest)]


def draw(runs: list[dict[str, Any]], out: Path = PLOT) -> Path:
    if not runs:
        raise SystemExit("no campaign results yet: run python -m bench campaign --size N first")
    sizes = [r["parameters"]["size"] for r in runs]
    ours = [r["grantflow"]["timings_s"]["closed"] for r in runs]
    bare = [r["baseline"]["timings_s"]["closed"] for r in runs]
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    time_axis.plot(sizes, ours, "o-", color="#1f6feb", label="grantflow")
    time_axis.plot(sizes, bare, "s--", color="#8b949e", label="bare Temporal baseline, same shape")
    for size, t, r in zip(sizes, ours, runs, strict=True):
        time_axis.annotate(
            f"{r['ratio_end_to_end']}\u00d7", (size, t), textcoords="offset points", xytext=(4, 6)
        )
    time_axis.set(xscale="log", yscale="log", xlabel="items", ylabel="seconds, launch → revocations applied")
    time_axis.set_title("Campaign end to end")
    time_axis.grid(True, which="both", alpha=0.3)
    time_axis.legend()
    ours_rss = [r["grantflow"]["peak_rss_mib"] for r in runs]
    memory_axis.plot(sizes, ours_rss, "o-", color="#1f6feb", label="grantflow")
    memory_axis.plot(
        sizes, [r["baseline"]["peak_rss_mib"] for r in runs], "s--", color="#8b949e", label="baseline"
    )
    memory_axis.set(xscale="log", xlabel="items", ylabel="MiB", title="Worker peak memory")
    memory_axis.grid(True, which="both", alpha=0.3)
    memory_axis.legend()
    commits = sorted({r["commit"] for r in runs})
    cores = runs[-1]["machine"]["cpus"]
    figure.suptitle(f"grantflow campaigns on {cores} cores (commits {', '.join(commits)})")
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out

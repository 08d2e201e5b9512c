"""The campaign scenario: grantflow's ``CampaignWorkflow`` against :mod:`bench.bare_campaign`, each on a
fresh dev server (SQLite file), one after the other in the same run."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.harness import dev_server, record, run_child

REVIEWER_SHARE = 50
"""Items per reviewer by default: 100,000 items over 2,000 reviewers, 1,000,000 over 20,000."""


async def run(size: int, reviewers: int | None, results: Path | None = None) -> dict[str, Any]:
    command = f"python -m bench campaign --size {size}" + (f" --reviewers {reviewers}" if reviewers else "")
    reviewers = reviewers or max(1, size // REVIEWER_SHARE)
    sides: dict[str, dict[str, Any]] = {}
    for mode in ("baseline", "grantflow"):
        print(f"campaign of {size:,} items over {reviewers:,} reviewers: {mode}", flush=True)
        with tempfile.TemporaryDirectory(prefix="grantflow-bench-temporal-") as folder:
            async with dev_server(Path(folder) / "temporal.db") as env:
                target = env.client.service_client.config.target_host
                arguments = ["--mode", mode, "--size", str(size), "--reviewers", str(reviewers)]
                sides[mode] = run_child("bench.campaign_run", [*arguments, "--temporal", target])
    ours, bare = sides["grantflow"], sides["baseline"]
    ratio = round(ours["timings_s"]["closed"] / bare["timings_s"]["closed"], 2)
    figures = {
        "grantflow": ours,
        "baseline": bare,
        "ratio_end_to_end": ratio,
        "ratio_snapshot": round(ours["timings_s"]["open"] / bare["timings_s"]["open"], 2),
    }
    summary = (
        f"{ours['items']:,} items / {reviewers:,} reviewers: {ours['timings_s']['closed']:.0f} s end to end, "
        f"baseline {bare['timings_s']['closed']:.0f} s, **ratio {ratio}**; worker peak "
        f"{ours['peak_rss_mib']:.0f} MiB (baseline {bare['peak_rss_mib']:.0f}); largest history "
        f"{ours['largest_history_events']:,} events"
    )
    parameters = {"size": size, "reviewers": reviewers, "revoked_share": 0.3}
    path = record("campaign", parameters, figures, summary, command, results)
    print(summary)
    print(f"written to {path}")
    return figures

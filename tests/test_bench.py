"""The benchmarks' smoke runs: each scenario at a tiny size, so the benchmark code cannot rot. Timings are
recorded, never asserted; what is asserted is that both sides did the same work."""

from __future__ import annotations

import json
from pathlib import Path

from bench import campaign, plot


async def test_the_campaign_scenario_runs_both_sides_and_records_them(tmp_path: Path) -> None:
    results = tmp_path / "results"
    figures = await campaign.run(60, 3, results=results)
    ours, bare = figures["grantflow"], figures["baseline"]
    assert ours["items"] == bare["items"] == 60
    assert ours["outcomes"] == {"kept": 42, "revoked": 18}  # 7 in 10 kept by reviewers, the rest revoked
    assert bare["outcomes"] == {"kept": 42, "revoked": 18}
    assert ours["notifications"] == bare["notifications"] == 3  # one notice per reviewer
    for side in (ours, bare):
        assert side["timings_s"]["open"] <= side["timings_s"]["decided"] <= side["timings_s"]["closed"]
        assert side["peak_rss_mib"] > 0 and side["largest_history_events"] > 0
    written = json.loads(next(results.glob("campaign-60-*.json")).read_text())
    assert written["command"] == "python -m bench campaign --size 60 --reviewers 3"
    assert written["ratio_end_to_end"] > 0 and written["machine"]["cpus"]
    line = (tmp_path / "results.md").read_text().splitlines()[-1]
    assert "`python -m bench campaign --size 60 --reviewers 3`" in line and "60 items / 3 reviewers" in line
    drawn = plot.draw(plot.newest_per_size(results), tmp_path / "campaign.png")
    assert drawn.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""The benchmarks' smoke runs: each scenario at a tiny size, so the benchmark code cannot rot. Timings are
recorded, never asserted; what is asserted is that both sides did the same work."""

from __future__ import annotations

import json
from pathlib import Path

from bench import campaign, ledger, plot, scim_sync
from bench.expiry_path import STAGES


async def test_the_campaign_scenario_runs_both_sides_and_records_them(tmp_path: Path) -> None:
    results = tmp_path / "results"
    figures = await campaign.run(60, 3, results=results)
    ours, bare = figures["grantflow"], figures["baseline"]
    assert ours["items"] == bare["items"] == 60
    assert ours["outcomes"] == {"kept": 42, "revoked": 18}  # 7 in 10 kept by reviewers, the rest revoked
    assert bare["outcomes"] == {"kept": 42, "revoked": 18}
    # one notice per reviewer, then one outcome summary per reviewer and one to the owner
    assert ours["notifications"] == bare["notifications"] == 3 + 3 + 1
    for side in (ours, bare):
        assert side["timings_s"]["open"] <= side["timings_s"]["decided"] <= side["timings_s"]["closed"]
        assert side["peak_rss_mib"] > 0 and side["largest_history_events"] > 0
        assert all(0 <= p["from_s"] <= p["to_s"] and p["count"] > 0 for p in side["activity_phases"])
    # where the time went, phase by phase: each side's revocations, one activity per partition
    applied = {p["activity"]: p["count"] for p in ours["activity_phases"] + bare["activity_phases"]}
    assert applied["campaign_apply_partition"] == applied["bare_apply"] > 0
    written = json.loads(next(results.glob("campaign-60-*.json")).read_text())
    assert written["command"] == "python -m bench campaign --size 60 --reviewers 3"
    assert written["ratio_end_to_end"] > 0 and written["machine"]["cpus"]
    line = (tmp_path / "results.md").read_text().splitlines()[-1]
    assert "`python -m bench campaign --size 60 --reviewers 3`" in line and "60 items / 3 reviewers" in line
    drawn = plot.draw(plot.newest_per_size(results), tmp_path / "campaign.png")
    assert drawn.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_ledger_scenario_appends_as_many_rows_as_it_inserts_and_verifies_them(tmp_path: Path) -> None:
    results = tmp_path / "results"
    figures = ledger.run(appends_per_config=24, writer_counts=(1, 4), verify_entries=300, results=results)
    # PostgreSQL is measured when it answers; otherwise the result says why it was left out
    assert "sqlite" in figures["engines"]
    assert set(figures["engines"]) | set(figures["skipped"]) == {"sqlite", "postgresql"}
    for side in figures["engines"].values():
        for writers in ("1", "4"):
            both = side["writers"][writers]
            assert (
                both["anchor_file"]["rows"] == both["shared_anchor"]["rows"] == both["baseline"]["rows"] == 24
            )
            assert both["ratio_anchor_file"] > 0 and both["ratio_shared_anchor"] > 0
        # entries from concurrent writers (two stores, four threads) still form one intact chain
        assert side["chain_intact_after_appends"] and side["ledger_entries"] == 96
        check = side["verify"]
        assert check["ok"] and check["entries"] == check["anchored_seq"] == 300
    written = json.loads(next(results.glob("ledger-*.json")).read_text())
    command = "python -m bench ledger --appends 24 --writers 1,4 --verify-entries 300"
    assert written["command"] == command and written["parameters"]["writer_kind"].startswith("threads")
    line = (tmp_path / "results.md").read_text().splitlines()[-1]
    assert f"`{command}`" in line and "verify 300 entries" in line


async def test_the_scim_sync_scenario_lists_the_same_directory_on_both_sides(tmp_path: Path) -> None:
    results = tmp_path / "results"
    figures = await scim_sync.run(60, 6, 10, results=results)
    full, incremental = figures["full"], figures["incremental"]
    assert full["grantflow"]["listed"] == full["baseline"]["listed"] == {"users": 60, "groups": 6}
    assert full["grantflow"]["mode"] == "full" and full["grantflow"]["applied"]
    assert full["grantflow"]["counts"]["joiners"] == full["grantflow"]["people_stored"] == 60
    # 4 movers, 3 new emails, 2 people added to another team's group, 1 leaver: only they are listed again
    assert incremental["changes"] == {"manager": 4, "email": 3, "group": 2, "deactivate": 1}
    ours, bare = incremental["grantflow"], incremental["baseline"]
    assert ours["listed"] == bare["listed"] == {"users": 8, "groups": 2}
    assert ours["mode"] == "incremental" and ours["applied"] and ours["gateway_error"] is None
    assert ours["counts"] == {"joiners": 0, "movers": 4, "leavers": 1, "updated": 3, "group_changes": 2}
    written = json.loads(next(results.glob("scim-sync-60-*.json")).read_text())
    assert written["command"] == "python -m bench scim-sync --users 60 --groups 6 --changes 10"
    line = (tmp_path / "results.md").read_text().splitlines()[-1]
    assert "60 users / 6 groups" in line and "incremental of 10 changes" in line


async def test_the_jit_scenario_ends_every_grant_and_session_on_both_sides(tmp_path: Path) -> None:
    from bench import jit

    results = tmp_path / "results"
    # Small and quick: 6 grants over 2 s, 4 in one second, approved 10 a second, sessions opened 3 s in,
    # the first expiry 2 s after the last session opened.
    figures = await jit.run(6, 2, 4, results=results, approve_rate=10, session_after=3, lead=2)
    for side in (figures["grantflow"], figures["baseline"]):
        for phase, count in (("spread", 6), ("burst", 4)):
            seen = side[phase]
            # every grant written, then revoked, and every session opened under one killed (read from hoop)
            assert seen["grants"] == seen["written"] == seen["revoked"] == count
            assert seen["sessions_opened"] == seen["sessions_killed"] == count
            assert seen["expiry_to_revoked_and_killed_s"]["count"] == count
            assert seen["approval_to_visible_s"]["count"] == count
            # every revocation traced back through its history to the timer that scheduled it
            path = seen["expiry_path_s"]
            assert path["explained"] == count
            assert all(path[stage]["count"] == count for stage in STAGES)
            assert set(path["slowest"]) == set(STAGES)
        assert side["requests_ended"] == 10
        assert side["peak_rss_mib"] > 0
    assert figures["grantflow"]["expires_at_differs_from_hoop"] == 0
    written = json.loads(next(results.glob("jit-6-*.json")).read_text())
    command = (
        "python -m bench jit --grants 6 --spread 2 --burst 4 --approve-rate 10 --session-after 3 --lead 2"
    )
    assert written["command"] == command
    assert written["ratios"]["burst"]["expiry_to_revoked_and_killed_s"]["p99"] is not None
    line = (tmp_path / "results.md").read_text().splitlines()[-1]
    assert f"`{command}`" in line


def test_a_jit_run_whose_expiries_spread_wider_than_planned_says_its_load_was_lighter() -> None:
    from bench.jit import lighter_load_note

    assert lighter_load_note(60.02, 60) is None
    assert lighter_load_note(3.9, 3) is None  # a second of slack for small runs
    note = lighter_load_note(107.972, 60)
    assert note is not None and "107.972 s, not 60 s" in note

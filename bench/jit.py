"""The jit scenario: how soon access ends after a grant's expiry, live sessions included, with many grants
active at once and many expiring in the same second — grantflow's ``AccessRequestWorkflow`` (requests made
and approved through ``RequestService``) against :mod:`bench.bare_jit`, each side in its own process on a
fresh dev server (SQLite file), one after the other in the same run (see :mod:`bench.jit_run`).

Figures, both sides, each phase: approval → grant written in the gateway, and scheduled expiry → grant
revoked and session killed (p50/p95/p99/max, from the stand-in's own records), counts, peak memory, and
the ratios grantflow ÷ baseline of the p99s. Targets (not asserted): with 1,000 grants, expiry → revoked
and killed p99 ≤ 2 s and ≤ twice the baseline's; 100 in the same second, p99 ≤ 3 times the baseline's;
approval → grant visible p99 ≤ 1 s.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.harness import dev_server, record, run_child
from bench.jit_run import APPROVE_RATE, LEAD_S, SESSION_AFTER_S

SPREAD_TOLERANCE = 1.1
"""How much wider than planned the expiries may fall before a run's line says its load was lighter."""

PHASES = ("spread", "burst")


def slowest_path_note(slowest: dict[str, float | None]) -> str:
    """Where the slowest 1% of grantflow's spread expiries spent their time (``bench.expiry_path``)."""
    said = ", ".join(f"{stage.replace('_', ' ')} {seconds} s" for stage, seconds in slowest.items())
    return f"slowest 1% of expiries: {said}"


def lighter_load_note(actual_spread: float, planned_spread: float) -> str | None:
    """What a run's line says when its expiries fell over a wider window than planned. Each expiry is
    planned from its approval, so grants written late move their expiries later and thin them out: the run
    measured a lighter load than the one its command names."""
    if actual_spread <= planned_spread * SPREAD_TOLERANCE + 1:
        return None
    return f"**expiries spread over {actual_spread:g} s, not {planned_spread:g} s** (grants written late)"


def ratio(ours: float | None, bare: float | None) -> float | None:
    if ours is None or not bare:
        return None
    return round(ours / bare, 2)


async def run(
    grants: int,
    spread: float,
    burst: int,
    results: Path | None = None,
    approve_rate: float = APPROVE_RATE,
    session_after: float = SESSION_AFTER_S,
    lead: float = LEAD_S,
) -> dict[str, Any]:
    """``session_after``: seconds between a grant being written and its session opening, which is also how
    long after the expiry hoop would end that session by itself (so the longest revocation a kill is
    still measured for). ``lead``: seconds between the last grant's session opening and the first expiry."""
    command = f"python -m bench jit --grants {grants} --spread {spread:g} --burst {burst}" + (
        f" --approve-rate {approve_rate:g}" if approve_rate != APPROVE_RATE else ""
    )
    if session_after != SESSION_AFTER_S:
        command += f" --session-after {session_after:g}"
    if lead != LEAD_S:
        command += f" --lead {lead:g}"
    sides: dict[str, dict[str, Any]] = {}
    for mode in ("grantflow", "baseline"):
        print(f"jit: {grants:,} grants over {spread:g} s, then {burst:,} in one second: {mode}", flush=True)
        with tempfile.TemporaryDirectory(prefix="grantflow-bench-temporal-") as folder:
            async with dev_server(Path(folder) / "temporal.db") as env:
                target = env.client.service_client.config.target_host
                sides[mode] = run_child(
                    "bench.jit_run",
                    [
                        "--mode", mode,
                        "--grants", str(grants),
                        "--spread", f"{spread:g}",
                        "--burst", str(burst),
                        "--approve-rate", f"{approve_rate:g}",
                        "--session-after", f"{session_after:g}",
                        "--lead", f"{lead:g}",
                        "--temporal", target,
                    ],
                )  # fmt: skip
    ours, bare = sides["grantflow"], sides["baseline"]
    ratios: dict[str, Any] = {}
    for phase in PHASES:
        if phase not in ours or phase not in bare:
            continue
        ratios[phase] = {
            measure: {
                q: ratio(ours[phase][measure][q], bare[phase][measure][q])
                for q in ("p50", "p95", "p99", "max")
            }
            for measure in ("expiry_to_revoked_and_killed_s", "approval_to_visible_s")
        }
    figures = {"grantflow": ours, "baseline": bare, "ratios": ratios}
    parts = []
    for phase, label in (("spread", f"{grants:,} over {spread:g} s"), ("burst", f"{burst:,} in 1 s")):
        if phase in ours and phase in bare:
            end_ours = ours[phase]["expiry_to_revoked_and_killed_s"]["p99"]
            end_bare = bare[phase]["expiry_to_revoked_and_killed_s"]["p99"]
            parts.append(
                f"{label}: expiry → revoked+killed p99 {end_ours} s, baseline {end_bare} s, "
                f"**x{ratios[phase]['expiry_to_revoked_and_killed_s']['p99']}**"
            )
    if "spread" in ours and "expiry_path_s" in ours["spread"]:
        parts.append(slowest_path_note(ours["spread"]["expiry_path_s"]["slowest"]))
    if "spread" in ours:
        note = lighter_load_note(ours["spread"].get("expiry_spread_s", spread), spread)
        if note is not None:
            parts.append(note)
        parts.append(f"approval → visible p99 {ours['spread']['approval_to_visible_s']['p99']} s")
        unanswered = sum(
            ours[name].get("approvals_unanswered_in_time", 0) for name in ("spread", "burst") if name in ours
        )
        if unanswered:
            parts.append(f"{unanswered} approvals not answered within the edge's 30 s (carried out later)")
    parts.append(f"worker peak {ours['peak_rss_mib']:.0f} MiB (baseline {bare['peak_rss_mib']:.0f})")
    summary = "; ".join(parts)
    parameters = {
        "size": grants,
        "spread_s": spread,
        "burst": burst,
        "approve_rate": approve_rate,
        "session_after_s": session_after,
        "lead_s": lead,
    }
    path = record("jit", parameters, figures, summary, command, results)
    print(summary)
    print(f"written to {path}")
    return figures

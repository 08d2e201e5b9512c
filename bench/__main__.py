"""``python -m bench <scenario> [options]``: see ``bench/__init__.py`` and the README's performance notes."""

from __future__ import annotations

import argparse
import asyncio

from bench import campaign, harness


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    scenarios = parser.add_subparsers(dest="scenario", required=True)
    camp = scenarios.add_parser("campaign", help="a campaign end to end against a bare workflow of its shape")
    camp.add_argument("--size", type=int, default=10_000, help="items (one per member)")
    camp.add_argument("--reviewers", type=int, default=None, help="default: one per 50 items")
    led = scenarios.add_parser(
        "ledger", help="evidence appends per second against plain inserts; ledger verify"
    )
    led.add_argument("--appends", type=int, default=4000, help="appends per engine and writer count")
    led.add_argument("--writers", default="1,4,16", help="concurrent writers (threads), comma-separated")
    led.add_argument("--verify-entries", type=int, default=1_000_000, help="entries in the verified ledger")
    led.add_argument("--no-postgres", action="store_true", help="SQLite only")
    sync = scenarios.add_parser(
        "scim-sync", help="full and incremental identity sync against raw SCIM paging"
    )
    sync.add_argument("--users", type=int, default=10_000)
    sync.add_argument("--groups", type=int, default=1_000)
    sync.add_argument("--changes", type=int, default=100, help="changes seen by the incremental sync")
    jitp = scenarios.add_parser("jit", help="grant expiry to revoked and session killed, against bare timers")
    jitp.add_argument("--grants", type=int, default=1000, help="concurrent grants, expiries spread out")
    jitp.add_argument("--spread", type=float, default=60.0, help="seconds the expiries are spread over")
    jitp.add_argument("--burst", type=int, default=100, help="grants expiring in the same second")
    jitp.add_argument("--approve-rate", type=float, default=4.0, help="approvals started per second")
    jitp.add_argument("--session-after", type=float, default=30.0, help="seconds from grant to session open")
    jitp.add_argument(
        "--lead", type=float, default=5.0, help="seconds from the last session to the first expiry"
    )
    scenarios.add_parser("plot", help="redraw bench/campaign.png from the results")
    args = parser.parse_args()
    harness.commit()  # the code measured is the code at the start of the run
    if args.scenario == "campaign":
        asyncio.run(campaign.run(args.size, args.reviewers))
    elif args.scenario == "ledger":
        from bench import ledger

        ledger.run(
            appends_per_config=args.appends,
            writer_counts=tuple(int(w) for w in args.writers.split(",")),
            verify_entries=args.verify_entries,
            postgres=not args.no_postgres,
        )
    elif args.scenario == "scim-sync":
        from bench import scim_sync

        asyncio.run(scim_sync.run(args.users, args.groups, args.changes))
    elif args.scenario == "jit":
        from bench import jit

        asyncio.run(
            jit.run(
                args.grants,
                args.spread,
                args.burst,
                approve_rate=args.approve_rate,
                session_after=args.session_after,
                lead=args.lead,
            )
        )
    elif args.scenario == "plot":
        from bench import plot  # matplotlib only when drawing

        print(f"drawn {plot.draw(plot.newest_per_size())}")


if __name__ == "__main__":
    main()

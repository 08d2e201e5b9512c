"""``python -m bench <scenario> [options]``: see ``bench/__init__.py`` and the README's performance
section."""

from __future__ import annotations

import argparse
import asyncio

from bench import campaign


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    scenarios = parser.add_subparsers(dest="scenario", required=True)
    camp = scenarios.add_parser("campaign", help="a campaign end to end against a bare workflow of its shape")
    camp.add_argument("--size", type=int, default=10_000, help="items (one per member)")
    camp.add_argument("--reviewers", type=int, default=None, help="default: one per 50 items")
    scenarios.add_parser("plot", help="redraw bench/campaign.png from the results")
    args = parser.parse_args()
    if args.scenario == "campaign":
        asyncio.run(campaign.run(args.size, args.reviewers))
    elif args.scenario == "plot":
        from bench import plot  # matplotlib only when drawing

        print(f"drawn {plot.draw(plot.newest_per_size())}")


if __name__ == "__main__":
    main()

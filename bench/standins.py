"""A benchmark's stand-ins (scim2-server and the hoop stand-in, both in memory) in a process of their own,
holding the generated organisation, so the measured process is the worker alone: its peak memory is the
worker's, and the stand-ins' work — the same on both sides — runs beside it rather than in it.

``python -m bench.standins --size N --reviewers R`` prints one JSON line with both base URLs and serves until
its standard input closes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from bench.harness import REPO
from bench.organisation import Organisation
from sandbox.hoop import HoopStandIn
from sandbox.scim import ScimDirectoryServer
from sandbox.seed import GRANTFLOW_GROUP

HOOP_KEY = "hpk_bench_grantflow"
SCIM_TOKEN = "bench-scim-token"


@contextmanager
def standins(org: Organisation) -> Iterator[tuple[str, str]]:
    """(SCIM base URL, hoop base URL) of a stand-in process holding ``org``; stopped on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.standins", "--size", str(org.size), "--reviewers", str(org.reviewers)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the stand-ins did not start (exit code {process.wait()})")
        urls = json.loads(line)
        yield urls["scim"], urls["hoop"]
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.standins")
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--reviewers", type=int, required=True)
    args = parser.parse_args()
    scim = ScimDirectoryServer(bearer_token=SCIM_TOKEN)
    hoop = HoopStandIn(api_keys={HOOP_KEY: ["admin", GRANTFLOW_GROUP]}, api_key_names={HOOP_KEY: "grantflow"})
    urls = {"scim": scim.start(), "hoop": hoop.start()}
    Organisation(size=args.size, reviewers=args.reviewers).build(scim, hoop)
    print(json.dumps(urls), flush=True)
    try:
        sys.stdin.read()  # until the benchmark closes our standard input
    finally:
        hoop.stop()
        scim.stop()


if __name__ == "__main__":
    main()

"""Redis failovers under flagsvc's whole load, measured: Sentinel and Cluster, the primary killed (SIGKILL) or
paused past the failover timeout (SIGSTOP), each with and without FLAGSVC_REDIS_MIN_REPLICAS_ACK=1.

Each run starts a setup of its own from the redis-server flagsvc ships (tests/support/redis_ha.py: Sentinel
1 primary + 2 replicas + 3 sentinels, down-after-milliseconds 2000; Cluster 3 + 3, cluster-node-timeout 2000),
a real `flagsvc serve`, and the load of tests/support/failover_load.py (an operator writing ~50/s, two
controllers deciding, outcome batches ~20/s, N streaming SDKs evaluating). The failed primary comes back after
`--down-for` seconds (restarted on its port, or SIGCONT). One line per run, then a table.

    flock /tmp/flagsvc-bench.lock .venv/bin/python bench/failover.py [--sdks 200] [--down-for 6]
        [--only sentinel|cluster] [--fault kill|pause] [--acks 0|1]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.failover_load import Figures, run_failover  # noqa: E402
from tests.support.redis_ha import ClusterSetup, SentinelSetup  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdks", type=int, default=200)
    parser.add_argument("--down-for", type=float, default=6.0)
    parser.add_argument("--only", choices=["sentinel", "cluster"])
    parser.add_argument("--fault", choices=["kill", "pause"])
    parser.add_argument("--acks", type=int, choices=[0, 1])
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # the controllers log every failed tick of the outage
    runs = [(kind, fault, acks) for kind in ("sentinel", "cluster") for fault in ("kill", "pause")
            for acks in (0, 1) if args.only in (None, kind) and args.fault in (None, fault)
            and args.acks in (None, acks)]
    results: list[Figures] = []
    for kind, fault, acks in runs:
        kind_of_setup = SentinelSetup if kind == "sentinel" else ClusterSetup
        with tempfile.TemporaryDirectory(prefix="flagsvc-failover-") as tmp, \
                kind_of_setup(Path(tmp) / "redis") as setup:
            figures = run_failover(setup, fault, acks=acks, sdks=args.sdks, work_dir=Path(tmp),
                                   down_for=args.down_for)
        print(figures.line(), flush=True)
        results.append(figures)
    print("\n| setup | fault | MIN_REPLICAS_ACK | writes back | old primary | writes acked / lost | decisions / "
          "double / stale | batches acked / lost / double counted | SDK evaluations / errors / behind |")
    print("|---|---|---|---|---|---|---|---|---|")
    for f in results:
        back = "never" if f.writes_back_s is None else f"{f.writes_back_s:.1f} s"
        print(f"| {f.setup} | {f.fault} | {f.acks} | {back} | {f.old_primary_role} | {f.writes_acked} / "
              f"{len(f.writes_lost)} | {f.decisions} / {len(f.double_decisions)} / {len(f.stale_decisions)} | "
              f"{f.batches_acked} / {len(f.batches_lost)} / {f.outcomes_double_counted} | {f.sdk_evaluations} / "
              f"{f.sdk_errors} / {f.sdks_behind} |")
    print(f"\n{args.sdks} SDKs, the primary down for {args.down_for:.0f} s")


if __name__ == "__main__":
    main()

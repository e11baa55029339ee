"""What "no single reporter decides" costs honest rollouts: the same traffic split over k SDK instances, judged
with and without the controller's reporter check (flagsvc/service/reporter_check.py), through the real controller
and judge on a memory store.

    python bench/reporters.py [--trials 20] [--seed 1] [--reporters 1,2,3,10]

The world: 100 requests/s in all, split evenly (Poisson) over k reporters; stable 1 % errors, lognormal latency
(median 100 ms, sigma 0.5); stages 5/25/50/100 %, bake 60 s, a look every 2 s, default settings, 30 minutes at
most. Scenarios: healthy; canary errors 2x; canary latency 1.5x. Reported: how rollouts ended, and the median
time to their end.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flagsvc_client.protocol.sketch import bucket_index

from flagsvc.domain import flag as flags
from flagsvc.domain.flag import State
from flagsvc.service.announce import ChangeAnnouncer
from flagsvc.service.controller import build_controller
from flagsvc.store.memory import MemoryStore
from flagsvc.store.roles import OutcomeEntry

RATE, LOOK, HORIZON = 100.0, 2.0, 1800.0
SCENARIOS = {"healthy": (1.0, 1.0), "errors 2x": (2.0, 1.0), "latency 1.5x": (1.0, 1.5)}
_ids = itertools.count()


def poisson(rng: random.Random, mean: float) -> int:
    if mean > 40:
        return max(round(rng.gauss(mean, math.sqrt(mean))), 0)
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k, p = k + 1, p * rng.random()
    return k


def binomial(rng: random.Random, n: int, p: float) -> int:
    return sum(rng.random() < p for _ in range(n))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def arm(rng: random.Random, n: int, error_rate: float, latency_factor: float) -> dict[str, int]:
    errors = binomial(rng, n, error_rate)
    out = {"count": n, "errors": errors, "error_users": errors} if n else {}
    for _ in range(n):
        index = bucket_index(100.0 * math.exp(rng.gauss(0, 0.5)) * latency_factor)
        out[f"lat:{index}"] = out.get(f"lat:{index}", 0) + 1
    return out


def rollout(rng: random.Random, reporters: int, scenario: str, checked: bool, shadows: int) -> tuple[str, float]:
    error_factor, latency_factor = SCENARIOS[scenario]
    clock = Clock()
    store = MemoryStore(clock=clock)
    flag, entry = flags.new_flag("f", {"stages": [5, 25, 50, 100], "bake_seconds": 60}, now=clock(), actor="b")
    store.create(flag, entry)
    started, entry = flags.start(flag, now=clock(), actor="b")
    store.replace(started, entry, expected_revision=1)
    ctl = build_controller(store, ChangeAnnouncer(store), clock=clock, owner="bench")
    ctl.reporters.shadows = shadows
    if not checked:
        ctl.reporters.check = lambda key, created, revision, verdict, *rest: verdict  # type: ignore[method-assign]
    ids = [f"reporter-{next(_ids):08d}" for _ in range(reporters)]
    start = clock()
    while clock() - start < HORIZON:
        current = store.get("f")
        share = current.percent / 100
        for reporter in ids:
            n = poisson(rng, RATE * LOOK / reporters)
            n_canary = binomial(rng, n, share)
            increments = {}
            for name, values in (("stable", arm(rng, n - n_canary, 0.01, 1.0)),
                                 ("canary", arm(rng, n_canary, 0.01 * error_factor, latency_factor))):
                increments.update({f"{name}:{k}": v for k, v in values.items() if v})
            store.add_outcomes(f"b{next(_ids):010d}", {"f": OutcomeEntry(current.revision, increments, reporter)})
        clock.now += LOOK
        ctl.tick()
        state = store.get("f").state
        if state in (State.COMPLETE, State.ROLLED_BACK):
            return state.value, clock() - start
    return "held", HORIZON


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reporters", default="1,2,3,10")
    parser.add_argument("--shadows", type=int, default=3, help="reporters left out in turn (the controller: 3)")
    args = parser.parse_args()
    began = time.time()
    print(f"{args.trials} rollouts per row, seed {args.seed}, {args.shadows} shadow(s); median time to the end (s)")
    print(f"{'scenario':<13} | {'reporters':>9} | {'check':<5} | {'complete':>8} | {'rolled back':>11} | "
          f"{'held':>5} | {'median s':>8}")
    for scenario in SCENARIOS:
        for k in (int(x) for x in args.reporters.split(",")):
            for checked in (False, True):
                rng = random.Random(f"{args.seed}-{scenario}-{k}")  # the same traffic with and without the check
                ends = [rollout(rng, k, scenario, checked, args.shadows) for _ in range(args.trials)]
                count = {name: sum(e == name for e, _ in ends) for name in ("complete", "rolled_back", "held")}
                median = statistics.median(t for _, t in ends)
                print(f"{scenario:<13} | {k:>9} | {'on' if checked else 'off':<5} | {count['complete']:>8} | "
                      f"{count['rolled_back']:>11} | {count['held']:>5} | {median:>8.0f}", flush=True)
    print(f"{time.time() - began:.0f} s")


if __name__ == "__main__":
    main()

"""What "no single reporter decides" costs honest rollouts: the same traffic split over k SDK instances, judged
with and without the controller's reporter check (flagsvc/service/reporter_check.py), through the real controller
and judge on a memory store.

    python bench/reporters.py [--trials 20] [--seed 1] [--reporters 1,2,3,10] [--shadows 3]
                              [--part all|cost|hostile] [--hostile-trials 100] [--hostile NAME ...]
                              [--workers 1]

The world: 100 requests/s in all, split evenly (Poisson) over k reporters; stable 1 % errors, lognormal latency
(median 100 ms, sigma 0.5); stages 5/25/50/100 %, bake 60 s, a look every 2 s, default settings, 30 minutes at
most. Scenarios: healthy; canary errors 2x; canary latency 1.5x. Reported: how rollouts ended, and the median
time to their end.

Hostile scenarios (--part hostile), among ten reporters: nine honest ones carry the world's traffic as above (each
a tenth of 100 requests/s), the tenth is hostile and sends its own batches from the first look on, each batch
naming the revision it was sent for; the same traffic with the check off and on, --hostile-trials rollouts a row:
- "flood-20x": floods healthy-looking outcomes over a 6x canary. The canary's true error rate is 6 % (stable's
  1 %), as the honest reporters say; the hostile one sends 20 times the nine honest reporters' volume together
  at the flag's split, stable at 1 % errors, the canary at the rate that makes the mix of all canary outcomes
  look like stable's (0.75 %): the shape of FLOOD in tests/unit/test_reporter_influence.py.
- "flood-10x-1pct": the same 6x canary, the hostile reporter at 10 times one honest reporter's volume with the
  canary at stable's 1 % (the mix then shows about 3.4 %: it dilutes the regression, it does not hide it).
- "errors-3-batches": a healthy canary (1 %, like stable); the hostile reporter sends canary-only batches of 26
  requests, 20 of them errors (every error a user of its own, latencies like stable's), at the 4th, 5th and 6th
  looks (the unit test's schedule; its batches are 20 of 20).
- "errors-each-look": the same batch at every look.
Target: no 6x canary advances past the first stage while the flood goes on (>= 95 % of rollouts); a healthy
canary is rolled back in <= 1 % of rollouts (the judge's alpha, 0.01). Reported, with exact (Clopper-Pearson)
95 % intervals: how the first stage ended (rolled back there; held there for the 30 minutes; advanced), the
rollouts rolled back at any stage, the ones completed, the ones the check held at least once ("one reporter
drives this ..."), and the median time to the end. The hostile reporter's large batches are drawn with the
normal approximation above a mean of 40 and its latencies bucket by bucket (a multinomial over the lognormal's
sketch buckets); every other draw is as above.
"""

from __future__ import annotations

import argparse
import itertools
import math
import multiprocessing
import random
import statistics
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flagsvc_client.protocol.sketch import GAMMA, bucket_index

from bench.judge import binomial as fast_binomial  # exact while small, the normal approximation above
from bench.judge import binomial_interval
from flagsvc.domain import flag as flags
from flagsvc.domain.flag import State
from flagsvc.domain.judge import JudgeState
from flagsvc.service.announce import ChangeAnnouncer
from flagsvc.service.controller import RolloutController, build_controller
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


def world(checked: bool, shadows: int) -> tuple[Clock, MemoryStore, RolloutController[JudgeState]]:
    """A clock, a memory store with flag "f" rolling, and the real controller on them (its check off if asked)."""
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
    return clock, store, ctl


def rollout(rng: random.Random, reporters: int, scenario: str, checked: bool, shadows: int) -> tuple[str, float]:
    error_factor, latency_factor = SCENARIOS[scenario]
    clock, store, ctl = world(checked, shadows)
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


# --- one hostile reporter among ten ----------------------------------------------------------------------------

REPORTERS = 10  # nine honest, one hostile
STABLE_ERRORS = 0.01


@dataclass(frozen=True)
class Hostile:
    """One hostile scenario: the canary's true error rate, and what the hostile reporter sends at each look."""

    canary_factor: float  # the canary's true error rate over stable's (what the honest reporters report)
    flood: float = 0.0  # its requests per look, in honest reporters' volumes (at the flag's split, both arms)
    flood_canary_errors: float | None = None  # its canary error rate; None: the rate that hides the regression
    batch: tuple[int, int] = (0, 0)  # canary-only (requests, errors) per batch
    looks: tuple[int, ...] | None = None  # the looks (from 0) with a batch; None: every look

    def canary_error_rate(self) -> float:
        """The flood's canary error rate: given, or the one that makes all canary outcomes show stable's rate."""
        if self.flood_canary_errors is not None:
            return self.flood_canary_errors
        honest = REPORTERS - 1
        return max((STABLE_ERRORS * (honest + self.flood) - STABLE_ERRORS * self.canary_factor * honest)
                   / self.flood, 0.0)


HOSTILE = {
    "flood-20x": Hostile(6.0, flood=20.0 * (REPORTERS - 1)),
    "flood-10x-1pct": Hostile(6.0, flood=10.0, flood_canary_errors=STABLE_ERRORS),
    "errors-3-batches": Hostile(1.0, batch=(26, 20), looks=(3, 4, 5)),
    "errors-each-look": Hostile(1.0, batch=(26, 20)),
}


@cache
def latency_buckets(latency_factor: float) -> tuple[tuple[int, float], ...]:
    """(sketch bucket, probability) of the world's lognormal latency: bucket i holds (GAMMA**(i-1), GAMMA**i] ms."""
    centre, step = math.log(100.0 * latency_factor), math.log(GAMMA)

    def below(index: int) -> float:
        return 0.5 * math.erfc(-(index * step - centre) / (0.5 * math.sqrt(2)))

    first, last = math.floor((centre - 4.0) / step), math.ceil((centre + 4.0) / step)  # +-8 sigma
    return tuple((i, below(i) - below(i - 1)) for i in range(first, last + 1))


def bulk_arm(rng: random.Random, n: int, error_rate: float, latency_factor: float = 1.0) -> dict[str, int]:
    """`arm` for large n: the same world, latencies drawn bucket by bucket (a multinomial, by conditional
    binomials) instead of one by one."""
    if n <= 0:
        return {}
    errors = fast_binomial(rng, n, error_rate)
    out = {"count": n, "errors": errors, "error_users": errors}
    left, mass = n, 1.0
    for index, p in latency_buckets(latency_factor):
        if left <= 0:
            break
        k = left if p >= mass else fast_binomial(rng, left, p / mass)
        if k:
            out[f"lat:{index}"] = k
        left, mass = left - k, mass - p
    if left > 0:  # what the +-8 sigma range left over (never, in practice)
        out[f"lat:{index}"] = out.get(f"lat:{index}", 0) + left
    return out


@dataclass(frozen=True)
class Ending:
    first_stage: str  # how the first stage ended: "rolled back", "held" (for the whole horizon), "advanced"
    rolled_back: bool  # at any stage
    complete: bool
    driven: bool  # the check held a verdict at least once ("one reporter drives this ...")
    seconds: float


def hostile_rollout(rng: random.Random, hostile: Hostile, checked: bool, shadows: int) -> Ending:
    clock, store, ctl = world(checked, shadows)
    honest = [f"reporter-{next(_ids):08d}" for _ in range(REPORTERS - 1)]
    bad = f"hostile-{next(_ids):08d}"
    start, advanced, driven = clock(), False, False
    for look in itertools.count():
        if clock() - start >= HORIZON:
            break
        current = store.get("f")
        share = current.percent / 100
        batches = []
        for reporter in honest:
            n = poisson(rng, RATE * LOOK / REPORTERS)
            n_canary = binomial(rng, n, share)
            arms = (("stable", arm(rng, n - n_canary, STABLE_ERRORS, 1.0)),
                    ("canary", arm(rng, n_canary, STABLE_ERRORS * hostile.canary_factor, 1.0)))
            batches.append((reporter, arms))
        if hostile.flood:
            n = poisson(rng, hostile.flood * RATE * LOOK / REPORTERS)
            n_canary = fast_binomial(rng, n, share)
            batches.append((bad, (("stable", bulk_arm(rng, n - n_canary, STABLE_ERRORS)),
                                  ("canary", bulk_arm(rng, n_canary, hostile.canary_error_rate())))))
        if hostile.batch[0] and (hostile.looks is None or look in hostile.looks):
            n, errors = hostile.batch
            canary = {**arm(rng, n, 0.0, 1.0), "errors": errors, "error_users": errors}
            batches.append((bad, (("canary", canary),)))
        for reporter, arms in batches:
            increments = {f"{name}:{k}": v for name, values in arms for k, v in values.items() if v}
            store.add_outcomes(f"b{next(_ids):010d}", {"f": OutcomeEntry(current.revision, increments, reporter)})
        clock.now += LOOK
        driven = any("one reporter drives this" in d.reason for d in ctl.tick()) or driven
        after = store.get("f")
        advanced = advanced or after.stage_index > 0
        if after.state in (State.COMPLETE, State.ROLLED_BACK):
            rolled_back = after.state == State.ROLLED_BACK
            first = "advanced" if advanced else "rolled back"
            return Ending(first, rolled_back, not rolled_back, driven, clock() - start)
    return Ending("advanced" if advanced else "held", False, False, driven, HORIZON)


def counted(k: int, n: int) -> str:
    low, high = binomial_interval(k, n)
    return f"{k:>3} {k / n:6.1%} [{low:5.1%}, {high:5.1%}]"


def hostile_table(args: argparse.Namespace) -> None:
    n, cell = args.hostile_trials, 27
    print(f"\nOne hostile reporter among {REPORTERS}: {n} rollouts per row, seed {args.seed}, {args.shadows} "
          "shadow(s); count, share [exact 95 % interval]; median time to the end (s)")
    print(f"{'scenario':<16} | {'check':<5} | {'first stage: rolled back':>{cell}} | {'held 30 min':>{cell}} | "
          f"{'advanced':>{cell}} | {'rolled back, any stage':>{cell}} | {'complete':>8} | {'check held':>10} | "
          f"{'median s':>8}")
    with multiprocessing.Pool(args.workers) as pool:
        for name in args.hostile:
            for checked in (False, True):
                # Each rollout seeded of its own: the same traffic with and without the check, whatever the workers.
                jobs = [(f"{args.seed}-hostile-{name}-{i}", name, checked, args.shadows) for i in range(n)]
                ends = pool.map(seeded_hostile_rollout, jobs)
                hostile_row(name, checked, ends)


def seeded_hostile_rollout(job: tuple[str, str, bool, int]) -> Ending:
    seed, name, checked, shadows = job
    return hostile_rollout(random.Random(seed), HOSTILE[name], checked, shadows)


def hostile_row(name: str, checked: bool, ends: list[Ending]) -> None:
    n, cell = len(ends), 27
    first = {what: sum(e.first_stage == what for e in ends) for what in ("rolled back", "held", "advanced")}
    median = statistics.median(e.seconds for e in ends)
    print(f"{name:<16} | {'on' if checked else 'off':<5} | {counted(first['rolled back'], n):>{cell}} | "
          f"{counted(first['held'], n):>{cell}} | {counted(first['advanced'], n):>{cell}} | "
          f"{counted(sum(e.rolled_back for e in ends), n):>{cell}} | {sum(e.complete for e in ends):>8} | "
          f"{sum(e.driven for e in ends):>10} | {median:>8.0f}", flush=True)


def cost_table(args: argparse.Namespace) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reporters", default="1,2,3,10")
    parser.add_argument("--shadows", type=int, default=3, help="reporters left out in turn (the controller: 3)")
    parser.add_argument("--part", choices=("all", "cost", "hostile"), default="all",
                        help="cost: honest reporters only; hostile: one hostile reporter among ten")
    parser.add_argument("--hostile-trials", type=int, default=100, help="rollouts per hostile row")
    parser.add_argument("--hostile", nargs="+", choices=list(HOSTILE), default=list(HOSTILE),
                        help="hostile scenarios to run (default: all)")
    parser.add_argument("--workers", type=int, default=1, help="processes for the hostile rollouts")
    args = parser.parse_args()
    began = time.time()
    if args.part in ("all", "cost"):
        cost_table(args)
    if args.part in ("all", "hostile"):
        hostile_table(args)
    print(f"{time.time() - began:.0f} s")


if __name__ == "__main__":
    main()

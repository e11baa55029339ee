"""The judge benchmark: many simulated rollouts per scenario, our CanaryJudge beside a
Flagger-style rule, with the targets next to the figures.

    python bench/judge.py [--trials N] [--seed S] [--quick] [--variants] [--workers W] [--only NAME ...]
                          [--hostile-trials N]

The world: 100 requests/s in all, stable 1 % errors, lognormal latency (median 100 ms, sigma 0.5: p95 228 ms,
p99 320 ms), stages 1/5/10/25/50/100 %, bake 60 s, a look every 2 s. Each look draws the 2 s of traffic per arm
(Poisson request counts, binomial errors, latencies binned straight into the real sketch's buckets) and hands the
real judge the cumulative totals, exactly as the controller would. Request counts above a mean of 40 use the
normal approximation; every other draw is exact. Latencies below 130 ms (stable's 70th percentile) are put in one
bucket: no quantity the judge reads lies there (it reads p95, and counts above p95 / 1.75 at the lowest).

Rules, each over the same scenario in the same run:
- ours: CanaryJudge with default settings; on an advance the state goes on to the next stage as
  `verdict.state.next_stage()`, as the controller does (docs/judge.md, "State").
- ours, fresh state per stage (--variants): the same judge handed `state=None` at each new stage.
- ours, raw error counts (--variants): SDKs that do not report erroring users, so bursts count in full.
- Flagger-style: every 60 s, the canary's last-minute success rate must be >= 99 % and its p99 <= 500 ms
  (Flagger's built-in checks); a pass advances one stage, a failure (no canary traffic is a failure too)
  counts, and the 5th failed check rolls back.

After the table, one hostile reporter among ten (bench/reporters.py's scenarios, through the real controller and
its reporter check, with the check off and on): --hostile-trials rollouts per row (0: none).

Seeded: the same --seed gives the same table. Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "client")]

from flagsvc_client.protocol.limits import UNIT_BUCKETS  # noqa: E402
from flagsvc_client.protocol.sketch import GAMMA, LatencySketch, bucket_index  # noqa: E402

from flagsvc.domain.analysis import AnalysisSettings  # noqa: E402
from flagsvc.domain.judge import CanaryJudge  # noqa: E402
from flagsvc.domain.outcomes import ArmTotals  # noqa: E402

STAGES = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0)
LOOK_SECONDS = 2.0
BAKE_SECONDS = 60.0
STABLE_ERROR_RATE = 0.01
MEDIAN_MS, SIGMA = 100.0, 0.5
# The slow mark of the simulated SDKs: the bucket of stable's p95 (an SDK counts slow requests per user bucket
# against its arm's p95 of the last window)
SLOW_MARK = bucket_index(MEDIAN_MS * math.exp(1.6449 * SIGMA))
LOW_BAND_MS = 130.0
FLAGGER_INTERVAL = 60.0
FLAGGER_THRESHOLD = 5
FLAGGER_MIN_SUCCESS = 0.99
FLAGGER_MAX_P99_MS = 500.0


# --- scenarios --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    target: str
    healthy: bool = True  # a rollback is a false rollback
    rate: float = 100.0  # requests per second, both arms together
    error_factor: float = 1.0  # canary error rate = stable's x this, once the regression has begun
    latency_factor: float = 1.0  # canary latencies x this, once the regression has begun
    onset_stage: int = 0  # the regression begins this many seconds into this stage
    onset_seconds: float = 0.0
    share_factor: float = 1.0  # the canary gets this x its configured share of requests
    outage: tuple[float, float, float] | None = None  # (from s, to s, error rate of both arms meanwhile)
    burst: float = 1.0  # mean errors per erroring user
    horizon: float = 3600.0  # a rollout still undecided then counts as held
    # Users as the randomisation unit: (users, failing users, chance a failing user's request fails). Errors then
    # come only from the failing users, each of whom stays in one arm (hashed), all others never fail.
    failing_users: tuple[int, int, float] | None = None
    # Slowness clustered in users: (users, slow users, latency factor of every request of a slow user, a slow
    # user's requests as a multiple of the average user's), on top of the ordinary traffic; each slow user stays
    # in one arm and one user bucket.
    slow_users: tuple[int, int, float, float] | None = None
    burst_requests: int = 1  # requests come in bursts of this many from one user (all in one arm)
    canary_loss: float = 0.0  # share of the canary's requests that never reach the outcomes
    look_seconds: float = LOOK_SECONDS
    hold_at_stage: int | None = None  # the operator keeps the rollout at this stage (advances are not applied)
    resume_every: float | None = None  # paused and resumed this often: a new revision, aggregates from zero
    one_look_from_stage: int | None = None  # from this stage on, a stage's data all arrives in one look
    caught_if_held: bool = False  # the target is not a rollback but a hold before the first promotion
    # Simpson's paradox: two strata ("free", "premium") with different base error rates, an uneven mix:
    # (premium share of stable's requests, premium share of the canary's, premium error rate, free error rate);
    # `error_factor` then applies to the premium stratum only (a regression confined to it).
    strata: tuple[float, float, float, float] | None = None

    @property
    def late(self) -> bool:
        return self.onset_stage > 0 or self.onset_seconds > 0


SCENARIOS = (
    Scenario("healthy", "false rollbacks <= 1 %"),
    Scenario("errors 1.5x", "(no target)", healthy=False, error_factor=1.5, horizon=1800.0),
    Scenario("errors 2x", ">= 95 % rolled back; mean canary requests <= 1.5 x Wald ASN", healthy=False,
             error_factor=2.0),
    Scenario("errors 5x", "rolled back within 3 min (median)", healthy=False, error_factor=5.0),
    Scenario("latency +50 %", "rolled back within 2 min (median)", healthy=False, latency_factor=1.5),
    Scenario("low traffic 2 req/s", "0 rollbacks; holds, 'insufficient evidence'", rate=2.0, horizon=600.0),
    Scenario("errors 3x late in stage 10 %", "(no target) time from onset", healthy=False, error_factor=3.0,
             onset_stage=2, onset_seconds=50.0),
    Scenario("skewed split (0.5x share, 1.5x err)", "holds on sample-ratio mismatch, no rollback",
             share_factor=0.5, error_factor=1.5, horizon=600.0),
    Scenario("outage in both arms (10 % err)", "false rollbacks <= 1 %", outage=(100.0, 400.0, 0.10)),
    Scenario("errors 5x from 30 s into 25 %", "<= 1 % before onset; rolled back <= 60 s after (median)",
             healthy=False, error_factor=5.0, onset_stage=3, onset_seconds=30.0),
    Scenario("error bursts (5 per user)", "false rollbacks <= 1 %", burst=5.0, horizon=1200.0),
    Scenario("users: 20 of 20,000 always fail", "false rollbacks <= 1 %", failing_users=(20_000, 20, 1.0),
             horizon=3600.0),
    Scenario("users: 10 of 2,000 fail half", "false rollbacks <= 1 %", failing_users=(2_000, 10, 0.5),
             horizon=3600.0),
    Scenario("users: 20 of 2,000 always slow (3x)", "false rollbacks <= 1 %", slow_users=(2_000, 20, 3.0, 1.0),
             horizon=3600.0),
    Scenario("users: 4 heavy of 2,000 always slow", "false rollbacks <= 1 %",
             slow_users=(2_000, 4, 3.0, 25.0), horizon=3600.0),
    Scenario("paused/resumed every 10 min, 8 h at 10 %", "false rollbacks <= 1 %", hold_at_stage=2,
             resume_every=600.0, look_seconds=10.0, horizon=8 * 3600.0),
    Scenario("request bursts (10 per user, 50 req/s)", "false rollbacks <= 1 %", rate=50.0, burst_requests=10,
             horizon=7200.0),
    Scenario("request bursts (100 per user, 50 req/s)", "false rollbacks <= 1 %", rate=50.0,
             burst_requests=100, horizon=7200.0),
    Scenario("canary loses 20 % of requests, 5 req/s", ">= 95 % held by the split check before promotion",
             rate=5.0, canary_loss=0.2, caught_if_held=True, horizon=7200.0),
    Scenario("latency 2x, each stage's data in one look", ">= 95 % rolled back", healthy=False,
             latency_factor=2.0, onset_stage=1, one_look_from_stage=1, horizon=1800.0),
    Scenario("strata: same code, canary mix 50 % premium", "stratified: false rollbacks <= 1 %",
             strata=(0.1, 0.5, 0.05, 0.005), horizon=1800.0),
    Scenario("strata: premium errors 3x, mix 50 % premium", "stratified: >= 95 % rolled back", healthy=False,
             error_factor=3.0, strata=(0.1, 0.5, 0.05, 0.005), horizon=1800.0),
    Scenario("healthy, each stage's data in one look", "false rollbacks <= 1 %", one_look_from_stage=1,
             horizon=1800.0),
)


# --- random draws -----------------------------------------------------------------------------------------


def poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 40:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    u, k, p = rng.random(), 0, math.exp(-mean)
    c = p
    while u > c and p > 0:
        k += 1
        p *= mean / k
        c += p
    return k


def binomial(rng: random.Random, n: int, p: float) -> int:
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    if p > 0.5:
        return n - binomial(rng, n, 1 - p)
    mean = n * p
    if mean > 40:
        return min(n, max(0, round(rng.gauss(mean, math.sqrt(mean * (1 - p))))))
    q = 1 - p
    u, k, prob = rng.random(), 0, q**n
    c = prob
    while u > c and k < n:
        prob *= p / q * (n - k) / (k + 1)
        k += 1
        c += prob
    return k


def geometric_burst(rng: random.Random, mean: float) -> int:
    """1 + a geometric count: an erroring user's errors in one batch, `mean` on average."""
    if mean <= 1:
        return 1
    return 1 + int(math.log(1.0 - rng.random()) / math.log(1.0 - 1.0 / mean))


class LatencyModel:
    """Lognormal latencies binned straight into sketch buckets: the share below LOW_BAND_MS goes to one bucket,
    the rest is drawn bucket by bucket from the exact bucket probabilities."""

    _cache: dict[float, LatencyModel] = {}

    def __init__(self, factor: float) -> None:
        median = MEDIAN_MS * factor
        cdf = lambda ms: 0.5 * math.erfc(-(math.log(ms / median)) / (SIGMA * math.sqrt(2)))  # noqa: E731
        low_edge = bucket_index(LOW_BAND_MS)
        self.low_index = bucket_index(min(median, LOW_BAND_MS * 0.9))
        self.p_low = cdf(GAMMA**low_edge)
        indices, cum = [], []
        index, total = low_edge + 1, 0.0
        while total < (1 - self.p_low) * (1 - 1e-9) and index < low_edge + 2000:
            total += cdf(GAMMA**index) - cdf(GAMMA ** (index - 1))
            indices.append(index)
            cum.append(total)
            index += 1
        self.indices, self.cum = indices, cum

    @classmethod
    def of(cls, factor: float) -> LatencyModel:
        if factor not in cls._cache:
            cls._cache[factor] = cls(factor)
        return cls._cache[factor]

    def draw(self, rng: random.Random, n: int, into: dict[int, int]) -> None:
        low = binomial(rng, n, self.p_low)
        if low:
            into[self.low_index] = into.get(self.low_index, 0) + low
        if n > low:
            for index, k in Counter(rng.choices(self.indices, cum_weights=self.cum, k=n - low)).items():
                into[index] = into.get(index, 0) + k


@dataclass
class Arm:
    count: int = 0
    errors: int = 0
    users: int = 0
    buckets: dict[int, int] = field(default_factory=dict)
    timed: int = 0
    units: list[list[int]] = field(default_factory=lambda: [[0, 0] for _ in range(UNIT_BUCKETS)])
    slow: list[int] = field(default_factory=lambda: [0] * UNIT_BUCKETS)  # per user bucket, above SLOW_MARK
    strata: dict[str, tuple[int, int]] = field(default_factory=dict)  # (requests, errors) per stratum

    def totals(self, report_users: bool = True, report_units: bool = True, report_strata: bool = True) -> ArmTotals:
        sketch = LatencySketch()
        sketch.buckets, sketch.count = self.buckets, self.timed
        units = {j: (n, e) for j, (n, e) in enumerate(self.units) if n} if report_units else {}
        slow = {j: k for j, k in enumerate(self.slow) if k} if report_units else {}
        strata = {label: (n, e, e) for label, (n, e) in self.strata.items()} if report_strata else {}
        return ArmTotals(self.count, self.errors, self.users if report_users else 0, sketch, units=units,
                         slow_units=slow, strata=strata)

    def time(self, rng: random.Random, n: int, factor: float, unit: int | None = None) -> None:
        """n latencies (lognormal, times `factor`) into the sketch, and the slow ones (above SLOW_MARK, as an
        SDK counts them against its recent p95) into `unit`'s slow count, or spread over the buckets."""
        drawn: dict[int, int] = {}
        LatencyModel.of(factor).draw(rng, n, drawn)
        for index, k in drawn.items():
            self.buckets[index] = self.buckets.get(index, 0) + k
        self.timed += n
        slow = sum(k for index, k in drawn.items() if index > SLOW_MARK)
        if unit is not None:
            self.slow[unit] += slow
        else:
            for j in rng.choices(range(UNIT_BUCKETS), k=slow):
                self.slow[j] += 1

    def spread(self, rng: random.Random, n: int, errors: int) -> None:
        """n requests with `errors` among them from users spread over the buckets (errors independent of users)."""
        for j in rng.choices(range(UNIT_BUCKETS), k=n):
            self.units[j][0] += 1
        for j in rng.choices(range(UNIT_BUCKETS), k=errors):
            self.units[j][1] += 1
            self.units[j][0] += 0 if self.units[j][0] else 1


class World:
    """The traffic of one simulated rollout, look by look."""

    def __init__(self, scenario: Scenario, rng: random.Random, stable_latency: bool = True) -> None:
        self.sc, self.rng, self.stable_latency = scenario, rng, stable_latency
        self.t, self.stage, self.t_stage = 0.0, 0, 0.0
        self.onset: float | None = None
        self.canary_requests = 0  # over the whole rollout
        # Failing users' positions in [0, 100): a user is canary while that is below the canary's percent.
        self.failing = [rng.random() * 100 for _ in range(scenario.failing_users[1])] if scenario.failing_users \
            else []
        self.unit_of_failing = [rng.randrange(UNIT_BUCKETS) for _ in self.failing]
        slow_count = scenario.slow_users[1] if scenario.slow_users else 0
        self.slow_users = [(rng.random() * 100, rng.randrange(UNIT_BUCKETS)) for _ in range(slow_count)]

    def regression_active(self) -> bool:
        sc = self.sc
        return self.stage > sc.onset_stage or (self.stage == sc.onset_stage and self.t_stage >= sc.onset_seconds)

    def step(self, stable: Arm, canary: Arm, seconds: float) -> None:
        sc, rng = self.sc, self.rng
        active = self.regression_active()
        if active and self.onset is None:
            self.onset = self.t
        base = STABLE_ERROR_RATE
        if sc.outage and sc.outage[0] <= self.t < sc.outage[1]:
            base = sc.outage[2]
        share = min(STAGES[self.stage] / 100 * sc.share_factor, 1.0)
        if sc.burst_requests > 1:  # one user's burst lands in one arm
            bursts = poisson(rng, sc.rate * seconds / sc.burst_requests)
            in_canary = binomial(rng, bursts, share)
            self._add_bursts(stable, bursts - in_canary, base)
            self._add_bursts(canary, in_canary, base)
            self.canary_requests += in_canary * sc.burst_requests
            self.t += seconds
            self.t_stage += seconds
            return
        else:
            n_c = poisson(rng, sc.rate * seconds * share)
            n_s = poisson(rng, sc.rate * seconds * (1 - share))
        if sc.canary_loss:
            n_c = binomial(rng, n_c, 1 - sc.canary_loss)
        if sc.strata:
            self._add_strata(stable, canary, n_s, n_c, active)
            self.canary_requests += n_c
            self.t += seconds
            self.t_stage += seconds
            return
        p_c = min(base * (sc.error_factor if active else 1.0), 1.0)
        if sc.slow_users:
            self._add_slow_users(stable, canary, seconds)
        if sc.failing_users:
            self._add_users(stable, canary, n_s, n_c, seconds)
        else:
            self._add(stable, n_s, base, 1.0 if self.stable_latency else None)
            self._add(canary, n_c, p_c, sc.latency_factor if active else 1.0)
        self.canary_requests += n_c
        self.t += seconds
        self.t_stage += seconds

    def _add(self, arm: Arm, n: int, p: float, latency_factor: float | None) -> None:
        rng, burst = self.rng, self.sc.burst
        if burst > 1:
            users = binomial(rng, n, p / burst)
            errors = min(n, sum(geometric_burst(rng, burst) for _ in range(users)))
        else:
            users = errors = binomial(rng, n, p)
        arm.count += n
        arm.errors += errors
        arm.users += users
        if self.sc.burst > 1:  # an erroring user's burst lands in one bucket
            arm.spread(rng, n - errors, 0)
            for _ in range(users):
                j = rng.randrange(UNIT_BUCKETS)
                arm.units[j][1] += errors // max(users, 1)
                arm.units[j][0] += errors // max(users, 1)
        else:
            arm.spread(rng, n, errors)
        if latency_factor is not None:
            arm.time(rng, n, latency_factor)

    def _add_strata(self, stable: Arm, canary: Arm, n_s: int, n_c: int, active: bool) -> None:
        """Each arm's requests split over the two strata by its own mix; errors at the stratum's base rate (the
        canary's premium rate times `error_factor` once the regression is active)."""
        stable_mix, canary_mix, premium_rate, free_rate = self.sc.strata or (0.0, 0.0, 0.0, 0.0)
        for arm, n, mix, factor in ((stable, n_s, stable_mix, 1.0),
                                    (canary, n_c, canary_mix, self.sc.error_factor if active else 1.0)):
            premium = binomial(self.rng, n, mix)
            for label, k, p in (("premium", premium, min(premium_rate * factor, 1.0)), ("free", n - premium,
                                                                                       free_rate)):
                errors = binomial(self.rng, k, p)
                self._add_counted(arm, k, errors)
                n0, e0 = arm.strata.get(label, (0, 0))
                arm.strata[label] = (n0 + k, e0 + errors)
            arm.time(self.rng, n, 1.0)

    def _add_counted(self, arm: Arm, n: int, errors: int) -> None:
        arm.count += n
        arm.errors += errors
        arm.users += errors
        arm.spread(self.rng, n, errors)

    def _add_bursts(self, arm: Arm, bursts: int, p: float) -> None:
        k = self.sc.burst_requests
        for _ in range(bursts):
            j, errors = self.rng.randrange(UNIT_BUCKETS), binomial(self.rng, k, p)
            arm.units[j][0] += k
            arm.units[j][1] += errors
            arm.count += k
            arm.errors += errors
            arm.users += 1 if errors else 0
        arm.time(self.rng, bursts * k, 1.0)

    def _add_users(self, stable: Arm, canary: Arm, n_s: int, n_c: int, seconds: float) -> None:
        """Errors from the failing users only, each in the arm its position puts it in, counted once per user
        per look in `users` (the SDK's erroring users of one batch)."""
        users, _, fail = self.sc.failing_users or (1, 0, 0.0)
        per_user = self.sc.rate * seconds / users
        percent = STAGES[self.stage]
        for arm, n in ((stable, n_s), (canary, n_c)):
            arm.count += n
            arm.spread(self.rng, n, 0)
            arm.time(self.rng, n, 1.0)
        for i, position in enumerate(self.failing):
            errors = binomial(self.rng, poisson(self.rng, per_user), fail)
            if errors:
                arm = canary if position < percent else stable
                arm.count += errors
                arm.errors += errors
                arm.users += 1
                arm.units[self.unit_of_failing[i]][0] += errors
                arm.units[self.unit_of_failing[i]][1] += errors

    def _add_slow_users(self, stable: Arm, canary: Arm, seconds: float) -> None:
        """The slow users' requests, each user in the arm its position puts it in, in its own user bucket."""
        users, _, factor, weight = self.sc.slow_users or (1, 0, 1.0, 1.0)
        per_user = self.sc.rate * seconds / users * weight
        percent = STAGES[self.stage]
        for position, unit in self.slow_users:
            n = poisson(self.rng, per_user)
            if n:
                arm = canary if position < percent else stable
                errors = binomial(self.rng, n, STABLE_ERROR_RATE)
                arm.count += n
                arm.errors += errors
                arm.users += 1 if errors else 0
                arm.units[unit][0] += n
                arm.units[unit][1] += errors
                arm.time(self.rng, n, factor, unit)

    def advance(self) -> None:
        self.stage += 1
        self.t_stage = 0.0


# --- the rules --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    result: str  # "rollback", "promoted", "held"
    seconds: float  # when decided (or the horizon)
    canary_requests: int
    onset: float | None
    srm_held: bool = False
    insufficient_share: float = 0.0  # share of looks that held with "insufficient evidence"


def run_judge(sc: Scenario, rng: random.Random, carry: bool, report_users: bool = True,
              report_units: bool = True, report_strata: bool = True) -> Outcome:
    judge = CanaryJudge(AnalysisSettings())
    world = World(sc, rng)
    stable, canary, state = Arm(), Arm(), None
    srm, looks, insufficient = False, 0, 0
    next_resume = sc.resume_every or math.inf
    while world.t < sc.horizon:
        if world.t >= next_resume:  # paused and resumed: a new revision, the controller carries the state
            next_resume += sc.resume_every or math.inf
            stable, canary = Arm(), Arm()
            state = state.carry_to(world.stage) if state is not None else None
        one_look = sc.one_look_from_stage is not None and world.stage >= sc.one_look_from_stage
        if one_look and world.t_stage >= 120.0:
            world.t += sc.look_seconds  # the stage's data arrived in one look at 120 s; nothing since
            world.t_stage += sc.look_seconds
        else:
            world.step(stable, canary, sc.look_seconds)
        seen_stable, seen_canary = (Arm(), Arm()) if one_look and world.t_stage < 120.0 else (stable, canary)
        verdict = judge.judge(
            state, seen_stable.totals(report_users, report_units, report_strata),
            seen_canary.totals(report_users, report_units, report_strata),
            percent=STAGES[world.stage], stage_index=world.stage, stage_count=len(STAGES),
            seconds_at_stage=world.t_stage, bake_seconds=BAKE_SECONDS,
        )
        looks += 1
        if verdict.decision == "rollback":
            return Outcome("rollback", world.t, world.canary_requests, world.onset, srm, insufficient / looks)
        if sc.caught_if_held:  # held by the split check (a mismatch, or a split not yet confirmed) at this look
            srm = verdict.reason.startswith("sample-ratio mismatch") or "split not yet confirmed" in verdict.reason
        if verdict.decision == "advance" and world.stage == sc.hold_at_stage:
            state = verdict.state  # the operator keeps the rollout here
            continue
        if verdict.decision == "advance" and sc.caught_if_held:
            return Outcome("promoted", world.t, world.canary_requests, world.onset, False, insufficient / looks)
        if verdict.decision == "advance":
            world.advance()
            if STAGES[world.stage] >= 100:
                return Outcome("promoted", world.t, world.canary_requests, world.onset, srm, insufficient / looks)
            stable, canary = Arm(), Arm()
            state = verdict.state.next_stage() if carry else None
            continue
        state = verdict.state
        srm = srm or (verdict.reason.startswith("sample-ratio mismatch") and not sc.caught_if_held)
        insufficient += verdict.reason.startswith("insufficient evidence")
    return Outcome("held", world.t, world.canary_requests, world.onset, srm, insufficient / max(looks, 1))


def run_flagger(sc: Scenario, rng: random.Random) -> Outcome:
    world = World(sc, rng, stable_latency=False)  # the rule reads the canary alone
    failed = 0
    while world.t < sc.horizon:
        stable, canary = Arm(), Arm()  # the last minute's window
        for _ in range(round(FLAGGER_INTERVAL / LOOK_SECONDS)):
            world.step(stable, canary, LOOK_SECONDS)
        sketch = canary.totals().latency
        p99 = sketch.quantile(0.99)
        passed = canary.count > 0 and 1 - canary.errors / canary.count >= FLAGGER_MIN_SUCCESS and (
            p99 is not None and p99 <= FLAGGER_MAX_P99_MS
        )
        if passed:
            world.advance()
            if STAGES[world.stage] >= 100:
                return Outcome("promoted", world.t, world.canary_requests, world.onset)
        else:
            failed += 1
            if failed >= FLAGGER_THRESHOLD:
                return Outcome("rollback", world.t, world.canary_requests, world.onset)
    return Outcome("held", world.t, world.canary_requests, world.onset)


RULES: dict[str, Callable[[Scenario, random.Random], Outcome]] = {
    "ours": lambda sc, rng: run_judge(sc, rng, carry=True),
    "ours, fresh state per stage": lambda sc, rng: run_judge(sc, rng, carry=False),
    "ours, raw error counts": lambda sc, rng: run_judge(sc, rng, carry=True, report_users=False),
    "ours, no user buckets": lambda sc, rng: run_judge(sc, rng, carry=True, report_units=False),
    "ours, pooled (strata not reported)": lambda sc, rng: run_judge(sc, rng, carry=True, report_strata=False),
    "Flagger-style": run_flagger,
}
# Which rules run where. The two variants of ours (--variants) show what carrying the state and counting
# erroring users buy, on the scenarios where it shows.
# The stratified scenarios also run the pooled judge on the same traffic (strata not reported), in every run.
STRATA_SCENARIOS = {"strata: same code, canary mix 50 % premium", "strata: premium errors 3x, mix 50 % premium"}
PLAN = {"ours": None, "ours, pooled (strata not reported)": STRATA_SCENARIOS, "Flagger-style": None}
VARIANTS = {
    "ours, fresh state per stage": {"healthy", "errors 2x", "errors 5x"},
    "ours, raw error counts": {"error bursts (5 per user)"},
    "ours, no user buckets": {"healthy", "errors 2x", "users: 20 of 20,000 always fail",
                              "users: 10 of 2,000 fail half", "users: 20 of 2,000 always slow (3x)",
                              "users: 4 heavy of 2,000 always slow"},
}


def run_chunk(task: tuple[str, str, int, int, int]) -> tuple[str, str, list[Outcome]]:
    scenario_name, rule, seed, first, count = task
    sc = next(s for s in SCENARIOS if s.name == scenario_name)
    outcomes = []
    for trial in range(first, first + count):
        rng = random.Random(f"{seed}:{scenario_name}:{rule}:{trial}")
        outcomes.append(RULES[rule](sc, rng))
    return scenario_name, rule, outcomes


# --- the yardstick and the report -------------------------------------------------------------------------


def wald_asn(p0: float, p1: float, alpha: float, beta: float) -> float:
    """Wald's average sample number under H1 of the SPRT of a Bernoulli rate p0 against p1."""
    kl = p1 * math.log(p1 / p0) + (1 - p1) * math.log((1 - p1) / (1 - p0))
    a, b = math.log((1 - beta) / alpha), math.log(beta / (1 - alpha))
    return ((1 - beta) * a + beta * b) / kl


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(int(q * len(values)), len(values) - 1)]


@dataclass
class Row:
    scenario: Scenario
    rule: str
    outcomes: list[Outcome]

    def share(self, result: str) -> float:
        return sum(o.result == result for o in self.outcomes) / len(self.outcomes)

    def rollback_times(self) -> list[float]:
        start = (lambda o: o.onset or 0.0) if self.scenario.late else (lambda o: 0.0)
        return [o.seconds - start(o) for o in self.outcomes if o.result == "rollback" and
                (not self.scenario.late or o.onset is not None)]

    def early_rollbacks(self) -> float:
        return sum(o.result == "rollback" and o.onset is None for o in self.outcomes) / len(self.outcomes)


def binomial_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval for k successes of n (exact binomial tails, solved by bisection)."""

    def lower(k: int) -> float:
        if k == 0:
            return 0.0
        lo, hi = 0.0, 1.0
        for _ in range(50):  # P(X >= k | p) grows with p: find where it reaches (1 - level) / 2
            mid = (lo + hi) / 2
            tail = 1.0 - sum(math.comb(n, i) * mid**i * (1 - mid) ** (n - i) for i in range(k))
            lo, hi = (mid, hi) if tail < (1 - level) / 2 else (lo, mid)
        return (lo + hi) / 2

    return lower(k), 1.0 - lower(n - k)


def fmt_pair(values: list[float], unit: str = "s") -> str:
    if not values:
        return "-"
    med, p95 = quantile(values, 0.5), quantile(values, 0.95)
    if unit == "s":
        return f"{med:.0f} / {p95:.0f} s"
    return f"{med:,.0f} / {p95:,.0f}"


def verdict_on_target(row: Row, asn: float) -> str:
    sc, name = row.scenario, row.scenario.name
    rolled, times = row.share("rollback"), row.rollback_times()
    med = quantile(times, 0.5)
    if name in ("healthy", "outage in both arms (10 % err)", "error bursts (5 per user)"):
        return _ok(rolled <= 0.01)
    if name == "errors 2x":
        reqs = [o.canary_requests for o in row.outcomes if o.result == "rollback"]
        return _ok(rolled >= 0.95 and bool(reqs) and statistics.mean(reqs) <= 1.5 * asn)
    if name == "errors 5x":
        return _ok(med is not None and med <= 180)
    if name == "latency +50 %":
        return _ok(med is not None and med <= 120)
    if name.startswith("low traffic"):
        return _ok(rolled == 0 and statistics.mean(o.insufficient_share for o in row.outcomes) > 0.9)
    if name.startswith("skewed"):
        return _ok(rolled == 0 and sum(o.srm_held for o in row.outcomes) / len(row.outcomes) >= 0.95)
    if name.startswith("errors 5x from"):
        return _ok(row.early_rollbacks() <= 0.01 and med is not None and med <= 60)
    if sc.caught_if_held:
        return _ok(sum(o.result == "held" and o.srm_held for o in row.outcomes) / len(row.outcomes) >= 0.95)
    if sc.strata is not None:
        return _ok(rolled <= 0.01) if sc.healthy else _ok(rolled >= 0.95)
    if sc.one_look_from_stage is not None and not sc.healthy:
        return _ok(rolled >= 0.95)
    return "" if not sc.healthy else _ok(rolled <= 0.01)


def _ok(met: bool) -> str:
    return "met" if met else "NOT met"


def report(rows: list[Row], trials: int, seed: int, elapsed: float) -> str:
    settings = AnalysisSettings()
    asn = wald_asn(STABLE_ERROR_RATE, 2 * STABLE_ERROR_RATE, settings.alpha, settings.beta)
    lines = [
        f"Judge benchmark: {trials} rollouts per scenario and rule, seed {seed}, {elapsed:.0f} s.",
        f"World: 100 req/s, stable {STABLE_ERROR_RATE:.0%} errors, lognormal latency median {MEDIAN_MS:.0f} ms "
        f"sigma {SIGMA}, stages {'/'.join(f'{s:g}' for s in STAGES)} %, bake {BAKE_SECONDS:.0f} s, a look every "
        f"{LOOK_SECONDS:.0f} s. Settings: {settings.to_dict()}.",
        f"Yardstick: Wald's SPRT of 1 % vs 2 % errors (alpha {settings.alpha}, beta {settings.beta}) needs "
        f"{asn:,.0f} canary requests on average ({asn * 0.02:.0f} errors); the 2x target is <= {1.5 * asn:,.0f}.",
        "Times are median / p95 (for the late-onset scenarios, counted from the onset); 'held' = undecided at "
        "the scenario's horizon.",
        "",
    ]
    header = ("scenario", "rule", "rolled back", "promoted", "held", "time to rollback", "canary req. to rollback",
              "time to promotion", "target", "met")
    table = [header]
    for row in rows:
        rolled = row.share("rollback")
        k = sum(o.result == "rollback" for o in row.outcomes)
        low, high = binomial_interval(k, len(row.outcomes))
        label = f"{rolled:.1%} [{low:.1%}, {high:.1%}]" + (" (false)" if row.scenario.healthy else "")
        if row.scenario.late:
            label += f", {row.early_rollbacks():.1%} before onset"
        extra = ""
        if row.scenario.name.startswith("skewed"):
            extra = f"; SRM hold {sum(o.srm_held for o in row.outcomes) / len(row.outcomes):.0%}"
        if row.scenario.caught_if_held:
            caught = sum(o.result == "held" and o.srm_held for o in row.outcomes)
            c_low, c_high = binomial_interval(caught, len(row.outcomes))
            extra = f"; held by split check {caught / len(row.outcomes):.1%} [{c_low:.1%}, {c_high:.1%}]"
        if row.scenario.name == "errors 2x" and row.rule == "ours":
            rolled_back = [o.canary_requests for o in row.outcomes if o.result == "rollback"]
            if rolled_back:
                mean_n = statistics.mean(rolled_back)
                extra = f"; mean canary req. {mean_n:,.0f} ({mean_n / asn:.2f}x ASN)"
        if row.scenario.name.startswith("low traffic"):
            mean = statistics.mean(o.insufficient_share for o in row.outcomes)
            extra = f"; {mean:.0%} of looks 'insufficient evidence'"
        reqs = [float(o.canary_requests) for o in row.outcomes if o.result == "rollback"]
        promo = [o.seconds for o in row.outcomes if o.result == "promoted"]
        is_ours = row.rule == "ours"
        table.append((
            row.scenario.name, row.rule, label + extra, f"{row.share('promoted'):.1%}", f"{row.share('held'):.1%}",
            fmt_pair(row.rollback_times()), fmt_pair(reqs, unit="n"), fmt_pair(promo),
            row.scenario.target if is_ours else "", verdict_on_target(row, asn) if is_ours else "",
        ))
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    for i, r in enumerate(table):
        lines.append(" | ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("-|-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="100 trials: a smoke run, not a measurement")
    parser.add_argument("--workers", type=int, default=min(2, multiprocessing.cpu_count()))
    parser.add_argument("--only", nargs="*", help="scenario names to run (default: all)")
    parser.add_argument("--variants", action="store_true", help="also run the two variants of our judge")
    parser.add_argument("--hostile-trials", type=int, default=100,
                        help="rollouts per hostile-reporter row after the table (0: none; --quick: 20)")
    args = parser.parse_args(argv)
    plan = {**PLAN, **VARIANTS} if args.variants else PLAN
    trials = 100 if args.quick else args.trials
    scenarios = [s for s in SCENARIOS if not args.only or s.name in args.only]
    chunk = max(trials // 20, 1)
    tasks = [
        (sc.name, rule, args.seed, first, min(chunk, trials - first))
        for sc in scenarios for rule, where in plan.items() if where is None or sc.name in where
        for first in range(0, trials, chunk)
    ]
    # The longest scenarios first, so that both workers stay busy to the end.
    horizon = {sc.name: sc.horizon for sc in scenarios}
    tasks.sort(key=lambda task: (task[1] != "ours", -horizon[task[0]]))
    started = time.monotonic()
    results: dict[tuple[str, str], list[Outcome]] = {}
    with multiprocessing.Pool(args.workers) as pool:
        for done, (name, rule, outcomes) in enumerate(pool.imap_unordered(run_chunk, tasks), 1):
            results.setdefault((name, rule), []).extend(outcomes)
            print(f"\r{done}/{len(tasks)} chunks, {time.monotonic() - started:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    rows = [
        Row(sc, rule, results[(sc.name, rule)])
        for sc in scenarios for rule in plan if (sc.name, rule) in results
    ]
    print(report(rows, trials, args.seed, time.monotonic() - started), flush=True)
    hostile_trials = min(args.hostile_trials, 20) if args.quick else args.hostile_trials
    if hostile_trials > 0 and not args.only:
        from bench.reporters import HOSTILE, hostile_table  # it builds on this module's helpers

        hostile_table(argparse.Namespace(hostile_trials=hostile_trials, seed=args.seed, shadows=3,
                                         workers=args.workers, hostile=list(HOSTILE)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

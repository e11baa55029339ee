"""The statistics behind the canary judge: sequential likelihood-ratio tests whose false-alarm rate holds however
often they are looked at, the alpha budget, the sample-ratio check and the guardrail test. Pure math on counts.

Every rollback decision here is a *test supermartingale* crossing 1/alpha: a product of per-look likelihood
ratios whose expectation is at most 1 under "the canary is no worse". Ville's inequality then bounds the chance
it ever crosses 1/alpha by alpha, whenever and however often one looks (docs/judge.md has the argument).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Small stages see little traffic, so they test for a larger regression than asked (and larger ones still are
# caught at once); from REFERENCE_PERCENT up the stage tests the configured ratio itself. The excess regression
# shrinks as 1/sqrt(exposure), the rate at which evidence about a ratio sharpens.
REFERENCE_PERCENT = 10.0
MAX_STAGE_STRETCH = 4.0

# The rollout test mixes two alternatives: the configured ratio, and a big regression that it then needs far
# less data to catch (5x for an error_ratio of 2).
BIG_WEIGHT = 0.25

# A sample-ratio mismatch needs both a tiny chance of arising by luck and a deviation that matters.
SRM_LOG_P = math.log(1e-6)
SRM_ODDS_TOLERANCE = 1.2
# Before a stage may advance, its split must be shown not to be off by this factor in the canary's odds either
# way (0.8: a canary that silently loses 20 % of its requests), by the same sequential standard as a metric's
# acceptance (docs/judge.md, "Sample-ratio mismatch").
SPLIT_ACCEPT_ODDS = 1.25
# The look-to-look dispersion of the split starts from this many pseudo-looks at 1 (independent requests), so a
# handful of looks cannot talk it down or up by luck.
DISPERSION_PRIOR_LOOKS = 10
MAX_DISPERSION = 1e6
UNIT_PRETEST_Z = 3.09  # the user-bucket dispersion counts from the 0.999 quantile of its null distribution

# Guardrail alternatives: the true rate this many times the limit (a mixture, so no one size must be guessed).
GUARDRAIL_FACTORS = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0)


def rate_ratio_llr(x_c: int, x_s: int, n_c: float, n_s: float, ratio: float) -> float:
    """Log-likelihood ratio of one look: canary events are `ratio` times as frequent per request as stable's,
    against equally frequent. Conditional on the look's exposures (n_c, n_s), so no estimate of stable's rate
    is needed; exp() of it has expectation <= 1 whenever the canary is no worse (binomial or Poisson counts)."""
    if n_c <= 0 or n_s <= 0 or x_c + x_s <= 0:
        return 0.0
    pi0 = n_c / (n_c + n_s)
    pi1 = n_c * ratio / (n_c * ratio + n_s)
    return x_c * math.log(pi1 / pi0) + x_s * math.log((1.0 - pi1) / (1.0 - pi0))


def stage_ratio(base: float, percent: float) -> float:
    """The ratio a stage at `percent` tests: `base` from REFERENCE_PERCENT up, up to MAX_STAGE_STRETCH times the
    excess below it (error_ratio 2: 4.2x at 1 %, 2.4x at 5 %, 2x from 10 %)."""
    stretch = math.sqrt(REFERENCE_PERCENT / percent) if percent > 0 else MAX_STAGE_STRETCH
    return 1.0 + (base - 1.0) * min(max(stretch, 1.0), MAX_STAGE_STRETCH)


def big_ratio(base: float) -> float:
    return 1.0 + (base - 1.0) * MAX_STAGE_STRETCH


def log_mixture(logs: Sequence[float], weights: Sequence[float]) -> float:
    """ln(sum w_i * exp(l_i)) without overflow."""
    top = max(logs)
    return top + math.log(sum(w * math.exp(v - top) for v, w in zip(logs, weights, strict=True)))


@dataclass(frozen=True)
class AlphaBudget:
    """How the rollout's false-rollback budget is spent (docs/judge.md, "The budget").

    The rollout test runs from the first stage to the last and catches what is wrong from the start; each later
    stage adds a fresh test of its own for what goes wrong late. By the union bound the chance that any of them
    rolls back a canary that is no worse is at most the sum, which is `alpha`.
    """

    judged_stages: int
    rollout_errors: float
    rollout_latency: float
    stage_errors: float  # each later stage's own error test
    stage_latency: float
    guardrail: float  # each guardrail, per stage; outside `alpha` (an absolute limit, not a comparison)

    @classmethod
    def split(cls, alpha: float, judged_stages: int) -> AlphaBudget:
        later = max(judged_stages - 1, 0)
        stage_share = 0.4 if later else 0.0
        rollout = alpha * (1.0 - stage_share)
        per_stage = alpha * stage_share / (2 * later) if later else 0.0
        return cls(
            judged_stages=judged_stages,
            rollout_errors=rollout * 5 / 6,
            rollout_latency=rollout / 6,
            stage_errors=per_stage,
            stage_latency=per_stage,
            guardrail=alpha / (2 * max(judged_stages, 1)),
        )


@dataclass(frozen=True)
class SampleRatio:
    expected_share: float
    observed_share: float | None
    odds_ratio: float | None
    g_statistic: float
    log_p_bound: float  # ln of a bound on the two-sided p-value (Chernoff: p <= 2 exp(-G/2))

    @property
    def mismatch(self) -> bool:
        if self.odds_ratio is None or self.log_p_bound > SRM_LOG_P:
            return False
        return not 1 / SRM_ODDS_TOLERANCE <= self.odds_ratio <= SRM_ODDS_TOLERANCE


def sample_ratio(n_c: int, n_s: int, expected_share: float, dispersion: float = 1.0) -> SampleRatio:
    """Is the canary's share of requests compatible with its configured percent? A G-test, whose Chernoff bound
    on the p-value holds at any sample size (the chi-square approximation fails at 1 % of a few hundred). The
    statistic is divided by the split's `dispersion` (quasi-likelihood): when requests come in bursts from one
    user, who is in one arm, the split varies `dispersion` times more than independent requests would."""
    n = n_c + n_s
    if n <= 0 or not 0 < expected_share < 1:
        return SampleRatio(expected_share, None, None, 0.0, 0.0)
    share = n_c / n
    g = min(2 * n * _bernoulli_kl(share, expected_share), 1e300) / max(dispersion, 1.0)
    odds = math.inf if share >= 1 else (share / (1 - share)) / (expected_share / (1 - expected_share))
    return SampleRatio(expected_share, share, odds, g, min(math.log(2) - g / 2, 0.0))


def split_dispersion(canary: int, total: int, sq: float, looks: int) -> float:
    """How many times more the canary's share varies from look to look than independent requests would: the
    Pearson statistic of the looks' canary counts around the stage's own share (so a steady mismatch does not
    read as dispersion), per degree of freedom, shrunk towards 1 by DISPERSION_PRIOR_LOOKS; never below 1."""
    if total <= 0 or looks < 2 or not 0 < canary < total:
        return 1.0
    share = canary / total
    pearson = max(sq - share * canary, 0.0) / (share * (1 - share))
    return max((pearson + DISPERSION_PRIOR_LOOKS) / (looks - 1 + DISPERSION_PRIOR_LOOKS), 1.0)


def unit_dispersion(units: Mapping[int, tuple[int, int]]) -> tuple[float, float]:
    """How many times more one arm's errors vary between user buckets than independent requests would: the
    squared deviations of the buckets' error counts from the arm's own rate, summed (times k/(k-1) for the k
    buckets used), over the arm's errors (the Poisson variance), once the errors are shown to cluster (below
    that, 1: the noise of an estimate must not cost power where there is nothing to correct); with the arm's
    errors. Clustering is shown by the pairs of errors that share a bucket: independent errors make about
    E(E-1)/2 * sum(share_j^2) of them (Poisson while sparse, with variance inflated by 1 + 2 x errors per bucket
    when dense); more than its 0.999 quantile counts.
    Users are hashed to buckets at random, so buckets are independent samples of users: a few users who keep
    failing put their errors in a few buckets and show here, while independent errors give about 1."""
    n_total = sum(max(n, 0) for n, _ in units.values())
    e_total = sum(max(e, 0) for _, e in units.values())
    used = [(n, e) for n, e in units.values() if n > 0]
    if n_total <= 0 or e_total <= 0 or len(used) < 2:
        return 1.0, float(max(e_total, 0))
    rate = e_total / n_total
    pairs = sum(e * (e - 1) / 2 for _, e in used)
    expected = e_total * (e_total - 1) / 2 * sum((n / n_total) ** 2 for n, _ in used)
    per_bucket = e_total / len(used)
    spread = UNIT_PRETEST_Z * math.sqrt(expected * (1 + 2 * per_bucket))
    if pairs <= max(_poisson_quantile(expected), expected + spread):
        return 1.0, float(e_total)
    # The variance of the arm's event count with the bucket as the unit (the sandwich of a ratio estimator), over
    # the Poisson variance of independent requests. With buckets of equal size it is the Pearson statistic per
    # degree of freedom; unlike that, it does not down-weight a big bucket (one heavy user) that deviates.
    k = len(used)
    spread_sq = sum((e - rate * n) ** 2 for n, e in used) * k / (k - 1)
    return max(spread_sq / (rate * n_total), 1.0), float(e_total)


def _poisson_quantile(mean: float, tail: float = 1e-3) -> float:
    """The smallest k with P(Poisson(mean) > k) <= tail (by summation; a normal bound above a mean of 100)."""
    if mean > 100:
        return mean + UNIT_PRETEST_Z * math.sqrt(mean)
    k, p = 0, math.exp(-mean)
    total = p
    while 1 - total > tail and k < 1000:
        k += 1
        p *= mean / k
        total += p
    return float(k)


def contrast_dispersion(canary: Mapping[int, tuple[int, int]], stable: Mapping[int, tuple[int, int]]) -> float:
    """The design effect of the canary-vs-stable error contrast: the variance of the log rate ratio with users
    as the unit over the variance that independent requests would give (delta method: each arm's Poisson
    variance 1/E scaled by its dispersion). 1 when no buckets are reported."""
    try:
        phi_c, e_c = unit_dispersion(canary)
        phi_s, e_s = unit_dispersion(stable)
        w_c, w_s = 1 / (e_c + 1), 1 / (e_s + 1)
        phi = (phi_c * w_c + phi_s * w_s) / (w_c + w_s)
    except (TypeError, ValueError, OverflowError, ZeroDivisionError):
        return MAX_DISPERSION
    return min(phi, MAX_DISPERSION) if math.isfinite(phi) else MAX_DISPERSION  # garbage counts: no evidence


def split_acceptance_log_evidence(n_c: int, n: int, expected_share: float, dispersion: float) -> float:
    """ln of the larger of the likelihood ratios "the canary's odds are SPLIT_ACCEPT_ODDS times too low" and
    "... too high" against the configured share, from the stage's cumulative counts and tempered by the
    dispersion. The split is accepted when this is <= ln(beta): under either alternative the reciprocal ratio
    is a test supermartingale (tempering by a power <= 1 keeps it one), so a canary losing a fifth of its
    requests has its split accepted with chance <= beta, however often the judge looks."""
    if n <= 0 or not 0 < expected_share < 1:
        return 0.0
    n_c = min(max(n_c, 0), n)
    odds = expected_share / (1 - expected_share)
    logs = []
    for factor in (1 / SPLIT_ACCEPT_ODDS, SPLIT_ACCEPT_ODDS):
        q = odds * factor / (1 + odds * factor)
        logs.append(n_c * (math.log(q) - math.log(expected_share))
                    + (n - n_c) * (math.log1p(-q) - math.log1p(-expected_share)))
    return max(logs) / max(dispersion, 1.0)


def _bernoulli_kl(p: float, q: float) -> float:
    total = 0.0
    if p > 0:
        total += p * (math.log(p) - math.log(q))  # not log(p / q): q may be tiny enough to overflow the ratio
    if p < 1:
        total += (1 - p) * (math.log1p(-p) - math.log1p(-q))
    return max(total, 0.0)


def guardrail_log_evidence(events: int, n: int, limit: float) -> float:
    """ln of the evidence that the true rate exceeds `limit`: a mixture over GUARDRAIL_FACTORS of the likelihood
    ratios "rate = f * limit" vs "rate = limit", from cumulative counts. Each is a test supermartingale for any
    rate at or below the limit, so crossing ln(1/alpha) is a false trip with chance <= alpha."""
    if n <= 0 or not 0 < limit < 1:
        return 0.0
    events = min(max(events, 0), n)
    logs = []
    for factor in GUARDRAIL_FACTORS:
        q = min(limit * factor, (1 + limit) / 2)
        logs.append(events * math.log(q / limit) + (n - events) * math.log((1 - q) / (1 - limit)))
    return log_mixture(logs, [1 / len(logs)] * len(logs))


def unit_split_dispersion(canary: Mapping[int, tuple[int, int]], stable: Mapping[int, tuple[int, int]]) -> float:
    """How many times more the canary's request count varies than independent requests would, read from the
    user buckets (the randomised unit: the user, or the `bucket_by` attribute's value such as an organisation).

    Each unit is in one arm with all its requests, so the canary's count is a sum over units of n_u x [canary],
    with variance p(1-p) sum n_u^2, where independent requests give p(1-p) N. The buckets are disjoint random
    groups of units, and sum_j (c_j - p N_j)^2 over them estimates that variance whatever the units' sizes (the
    sandwich variance with the bucket as the unit, times k/(k-1)), around the *observed* share p: a canary that
    loses a fifth of its requests everywhere deviates the same way in every bucket and does not read as
    dispersion. 1 without buckets (or with fewer than two); never below 1."""
    try:
        used = [(max(canary.get(j, (0, 0))[0], 0), max(stable.get(j, (0, 0))[0], 0))
                for j in set(canary) | set(stable)]
        used = [(c, c + s) for c, s in used if c + s > 0]
        total = sum(n for _, n in used)
        share = sum(c for c, _ in used) / total if total else 0.0
        if len(used) < 2 or not 0 < share < 1:
            return 1.0
        k = len(used)
        spread_sq = sum((c - share * n) ** 2 for c, n in used) * k / (k - 1)
        phi = spread_sq / (share * (1 - share) * total)
    except (TypeError, ValueError, OverflowError, ZeroDivisionError, AttributeError, IndexError):
        return MAX_DISPERSION
    return min(max(phi, 1.0), MAX_DISPERSION) if math.isfinite(phi) else MAX_DISPERSION


@dataclass(frozen=True)
class StratumLook:
    """One stratum's data of one look: requests and events (erroring users, or errors) per arm."""

    n_c: int
    x_c: int
    n_s: int
    x_s: int


def stratified_rate_ratio_llr(strata: Sequence[StratumLook], ratio: float) -> float:
    """The stratified log-likelihood ratio of one look: canary events `ratio` times as frequent as stable's
    *within every stratum*, against equally frequent within every stratum; each stratum conditioned on its own
    exposures, so neither the strata's base rates nor the arms' mix over strata enter. It is the sum of the
    strata's `rate_ratio_llr`: under "no worse in any stratum" each term's exp has expectation <= 1 whatever
    that stratum's rate, and the strata's counts are independent given their exposures, so the product's is too
    (docs/judge.md, "Strata")."""
    return sum(rate_ratio_llr(s.x_c, s.x_s, s.n_c, s.n_s, ratio) for s in strata)

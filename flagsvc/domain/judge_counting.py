"""The canary judge's statistics for one look: the clamped inputs (`Look`), how the data that arrived since the
last look is counted into the sequential tests (new `JudgeState`s), the stage's slow-latency threshold, and the
guardrail, rejection and acceptance checks, each answering with a small frozen finding.

Numbers and facts only; what they mean in words, and the evidence dict, are in `judge_reasons`. The tests
themselves (likelihood ratios, alpha budget, sample ratio) are in `sequential`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from flagsvc.domain.analysis import AnalysisSettings
from flagsvc.domain.judge_state import MAX_COUNT, JudgeState, RolloutTest, Seen, SplitTest
from flagsvc.domain.outcomes import ArmTotals
from flagsvc.domain.sequential import (
    BIG_WEIGHT,
    AlphaBudget,
    SampleRatio,
    StratumLook,
    big_ratio,
    contrast_dispersion,
    guardrail_log_evidence,
    log_mixture,
    rate_ratio_llr,
    sample_ratio,
    split_acceptance_log_evidence,
    split_dispersion,
    stage_ratio,
    stratified_rate_ratio_llr,
    unit_split_dispersion,
)

__all__ = [
    "MIN_TIMED_FOR_THRESHOLD",
    "Acceptance",
    "Arm",
    "Blindness",
    "GuardrailTrip",
    "Look",
    "Rejection",
    "Status",
    "Thresholds",
    "acceptance",
    "begin",
    "blindness",
    "count_new_data",
    "count_split",
    "guardrail_trip",
    "rejection",
    "rollout_errors_statistic",
    "skip_to_now",
    "split_design_effect",
    "stage_split",
    "strata_totals",
    "stratum_looks",
    "stratum_splits",
    "thin_arm_log_evidence",
    "went_backwards",
]

SLOW_QUANTILE = 0.95  # a request is "slow" above stable's p95: 5 % of stable's requests, whatever the shape
MIN_TIMED_FOR_THRESHOLD = 200  # stable latencies needed before the p95 that defines "slow" is fixed for the stage
MIN_SLOW_RATIO, MAX_SLOW_RATIO = 1.05, 50.0
P99_GUARDRAIL_SHARE = 0.01  # "p99 above the limit" = more than 1 % of requests above it
# A blind arm: its outcomes are shown to be under a tenth of its configured share, with evidence a measured arm
# reaches with chance <= 1e-9 however often the judge looks (`blindness`).
BLIND_SHARE_FRACTION = 0.1
BLIND_ALTERNATIVES = (0.0, 0.01, 0.03)  # the thin arm's share, as fractions of its configured share
BLIND_LOG_EVIDENCE = math.log(1e9)

# Where a metric's stage test stands on the way to an advance.
Status = Literal["accepted", "no events", "not reported", "pending"]


# --- inputs -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arm:
    """One arm's cumulative totals, clamped to be consistent (the judge never raises on odd input)."""

    requests: int
    errors: int
    error_users: int
    timed: int
    totals: ArmTotals
    refused: str | None = None  # why these totals cannot be judged (non-finite or absurd counts), if they cannot

    @classmethod
    def read(cls, totals: ArmTotals) -> Arm:
        """Negative counts read as 0 and errors are capped by requests; a count that is not a finite number, or
        above MAX_COUNT, is refused: the arm reads as empty and says why (the judge then holds)."""
        counts = [_sane_count(totals.count), _sane_count(totals.errors), _sane_count(totals.error_users)]
        latency = totals.latency
        try:
            buckets = list(latency.buckets.items())
            timed = _sane_count(latency.count)
            if any(not isinstance(i, int) or _sane_count(n) is None for i, n in buckets):
                timed = None
        except (AttributeError, TypeError, ValueError):
            timed = None
        if None in counts or timed is None:
            shown = (totals.count, totals.errors, totals.error_users)
            return cls(0, 0, 0, 0, ArmTotals(), f"counts (requests, errors, users) {shown} or latencies unusable")
        requests, errors, users = (max(n or 0, 0) for n in counts)
        errors = min(errors, requests)
        return cls(requests, errors, min(users, errors), max(timed, 0), totals)

    def slow(self, slow_ms: float) -> int:
        return self.totals.latency.count_above(slow_ms)

    def is_behind(self, seen: Seen) -> bool:
        return (
            self.requests < seen.requests or self.errors < seen.errors or self.error_users < seen.error_users
            or self.timed < seen.timed
        )

    def seen(self, slow_ms: float | None) -> Seen:
        """These totals as the next look's starting point; latencies only once "slow" means something."""
        if slow_ms is None:
            return Seen(self.requests, self.errors, self.error_users)
        return Seen(self.requests, self.errors, self.error_users, self.timed, self.slow(slow_ms))


@dataclass(frozen=True)
class Thresholds:
    """The budget of a rollout with so many judged stages, as the log thresholds the tests are held to."""

    budget: AlphaBudget
    accept: float
    rollout_errors: float
    rollout_latency: float
    stage_errors: float
    stage_latency: float
    guardrail: float

    @classmethod
    def of(cls, settings: AnalysisSettings, judged_stages: int) -> Thresholds:
        b = AlphaBudget.split(settings.alpha, judged_stages)
        return cls(
            b, math.log(settings.beta), _log_inverse(b.rollout_errors), _log_inverse(b.rollout_latency),
            _log_inverse(b.stage_errors), _log_inverse(b.stage_latency), _log_inverse(b.guardrail),
        )


@dataclass(frozen=True)
class Look:
    """The inputs of one call of the judge, clamped: a NaN or infinite percent or time reads as 0."""

    settings: AnalysisSettings
    limits: Thresholds
    stable: Arm
    canary: Arm
    epoch: str  # the aggregates' epoch (JudgeState.epoch)
    percent: float
    stage_index: int
    seconds: float
    bake: float
    errors_ratio: float  # the error-rate ratio this stage's test is at

    @property
    def refused(self) -> str | None:
        """Why this look's inputs cannot be judged, if they cannot: the judge holds and counts nothing."""
        for name, arm in (("stable", self.stable), ("canary", self.canary)):
            if arm.refused:
                return f"{name} {arm.refused}"
        return None

    @classmethod
    def read(
        cls, settings: AnalysisSettings, limits: Thresholds, stable: ArmTotals, canary: ArmTotals, *,
        percent: float, stage_index: int, seconds_at_stage: float, bake_seconds: float,
    ) -> Look:
        percent = min(max(_finite_or_zero(percent), 0.0), 100.0)
        return cls(
            settings, limits, Arm.read(stable), Arm.read(canary), canary.epoch or stable.epoch, percent,
            _sane_count(stage_index) or 0,
            _finite_or_zero(seconds_at_stage), _finite_or_zero(bake_seconds),
            stage_ratio(settings.error_ratio, percent),
        )


def _finite_or_zero(value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]  # anything a caller passed; not a number reads as 0
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _sane_count(value: object) -> int | None:
    """A count as an int, or None when it is not one the judge can trust (NaN, infinite, absurdly large)."""
    try:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return None
    except OverflowError:
        return None
    return int(value) if abs(value) <= MAX_COUNT else None


def _log_inverse(alpha: float) -> float:
    return math.log(1 / alpha) if alpha > 0 else math.inf


# --- counting ---------------------------------------------------------------------------------------------


def begin(state: JudgeState | None, look: Look) -> JudgeState:
    """The state this look starts from: the caller's if it belongs to this stage, else a fresh one."""
    if state is None or state.stage_index != look.stage_index:
        state = JudgeState.start(look.stage_index)
    return replace(state, looks=state.looks + 1)


def went_backwards(state: JudgeState, look: Look) -> bool:
    """The aggregates restarted under this state: totals below what was already seen (a replayed revision), or
    a new epoch (the store started them again, maybe refilled past the old totals before this look). Counting
    the difference then would compare two unrelated sets of totals: a reset refilled from 1000 requests with 10
    errors to 1100 with 40 would read as 100 requests with 30 errors."""
    seen_any = state.stable != Seen() or state.canary != Seen()
    return (
        (seen_any and state.epoch != look.epoch)
        or look.stable.is_behind(state.stable) or look.canary.is_behind(state.canary)
    )


def skip_to_now(state: JudgeState, look: Look) -> JudgeState:
    """Take the current totals as seen without counting them."""
    split = replace(state.split, seen_canary=look.canary.requests,
                    seen_total=look.canary.requests + look.stable.requests)
    return replace(state, stable=look.stable.seen(state.slow_ms), canary=look.canary.seen(state.slow_ms),
                   split=split, strata=strata_totals(look))


def count_split(state: JudgeState, look: Look) -> JudgeState:
    """Add this look's requests to the stage's split. Counted at every look, a mismatch hold included: the split
    is what a mismatch is about, and the data a mismatch holds back is counted for the metrics once it clears."""
    s = state.split
    total = look.canary.requests + look.stable.requests
    n_c, n = look.canary.requests - s.seen_canary, total - s.seen_total
    if n <= 0 or n_c < 0 or n_c > n:
        return replace(state, split=replace(s, seen_canary=look.canary.requests, seen_total=total))
    return replace(state, split=SplitTest(s.canary + n_c, s.total + n, s.sq + n_c * n_c / n, s.looks + 1,
                                          look.canary.requests, total))


def stage_split(state: JudgeState, look: Look) -> SampleRatio:
    """The sample-ratio check on the stage's requests (all revisions of it), with bursts allowed for."""
    s = state.split
    return sample_ratio(s.canary, s.total - s.canary, look.percent / 100, split_design_effect(state, look))


def split_design_effect(state: JudgeState, look: Look) -> float:
    """How much more the split varies than independent requests would: from look to look (bursts), or between
    the units that were randomised (users, or organisations with `bucket_by`: a few big ones decide the canary's
    share of requests, and it stays off for the whole stage); the larger of the two."""
    s = state.split
    return max(split_dispersion(s.canary, s.total, s.sq, s.looks),
               unit_split_dispersion(look.canary.totals.units, look.stable.totals.units))


def split_accepted(state: JudgeState, look: Look) -> bool:
    s = state.split
    dispersion = split_design_effect(state, look)
    evidence = split_acceptance_log_evidence(s.canary, s.total, look.percent / 100, dispersion)
    return evidence <= look.limits.accept


def count_new_data(state: JudgeState, look: Look) -> JudgeState:
    """Add what arrived since the last look to the error and latency tests."""
    return _count_latency(_count_errors(state, look), look)


def _error_events(d_errors: int, d_users: int) -> int:
    """Errors of one look counted once per erroring user: a burst from one user is one event. An SDK that does
    not count users reports 0 of them; its errors count one by one."""
    return min(d_users, d_errors) if d_users > 0 else d_errors


UNLABELLED = ""  # the stratum of requests under no label (SDKs that do not send strata)


def strata_totals(look: Look) -> dict[str, tuple[int, int, int, int, int, int]]:
    """Per stratum, the cumulative (stable requests, errors, users, canary requests, errors, users), with the
    requests under no label as one more stratum; {} when neither arm reports strata (the pooled test)."""
    stable, canary = look.stable.totals.strata, look.canary.totals.strata
    if not stable and not canary:
        return {}
    out: dict[str, tuple[int, int, int, int, int, int]] = {}
    for label in sorted(set(stable) | set(canary)):
        values = (*stable.get(label, (0, 0, 0)), *canary.get(label, (0, 0, 0)))
        n_s, e_s, u_s, n_c, e_c, u_c = (max(int(v), 0) for v in values)
        out[str(label)] = (n_s, min(e_s, n_s), min(u_s, e_s), n_c, min(e_c, n_c), min(u_c, e_c))
    arms = (look.stable, look.canary)
    rest = [max(arm.requests - sum(t[i] for t in out.values()), 0)
            for arm, i in ((arms[0], 0), (arms[1], 3))]
    rest_e = [max(arm.errors - sum(t[i] for t in out.values()), 0) for arm, i in ((arms[0], 1), (arms[1], 4))]
    rest_u = [max(arm.error_users - sum(t[i] for t in out.values()), 0)
              for arm, i in ((arms[0], 2), (arms[1], 5))]
    if any(rest):
        out[UNLABELLED] = (rest[0], min(rest_e[0], rest[0]), min(rest_u[0], rest_e[0]),
                           rest[1], min(rest_e[1], rest[1]), min(rest_u[1], rest_e[1]))
    return out


def stratum_looks(state: JudgeState, totals: Mapping[str, tuple[int, ...]]) -> list[StratumLook]:
    """What each stratum brought since the last look, events counted once per erroring user; a stratum whose
    totals went down (relabelled into "other" by the store's bound) brings nothing."""
    looks = []
    for label, now in totals.items():
        was = state.strata.get(label, (0, 0, 0, 0, 0, 0))
        d = [a - b for a, b in zip(now, was, strict=True)]
        if min(d) < 0 or (d[0] == 0 and d[3] == 0):
            continue
        looks.append(StratumLook(d[3], _error_events(d[4], d[5]), d[0], _error_events(d[1], d[2])))
    return looks


def _error_llr(strata: list[StratumLook] | None, x_c: int, x_s: int, n_c: int, n_s: int, ratio: float) -> float:
    if strata is None:
        return rate_ratio_llr(x_c, x_s, n_c, n_s, ratio)
    return stratified_rate_ratio_llr(strata, ratio)


def _count_errors(state: JudgeState, look: Look) -> JudgeState:
    s, c, seen_s, seen_c = look.stable, look.canary, state.stable, state.canary
    n_c, n_s = c.requests - seen_c.requests, s.requests - seen_s.requests
    x_c = _error_events(c.errors - seen_c.errors, c.error_users - seen_c.error_users)
    x_s = _error_events(s.errors - seen_s.errors, s.error_users - seen_s.error_users)
    # With strata, the arms are compared within each stratum and the evidence added up (docs/judge.md, "Strata"):
    # a canary that serves more of a stratum whose requests fail more for other reasons is not blamed for it.
    totals = strata_totals(look)
    strata = stratum_looks(state, totals) if totals else None
    # Users, not requests, are randomised: the evidence is tempered by the contrast's design effect, read from
    # the between-bucket variation of the errors (1 without buckets). docs/judge.md, "Users".
    # The revision's evidence is kept untempered and divided by the current design effect when read, so a few
    # users who keep failing are weighed by what their buckets show now, however long they have been failing.
    phi = contrast_dispersion(c.totals.units, s.totals.units)
    errors = state.errors.add(_error_llr(strata, x_c, x_s, n_c, n_s, look.errors_ratio), x_c, x_s, n_c, n_s)
    rollout = state.rollout
    if rollout is not None and x_c + x_s > 0:
        ratio = look.settings.error_ratio
        rollout = replace(
            rollout, errors=rollout.errors + _error_llr(strata, x_c, x_s, n_c, n_s, ratio),
            errors_big=rollout.errors_big + _error_llr(strata, x_c, x_s, n_c, n_s, big_ratio(ratio)),
        )
    return replace(
        state, errors=errors, rollout=rollout, dispersion=phi, strata=totals,
        stable=Seen(s.requests, s.errors, s.error_users, seen_s.timed, seen_s.slow),
        canary=Seen(c.requests, c.errors, c.error_users, seen_c.timed, seen_c.slow),
    )


def _count_latency(state: JudgeState, look: Look) -> JudgeState:
    if state.slow_ms is None:
        return _fix_slow_threshold(state, look) if look.stable.timed >= MIN_TIMED_FOR_THRESHOLD else state
    s, c, seen_s, seen_c = look.stable, look.canary, state.stable, state.canary
    slow_c, slow_s = c.slow(state.slow_ms), s.slow(state.slow_ms)
    n_c, n_s = max(c.timed - seen_c.timed, 0), max(s.timed - seen_s.timed, 0)
    x_c, x_s = min(max(slow_c - seen_c.slow, 0), n_c), min(max(slow_s - seen_s.slow, 0), n_s)
    ratio = state.slow_ratio or look.settings.latency_ratio
    latency = state.latency.add(
        rate_ratio_llr(x_c, x_s, n_c, n_s, stage_ratio(ratio, look.percent)), x_c, x_s, n_c, n_s
    )
    rollout = state.rollout
    if rollout is not None and x_c + x_s > 0:
        rollout = replace(rollout, latency=rollout.latency + rate_ratio_llr(x_c, x_s, n_c, n_s, ratio))
    # Slowness clusters in users as errors do (a few users whose requests are always slow): the latency tests are
    # tempered by the design effect of the slow counts per user bucket, as the error tests are (1 without them).
    phi = contrast_dispersion(c.totals.slow_by_unit(), s.totals.slow_by_unit())
    return replace(
        state, latency=latency, rollout=rollout, latency_dispersion=phi,
        stable=Seen(seen_s.requests, seen_s.errors, seen_s.error_users, s.timed, slow_s),
        canary=Seen(seen_c.requests, seen_c.errors, seen_c.error_users, c.timed, slow_c),
    )


def _fix_slow_threshold(state: JudgeState, look: Look) -> JudgeState:
    """Fix "slow" for the stage from stable's p95 so far; only later requests are counted against it, which
    keeps the threshold independent of the data it judges. The slow-count ratio that stands for a p95
    regression of latency_ratio is read from stable's own shape: were every latency latency_ratio times
    longer, the share above the threshold would be stable's share above threshold / latency_ratio."""
    s, c, latency_ratio = look.stable, look.canary, look.settings.latency_ratio
    sketch = s.totals.latency
    slow_ms = sketch.quantile(SLOW_QUANTILE)
    if slow_ms is None:
        return state
    above = sketch.count_above(slow_ms)
    above_shifted = sketch.count_above(slow_ms / latency_ratio)
    ratio = above_shifted / above if above > 0 else latency_ratio
    seen_s, seen_c = state.stable, state.canary
    return replace(
        state, slow_ms=slow_ms, slow_ratio=min(max(ratio, MIN_SLOW_RATIO), MAX_SLOW_RATIO),
        stable=Seen(seen_s.requests, seen_s.errors, seen_s.error_users, s.timed, s.slow(slow_ms)),
        canary=Seen(seen_c.requests, seen_c.errors, seen_c.error_users, c.timed, c.slow(slow_ms)),
    )


# --- checks -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuardrailTrip:
    """An absolute limit the canary is shown to break: `events` of `exposure` (errors of requests, or timed
    requests above max_p99_ms), with the evidence that crossed the threshold."""

    name: Literal["max_error_rate", "max_p99_ms"]
    limit: float
    events: int
    exposure: int
    evidence: float
    threshold: float


def guardrail_trip(look: Look) -> GuardrailTrip | None:
    """The first guardrail tripped, error rate before p99. Cumulative counts, so data skipped by a restart or a
    sample-ratio mismatch still counts here: a guardrail compares the canary with a limit, not with stable."""
    c, threshold = look.canary, look.limits.guardrail
    rate_limit, p99_limit = look.settings.max_error_rate, look.settings.max_p99_ms
    if rate_limit is not None and c.errors:
        evidence = guardrail_log_evidence(c.errors, c.requests, rate_limit)
        if evidence >= threshold:
            return GuardrailTrip("max_error_rate", rate_limit, c.errors, c.requests, evidence, threshold)
    if p99_limit is not None and c.timed:
        over = c.totals.latency.count_above(p99_limit)
        evidence = guardrail_log_evidence(over, c.timed, P99_GUARDRAIL_SHARE)
        if evidence >= threshold:
            return GuardrailTrip("max_p99_ms", p99_limit, over, c.timed, evidence, threshold)
    return None


@dataclass(frozen=True)
class Rejection:
    """A sequential test that crossed its rollback threshold."""

    metric: Literal["errors", "latency"]
    test: Literal["rollout", "stage"]
    statistic: float
    threshold: float


def rollout_errors_statistic(rollout: RolloutTest, dispersion: float = 1.0) -> float:
    """The rollout error test: a mixture of the two alternatives, each a test supermartingale."""
    return log_mixture(list(rollout.errors_pair(dispersion)), [1 - BIG_WEIGHT, BIG_WEIGHT])


def rejection(state: JudgeState, look: Look) -> Rejection | None:
    """The first test past its threshold: the rollout test's (errors, then latency), then the stage's own. Only
    later stages have one: the first stage is what the rollout test starts on, and the budget pays for it there."""
    limits = look.limits
    checks: list[Rejection] = []
    if state.rollout is not None:
        checks.append(Rejection("errors", "rollout", rollout_errors_statistic(state.rollout, state.dispersion),
                                limits.rollout_errors))
        checks.append(Rejection("latency", "rollout", state.rollout.latency_statistic(state.latency_dispersion),
                                limits.rollout_latency))
    if look.stage_index > 0:
        checks.append(Rejection("errors", "stage", state.errors.statistic(state.dispersion), limits.stage_errors))
        checks.append(Rejection("latency", "stage", state.latency.statistic(state.latency_dispersion),
                                limits.stage_latency))
    return next((check for check in checks if check.statistic >= check.threshold), None)


@dataclass(frozen=True)
class Acceptance:
    """Where each metric's stage test stands on the way to an advance."""

    errors: Status
    latency: Status
    split: Literal["accepted", "pending"] = "accepted"

    @property
    def pending(self) -> bool:
        return "pending" in (self.errors, self.latency, self.split)


def acceptance(state: JudgeState, look: Look) -> Acceptance:
    accept_at = look.limits.accept
    accepted = state.errors.statistic(state.dispersion) <= accept_at
    errors: Status = "accepted" if accepted else _pending_unless_quiet(state, "errors")
    latency: Status
    if state.slow_ms is None:
        latency = "not reported" if look.stable.timed == 0 and look.canary.timed == 0 else "pending"
    elif state.latency.statistic(state.latency_dispersion) <= accept_at:
        latency = "accepted"
    else:
        latency = _pending_unless_quiet(state, "latency")
    return Acceptance(errors, latency, "accepted" if split_accepted(state, look) else "pending")


def _pending_unless_quiet(state: JudgeState, metric: Literal["errors", "latency"]) -> Status:
    """A test with no event in either arm has nothing to compare and counts as accepted, but only once it has
    counted data of both arms: the latencies of the look that fixes the slow threshold are not counted, and a
    stage whose latencies all came in that look must wait for more rather than pass untested."""
    test = state.errors if metric == "errors" else state.latency
    if test.canary_exposure == 0 or test.stable_exposure == 0:
        return "pending"
    return "no events" if test.canary_events == 0 and test.stable_events == 0 else "pending"


@dataclass(frozen=True)
class Blindness:
    """One arm's outcomes far below its configured share of all outcomes: `observed` of an `expected` share
    (configured share x all outcomes), while the other arm reported `other`; `evidence` crossed `threshold`."""

    arm: Literal["stable", "canary"]
    observed: int
    expected: float
    other: int
    evidence: float
    threshold: float


def blindness(look: Look) -> Blindness | None:
    """Is one arm (nearly) missing from the outcomes? With both arms recorded, each outcome is a draw that is
    canary with chance percent/100. Against "the thin arm gets at least BLIND_SHARE_FRACTION of its share", the
    likelihood ratios of "it gets none, 1 % or 3 % of its share", mixed, are a test supermartingale (cumulative
    counts give the running product), so by Ville's inequality an arm recorded on at least a tenth of its share
    is called blind with chance <= 1e-9 however often the judge looks. With no outcome at all in the thin arm
    that takes ~210-220 expected ones: 21,700 stable outcomes at 1 % for a missing canary, ~210-220 canary
    outcomes for a missing stable."""
    total = look.stable.requests + look.canary.requests
    if total <= 0 or not 0 < look.percent < 100:
        return None
    canary_share = look.percent / 100
    arms: tuple[tuple[Literal["stable", "canary"], int, int, float], ...] = (
        ("canary", look.canary.requests, look.stable.requests, canary_share),
        ("stable", look.stable.requests, look.canary.requests, 1 - canary_share),
    )
    for arm, observed, other, share in arms:
        evidence = thin_arm_log_evidence(observed, total, share)
        if evidence >= BLIND_LOG_EVIDENCE:
            return Blindness(arm, observed, total * share, other, evidence, BLIND_LOG_EVIDENCE)
    return None


def thin_arm_log_evidence(observed: int, total: int, share: float) -> float:
    """ln of the mixture of likelihood ratios "share x f" (f in BLIND_ALTERNATIVES) vs "share x
    BLIND_SHARE_FRACTION" for `observed` of `total` draws. Each ratio's mean is <= 1 whenever the true share is at
    least the null's (the alternatives are all below it), so the mixture's is too."""
    null = share * BLIND_SHARE_FRACTION
    if not 0 < null < 1 or total <= 0:
        return 0.0
    observed = min(max(observed, 0), total)
    logs = []
    for fraction in BLIND_ALTERNATIVES:
        alt = share * fraction
        if alt <= 0:
            if observed == 0:  # "the arm is not recorded at all": only the other arm's draws count
                logs.append(-total * math.log1p(-null))
            continue
        logs.append(observed * (math.log(alt) - math.log(null))
                    + (total - observed) * (math.log1p(-alt) - math.log1p(-null)))
    top = max(logs)
    return top + math.log(sum(math.exp(v - top) for v in logs) / len(BLIND_ALTERNATIVES))


def stratum_splits(look: Look) -> list[tuple[str, SampleRatio]]:
    """The sample-ratio check in each stratum (this revision's requests), with the split's design effect: a
    canary that serves an unrepresentative mix is named here. It does not hold the stage: the comparison is
    made within strata, conditioned on each stratum's split, so the mix cannot bias it (docs/judge.md,
    "Strata"); a mismatch of the whole split still holds as ever."""
    if not 0 < look.percent < 100:
        return []
    dispersion = unit_split_dispersion(look.canary.totals.units, look.stable.totals.units)
    return [(label, sample_ratio(t[3], t[0], look.percent / 100, dispersion))
            for label, t in strata_totals(look).items()]

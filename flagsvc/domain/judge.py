"""The canary judge (BRIEF §6): from the current revision's per-arm aggregates, `advance`, `hold` or `rollback`,
with a reason in plain words and the evidence behind it. What it keeps between looks is in `judge_state`.

A pure function of (its state from the last look, the cumulative per-arm totals, settings, time at stage): no
clock, no randomness, no Flask or Redis. The caller keeps `Verdict.state` (JSON via to_dict/from_dict) next to
the flag's revision and hands it back on the next look. The method and why it bounds false rollbacks are in
docs/judge.md; the statistics themselves live in `sequential`.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Literal

from flagsvc_client.protocol.sketch import bucket_value

from flagsvc.domain.analysis import AnalysisSettings
from flagsvc.domain.judge_state import JudgeState, RolloutTest, Seen
from flagsvc.domain.outcomes import ArmTotals
from flagsvc.domain.sequential import (
    BIG_WEIGHT,
    AlphaBudget,
    SampleRatio,
    big_ratio,
    guardrail_log_evidence,
    log_mixture,
    rate_ratio_llr,
    sample_ratio,
    stage_ratio,
)

__all__ = ["ArmTotals", "CanaryJudge", "JudgeState", "Verdict"]

Decision = Literal["advance", "hold", "rollback"]

SLOW_QUANTILE = 0.95  # a request is "slow" above stable's p95: 5 % of stable's requests, whatever the shape
MIN_TIMED_FOR_THRESHOLD = 200  # stable latencies needed before the p95 that defines "slow" is fixed for the stage
MIN_SLOW_RATIO, MAX_SLOW_RATIO = 1.05, 50.0
P99_GUARDRAIL_SHARE = 0.01  # "p99 above the limit" = more than 1 % of requests above it
ACCEPTED, NO_EVENTS, NOT_REPORTED, PENDING = "accepted", "no events", "not reported", "pending"


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str
    evidence: dict[str, Any]
    state: JudgeState


# --- the judge --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Arm:
    """One arm's cumulative totals, clamped to be consistent (the judge never raises on odd input)."""

    requests: int
    errors: int
    error_users: int
    timed: int
    totals: ArmTotals

    @classmethod
    def read(cls, totals: ArmTotals) -> _Arm:
        requests = max(int(totals.count), 0)
        errors = min(max(int(totals.errors), 0), requests)
        users = min(max(int(totals.error_users), 0), errors)
        return cls(requests, errors, users, max(int(totals.latency.count), 0), totals)

    def slow(self, slow_ms: float) -> int:
        return self.totals.latency.count_above(slow_ms)

    def is_behind(self, seen: Seen) -> bool:
        return (
            self.requests < seen.requests or self.errors < seen.errors or self.error_users < seen.error_users
            or self.timed < seen.timed
        )


def _error_events(d_errors: int, d_users: int) -> int:
    """Errors of one look counted once per erroring user (BRIEF §6: bursts from one user are one event). An SDK
    that does not count users reports 0 of them; its errors count one by one."""
    return min(d_users, d_errors) if d_users > 0 else d_errors


@dataclass(frozen=True)
class _Thresholds:
    """The budget of a rollout with so many judged stages, as the log thresholds the tests are held to."""

    budget: AlphaBudget
    accept: float
    rollout_errors: float
    rollout_latency: float
    stage_errors: float
    stage_latency: float
    guardrail: float

    @classmethod
    def of(cls, settings: AnalysisSettings, judged_stages: int) -> _Thresholds:
        b = AlphaBudget.split(settings.alpha, judged_stages)
        return cls(
            b, math.log(settings.beta), _log_inverse(b.rollout_errors), _log_inverse(b.rollout_latency),
            _log_inverse(b.stage_errors), _log_inverse(b.stage_latency), _log_inverse(b.guardrail),
        )


class CanaryJudge:
    """Judges one flag's stages with one flag's settings. Holds nothing between calls but a small cache of the
    thresholds; all that carries from look to look is in the JudgeState the caller keeps."""

    def __init__(self, settings: AnalysisSettings) -> None:
        self.settings = settings
        self._thresholds: dict[int, _Thresholds] = {}

    def judge(
        self, state: JudgeState | None, stable: ArmTotals, canary: ArmTotals, *, percent: float,
        stage_index: int, stage_count: int, seconds_at_stage: float, bake_seconds: float,
    ) -> Verdict:
        # The last stage is 100 %: no stable arm to compare with, so it is not a judged stage.
        judged = max(int(stage_count) - 1, 1)
        if judged not in self._thresholds:
            self._thresholds[judged] = _Thresholds.of(self.settings, judged)
        look = _Look(self.settings, self._thresholds[judged], stable, canary, percent, stage_index,
                     seconds_at_stage, bake_seconds)
        return look.decide(state)


class _Look:
    """One call of the judge: the inputs, the working copy of the state, and the verdict."""

    def __init__(
        self, settings: AnalysisSettings, thresholds: _Thresholds, stable: ArmTotals, canary: ArmTotals,
        percent: float, stage_index: int, seconds_at_stage: float, bake_seconds: float,
    ) -> None:
        self.settings = settings
        self.limits = thresholds
        self.s = _Arm.read(stable)
        self.c = _Arm.read(canary)
        self.percent = float(percent) if math.isfinite(percent) else 0.0
        self.stage_index = max(int(stage_index), 0)
        self.seconds = float(seconds_at_stage) if math.isfinite(seconds_at_stage) else 0.0
        self.bake = float(bake_seconds) if math.isfinite(bake_seconds) else 0.0
        self.accept_at = thresholds.accept
        self._mixed: float | None = None
        self.errors_ratio = stage_ratio(settings.error_ratio, self.percent)
        self.split: SampleRatio | None = None
        self.notes: list[str] = []

    # -- flow ----------------------------------------------------------------------------------------------

    def decide(self, state: JudgeState | None) -> Verdict:
        if state is None or state.stage_index != self.stage_index:
            state = JudgeState.start(self.stage_index)
        self._load(state)
        if self.s.is_behind(state.stable) or self.c.is_behind(state.canary):
            # The aggregates restarted under this state (a replayed revision): count from here on, not twice.
            self.notes.append("aggregates went backwards; counting starts again from this look")
            self._skip_to_now()

        if tripped := self._guardrail():
            return tripped
        if self.percent >= 100:
            return self._full_rollout()
        if self.percent <= 0:
            return self._hold("insufficient evidence: the canary is configured at 0 %, so nobody is in it")
        if self.c.requests == 0 or self.s.requests == 0:
            empty = "canary" if self.c.requests == 0 else "stable"
            other = self.s.requests + self.c.requests
            return self._hold(f"insufficient evidence: no {empty} requests yet at {self.percent:g} % ({other:,} "
                              f"{'stable' if empty == 'canary' else 'canary'} requests)")
        self.split = sample_ratio(self.c.requests, self.s.requests, self.percent / 100)
        if self.split.mismatch:
            self._skip_to_now()
            return self._hold(
                f"sample-ratio mismatch: the canary got {self.split.observed_share:.3%} of "
                f"{self.s.requests + self.c.requests:,} requests but is configured for {self.percent:g} % "
                f"(p < {math.exp(self.split.log_p_bound):.0e}); arms that differ in who they serve cannot be "
                "compared fairly, so the judge holds until the split is fixed (this data is not counted)"
            )
        self._count_errors()
        self._count_latency()
        if regressed := self._rejection():
            return regressed
        return self._advance_or_hold()

    def _load(self, state: JudgeState) -> None:
        self.seen_s, self.seen_c = state.stable, state.canary
        self.slow_ms, self.slow_ratio = state.slow_ms, state.slow_ratio
        self.errors, self.latency, self.rollout = state.errors, state.latency, state.rollout
        self.looks = state.looks + 1

    def _state(self) -> JudgeState:
        return JudgeState(
            self.stage_index, self.seen_s, self.seen_c, self.slow_ms, self.slow_ratio, self.errors, self.latency,
            self.rollout, self.looks,
        )

    def _skip_to_now(self) -> None:
        """Take the current totals as seen without counting them."""
        self.seen_s, self.seen_c = self._seen(self.s), self._seen(self.c)

    def _seen(self, arm: _Arm) -> Seen:
        if self.slow_ms is None:
            return Seen(arm.requests, arm.errors, arm.error_users)
        return Seen(arm.requests, arm.errors, arm.error_users, arm.timed, arm.slow(self.slow_ms))

    # -- counting ------------------------------------------------------------------------------------------

    def _count_errors(self) -> None:
        s, c, seen_s, seen_c = self.s, self.c, self.seen_s, self.seen_c
        n_c, n_s = c.requests - seen_c.requests, s.requests - seen_s.requests
        x_c = _error_events(c.errors - seen_c.errors, c.error_users - seen_c.error_users)
        x_s = _error_events(s.errors - seen_s.errors, s.error_users - seen_s.error_users)
        self.errors = self.errors.add(rate_ratio_llr(x_c, x_s, n_c, n_s, self.errors_ratio), x_c, x_s, n_c, n_s)
        self._mixed = None
        if self.rollout is not None and x_c + x_s > 0:
            ratio = self.settings.error_ratio
            r = self.rollout
            self.rollout = RolloutTest(
                r.errors + rate_ratio_llr(x_c, x_s, n_c, n_s, ratio),
                r.errors_big + rate_ratio_llr(x_c, x_s, n_c, n_s, big_ratio(ratio)),
                r.latency,
            )
        self.seen_s = Seen(s.requests, s.errors, s.error_users, seen_s.timed, seen_s.slow)
        self.seen_c = Seen(c.requests, c.errors, c.error_users, seen_c.timed, seen_c.slow)

    def _count_latency(self) -> None:
        if self.slow_ms is None:
            if self.s.timed >= MIN_TIMED_FOR_THRESHOLD:
                self._fix_slow_threshold()
            return
        s, c, seen_s, seen_c = self.s, self.c, self.seen_s, self.seen_c
        slow_c, slow_s = c.slow(self.slow_ms), s.slow(self.slow_ms)
        n_c, n_s = max(c.timed - seen_c.timed, 0), max(s.timed - seen_s.timed, 0)
        x_c, x_s = min(max(slow_c - seen_c.slow, 0), n_c), min(max(slow_s - seen_s.slow, 0), n_s)
        ratio = self.slow_ratio or self.settings.latency_ratio
        self.latency = self.latency.add(
            rate_ratio_llr(x_c, x_s, n_c, n_s, stage_ratio(ratio, self.percent)), x_c, x_s, n_c, n_s
        )
        if self.rollout is not None and x_c + x_s > 0:
            r = self.rollout
            self.rollout = RolloutTest(r.errors, r.errors_big, r.latency + rate_ratio_llr(x_c, x_s, n_c, n_s, ratio))
        self.seen_s = Seen(seen_s.requests, seen_s.errors, seen_s.error_users, s.timed, slow_s)
        self.seen_c = Seen(seen_c.requests, seen_c.errors, seen_c.error_users, c.timed, slow_c)

    def _fix_slow_threshold(self) -> None:
        """Fix "slow" for the stage from stable's p95 so far; only later requests are counted against it, which
        keeps the threshold independent of the data it judges. The slow-count ratio that stands for a p95
        regression of latency_ratio is read from stable's own shape: were every latency latency_ratio times
        longer, the share above the threshold would be stable's share above threshold / latency_ratio."""
        sketch = self.s.totals.latency
        slow_ms = sketch.quantile(SLOW_QUANTILE)
        if slow_ms is None:
            return
        above = sketch.count_above(slow_ms)
        above_shifted = sketch.count_above(slow_ms / self.settings.latency_ratio)
        ratio = above_shifted / above if above > 0 else self.settings.latency_ratio
        self.slow_ms, self.slow_ratio = slow_ms, min(max(ratio, MIN_SLOW_RATIO), MAX_SLOW_RATIO)
        self.seen_s = Seen(self.seen_s.requests, self.seen_s.errors, self.seen_s.error_users, self.s.timed,
                           self.s.slow(slow_ms))
        self.seen_c = Seen(self.seen_c.requests, self.seen_c.errors, self.seen_c.error_users, self.c.timed,
                           self.c.slow(slow_ms))

    # -- decisions -----------------------------------------------------------------------------------------

    def _guardrail(self) -> Verdict | None:
        limit_log = self.limits.guardrail
        rate_limit, p99_limit = self.settings.max_error_rate, self.settings.max_p99_ms
        if rate_limit is not None and self.c.errors:
            evidence = guardrail_log_evidence(self.c.errors, self.c.requests, rate_limit)
            if evidence >= limit_log:
                return self._rollback(
                    f"guardrail: the canary's error rate {self.c.errors / self.c.requests:.2%} "
                    f"({self.c.errors:,} of {self.c.requests:,}) is above the limit of {rate_limit:.2%} "
                    f"(evidence {evidence:.1f} >= {limit_log:.1f})",
                    guardrail={"name": "max_error_rate", "limit": rate_limit, "evidence": round(evidence, 4),
                               "threshold": round(limit_log, 4)},
                )
        if p99_limit is not None and self.c.timed:
            over = self.c.totals.latency.count_above(p99_limit)
            evidence = guardrail_log_evidence(over, self.c.timed, P99_GUARDRAIL_SHARE)
            if evidence >= limit_log:
                return self._rollback(
                    f"guardrail: the canary's p99 latency is above the limit of {p99_limit:g} ms "
                    f"({over:,} of {self.c.timed:,} requests, {over / self.c.timed:.2%}, above it; "
                    f"evidence {evidence:.1f} >= {limit_log:.1f})",
                    guardrail={"name": "max_p99_ms", "limit": p99_limit, "over_limit": over,
                               "evidence": round(evidence, 4), "threshold": round(limit_log, 4)},
                )
        return None

    def _full_rollout(self) -> Verdict:
        self._skip_to_now()
        if self.c.requests < self.settings.min_requests:
            return self._hold(
                f"insufficient evidence: {self.c.requests:,} of {self.settings.min_requests:,} canary requests "
                "at 100 % (no stable arm to compare with; only the guardrails apply)"
            )
        if self.seconds < self.bake:
            return self._hold(f"baking: {self.seconds:.0f} s of {self.bake:.0f} s at 100 % (only guardrails apply)")
        return self._verdict("advance", "no stable arm at 100 %; the guardrails held for the whole bake time")

    def _rejection(self) -> Verdict | None:
        checks: list[tuple[str, float, float, str]] = []  # metric, statistic, threshold, which test
        limits = self.limits
        if self.rollout is not None:
            checks.append(("errors", self._rollout_errors(), limits.rollout_errors, "rollout"))
            checks.append(("latency", self.rollout.latency, limits.rollout_latency, "rollout"))
        if self.stage_index > 0:
            checks.append(("errors", self.errors.llr, limits.stage_errors, "stage"))
            checks.append(("latency", self.latency.llr, limits.stage_latency, "stage"))
        for metric, statistic, threshold, test in checks:
            if statistic >= threshold:
                what = self._error_words() if metric == "errors" else self._latency_words()
                since = "since the rollout began" if test == "rollout" else f"of this stage ({self.percent:g} %)"
                return self._rollback(
                    f"{metric} regression: {what}; the sequential test {since} crossed its rollback threshold "
                    f"(evidence {statistic:.1f} >= {threshold:.1f}: a canary no worse than stable gets this far "
                    f"with chance <= {math.exp(-threshold):.2%})",
                    rejected={"metric": metric, "test": test, "statistic": round(statistic, 4),
                              "threshold": round(threshold, 4)},
                )
        return None

    def _rollout_errors(self) -> float:
        """The rollout error test: a mixture of the two alternatives, each a test supermartingale."""
        assert self.rollout is not None
        if self._mixed is None:
            self._mixed = log_mixture([self.rollout.errors, self.rollout.errors_big], [1 - BIG_WEIGHT, BIG_WEIGHT])
        return self._mixed

    def _advance_or_hold(self) -> Verdict:
        minimum = self.settings.min_requests
        if self.c.requests < minimum:
            return self._hold(
                f"insufficient evidence: {self.c.requests:,} of the {minimum:,} canary requests a stage needs"
            )
        errors, latency = self._errors_status(), self._latency_status()
        if PENDING in (errors, latency):
            pending = [why for status, why in ((errors, self._errors_why), (latency, self._latency_why))
                       if status == PENDING]
            return self._hold(
                "insufficient evidence yet that the canary is no worse: " + "; ".join(why(PENDING) for why in pending)
            )
        both = f"{self._errors_why(errors)}; {self._latency_why(latency)}"
        if self.seconds < self.bake:
            return self._hold(
                f"baking: {self.seconds:.0f} s of {self.bake:.0f} s at {self.percent:g} %; no regression so far "
                f"({both})"
            )
        return self._verdict(
            "advance", f"canary no worse than stable at {self.percent:g} % after {self.seconds:.0f} s: {both}"
        )

    def _errors_status(self) -> str:
        test = self.errors
        if test.llr <= self.accept_at:
            return ACCEPTED
        return NO_EVENTS if test.canary_events == 0 and test.stable_events == 0 else PENDING

    def _latency_status(self) -> str:
        if self.slow_ms is None:
            return NOT_REPORTED if self.s.timed == 0 and self.c.timed == 0 else PENDING
        test = self.latency
        if test.llr <= self.accept_at:
            return ACCEPTED
        return NO_EVENTS if test.canary_events == 0 and test.stable_events == 0 else PENDING

    def _errors_why(self, status: str) -> str:
        llr = self.errors.llr
        if status == ACCEPTED:
            return f"errors accepted ({self._error_words()}; evidence {llr:.1f} <= {self.accept_at:.1f})"
        if status == NO_EVENTS:
            return "no errors in either arm"
        return (
            f"errors not yet ({self._error_words()}; evidence {llr:.1f}, accepts at <= {self.accept_at:.1f}, "
            f"tested ratio {self.errors_ratio:.3g}x)"
        )

    def _latency_why(self, status: str) -> str:
        llr = self.latency.llr
        if status == ACCEPTED:
            return f"latency accepted ({self._latency_words()}; evidence {llr:.1f} <= {self.accept_at:.1f})"
        if status == NO_EVENTS:
            return f"no request slower than {self.slow_ms:.0f} ms in either arm"
        if status == NOT_REPORTED:
            return "latency not reported by the SDKs"
        if self.slow_ms is None:
            return (
                f"latency not yet ({self.s.timed:,} of {MIN_TIMED_FOR_THRESHOLD} stable latencies needed to fix "
                "the p95 that defines a slow request)"
            )
        return f"latency not yet ({self._latency_words()}; evidence {llr:.1f}, accepts at <= {self.accept_at:.1f})"

    # -- words and evidence --------------------------------------------------------------------------------

    def _error_words(self) -> str:
        c_rate = self.c.errors / self.c.requests if self.c.requests else 0.0
        s_rate = self.s.errors / self.s.requests if self.s.requests else 0.0
        ratio = f", {c_rate / s_rate:.2g}x" if s_rate > 0 else ""
        return (
            f"canary {c_rate:.2%} errors ({self.c.errors:,}/{self.c.requests:,}) vs stable {s_rate:.2%} "
            f"({self.s.errors:,}/{self.s.requests:,}){ratio}"
        )

    def _latency_words(self) -> str:
        test, slow_ms = self.latency, self.slow_ms or 0.0
        c_share = test.canary_events / test.canary_exposure if test.canary_exposure else 0.0
        s_share = test.stable_events / test.stable_exposure if test.stable_exposure else 0.0
        return (
            f"{c_share:.1%} of canary requests slower than stable's p95 of {slow_ms:.0f} ms vs {s_share:.1%} "
            "of stable's"
        )

    def _hold(self, reason: str) -> Verdict:
        return self._verdict("hold", reason)

    def _rollback(self, reason: str, **extra: Any) -> Verdict:
        return self._verdict("rollback", reason, **extra)

    def _verdict(self, decision: Decision, reason: str, **extra: Any) -> Verdict:
        if self.notes:
            reason = f"{reason} [{'; '.join(self.notes)}]"
        evidence = self._evidence()
        evidence.update(extra)
        return Verdict(decision, reason, evidence, self._state())

    def _evidence(self) -> dict[str, Any]:
        limits, split, later = self.limits, self.split, self.stage_index > 0
        budget, rollout = limits.budget, self.rollout
        return {
            "stage": {"index": self.stage_index, "percent": self.percent, "seconds": round(self.seconds, 3),
                      "bake_seconds": self.bake, "min_requests": self.settings.min_requests, "looks": self.looks},
            "arms": {"stable": _arm_summary(self.s), "canary": _arm_summary(self.c)},
            "errors": {
                "tested_ratio": round(self.errors_ratio, 4), "canary_events": self.errors.canary_events,
                "stable_events": self.errors.stable_events, "statistic": round(self.errors.llr, 4),
                "accept_at": round(self.accept_at, 4),
                "reject_at": _shown(limits.stage_errors) if later else None,
            },
            "latency": {
                "slow_above_ms": None if self.slow_ms is None else round(self.slow_ms, 3),
                "tested_ratio": None if self.slow_ratio is None else round(
                    stage_ratio(self.slow_ratio, self.percent), 4),
                "canary_slow": self.latency.canary_events, "canary_timed": self.latency.canary_exposure,
                "stable_slow": self.latency.stable_events, "stable_timed": self.latency.stable_exposure,
                "statistic": round(self.latency.llr, 4), "accept_at": round(self.accept_at, 4),
                "reject_at": _shown(limits.stage_latency) if later else None,
            },
            "rollout_test": None if rollout is None else {
                "errors_statistic": round(self._rollout_errors(), 4),
                "errors_ratios": [self.settings.error_ratio, big_ratio(self.settings.error_ratio)],
                "errors_reject_at": _shown(limits.rollout_errors),
                "latency_statistic": round(rollout.latency, 4),
                "latency_reject_at": _shown(limits.rollout_latency),
            },
            "split": None if split is None else {
                "expected_share": split.expected_share,
                "observed_share": None if split.observed_share is None else round(split.observed_share, 6),
                "g_statistic": round(split.g_statistic, 4),
                "p_value_at_most": float(f"{math.exp(split.log_p_bound):.3g}"),
                "mismatch": split.mismatch,
            },
            "alpha": {
                "rollout": self.settings.alpha, "judged_stages": budget.judged_stages,
                "rollout_errors": budget.rollout_errors, "rollout_latency": budget.rollout_latency,
                "stage_errors": budget.stage_errors, "stage_latency": budget.stage_latency,
                "guardrail": budget.guardrail,
            },
        }


def _log_inverse(alpha: float) -> float:
    return math.log(1 / alpha) if alpha > 0 else math.inf


def _shown(threshold: float) -> float | None:
    return round(threshold, 4) if math.isfinite(threshold) else None


def _arm_summary(arm: _Arm) -> dict[str, Any]:
    p50, p95, p99 = _quantiles(arm.totals.latency.buckets, (0.50, 0.95, 0.99))
    return {
        "requests": arm.requests, "errors": arm.errors, "error_users": arm.error_users,
        "error_rate": round(arm.errors / arm.requests, 6) if arm.requests else None,
        "timed": arm.timed, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
    }


def _quantiles(buckets: Mapping[int, int], qs: Sequence[float]) -> list[float | None]:
    """Several quantiles in one pass over the sketch (the rule of LatencySketch.quantile)."""
    indices = sorted(buckets)
    cumulative = list(accumulate(map(buckets.__getitem__, indices)))
    if not indices or cumulative[-1] <= 0:
        return [None] * len(qs)
    last = cumulative[-1] - 1
    return [
        round(bucket_value(indices[min(bisect_right(cumulative, q * last), len(indices) - 1)]), 3) for q in qs
    ]

"""The canary judge's words: every plain-English `reason` a verdict can carry, and the evidence dict behind it.

Operators read these reasons in `flagctl`, the console and the logs, and docs/judge.md and the tests quote them,
so their wording is part of the interface. Nothing here decides anything: it renders what `judge_counting`
found.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from itertools import accumulate
from typing import Any

from flagsvc_client.protocol.sketch import bucket_value

from flagsvc.domain.judge_counting import (
    MIN_TIMED_FOR_THRESHOLD,
    Acceptance,
    Arm,
    Blindness,
    GuardrailTrip,
    Look,
    Rejection,
    Status,
    rollout_errors_statistic,
    strata_totals,
    stratum_splits,
)
from flagsvc.domain.judge_state import JudgeState
from flagsvc.domain.sequential import SampleRatio, big_ratio, stage_ratio

__all__ = [
    "FULL_ROLLOUT_BAKED",
    "NOBODY_IN_CANARY",
    "advance",
    "baking",
    "baking_at_full",
    "blind",
    "cannot_judge",
    "evidence",
    "guardrail",
    "no_requests_yet",
    "not_enough_requests",
    "not_enough_requests_at_full",
    "pending",
    "regression",
    "split_mismatch",
    "with_restart_note",
]

NOBODY_IN_CANARY = "insufficient evidence: the canary is configured at 0 %, so nobody is in it"
FULL_ROLLOUT_BAKED = "no stable arm at 100 %; the guardrails held for the whole bake time"


def with_restart_note(reason: str) -> str:
    return f"{reason} [aggregates went backwards or were reset; counting starts again from this look]"


def cannot_judge(why: str) -> str:
    return f"insufficient evidence: the aggregates cannot be judged ({why}); holding, nothing counted"


# --- rollback ---------------------------------------------------------------------------------------------


def guardrail(trip: GuardrailTrip) -> str:
    limits = f"evidence {trip.evidence:.1f} >= {trip.threshold:.1f}"
    if trip.name == "max_error_rate":
        return (
            f"guardrail: the canary's error rate {trip.events / trip.exposure:.2%} ({trip.events:,} of "
            f"{trip.exposure:,}) is above the limit of {trip.limit:.2%} ({limits})"
        )
    return (
        f"guardrail: the canary's p99 latency is above the limit of {trip.limit:g} ms ({trip.events:,} of "
        f"{trip.exposure:,} requests, {trip.events / trip.exposure:.2%}, above it; {limits})"
    )


def regression(rejected: Rejection, look: Look, state: JudgeState) -> str:
    what = _error_words(look) if rejected.metric == "errors" else _latency_words(state)
    since = "since the rollout began" if rejected.test == "rollout" else f"of this stage ({look.percent:g} %)"
    return (
        f"{rejected.metric} regression: {what}; the sequential test {since} crossed its rollback threshold "
        f"(evidence {rejected.statistic:.1f} >= {rejected.threshold:.1f}: a canary no worse than stable gets this "
        f"far with chance <= {math.exp(-rejected.threshold):.2%})"
    )


# --- blind: a hold that will not end by waiting -------------------------------------------------------------


def blind(found: Blindness, look: Look) -> str:
    arm, other = found.arm, "stable" if found.arm == "canary" else "canary"
    if found.observed == 0:
        what = (f"no {arm} outcomes in {look.seconds:.0f} s while {found.other:,} {other} outcomes arrived at "
                f"{look.percent:g} %; the {arm} path is not instrumented")
    else:
        what = (f"only {found.observed:,} {arm} outcomes in {look.seconds:.0f} s where {found.expected:,.0f} were "
                f"expected ({found.other:,} {other} outcomes at {look.percent:g} %); the {arm} path is barely "
                "instrumented")
    return (
        f"blind: {what}: record both arms (client.track/record on both branches); the judge cannot compare the "
        "arms and holds until it sees both"
    )


# --- hold and advance -------------------------------------------------------------------------------------


def no_requests_yet(look: Look) -> str:
    empty, other = ("canary", "stable") if look.canary.requests == 0 else ("stable", "canary")
    return (
        f"insufficient evidence: no {empty} requests yet at {look.percent:g} % "
        f"({look.stable.requests + look.canary.requests:,} {other} requests)"
    )


def split_mismatch(look: Look, split: SampleRatio) -> str:
    return (
        f"sample-ratio mismatch: the canary got {split.observed_share:.3%} of "
        f"{look.stable.requests + look.canary.requests:,} requests but is configured for {look.percent:g} % "
        f"(p < {math.exp(split.log_p_bound):.0e}); arms that differ in who they serve cannot be "
        "compared fairly, so the judge holds until the split is fixed (this data is not counted yet)"
    )


def not_enough_requests_at_full(look: Look) -> str:
    return (
        f"insufficient evidence: {look.canary.requests:,} of {look.settings.min_requests:,} canary requests "
        "at 100 % (no stable arm to compare with; only the guardrails apply)"
    )


def baking_at_full(look: Look) -> str:
    return f"baking: {look.seconds:.0f} s of {look.bake:.0f} s at 100 % (only guardrails apply)"


def not_enough_requests(look: Look) -> str:
    return (
        f"insufficient evidence: {look.canary.requests:,} of the {look.settings.min_requests:,} canary requests "
        "a stage needs"
    )


def pending(progress: Acceptance, look: Look, state: JudgeState) -> str:
    whys = [
        why(look, state, "pending")
        for status, why in ((progress.errors, _errors_why), (progress.latency, _latency_why))
        if status == "pending"
    ]
    if progress.split == "pending":
        whys.append(_split_why(look, state))
    return "insufficient evidence yet that the canary is no worse: " + "; ".join(whys)


def baking(progress: Acceptance, look: Look, state: JudgeState) -> str:
    return (
        f"baking: {look.seconds:.0f} s of {look.bake:.0f} s at {look.percent:g} %; no regression so far "
        f"({_both_why(progress, look, state)})"
    )


def advance(progress: Acceptance, look: Look, state: JudgeState) -> str:
    return (
        f"canary no worse than stable at {look.percent:g} % after {look.seconds:.0f} s: "
        f"{_both_why(progress, look, state)}"
    )


def _both_why(progress: Acceptance, look: Look, state: JudgeState) -> str:
    return f"{_errors_why(look, state, progress.errors)}; {_latency_why(look, state, progress.latency)}"


def _errors_why(look: Look, state: JudgeState, status: Status) -> str:
    llr, accept_at = state.errors.statistic(state.dispersion), look.limits.accept
    if status == "accepted":
        return f"errors accepted ({_error_words(look)}; evidence {llr:.1f} <= {accept_at:.1f})"
    if status == "no events":
        return "no errors in either arm"
    return (
        f"errors not yet ({_error_words(look)}; evidence {llr:.1f}, accepts at <= {accept_at:.1f}, "
        f"tested ratio {look.errors_ratio:.3g}x)"
    )


def _latency_why(look: Look, state: JudgeState, status: Status) -> str:
    llr, accept_at = state.latency.statistic(state.latency_dispersion), look.limits.accept
    if status == "accepted":
        return f"latency accepted ({_latency_words(state)}; evidence {llr:.1f} <= {accept_at:.1f})"
    if status == "no events":
        return f"no request slower than {state.slow_ms:.0f} ms in either arm"
    if status == "not reported":
        return "latency not reported by the SDKs"
    if state.slow_ms is None:
        return (
            f"latency not yet ({look.stable.timed:,} of {MIN_TIMED_FOR_THRESHOLD} stable latencies needed to fix "
            "the p95 that defines a slow request)"
        )
    return f"latency not yet ({_latency_words(state)}; evidence {llr:.1f}, accepts at <= {accept_at:.1f})"


def _split_why(look: Look, state: JudgeState) -> str:
    s = state.split
    share = s.canary / s.total if s.total else 0.0
    return (
        f"split not yet confirmed (the canary got {share:.2%} of {s.total:,} requests at this stage, configured "
        f"{look.percent:g} %; a canary losing a fifth of its requests must be ruled out first)"
    )


def _error_words(look: Look) -> str:
    c, s = look.canary, look.stable
    c_rate = c.errors / c.requests if c.requests else 0.0
    s_rate = s.errors / s.requests if s.requests else 0.0
    ratio = f", {c_rate / s_rate:.2g}x" if s_rate > 0 else ""
    return (
        f"canary {c_rate:.2%} errors ({c.errors:,}/{c.requests:,}) vs stable {s_rate:.2%} "
        f"({s.errors:,}/{s.requests:,}){ratio}"
    )


def _latency_words(state: JudgeState) -> str:
    test, slow_ms = state.latency, state.slow_ms or 0.0
    c_share = test.canary_events / test.canary_exposure if test.canary_exposure else 0.0
    s_share = test.stable_events / test.stable_exposure if test.stable_exposure else 0.0
    return (
        f"{c_share:.1%} of canary requests slower than stable's p95 of {slow_ms:.0f} ms vs {s_share:.1%} "
        "of stable's"
    )


# --- evidence ---------------------------------------------------------------------------------------------


def evidence(
    look: Look, state: JudgeState, split: SampleRatio | None, finding: GuardrailTrip | Rejection | Blindness | None,
) -> dict[str, Any]:
    """The verdict's evidence, JSON-ready; a rollback adds what tripped as `guardrail` or `rejected`, a blind
    verdict the arm it cannot see as `blind`."""
    settings, limits, budget, later = look.settings, look.limits, look.limits.budget, look.stage_index > 0
    errors, latency, rollout, accept_at = state.errors, state.latency, state.rollout, round(look.limits.accept, 4)
    shown: dict[str, Any] = {
        "stage": {"index": look.stage_index, "percent": look.percent, "seconds": round(look.seconds, 3),
                  "bake_seconds": look.bake, "min_requests": settings.min_requests, "looks": state.looks},
        "arms": {"stable": _arm_summary(look.stable), "canary": _arm_summary(look.canary)},
        "errors": {
            "tested_ratio": round(look.errors_ratio, 4), "canary_events": errors.canary_events,
            "stable_events": errors.stable_events, "statistic": round(errors.statistic(state.dispersion), 4),
            "accept_at": accept_at,
            "dispersion": round(state.dispersion, 4),
            "reject_at": _shown(limits.stage_errors) if later else None,
        },
        "latency": {
            "slow_above_ms": None if state.slow_ms is None else round(state.slow_ms, 3),
            "tested_ratio": None if state.slow_ratio is None else round(
                stage_ratio(state.slow_ratio, look.percent), 4),
            "canary_slow": latency.canary_events, "canary_timed": latency.canary_exposure,
            "stable_slow": latency.stable_events, "stable_timed": latency.stable_exposure,
            "statistic": round(latency.statistic(state.latency_dispersion), 4), "accept_at": accept_at,
            "dispersion": round(state.latency_dispersion, 4),
            "reject_at": _shown(limits.stage_latency) if later else None,
        },
        "rollout_test": None if rollout is None else {
            "errors_statistic": round(rollout_errors_statistic(rollout, state.dispersion), 4),
            "errors_ratios": [settings.error_ratio, big_ratio(settings.error_ratio)],
            "errors_reject_at": _shown(limits.rollout_errors),
            "latency_statistic": round(rollout.latency_statistic(state.latency_dispersion), 4),
            "latency_reject_at": _shown(limits.rollout_latency),
        },
        "split": None if split is None else _split_summary(split),
        "alpha": {
            "rollout": settings.alpha, "judged_stages": budget.judged_stages,
            "rollout_errors": budget.rollout_errors, "rollout_latency": budget.rollout_latency,
            "stage_errors": budget.stage_errors, "stage_latency": budget.stage_latency,
            "guardrail": budget.guardrail,
        },
    }
    if state.strata:
        shown["strata"] = _strata_summary(look)
    if isinstance(finding, GuardrailTrip):
        shown["guardrail"] = _guardrail_summary(finding)
    elif isinstance(finding, Rejection):
        shown["rejected"] = {"metric": finding.metric, "test": finding.test,
                             "statistic": round(finding.statistic, 4), "threshold": round(finding.threshold, 4)}
    elif isinstance(finding, Blindness):
        shown["blind"] = {"arm": finding.arm, "observed": finding.observed, "expected": round(finding.expected, 1),
                          "statistic": round(finding.evidence, 4), "threshold": round(finding.threshold, 4)}
    return shown


def _strata_summary(look: Look) -> list[dict[str, Any]]:
    """Per stratum (the unlabelled rest as ""): each arm's requests, errors and rate, and the stratum's split."""
    splits = dict(stratum_splits(look))
    rows = []
    for label, (n_s, e_s, _, n_c, e_c, _) in strata_totals(look).items():
        split = splits.get(label)
        rows.append({
            "stratum": label,
            "stable": {"requests": n_s, "errors": e_s, "error_rate": round(e_s / n_s, 6) if n_s else None},
            "canary": {"requests": n_c, "errors": e_c, "error_rate": round(e_c / n_c, 6) if n_c else None},
            "split": None if split is None else _split_summary(split),
        })
    return rows


def mix_note(look: Look) -> str | None:
    """Names the strata whose split is off (the canary's mix differs from stable's), if any."""
    off = [(label or "(unlabelled)", split) for label, split in stratum_splits(look) if split.mismatch]
    if not off:
        return None
    named = ", ".join(f"{label}: {split.observed_share:.1%} canary" for label, split in off[:5])
    return (f"the canary's mix differs from stable's ({named}; expected {look.percent:g} % in each stratum): "
            "compared within strata, so the mix is not counted against it")


def _shown(threshold: float) -> float | None:
    return round(threshold, 4) if math.isfinite(threshold) else None


def _guardrail_summary(trip: GuardrailTrip) -> dict[str, Any]:
    summary: dict[str, Any] = {"name": trip.name, "limit": trip.limit}
    if trip.name == "max_p99_ms":
        summary["over_limit"] = trip.events
    summary.update(evidence=round(trip.evidence, 4), threshold=round(trip.threshold, 4))
    return summary


def _split_summary(split: SampleRatio) -> dict[str, Any]:
    return {
        "expected_share": split.expected_share,
        "observed_share": None if split.observed_share is None else round(split.observed_share, 6),
        "g_statistic": round(split.g_statistic, 4),
        "p_value_at_most": float(f"{math.exp(split.log_p_bound):.3g}"),
        "mismatch": split.mismatch,
    }


def _arm_summary(arm: Arm) -> dict[str, Any]:
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

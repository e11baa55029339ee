"""The judge's `blind` verdict: one arm's outcomes missing (or nearly), after a whole bake time."""

from __future__ import annotations

import json
import math

import pytest
from flagsvc_client.protocol.sketch import LatencySketch

from flagsvc.domain.analysis import AnalysisSettings
from flagsvc.domain.judge import ArmTotals, CanaryJudge, Verdict
from flagsvc.domain.judge_counting import BLIND_SHARE_FRACTION, thin_arm_log_evidence


def totals(n: int, error_rate: float = 0.01) -> ArmTotals:
    errors = round(n * error_rate)
    return ArmTotals(n, errors, errors, LatencySketch({100: n} if n else {}))


def look(stable: int, canary: int, *, percent: float = 5.0, seconds: float = 300.0, bake: float = 300.0,
         stage_index: int = 1) -> Verdict:
    return CanaryJudge(AnalysisSettings()).judge(
        None, totals(stable), totals(canary), percent=percent, stage_index=stage_index, stage_count=6,
        seconds_at_stage=seconds, bake_seconds=bake,
    )


def test_no_stable_outcomes_after_the_bake_time_is_blind_and_says_how_to_fix_it() -> None:
    verdict = look(0, 12_345)
    assert verdict.decision == "blind"
    assert verdict.reason.startswith(
        "blind: no stable outcomes in 300 s while 12,345 canary outcomes arrived at 5 %; the stable path is not "
        "instrumented: record both arms (client.track/record on both branches)"), verdict.reason
    blind = verdict.evidence["blind"]
    assert (blind["arm"], blind["observed"], blind["expected"]) == ("stable", 0, round(12_345 * 0.95, 1))
    assert blind["statistic"] >= blind["threshold"]
    json.dumps(verdict.evidence, allow_nan=False)


def test_no_canary_outcomes_after_the_bake_time_is_blind() -> None:
    verdict = look(30_000, 0, percent=1.0)
    assert verdict.decision == "blind"
    assert "no canary outcomes" in verdict.reason and "the canary path is not instrumented" in verdict.reason
    assert verdict.evidence["blind"] == {**verdict.evidence["blind"], "arm": "canary", "observed": 0,
                                         "expected": 300.0}


def test_a_thin_arm_is_blind_too_and_its_count_is_named() -> None:
    verdict = look(12, 12_345)  # expected: stable's 95 % share of all 12,357 outcomes
    assert verdict.decision == "blind"
    assert "only 12 stable outcomes in 300 s where 11,739 were expected" in verdict.reason
    assert "barely instrumented" in verdict.reason
    assert verdict.evidence["blind"]["observed"] == 12
    thin_canary = look(100_000, 20, percent=5.0)  # 20 canary outcomes where ~5,000 were due
    assert thin_canary.decision == "blind" and thin_canary.evidence["blind"]["arm"] == "canary"


@pytest.mark.parametrize(("stable", "canary"), [(0, 12_345), (12, 12_345), (30_000, 0)])
def test_before_the_bake_time_it_is_an_ordinary_hold(stable: int, canary: int) -> None:
    verdict = look(stable, canary, percent=5.0 if canary else 1.0, seconds=299.0)
    assert verdict.decision == "hold"
    assert verdict.reason.startswith(("insufficient evidence: no", "sample-ratio mismatch")), verdict.reason
    assert "blind" not in verdict.evidence


def test_too_few_expected_outcomes_to_tell_is_not_blind() -> None:
    # No canary outcome among 5,000 at 1 % (50 expected): an arm recorded on a tenth of its share shows none
    # e^-5 = 0.7 % of the time; not overwhelming.
    verdict = look(5_000, 0, percent=1.0)
    assert verdict.decision == "hold" and verdict.reason.startswith("insufficient evidence: no canary requests")
    assert look(100, 0, percent=50.0).decision == "hold"  # 0 of 100 at 50 %: 50 expected


def test_a_skewed_but_recorded_split_stays_a_sample_ratio_mismatch() -> None:
    # the canary gets half its share: both arms are recorded, the routing is off
    verdict = look(200_000, 5_000, percent=5.0)
    assert verdict.decision == "hold" and verdict.reason.startswith("sample-ratio mismatch")


def test_both_arms_missing_is_insufficient_evidence_and_full_or_empty_rollouts_are_never_blind() -> None:
    assert look(0, 0).reason.startswith("insufficient evidence")
    assert look(0, 50_000, percent=100.0).decision != "blind"  # no stable arm at 100 %
    assert look(50_000, 0, percent=0.0).decision == "hold"  # nobody in the canary at 0 %


def test_a_healthy_split_is_never_blind_at_any_size() -> None:
    for percent in (1.0, 5.0, 50.0, 99.0):
        for total in (10, 1_000, 10**6, 10**9):
            n_c = round(total * percent / 100)
            assert look(total - n_c, n_c, percent=percent).decision != "blind", (percent, total)


@pytest.mark.parametrize("share", [0.01, 0.05, 0.5, 0.95])
@pytest.mark.parametrize("n", [30, 300])
@pytest.mark.parametrize("factor", [1.0, 2.0, 1 / BLIND_SHARE_FRACTION])
def test_the_blind_evidence_is_a_test_supermartingale(share: float, n: int, factor: float) -> None:
    """E[exp(evidence)] <= 1, enumerated exactly, when the arm gets `factor` x a tenth of its share (1x: the
    boundary; 10x: its whole share): Ville's inequality then bounds a false `blind` over every look."""
    true_share = min(share * BLIND_SHARE_FRACTION * factor, 1.0)
    mean = 0.0
    for k in range(n + 1):
        log_p = (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                 + (k * math.log(true_share) if k else 0.0)
                 + ((n - k) * math.log1p(-true_share) if n - k else 0.0))
        mean += math.exp(log_p + thin_arm_log_evidence(k, n, share))
    assert mean <= 1 + 1e-9


@pytest.mark.parametrize("percent", [math.nan, math.inf, -5.0, 250.0])
def test_odd_input_never_raises(percent: float) -> None:
    judge = CanaryJudge(AnalysisSettings())
    for stable, canary in ((ArmTotals(-5, 3, 9), ArmTotals(10**12, 0, 0)), (ArmTotals(0), ArmTotals(10**15))):
        verdict = judge.judge(None, stable, canary, percent=percent, stage_index=1, stage_count=6,
                              seconds_at_stage=math.inf, bake_seconds=math.nan)
        assert verdict.decision in ("advance", "hold", "rollback", "blind")
        json.dumps(verdict.evidence, allow_nan=False)
    assert thin_arm_log_evidence(-3, 0, 0.5) == 0.0
    assert thin_arm_log_evidence(5, 3, 20.0) == 0.0

"""The canary judge: from the current revision's per-arm aggregates, `advance`, `hold` or `rollback` (or
`blind`: a hold that says one arm's outcomes are not being recorded), with a reason in plain words and the
evidence behind it. This module owns the order of the decision; the statistics of
a look are in `judge_counting`, its words and evidence in `judge_reasons`, what it keeps between looks in
`judge_state`, the tests themselves in `sequential`.

A pure function of (its state from the last look, the cumulative per-arm totals, settings, time at stage): no
clock, no randomness, no Flask or Redis. The caller keeps `Verdict.state` (JSON via to_dict/from_dict) next to
the flag's revision and hands it back on the next look. The method and why it bounds false rollbacks are in
docs/judge.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from flagsvc.domain import judge_reasons as reasons
from flagsvc.domain.analysis import AnalysisSettings
from flagsvc.domain.judge_counting import (
    Blindness,
    GuardrailTrip,
    Look,
    Rejection,
    Thresholds,
    acceptance,
    begin,
    blindness,
    count_new_data,
    count_split,
    guardrail_trip,
    rejection,
    skip_to_now,
    stage_split,
    went_backwards,
)
from flagsvc.domain.judge_state import JudgeState
from flagsvc.domain.outcomes import ArmTotals
from flagsvc.domain.sequential import SampleRatio

__all__ = ["ArmTotals", "CanaryJudge", "Decision", "JudgeState", "Verdict"]

# "blind" changes nothing, like "hold"; it says the hold will not end by itself: an arm is not instrumented.
Decision = Literal["advance", "hold", "rollback", "blind"]


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str
    evidence: dict[str, Any]
    state: JudgeState


class CanaryJudge:
    """Judges one flag's stages with one flag's settings. Holds nothing between calls but a small cache of the
    thresholds; all that carries from look to look is in the JudgeState the caller keeps."""

    def __init__(self, settings: AnalysisSettings) -> None:
        self.settings = settings
        self._thresholds: dict[int, Thresholds] = {}

    def judge(
        self, state: JudgeState | None, stable: ArmTotals, canary: ArmTotals, *, percent: float,
        stage_index: int, stage_count: int, seconds_at_stage: float, bake_seconds: float,
    ) -> Verdict:
        # The last stage is 100 %: no stable arm to compare with, so it is not a judged stage.
        try:
            return self._judge(state, stable, canary, percent=percent, stage_index=stage_index,
                               stage_count=stage_count, seconds_at_stage=seconds_at_stage,
                               bake_seconds=bake_seconds)
        except Exception as e:  # never raise into the controller: a judge that cannot judge holds
            kept = state if isinstance(state, JudgeState) else JudgeState.start(0)
            return Verdict("hold", reasons.cannot_judge(f"{type(e).__name__}: {e}"), {"refused": str(e)}, kept)

    def _judge(
        self, state: JudgeState | None, stable: ArmTotals, canary: ArmTotals, *, percent: float,
        stage_index: int, stage_count: int, seconds_at_stage: float, bake_seconds: float,
    ) -> Verdict:
        judged = max(min(int(stage_count), 1000) - 1, 1) if isinstance(stage_count, int) else 1
        if judged not in self._thresholds:
            self._thresholds[judged] = Thresholds.of(self.settings, judged)
        look = Look.read(
            self.settings, self._thresholds[judged], stable, canary, percent=percent, stage_index=stage_index,
            seconds_at_stage=seconds_at_stage, bake_seconds=bake_seconds,
        )
        start = begin(state, look)
        if refused := look.refused:
            # Numbers that cannot be counts (NaN, infinite, absurd) are no evidence either way: hold, and keep
            # the totals seen so far, so the next sound look takes up where the last one left off.
            return Verdict("hold", reasons.cannot_judge(refused), {"refused": refused}, start)
        restarted = went_backwards(start, look)
        ruling = _rule(look, replace(skip_to_now(start, look) if restarted else start, epoch=look.epoch))
        reason = reasons.with_restart_note(ruling.reason) if restarted else ruling.reason
        if ruling.state.strata and (note := reasons.mix_note(look)):
            reason = f"{reason} [{note}]"
        evidence = reasons.evidence(look, ruling.state, ruling.split, ruling.finding)
        return Verdict(ruling.decision, reason, evidence, ruling.state)


@dataclass(frozen=True)
class _Ruling:
    """A decision before it is dressed as a Verdict: the state after the look, and what the evidence shows."""

    decision: Decision
    reason: str
    state: JudgeState
    split: SampleRatio | None = None
    finding: GuardrailTrip | Rejection | Blindness | None = None


def _rule(look: Look, state: JudgeState) -> _Ruling:
    # Guardrails first: they hold at every percent, 100 % included, and need no comparison with stable.
    if trip := guardrail_trip(look):
        return _Ruling("rollback", reasons.guardrail(trip), state, finding=trip)
    if look.percent >= 100:
        return _full_rollout(look, skip_to_now(state, look))
    if look.percent <= 0:
        return _Ruling("hold", reasons.NOBODY_IN_CANARY, state)
    # An arm missing from the outcomes for a whole bake time will not appear by waiting: say so. Before that it
    # is an ordinary hold: the stage is young, and the instrumentation may still be on its way out.
    if look.seconds >= look.bake and (blind := blindness(look)):
        return _Ruling("blind", reasons.blind(blind, look), skip_to_now(state, look), finding=blind)
    if look.canary.requests == 0 or look.stable.requests == 0:
        return _Ruling("hold", reasons.no_requests_yet(look), state)
    state = count_split(state, look)
    split = stage_split(state, look)
    if split.mismatch:
        # Arms that serve different people differ for that reason alone: counting them would test the split.
        # The data stays uncounted, not thrown away: if the split turns out fine, the next look counts it.
        return _Ruling("hold", reasons.split_mismatch(look, split), state, split)
    state = count_new_data(state, look)
    if rejected := rejection(state, look):
        return _Ruling("rollback", reasons.regression(rejected, look, state), state, split, rejected)
    return _advance_or_hold(look, state, split)


def _full_rollout(look: Look, state: JudgeState) -> _Ruling:
    if look.canary.requests < look.settings.min_requests:
        return _Ruling("hold", reasons.not_enough_requests_at_full(look), state)
    if look.seconds < look.bake:
        return _Ruling("hold", reasons.baking_at_full(look), state)
    return _Ruling("advance", reasons.FULL_ROLLOUT_BAKED, state)


def _advance_or_hold(look: Look, state: JudgeState, split: SampleRatio) -> _Ruling:
    if look.canary.requests < look.settings.min_requests:
        return _Ruling("hold", reasons.not_enough_requests(look), state, split)
    progress = acceptance(state, look)
    if progress.pending:
        return _Ruling("hold", reasons.pending(progress, look, state), state, split)
    if look.seconds < look.bake:
        return _Ruling("hold", reasons.baking(progress, look, state), state, split)
    return _Ruling("advance", reasons.advance(progress, look, state), state, split)

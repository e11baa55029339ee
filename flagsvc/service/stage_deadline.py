"""A policy for thin traffic: what the controller does when a stage has lasted longer than the flag's
`max_stage_seconds` and the judge still holds (docs/judge.md, "Stages that do not decide").

`on_max_stage: "hold"` (the default) keeps holding and says so: the reason starts "stage overdue", the evidence
carries `overdue`, the `flagsvc_flag_stage_overdue{flag}` gauge is 1 and `flagctl watch` prints an OVERDUE line.
`"advance"` advances, with "advanced after max_stage_seconds with thin traffic: ..." in the history. Only an
ordinary hold (thin data, a stage not yet accepted) may advance so: never a blind arm, a sample-ratio mismatch, a
hold because one reporter drives the verdict, or a stage where a shadow judge without one reporter would roll
back. The rollout-wide test carries on into the next stage, so a regression can still roll it back there.

The stage's clock counts from the stage's start, and a stage is never overdue before its bake time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from flagsvc.domain.analysis import AnalysisSettings
from flagsvc.service.judging import JudgeVerdict
from flagsvc.service.reporter_check import Revised

S = TypeVar("S")
UNDECIDED = frozenset({"hold", "blind"})


def _why_not_advance(evidence: Mapping[str, Any], decision: str) -> str | None:
    if decision == "blind":
        return "an arm is blind"
    split = evidence.get("split")
    if isinstance(split, Mapping) and split.get("mismatch"):
        return "the traffic split is off"
    reporters = evidence.get("reporters")
    if isinstance(reporters, Mapping):
        if reporters.get("driven_by"):
            return "one reporter drives the verdict"
        if any(c.get("without") == "rollback" for c in reporters.get("checked", ()) if isinstance(c, Mapping)):
            return "without one reporter the judge would roll back"
    return None


def revise(verdict: JudgeVerdict[S], settings: AnalysisSettings, *, percent: float, seconds_at_stage: float,
           bake_seconds: float) -> JudgeVerdict[S]:
    """`verdict`, or what the flag's max_stage_seconds policy makes of it once the stage is overdue."""
    limit = settings.max_stage_seconds
    if limit is None or verdict.decision not in UNDECIDED or seconds_at_stage <= max(limit, bake_seconds):
        return verdict
    action = settings.on_max_stage
    overdue = {"seconds": round(seconds_at_stage, 1), "max_stage_seconds": limit, "on_max_stage": action}
    at = f"{seconds_at_stage:,.0f} s at {percent:g} % (max_stage_seconds {limit:g}) without a decision"
    blocked = _why_not_advance(verdict.evidence, verdict.decision) if action == "advance" else None
    if action == "advance" and blocked is None:
        return Revised("advance", f"advanced after max_stage_seconds with thin traffic: {at}; the judge: "
                                  f"{verdict.reason}", {**verdict.evidence, "overdue": {**overdue, "acted": True}},
                       verdict.state)
    why = f"holding (on_max_stage {action}" + (f", not advancing: {blocked})" if blocked else ")")
    return Revised(verdict.decision, f"stage overdue: {at}; {why}: {verdict.reason}",
                   {**verdict.evidence, "overdue": {**overdue, "acted": False}}, verdict.state)

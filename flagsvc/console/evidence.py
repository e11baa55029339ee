"""A decision's evidence (domain.judge_reasons.evidence, as kept in a flag's history) as lines a person reads:
the stage, each arm's figures, each test's statistic against its thresholds, what tripped. Whatever else an
entry carries is listed flat, `name.sub: value`, so nothing in the evidence is hidden."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KNOWN = ("stage", "arms", "errors", "latency", "rollout_test", "rejected", "guardrail", "split", "alpha")


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _rate(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value * 100:.2f} %"


def _arm(name: str, arm: Mapping[str, Any]) -> str:
    p95 = arm.get("p95_ms")
    return (f"{name}: {_num(arm.get('requests'))} requests, {_num(arm.get('errors'))} errors "
            f"({_rate(arm.get('error_rate'))}), p95 {_num(p95) + ' ms' if p95 is not None else '-'}")


def _test(name: str, test: Mapping[str, Any]) -> str:
    return (f"{name} test: statistic {_num(test.get('statistic'))}, accept at {_num(test.get('accept_at'))}, "
            f"roll back at {_num(test.get('reject_at'))}")


def _flat(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, Mapping):
        for name, inner in value.items():
            _flat(f"{prefix}.{name}" if prefix else str(name), inner, out)
    elif isinstance(value, list):
        out.append((prefix, ", ".join(_num(v) for v in value)))
    else:
        out.append((prefix, _num(value)))


def readable(evidence: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(label, text) lines; empty for an entry without evidence (an operator's change)."""
    if not evidence:
        return []
    lines: list[tuple[str, str]] = []
    stage = evidence.get("stage")
    if isinstance(stage, Mapping):
        lines.append(("stage", f"stage {_num(stage.get('index'))} at {_num(stage.get('percent'))} % for "
                               f"{_num(stage.get('seconds'))} s (bake {_num(stage.get('bake_seconds'))} s, "
                               f"{_num(stage.get('min_requests'))} canary requests needed)"))
    arms = evidence.get("arms")
    if isinstance(arms, Mapping):
        for name in ("canary", "stable"):
            if isinstance(arms.get(name), Mapping):
                lines.append((name, _arm(name, arms[name])))
    for name in ("errors", "latency"):
        if isinstance(evidence.get(name), Mapping):
            lines.append((name, _test(name, evidence[name])))
    rollout = evidence.get("rollout_test")
    if isinstance(rollout, Mapping):
        lines.append(("rollout", f"rollout-wide: errors statistic {_num(rollout.get('errors_statistic'))} "
                                 f"(roll back at {_num(rollout.get('errors_reject_at'))}), latency statistic "
                                 f"{_num(rollout.get('latency_statistic'))} "
                                 f"(roll back at {_num(rollout.get('latency_reject_at'))})"))
    rejected = evidence.get("rejected")
    if isinstance(rejected, Mapping):
        lines.append(("rejected", f"{rejected.get('metric')} failed the {rejected.get('test')} test: statistic "
                                  f"{_num(rejected.get('statistic'))} past {_num(rejected.get('threshold'))}"))
    guardrail = evidence.get("guardrail")
    if isinstance(guardrail, Mapping):
        lines.append(("guardrail", f"guardrail {guardrail.get('name')} (limit {_num(guardrail.get('limit'))}) "
                                   f"crossed: {_num(guardrail.get('evidence'))} past "
                                   f"{_num(guardrail.get('threshold'))}"))
    split = evidence.get("split")
    if isinstance(split, Mapping):
        lines.append(("split", f"canary share {_num(split.get('observed_share'))} of expected "
                               f"{_num(split.get('expected_share'))}"
                               f"{' (mismatch)' if split.get('mismatch') else ''}"))
    rest: list[tuple[str, str]] = []
    for name, value in evidence.items():
        if name not in KNOWN:
            _flat(str(name), value, rest)
    return lines + rest

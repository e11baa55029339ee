"""A rollout's time series: one point per controller look (per-arm figures, the judge's statistics against their
thresholds), kept per revision and bounded by downsampling.

A revision keeps every look until it holds TIMELINE_POINTS; then every other point is dropped (the first and the
last stay) and from then on only every `stride`-th look is kept, the stride doubling at each halving: the points
stay evenly spread over the whole revision, however long it lasts. A look that moved the flag (advance, rollback)
is always kept, so the point a revision ends on is never lost. The Redis store runs the same rule in Lua
(store/lua/timeline_add.lua); `RevisionSeries.add` is the reference both are tested against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict, cast

TIMELINE_POINTS = 500  # points a revision keeps at most (between TIMELINE_POINTS/2 and this many once full)
TIMELINE_REVISIONS = 100  # revisions of one flag's life listed; older ones expire with their points


class ArmPointDoc(TypedDict):
    """One arm at one look: the revision's totals so far."""

    requests: int
    errors: int
    error_rate: float | None
    p95_ms: float | None


class TestPointDoc(TypedDict):
    """A sequential test at one look: its statistic (a log-likelihood ratio) and the thresholds it is read
    against; a threshold is null when it does not apply (no rollback test at the first stage)."""

    statistic: float | None
    accept_at: float | None
    reject_at: float | None


class TimelinePointDoc(TypedDict):
    """What the controller saw and concluded at one look."""

    at: float
    revision: int
    state: str
    percent: float
    stage_index: int
    decision: str
    applied: bool
    stable: ArmPointDoc
    canary: ArmPointDoc
    errors: TestPointDoc
    latency: TestPointDoc
    rollout_errors: TestPointDoc
    rollout_latency: TestPointDoc


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _test(section: Any, statistic: str = "statistic", accept: str | None = "accept_at",
          reject: str = "reject_at") -> TestPointDoc:
    section = section if isinstance(section, Mapping) else {}
    return {"statistic": _number(section.get(statistic)),
            "accept_at": _number(section.get(accept)) if accept else None,
            "reject_at": _number(section.get(reject))}


def arm_point(summary: Mapping[str, Any]) -> ArmPointDoc:
    """From an arm's totals summary (domain.outcomes.ArmTotals.summary)."""
    return {"requests": int(summary.get("count") or 0), "errors": int(summary.get("errors") or 0),
            "error_rate": _number(summary.get("error_rate")), "p95_ms": _number(summary.get("p95_ms"))}


def timeline_point(*, at: float, revision: int, state: str, percent: float, stage_index: int, decision: str,
                   applied: bool, stable: Mapping[str, Any], canary: Mapping[str, Any],
                   evidence: Mapping[str, Any]) -> TimelinePointDoc:
    """One look's point; the statistics are read from the verdict's evidence (domain.judge_reasons.evidence),
    null where a verdict carries none (a look before the tests started, settings that could not be read)."""
    rollout = evidence.get("rollout_test")
    return {
        "at": at, "revision": revision, "state": state, "percent": percent, "stage_index": stage_index,
        "decision": decision, "applied": applied, "stable": arm_point(stable), "canary": arm_point(canary),
        "errors": _test(evidence.get("errors")), "latency": _test(evidence.get("latency")),
        "rollout_errors": _test(rollout, "errors_statistic", None, "errors_reject_at"),
        "rollout_latency": _test(rollout, "latency_statistic", None, "latency_reject_at"),
    }


@dataclass
class RevisionSeries:
    """The points kept for one revision, how many looks there were, and which of them are kept now (every
    `stride`-th)."""

    revision: int
    points: list[dict[str, Any]] = field(default_factory=list)
    looks: int = 0
    stride: int = 1

    def add(self, point: Mapping[str, Any], *, keep: bool = False, cap: int = TIMELINE_POINTS) -> None:
        """Count a look and keep its point if it falls on the stride (or `keep`: a look that moved the flag)."""
        seen, self.looks = self.looks, self.looks + 1
        if seen % self.stride and not keep:
            return
        self.points.append(dict(point))
        if len(self.points) > cap:
            self.points = self.points[::2] if len(self.points) % 2 else [*self.points[:-1:2], self.points[-1]]
            self.stride *= 2


class RevisionTimelineDoc(TypedDict):
    """One revision's kept points, oldest first: `looks` the controller took, every `stride`-th kept."""

    revision: int
    looks: int
    stride: int
    points: list[TimelinePointDoc]


class FlagTimelineDoc(TypedDict):
    """A flag's time series, per revision (oldest first), for its current life (since `created_at`)."""

    key: str
    created_at: float
    revisions: list[RevisionTimelineDoc]


def timeline_doc(key: str, created_at: float, series: list[RevisionSeries]) -> FlagTimelineDoc:
    return {"key": key, "created_at": created_at, "revisions": [
        {"revision": s.revision, "looks": s.looks, "stride": s.stride,
         "points": cast(list[TimelinePointDoc], s.points)} for s in series]}

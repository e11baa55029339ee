"""No single reporter decides: before the controller applies an advance or a rollback, it checks the verdict with
each of the most influential reporters (SDK instances) left out in turn (docs/judge.md, "No single reporter
decides").

For each of the SHADOWS most influential reporters of the current revision, a *shadow* judge (the flag's own
judge, with its own state) follows the revision's totals minus that reporter (`domain.reporter_influence.without`)
look after look, exactly as the real judge follows the whole totals. A verdict one of them does not reach rests on
that reporter; it is held when that reporter's own outcomes also disagree with everyone else's beyond chance
(`domain.reporter_influence.disagreement`: its canary or stable error rate, or its canary share of requests, at
p < 1e-6): then the reporter tells a different story, and the hold's reason names it and its share. A pivotal
reporter whose outcomes agree with the others' only adds more of the same data, and the verdict stands.

Shadows live in the leader's memory, one set per flag and revision, and start from the state the real judge
started the revision with (its rollout-wide test carried), when this process saw that start; otherwise (a new
leader mid-stage) from none, which only makes the check stricter.

The check only ever turns an advance or a rollback into a hold; the real judge's state is kept as it is. So every
advance or rollback still is one the real judge reached, and its error bounds (alpha, beta: Ville's inequality on
"ever crossed") hold unchanged; the price is delay, measured in docs/judge.md (bench/reporters.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from flagsvc.domain.outcomes import ArmTotals
from flagsvc.domain.reporter_influence import (
    ByReporter,
    Disagreement,
    Influence,
    ReporterShare,
    at_least,
    disagreement,
    influence,
    without,
)
from flagsvc.service.judging import JudgeVerdict

SHADOWS = 3  # reporters left out in turn, most influential first; each has a shadow judge
CHECKED = frozenset({"advance", "rollback"})
WOULD = {"rollback": "roll back", "blind": "hold (blind)"}

S = TypeVar("S")


@dataclass(frozen=True)
class Revised(Generic[S]):
    """A verdict the controller changed (a hold instead of an advance, an advance after max_stage_seconds), with
    the real judge's state, which is what is kept."""

    decision: str
    reason: str
    evidence: Mapping[str, Any]
    state: S


Rejudge = Callable[[S | None, ArmTotals, ArmTotals], JudgeVerdict[S]]


@dataclass
class _Shadow(Generic[S]):
    state: S | None
    stable: ArmTotals | None = None  # the inputs of its last look: the next may not go below them
    canary: ArmTotals | None = None


@dataclass
class _FlagShadows(Generic[S]):
    created_at: float
    revision: int
    start: S | None
    by_reporter: dict[str, _Shadow[S]] = field(default_factory=dict)


class ReporterCheck(Generic[S]):
    def __init__(self, shadows: int = SHADOWS) -> None:
        self.shadows = shadows
        self._flags: dict[str, _FlagShadows[S]] = {}
        self._starts: dict[str, tuple[float, int, S | None]] = {}

    def revision_starts(self, key: str, created_at: float, revision: int, state: S | None) -> None:
        """The state the real judge starts `revision` with: what shadows of that revision start from."""
        self._starts[key] = (created_at, revision, state)

    def forget_except(self, keys: set[str]) -> None:
        """Drop what is kept for flags that are no longer judged."""
        for kept in (self._flags, self._starts):
            for key in [k for k in kept if k not in keys]:
                del kept[key]

    def _shadows_of(self, key: str, created_at: float, revision: int) -> _FlagShadows[S]:
        kept = self._flags.get(key)
        if kept is None or (kept.created_at, kept.revision) != (created_at, revision):
            start = self._starts.get(key)
            state = start[2] if start is not None and start[:2] == (created_at, revision) else None
            kept = self._flags[key] = _FlagShadows(created_at, revision, state)
        return kept

    def check(self, key: str, created_at: float, revision: int, verdict: JudgeVerdict[S], stable: ArmTotals,
              canary: ArmTotals, by_reporter: ByReporter, rejudge: Rejudge[S]) -> JudgeVerdict[S]:
        """`verdict`, with a `reporters` section in its evidence; a hold instead when a reporter left out changes
        an advance or a rollback."""
        found = influence(by_reporter)
        shadows = self._shadows_of(key, created_at, revision)
        if found.reporters < 2:
            shadows.by_reporter.clear()
            note = "one reporter: influence not checked" if found.reporters == 1 else \
                "no reporter ids: influence not checked"
            return _with_section(verdict, _section(found, [], note, None))
        checked = []
        for share in found.top(self.shadows):
            shadow = shadows.by_reporter.get(share.reporter) or _Shadow(shadows.start)
            left_stable, left_canary = without(stable, canary, share)
            left_stable, left_canary = at_least(shadow.stable, left_stable), at_least(shadow.canary, left_canary)
            seen = rejudge(shadow.state, left_stable, left_canary)
            shadows.by_reporter[share.reporter] = _Shadow(seen.state, left_stable, left_canary)
            checked.append((share, seen))
        top = {share.reporter for share, _ in checked}
        for gone in [r for r in shadows.by_reporter if r not in top]:
            del shadows.by_reporter[gone]
        if verdict.decision not in CHECKED:
            return _with_section(verdict, _section(found, checked, "checked; nothing to apply", None))
        pivotal = [(share, seen) for share, seen in checked if seen.decision != verdict.decision]
        driving = next(((share, seen, odd) for share, seen in pivotal
                        if (odd := disagreement(share, stable, canary)) is not None), None)
        if driving is None:
            note = f"the {verdict.decision} stands with each of the {len(checked)} most influential reporters left out"
            if pivotal:
                note = (f"the {verdict.decision} needs {', '.join(s.words() for s, _ in pivotal)}, whose outcomes "
                        "agree with the others': more of the same data, not a different story; it stands")
            return _with_section(verdict, _section(found, checked, note, None))
        share, seen, odd = driving
        reason = (f"hold: one reporter drives this {verdict.decision}: {share.words()}, {odd.words()}; without it "
                  f"the judge would {WOULD.get(seen.decision, seen.decision)}: {seen.reason}. If that instance is "
                  f"broken or hostile: flagctl exclude-reporter {key} {share.reporter} --reason ... (the judge's own "
                  f"verdict: {verdict.decision}: {verdict.reason})")
        section = _section(found, checked, f"held: {share.words()} drives the {verdict.decision}",
                           (share, seen, odd))
        return Revised("hold", reason, {**verdict.evidence, "reporters": section, "held": verdict.decision},
                       verdict.state)


def _with_section(verdict: JudgeVerdict[S], section: dict[str, Any]) -> JudgeVerdict[S]:
    return Revised(verdict.decision, verdict.reason, {**verdict.evidence, "reporters": section}, verdict.state)


def _section(found: Influence, checked: list[tuple[ReporterShare, JudgeVerdict[S]]], note: str,
             driven: tuple[ReporterShare, JudgeVerdict[S], Disagreement] | None) -> dict[str, Any]:
    return {
        **found.summary(),
        "checked": [{"reporter": share.reporter, "share": round(share.influence, 4), "share_of": share.of,
                     "without": seen.decision} for share, seen in checked],
        "note": note,
        "driven_by": None if driven is None else {
            **driven[0].to_dict(), "without": driven[1].decision, "reason_without": driven[1].reason,
            "disagrees": driven[2].to_dict(),
        },
    }

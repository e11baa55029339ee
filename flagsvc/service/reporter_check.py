"""No single reporter decides: before the controller applies an advance or a rollback, it checks the verdict with
each of the most influential reporters (SDK instances) left out in turn (docs/judge.md, "No single reporter
decides").

For each of the SHADOWS most influential reporters of the rollout so far, a *shadow* judge (the flag's own judge,
with its own state) follows the rollout's outcomes minus that reporter (`domain.reporter_influence.without`) look
after look, exactly as the real judge follows the whole: within a revision on its totals, and across the
revisions of one rollout (advances, pauses and resumes) by carrying its state on as the real judge carries its
own, so a reporter silent in a later revision is still left out of the evidence it gave before. A verdict one of
them does not reach rests on that reporter. It is held when that reporter *drives* it:
- the shadow without it reaches the opposite verdict (a rollback against an advance, or the other way round);
- or it sent more of the rollout's requests than all the others together (with three reporters or more);
- or its own outcomes disagree with everyone else's beyond chance (`domain.reporter_influence.disagreement`, at
  p < 1e-6): its canary or stable error rate over the rollout, or its canary share of requests in this revision.
The hold's reason names it and why. A pivotal reporter that drives nothing (one of two or three honest instances:
more data decides sooner) adds more of the same data, and the verdict stands.

Shadows live in the leader's memory, one set per rolling or paused flag, and start from the state the real judge
started the revision with, when this process saw that start; otherwise (a new leader mid-stage) from none, which
only makes the check stricter.

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
    ERROR_RATES,
    SPLIT,
    ByReporter,
    Influence,
    ReporterShare,
    Tally,
    at_least,
    disagreement,
    influence,
    without,
)
from flagsvc.service.judging import JudgeVerdict

SHADOWS = 3  # reporters left out in turn, most influential first; each has a shadow judge
CHECKED = frozenset({"advance", "rollback"})
WOULD = {"rollback": "roll back", "blind": "hold (blind)"}
DOMINANT_AMONG = 3  # with this many reporters or more, one that sent most of the requests drives what needs it

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
Carry = Callable[[S], S | None]


@dataclass
class _Shadow(Generic[S]):
    state: S | None
    stable: ArmTotals | None = None  # the inputs of its last look in this revision: the next may not go below them
    canary: ArmTotals | None = None
    earlier: Tally = field(default_factory=Tally)  # the reporter's outcomes in the rollout's earlier revisions
    last: Tally = field(default_factory=Tally)  # and in this revision, as of the last look


@dataclass
class _FlagShadows(Generic[S]):
    created_at: float
    revision: int
    start: S | None
    by_reporter: dict[str, _Shadow[S]] = field(default_factory=dict)
    earlier: Tally = field(default_factory=Tally)  # everyone's outcomes in the rollout's earlier revisions
    last: Tally = field(default_factory=Tally)


@dataclass(frozen=True)
class Driver:
    """Why a pivotal reporter drives a verdict, in words and as evidence."""

    why: str  # "opposite", "dominant", "disagrees"
    words: str
    evidence: Mapping[str, Any]


class ReporterCheck(Generic[S]):
    def __init__(self, shadows: int = SHADOWS) -> None:
        self.shadows = shadows
        self._flags: dict[str, _FlagShadows[S]] = {}
        self._starts: dict[str, tuple[float, int, S | None]] = {}

    def revision_starts(self, key: str, created_at: float, revision: int, state: S | None,
                        carry: Carry[S] | None = None) -> None:
        """The state the real judge starts `revision` with: what new shadows of that revision start from. With
        `carry` (the revision goes on with the same rollout, and `carry` is how the real judge's state was carried
        to it), the shadows of the rollout's earlier revision go on too, each carried the same way."""
        self._starts[key] = (created_at, revision, state)
        kept = self._flags.get(key)
        if kept is None or kept.created_at != created_at or kept.revision >= revision:
            return  # nothing to carry on, or already carried (the controller tells a revision's start twice)
        if carry is None or state is None:
            del self._flags[key]  # a new rollout: its shadows start afresh
            return
        self._flags[key] = _FlagShadows(
            created_at, revision, state,
            {reporter: _Shadow(state if shadow.state is None else carry(shadow.state),
                               earlier=shadow.earlier + shadow.last)
             for reporter, shadow in kept.by_reporter.items()},
            earlier=kept.earlier + kept.last,
        )

    def forget_except(self, keys: set[str]) -> None:
        """Drop what is kept for flags that are no longer judged (nor paused, to be judged again on resume)."""
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
        an advance or a rollback, and drives it."""
        shadows = self._shadows_of(key, created_at, revision)
        now = {share.reporter: share for share in influence(by_reporter).ranked}
        found = influence(by_reporter, {r: s.earlier for r, s in shadows.by_reporter.items()}, shadows.earlier)
        if found.reporters < 2:
            shadows.by_reporter.clear()
            note = "one reporter: influence not checked" if found.reporters == 1 else \
                "no reporter ids: influence not checked"
            return _with_section(verdict, _section(found, [], note, None))
        checked = []
        for share in found.top(self.shadows):
            shadow = shadows.by_reporter.get(share.reporter) or _Shadow(shadows.start)
            in_revision = now.get(share.reporter) or ReporterShare(share.reporter, 0, 0, 0, 0, 0.0, "requests")
            left_stable, left_canary = without(stable, canary, in_revision)
            left_stable, left_canary = at_least(shadow.stable, left_stable), at_least(shadow.canary, left_canary)
            seen = rejudge(shadow.state, left_stable, left_canary)
            shadows.by_reporter[share.reporter] = _Shadow(seen.state, left_stable, left_canary, shadow.earlier,
                                                          Tally.of_share(in_revision))
            checked.append((share, seen))
        top = {share.reporter for share, _ in checked}
        for gone in [r for r in shadows.by_reporter if r not in top]:
            del shadows.by_reporter[gone]
        shadows.last = Tally.of_totals(stable, canary)
        if verdict.decision not in CHECKED:
            return _with_section(verdict, _section(found, checked, "checked; nothing to apply", None))
        pivotal = [(share, seen) for share, seen in checked if seen.decision != verdict.decision]
        rollout = shadows.earlier + shadows.last
        driving = next(((share, seen, why) for share, seen in pivotal
                        if (why := _drives(verdict.decision, share, seen, now.get(share.reporter), found,
                                           rollout, stable, canary)) is not None), None)
        if driving is None:
            note = f"the {verdict.decision} stands with each of the {len(checked)} most influential reporters left out"
            if pivotal:
                note = (f"the {verdict.decision} needs {', '.join(s.words() for s, _ in pivotal)}, whose outcomes "
                        "agree with the others': more of the same data, not a different story; it stands")
            return _with_section(verdict, _section(found, checked, note, None))
        share, seen, why = driving
        reason = (f"hold: one reporter drives this {verdict.decision}: {share.words()}, {why.words}; without it "
                  f"the judge would {WOULD.get(seen.decision, seen.decision)}: {seen.reason}. If that instance is "
                  f"broken or hostile: flagctl exclude-reporter {key} {share.reporter} --reason ... (the judge's own "
                  f"verdict: {verdict.decision}: {verdict.reason})")
        section = _section(found, checked, f"held: {share.words()} drives the {verdict.decision}",
                           (share, seen, why))
        return Revised("hold", reason, {**verdict.evidence, "reporters": section, "held": verdict.decision},
                       verdict.state)


def _drives(decision: str, share: ReporterShare, seen: JudgeVerdict[Any], in_revision: ReporterShare | None,
            found: Influence, rollout: Tally, stable: ArmTotals, canary: ArmTotals) -> Driver | None:
    """Whether the pivotal reporter `share` (its shares of the rollout so far) drives `decision`, and why."""
    if {decision, seen.decision} == CHECKED:
        return Driver("opposite", f"the others' outcomes alone say the opposite ({seen.decision})",
                      {"without": seen.decision})
    requests = share.stable_requests + share.canary_requests
    if found.reporters >= DOMINANT_AMONG and 2 * requests > rollout.requests:
        return Driver("dominant", f"which sent {requests / rollout.requests:.0%} of the rollout's requests, more "
                      f"than the other {found.reporters - 1} reporters together",
                      {"requests": requests, "of_requests": rollout.requests})
    odd = disagreement(share, *rollout.as_totals(), measures=ERROR_RATES)
    if odd is None and in_revision is not None:
        odd = disagreement(in_revision, stable, canary, measures=SPLIT)
    if odd is None:
        return None
    return Driver("disagrees", odd.words(), odd.to_dict())


def _with_section(verdict: JudgeVerdict[S], section: dict[str, Any]) -> JudgeVerdict[S]:
    return Revised(verdict.decision, verdict.reason, {**verdict.evidence, "reporters": section}, verdict.state)


def _section(found: Influence, checked: list[tuple[ReporterShare, JudgeVerdict[S]]], note: str,
             driven: tuple[ReporterShare, JudgeVerdict[S], Driver] | None) -> dict[str, Any]:
    return {
        **found.summary(),
        "checked": [{"reporter": share.reporter, "share": round(share.influence, 4), "share_of": share.of,
                     "without": seen.decision} for share, seen in checked],
        "note": note,
        "driven_by": None if driven is None else {
            **driven[0].to_dict(), "without": driven[1].decision, "reason_without": driven[1].reason,
            "why": driven[2].why, "because": dict(driven[2].evidence),
        },
    }

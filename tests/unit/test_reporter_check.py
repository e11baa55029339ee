"""When one reporter drives a verdict, across the revisions of a rollout: the controller with a judge simple enough
to count by hand (a rollout-wide tally of canary errors, carried across stages as the canary judge carries its
rollout test, and the stage's canary error rate), so each rule of the reporter check is seen on its own."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from flagsvc.domain import flag as flags
from flagsvc.domain.flag import State
from flagsvc.domain.outcomes import ArmTotals
from flagsvc.service.announce import ChangeAnnouncer
from flagsvc.service.commands import FlagCommands
from flagsvc.service.controller import RolloutController
from flagsvc.store.memory import MemoryStore
from flagsvc.store.roles import OutcomeEntry

ROLLBACK_AT = 30  # canary errors over the whole rollout, with at least this error rate in the stage:
ROLLBACK_RATE = 0.05
ADVANCE_AT = 500  # canary requests in a stage, with fewer errors than that
HONEST = [f"honest-reporter-{i:02d}" for i in range(9)]
HOSTILE = "hostile-reporter-x"


@dataclass(frozen=True)
class TallyState:
    stage_index: int
    earlier_errors: int = 0  # canary errors of the rollout's earlier revisions
    errors: int = 0  # and of this revision, at the last look

    def to_dict(self) -> dict[str, Any]:
        return {"stage_index": self.stage_index, "earlier_errors": self.earlier_errors, "errors": self.errors}

    @classmethod
    def from_dict(cls, data: Any) -> TallyState:
        return cls(**data)

    def carry_to(self, stage_index: int) -> TallyState:
        return TallyState(stage_index, self.earlier_errors + self.errors)

    def next_stage(self) -> TallyState:
        return self.carry_to(self.stage_index + 1)


@dataclass(frozen=True)
class Verdict:
    decision: str
    reason: str
    evidence: dict[str, Any]
    state: TallyState


class TallyJudge:
    def judge(self, state: TallyState | None, stable: ArmTotals, canary: ArmTotals, *, stage_index: int,
              **_: Any) -> Verdict:
        state = replace(state or TallyState(stage_index), errors=canary.errors)
        errors = state.earlier_errors + canary.errors
        if errors >= ROLLBACK_AT and canary.errors >= ROLLBACK_RATE * canary.count:
            return Verdict("rollback", f"{errors} canary errors in the rollout", {}, state)
        if canary.count >= ADVANCE_AT:
            return Verdict("advance", f"{canary.count} canary requests, {errors} errors", {}, state)
        return Verdict("hold", f"{canary.count} canary requests", {}, state)


def _world(manual_clock):
    store = MemoryStore(clock=manual_clock)
    flag, entry = flags.new_flag("checkout", {"stages": [10, 50, 100], "bake_seconds": 0}, now=manual_clock(),
                                 actor="ops")
    store.create(flag, entry)
    started, entry = flags.start(flag, now=manual_clock(), actor="ops")
    store.replace(started, entry, expected_revision=flag.revision)
    controller = RolloutController(store, lambda flag: TallyJudge(), TallyState.from_dict, ChangeAnnouncer(store),
                                   clock=manual_clock, owner="leader")
    return store, controller


_batches = iter(range(10**9))


def _send(store, reporter, stable=(0, 0), canary=(0, 0)):
    increments = {f"{arm}:{counter}": value for arm, (n, errors) in (("stable", stable), ("canary", canary))
                  for counter, value in (("count", n), ("errors", errors), ("error_users", errors)) if value}
    revision = store.get("checkout").revision
    store.add_outcomes(f"batch-{next(_batches):08d}", {"checkout": OutcomeEntry(revision, increments, reporter)})


def _look(store, controller, manual_clock):
    manual_clock.advance(2)
    [decision] = controller.tick()
    return decision


def test_a_reporter_silent_in_a_later_stage_is_still_left_out_of_the_evidence_it_gave(manual_clock):
    """The framer's 25 canary errors of stage 1 stay in the rollout's tally; in stage 2 five ordinary errors
    cross the threshold. Without the framer the rollout has 5 errors: the rollback is held, and names it."""
    store, controller = _world(manual_clock)
    _send(store, HOSTILE, canary=(30, 25))
    for reporter in HONEST:
        _send(store, reporter, (500, 0), (60, 0))
    first = _look(store, controller, manual_clock)
    assert first.decision == "advance" and first.applied, first.reason  # 25 errors: below the threshold
    assert store.get("checkout").stage_index == 1
    for reporter in HONEST[:5]:
        _send(store, reporter, (100, 1), (20, 1))
    decision = _look(store, controller, manual_clock)
    assert decision.decision == "hold", decision.reason
    assert "one reporter drives this rollback" in decision.reason and HOSTILE in decision.reason
    assert "canary error rate" in decision.reason
    section = store.load_judgement("checkout").verdict["evidence"]["reporters"]
    assert section["driven_by"]["reporter"] == HOSTILE and section["driven_by"]["why"] == "disagrees"
    assert section["driven_by"]["canary_errors"] == 25  # its outcomes over the rollout, not only this revision
    assert store.get("checkout").state == State.ROLLING


def test_the_left_out_evidence_survives_a_pause_and_a_resume(manual_clock):
    store, controller = _world(manual_clock)
    _send(store, HOSTILE, canary=(30, 25))
    for reporter in HONEST:
        _send(store, reporter, (500, 0), (60, 0))
    assert _look(store, controller, manual_clock).decision == "advance"
    commands = FlagCommands(store, ChangeAnnouncer(store), clock=manual_clock)
    commands.pause("checkout", actor="ops", reason="a look at the dashboards")
    manual_clock.advance(2)
    assert controller.tick() == []  # nothing rolling
    commands.resume("checkout", actor="ops", reason="looks fine")
    for reporter in HONEST[:5]:
        _send(store, reporter, (100, 1), (20, 1))
    decision = _look(store, controller, manual_clock)
    assert decision.decision == "hold" and HOSTILE in decision.reason, decision.reason


def test_a_reporter_with_most_of_the_requests_does_not_decide_an_advance_alone(manual_clock):
    """Its canary requests make the stage's 500; without them the others have 180. Its outcomes look like the
    others' (no errors anywhere), but it sent more than all of them together."""
    store, controller = _world(manual_clock)
    for reporter in HONEST:
        _send(store, reporter, (180, 0), (20, 0))
    _send(store, HOSTILE, (3_600, 0), (400, 0))
    decision = _look(store, controller, manual_clock)
    assert decision.decision == "hold", decision.reason
    assert "one reporter drives this advance" in decision.reason and "more than the other 9" in decision.reason
    section = store.load_judgement("checkout").verdict["evidence"]["reporters"]
    assert section["driven_by"]["why"] == "dominant" and section["driven_by"]["without"] == "hold"
    # once the others have enough on their own, the advance stands
    for reporter in HONEST:
        _send(store, reporter, (180, 0), (40, 0))
    assert _look(store, controller, manual_clock).decision == "advance"


def test_of_two_reporters_the_larger_is_not_dominant(manual_clock):
    store, controller = _world(manual_clock)
    _send(store, HONEST[0], (180, 0), (20, 0))
    _send(store, HOSTILE, (3_600, 0), (500, 0))
    decision = _look(store, controller, manual_clock)
    assert decision.decision == "advance", decision.reason


def test_a_shadow_that_reaches_the_opposite_verdict_holds_it(manual_clock):
    """Without the quiet reporter the others' canary (30 errors in 450, 6.7 %) is rolled back; with its 400
    requests at 2 % the stage's rate is 4.5 % and its 850 requests advance it. Its error rate is not far enough
    from the others' to be told apart at p < 1e-6, its split is theirs, and it sent 47 % of the requests, not
    more: only the opposite verdict tells."""
    store, controller = _world(manual_clock)
    for reporter in HONEST[:3]:
        _send(store, reporter, (1_000 // 3, 0), (150, 10))
    _send(store, HOSTILE, (900, 0), (400, 8))
    decision = _look(store, controller, manual_clock)
    assert decision.decision == "hold", decision.reason
    assert "one reporter drives this advance" in decision.reason and "say the opposite (rollback)" in decision.reason
    section = store.load_judgement("checkout").verdict["evidence"]["reporters"]
    assert section["driven_by"]["reporter"] == HOSTILE and section["driven_by"]["why"] == "opposite"

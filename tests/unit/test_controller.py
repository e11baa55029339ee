"""The controller with a scripted judge: what it applies, what it refuses, who leads."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from flagsvc import metrics
from flagsvc.domain import flag as flags
from flagsvc.domain.flag import State
from flagsvc.service.announce import ChangeAnnouncer
from flagsvc.service.controller import RolloutController, build_controller
from flagsvc.store.memory import MemoryStore


@dataclass
class FakeState:
    looks: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"looks": self.looks}

    def carry_to(self, stage_index: int) -> None:
        return None  # knows nothing that goes on in a later revision

    def next_stage(self) -> None:
        return None


@dataclass
class FakeVerdict:
    decision: str
    reason: str
    evidence: dict
    state: FakeState


@dataclass
class ScriptedJudge:
    decisions: list[str]
    seen_states: list[Any] = field(default_factory=list)
    before_answer: Any = None

    def judge(self, state, stable, canary, **context):
        self.seen_states.append(state)
        if self.before_answer:
            self.before_answer()
        looks = (state.looks if state else 0) + 1
        decision = self.decisions.pop(0) if self.decisions else "hold"
        return FakeVerdict(decision, f"scripted {decision}", {"canary": canary.count, **context}, FakeState(looks))


def load_state(data):
    return FakeState(**data)


def rolling_flag(store, key="new_checkout"):
    flag, entry = flags.new_flag(key, {"stages": [10, 50, 100]}, now=0, actor="ops")
    store.create(flag, entry)
    started, entry = flags.start(flag, now=0, actor="ops")
    store.replace(started, entry, expected_revision=1)
    return started


@pytest.fixture(params=["memory", "redis"])
def store(request):
    return MemoryStore() if request.param == "memory" else request.getfixturevalue("real_store")


def controller(store, judge, owner="c1", clock=lambda: 100.0):
    return RolloutController(store, lambda flag: judge, load_state, ChangeAnnouncer(store), clock=clock, owner=owner)


def test_advances_completes_and_records_why(store):
    rolling_flag(store)
    judge = ScriptedJudge(["advance", "advance"])
    ctl = controller(store, judge)
    version = store.config_version().version
    assert [d.decision for d in ctl.tick()] == ["advance"]
    flag = store.get("new_checkout")
    assert (flag.state, flag.percent, flag.stage_index, flag.stage_started_at) == (State.ROLLING, 50, 1, 100.0)
    assert store.config_version().version > version
    entry = store.history("new_checkout", 1)[0]
    assert (entry.actor, entry.action, entry.reason) == ("controller", "advance", "scripted advance")
    assert entry.evidence["seconds_at_stage"] == 100.0 and entry.evidence["stage_count"] == 3
    ctl.tick()
    assert store.get("new_checkout").state == State.COMPLETE
    assert store.history("new_checkout", 1)[0].action == "complete"
    assert ctl.tick() == []  # complete flags are not judged


def test_rollback_zeroes_with_the_reason(store):
    rolling_flag(store)
    controller(store, ScriptedJudge(["rollback"])).tick()
    flag = store.get("new_checkout")
    assert (flag.state, flag.percent, flag.reason) == (State.ROLLED_BACK, 0, "scripted rollback")
    assert store.load_judgement("new_checkout").verdict["decision"] == "rollback"


def test_hold_keeps_the_judge_state_for_the_next_look(store):
    rolling_flag(store)
    judge = ScriptedJudge(["hold", "hold"])
    ctl = controller(store, judge)
    ctl.tick()
    ctl.tick()
    assert judge.seen_states == [None, FakeState(looks=1)]
    assert store.get("new_checkout").revision == 2  # holding changes nothing
    kept = store.load_judgement("new_checkout")
    assert kept.revision == 2 and kept.verdict["decision"] == "hold"


def test_paused_and_manual_flags_are_not_judged(store):
    flag = rolling_flag(store)
    paused, entry = flags.pause(flag, now=1, actor="ops")
    store.replace(paused, entry, expected_revision=flag.revision)
    judge = ScriptedJudge(["rollback"])
    assert controller(store, judge).tick() == []
    assert judge.seen_states == []


def test_an_operator_change_during_judging_wins(store):
    flag = rolling_flag(store)

    def operator_pauses():
        paused, entry = flags.pause(store.get(flag.key), now=1, actor="ops")
        store.replace(paused, entry, expected_revision=flag.revision)

    judge = ScriptedJudge(["advance"], before_answer=operator_pauses)
    [decision] = controller(store, judge).tick()
    assert decision.decision == "advance" and decision.applied is False
    assert (store.get(flag.key).state, store.get(flag.key).percent) == (State.PAUSED, 10)


def test_one_leader_acts_and_a_released_lease_passes_on(store):
    rolling_flag(store)
    first, second = controller(store, ScriptedJudge([]), "c1"), controller(store, ScriptedJudge(["advance"]), "c2")
    assert first.tick() != [] and first.is_leader
    assert second.tick() == [] and not second.is_leader
    first.release()
    assert second.tick()[0].applied and second.is_leader


def test_a_deposed_leader_is_fenced_out(store):
    flag = rolling_flag(store)
    old = controller(store, ScriptedJudge(["advance"]), "old")
    old.token = 1  # believes it still leads with an old token
    store.raise_fence(flag.key, 5)  # a newer leader has acted since
    with pytest.raises(Exception, match="fenced"):
        old._judge_flag(store.get(flag.key), 1)
    assert store.get(flag.key).revision == flag.revision


def test_two_controllers_racing_never_both_apply(real_store):
    """Two controllers tick as fast as they can on one Redis; each revision is acted on at most once."""
    store = real_store
    flag, entry = flags.new_flag("race", {"stages": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100]}, now=0, actor="ops")
    store.create(flag, entry)
    started, entry = flags.start(flag, now=0, actor="ops")
    store.replace(started, entry, expected_revision=1)
    controllers = [controller(store, ScriptedJudge(["advance"] * 50), f"c{i}") for i in range(2)]
    applied = {c.owner: [] for c in controllers}
    stop = threading.Event()

    def run(ctl):
        while not stop.is_set() and store.get("race").state == State.ROLLING:
            for decision in ctl.tick():
                if decision.applied:
                    applied[ctl.owner].append(decision.revision)
            if ctl.is_leader and len(applied[ctl.owner]) % 3 == 2:
                ctl.release()  # hand leadership back and forth

    threads = [threading.Thread(target=run, args=(c,)) for c in controllers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    stop.set()
    revisions = applied["c0"] + applied["c1"]
    assert store.get("race").state == State.COMPLETE
    assert sorted(revisions) == list(range(2, 12))  # every stage move once, by exactly one controller
    moves = [e for e in store.history("race", 100) if e.actor == "controller"]
    assert len(moves) == 10


def test_a_forked_worker_gets_its_own_identity(monkeypatch):
    store = MemoryStore()
    ctl = RolloutController(store, lambda flag: ScriptedJudge([]), load_state, ChangeAnnouncer(store))
    before = ctl.owner
    assert ctl.owner == before  # stable within a process
    import flagsvc.service.controller as module

    monkeypatch.setattr(module.os, "getpid", lambda: -1)  # as if forked
    assert ctl.owner != before


@dataclass
class CarriedState(FakeState):
    """A judge state that knows how to go on in a later revision of the same rollout."""

    stage: int = 0
    carried: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"looks": self.looks, "stage": self.stage, "carried": self.carried}

    def carry_to(self, stage_index: int) -> CarriedState:
        return CarriedState(looks=self.looks, stage=stage_index, carried=True)


OPERATOR_STEPS = {
    "pause": lambda f: flags.pause(f, now=5, actor="ops"),
    "resume": lambda f: flags.resume(f, now=6, actor="ops"),
    "promote": lambda f: flags.promote(f, now=7, actor="ops"),
    "edit": lambda f: flags.update(f, {"analysis": {"alpha": 0.05}}, now=8, actor="ops"),
    "rollback": lambda f: flags.rollback(f, now=9, actor="ops"),
    "start": lambda f: flags.start(f, now=10, actor="ops"),
}


@pytest.mark.parametrize(("steps", "carried_to_stage"), [
    (["pause", "resume"], 0),
    (["pause", "promote", "resume"], 1),
    (["pause", "edit", "resume"], None),  # judged by other settings now: start afresh
    (["rollback", "start"], None),  # a new rollout, maybe of a fixed build: its evidence starts from nothing
])
def test_the_rollout_test_goes_on_after_a_pause_only(store, steps, carried_to_stage):
    flag = rolling_flag(store)
    judge = ScriptedJudge(["hold", "hold"])
    ctl = RolloutController(store, lambda f: judge, lambda data: CarriedState(**data), ChangeAnnouncer(store),
                            clock=lambda: 100.0, owner="c1")
    ctl.tick()  # a look at revision 2, kept
    for step in steps:
        current = store.get(flag.key)
        after, entry = OPERATOR_STEPS[step](current)
        store.replace(after, entry, expected_revision=current.revision)
    ctl.tick()
    seen = judge.seen_states[-1]
    if carried_to_stage is None:
        assert seen is None
    else:
        assert seen == CarriedState(looks=1, stage=carried_to_stage, carried=True)
    assert store.load_judgement(flag.key).revision == store.get(flag.key).revision


def test_the_real_judge_state_carries_the_rollout_test_and_at_the_same_stage_its_stage_tests():
    from flagsvc.domain.judge_state import JudgeState, RolloutTest, Seen, StageTest

    rollout = RolloutTest(errors=2.5, errors_big=1.0, latency=0.5)
    errors = StageTest(llr=-1.5, canary_events=3, stable_events=30, canary_exposure=100, stable_exposure=900)
    state = JudgeState(stage_index=1, stable=Seen(requests=900), canary=Seen(requests=100), slow_ms=230.0,
                       slow_ratio=2.3, errors=errors, rollout=rollout, looks=7, epoch="e1")
    banked = RolloutTest(errors_banked=2.5, errors_big_banked=1.0, latency_banked=0.5)  # dispersion 1: as they were
    stage = StageTest(banked=-1.5, canary_events=3, stable_events=30, canary_exposure=100, stable_exposure=900)
    assert state.carry_to(1) == JudgeState(stage_index=1, slow_ms=230.0, slow_ratio=2.3, errors=stage,
                                           rollout=banked)
    assert state.carry_to(2) == JudgeState(stage_index=2, slow_ms=230.0, slow_ratio=2.3, rollout=banked)
    assert state.next_stage() == state.carry_to(2)


def test_no_carry_when_another_rollout_hides_behind_later_pauses(store):
    """The flag was listed at revision 4 (rolled back, then started again: a new rollout); before the controller
    reads the history, an operator pauses and resumes. The newest entries are a pause and a resume, but the
    entries between the kept revision and the listed one are a rollback and a start: nothing is carried."""
    flag = rolling_flag(store)
    judge = ScriptedJudge(["hold"])
    ctl = RolloutController(store, lambda f: judge, lambda data: CarriedState(**data), ChangeAnnouncer(store),
                            clock=lambda: 100.0, owner="c1")
    ctl.tick()  # the old rollout's state, kept at revision 2
    for step in ("rollback", "start"):
        current = store.get(flag.key)
        store.replace(*OPERATOR_STEPS[step](current), expected_revision=current.revision)
    listed = store.get(flag.key)
    for step in ("pause", "resume"):
        current = store.get(flag.key)
        store.replace(*OPERATOR_STEPS[step](current), expected_revision=current.revision)
    assert ctl._kept_state(listed) is None
    assert ctl._kept_state(store.get(flag.key)) is None


def test_a_judgement_left_by_a_deleted_flag_is_not_used(store):
    flag = rolling_flag(store)
    judge = ScriptedJudge(["hold"])
    ctl = controller(store, judge)
    ctl.tick()
    left = store.load_judgement(flag.key)
    store.delete(flag.key)
    store.save_judgement(flag.key, left)  # a hold saved just after the delete
    again, entry = flags.new_flag(flag.key, {"stages": [10, 50, 100]}, now=60, actor="ops")
    store.create(again, entry)
    started, entry = flags.start(again, now=60, actor="ops")
    store.replace(started, entry, expected_revision=1)
    assert started.revision == left.revision  # same key, same revision: only the creation time tells
    assert ctl._kept_state(started) is None


def test_blind_is_a_hold_that_is_kept_and_counted(store):
    rolling_flag(store)
    judge = ScriptedJudge(["blind", "blind"])
    ctl = build_controller(store, ChangeAnnouncer(store), clock=lambda: 100.0, owner="c1")
    ctl.judge_for, ctl.load_state = (lambda flag: judge), load_state
    counted = metrics.DECISIONS.labels("blind", "true")
    before = counted._value.get()
    decisions = ctl.tick() + ctl.tick()
    assert [(d.decision, d.applied) for d in decisions] == [("blind", True), ("blind", True)]
    assert judge.seen_states == [None, FakeState(looks=1)]  # its state is kept like a hold's
    flag = store.get("new_checkout")
    assert (flag.state, flag.percent, flag.revision) == (State.ROLLING, 10, 2)  # no flag changed
    kept = store.load_judgement("new_checkout")
    assert kept.revision == 2 and kept.verdict["decision"] == "blind" and kept.verdict["reason"] == "scripted blind"
    assert counted._value.get() == before + 2

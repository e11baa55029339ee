"""Operators and controllers in random interleavings (hypothesis state machine), on the real store code paths.

A controller's look and its write are separate steps, so an operator (or the other controller) can act in
between, as in production. Invariants: the percent stays in 0-100; the stage never goes backwards except by a
rollback, a manual set or a new start; a rollback is never undone by a late advance; the history holds exactly
the transitions that were applied.
"""

from __future__ import annotations

import fakeredis
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from flagsvc.domain import flag as flags
from flagsvc.domain.errors import IllegalTransition, InvalidFlag
from flagsvc.domain.flag import Action, State
from flagsvc.service.announce import ChangeAnnouncer
from flagsvc.service.commands import FlagCommands
from flagsvc.service.controller import RolloutController
from flagsvc.store.memory import MemoryStore
from flagsvc.store.redis_store import RedisStore

KEY = "checkout"
RESETS = {Action.ROLLBACK, Action.SET_PERCENT, Action.START}


class NoState:
    def to_dict(self) -> dict:
        return {}

    def carry_to(self, stage_index: int) -> None:
        return None

    def next_stage(self) -> None:
        return None


class FixedVerdict:
    def __init__(self, decision: str) -> None:
        self.decision, self.reason, self.evidence, self.state = decision, f"judged {decision}", {}, NoState()


def make_controller(store, owner: str) -> RolloutController:
    return RolloutController(store, None, None, ChangeAnnouncer(store), owner=owner)


def make_commands(store) -> FlagCommands:
    return FlagCommands(store, ChangeAnnouncer(store), clock=lambda: 0.0)


class Rollouts(RuleBasedStateMachine):
    store_kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryStore() if self.store_kind == "memory" else RedisStore(
            fakeredis.FakeRedis(decode_responses=True), "sm:")
        self.ops = make_commands(self.store)
        self.ops.create(KEY, {"stages": [1, 5, 25, 50, 100]}, actor="ops")
        self.applied = 1  # the create
        self.controllers = [make_controller(self.store, f"c{i}") for i in range(2)]
        self.pending: list[tuple[int, object, str] | None] = [None, None]
        self.last_stage = 0

    def _operator(self, action, *args) -> None:
        try:
            if action == "set_percent":
                self.ops.set_percent(KEY, *args, actor="ops")
            else:
                self.ops.transition(KEY, action, actor="ops")
            self.applied += 1
        except (IllegalTransition, InvalidFlag):
            pass

    @rule(action=st.sampled_from(["start", "pause", "resume", "promote", "rollback"]))
    def operator_acts(self, action):
        self._operator(action)

    @rule(percent=st.sampled_from([0, 0.5, 12.5, 33.33, 100]))
    def operator_sets(self, percent):
        self._operator("set_percent", percent)

    @rule(which=st.integers(0, 1), decision=st.sampled_from(["advance", "rollback"]))
    def controller_looks(self, which, decision):
        """Read the flag and decide; the write comes later (another step may come in between)."""
        flag = self.store.get(KEY)
        self.pending[which] = (flag.revision, flag, decision) if flag.state == State.ROLLING else None

    @rule(which=st.integers(0, 1))
    def controller_writes(self, which):
        if self.pending[which] is None:
            return
        _revision, seen, decision = self.pending[which]
        self.pending[which] = None
        ctl = self.controllers[which]
        token = self.store.acquire_lease(ctl.owner, 60) or 0
        if not token:
            return  # not the leader: it never writes
        before = self.store.get(KEY)
        applied = ctl._apply(seen, FixedVerdict(decision), token, 0.0, {})
        if applied:
            self.applied += 1
            assert before.revision == seen.revision  # it only ever applied what it saw
        else:
            assert before.revision != seen.revision or before.state != State.ROLLING

    @rule(which=st.integers(0, 1))
    def leadership_changes(self, which):
        self.store.release_lease(self.controllers[which].owner)

    @invariant()
    def percent_in_range(self):
        flag = self.store.get(KEY)
        assert 0 <= flag.percent <= 100

    @invariant()
    def stages_only_go_back_by_reset(self):
        flag = self.store.get(KEY)
        last = self.store.history(KEY, 1)[0]
        if flag.stage_index < self.last_stage:
            assert last.action in RESETS or last.action == Action.ROLLBACK
        self.last_stage = flag.stage_index

    @invariant()
    def rolled_back_means_zero(self):
        flag = self.store.get(KEY)
        if flag.state in (State.ROLLED_BACK, State.OFF):
            assert flag.percent == 0

    @invariant()
    def history_is_exactly_what_was_applied(self):
        history = self.store.history(KEY, 1000)
        assert len(history) == self.applied == self.store.get(KEY).revision
        assert [e.revision for e in history] == list(range(self.applied, 0, -1))


class RolloutsOnRedisStore(Rollouts):
    store_kind = "fakeredis"


TestRollouts = pytest.mark.slow(Rollouts.TestCase)
TestRollouts.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestRolloutsOnRedisStore = pytest.mark.slow(RolloutsOnRedisStore.TestCase)
TestRolloutsOnRedisStore.settings = settings(max_examples=25, stateful_step_count=30, deadline=None)


def test_a_rollback_wins_over_a_late_advance():
    store = MemoryStore()
    ops = make_commands(store)
    ops.create(KEY, {}, actor="ops")
    ops.start(KEY, actor="ops")
    controller = make_controller(store, "c")
    token = store.acquire_lease("c", 60)
    seen = store.get(KEY)  # the controller looks ...
    ops.rollback(KEY, actor="ops", reason="errors")  # ... an operator pulls the kill switch ...
    assert controller._apply(seen, FixedVerdict("advance"), token, 0.0, {}) is False  # ... the advance loses
    assert store.get(KEY).state == State.ROLLED_BACK
    with pytest.raises(IllegalTransition):  # and a fresh look cannot advance a rolled-back flag either
        flags.advance(store.get(KEY), now=0, actor="controller", reason="")

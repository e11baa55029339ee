"""Two controllers against one real Redis for a sustained period never both apply a decision.

Each controller runs its real loop (`RolloutController.run`) in its own thread, with a short lease, a judge that
always wants to move, and leadership dropped at random moments so it changes hands often. An operator thread
keeps restarting rollouts. Afterwards, no (flag, revision) was acted on twice, and the history holds exactly the
decisions the controllers report as applied. The duration is
FLAGSVC_RACE_SECONDS (default 20; run it for minutes with e.g. FLAGSVC_RACE_SECONDS=300).
"""

from __future__ import annotations

import contextlib
import os
import random
import threading

import pytest

from flagsvc.domain.errors import IllegalTransition
from flagsvc.domain.flag import State
from flagsvc.service.announce import ChangeAnnouncer
from flagsvc.service.commands import FlagCommands
from flagsvc.service.controller import RolloutController
from flagsvc.store.redis_store import RedisStore
from flagsvc.store.roles import HISTORY_CAP


class AlwaysMoves:
    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def judge(self, state, stable, canary, **context):
        decision = self.random.choice(["advance", "advance", "advance", "rollback", "hold"])
        return type("V", (), {"decision": decision, "reason": f"race {decision}", "evidence": {}, "state": Held()})()


class Held:
    def to_dict(self):
        return {"held": True}

    def carry_to(self, stage_index):
        return None

    def next_stage(self):
        return None


@pytest.mark.slow
def test_two_controllers_never_both_apply(any_redis, namespace):
    seconds = float(os.environ.get("FLAGSVC_RACE_SECONDS", "20"))
    store = RedisStore(any_redis, namespace)
    operations = FlagCommands(store, ChangeAnnouncer(store))
    keys = [f"race{i}" for i in range(3)]
    for key in keys:
        operations.create(key, {"stages": [1, 2, 5, 10, 25, 50, 100]}, actor="ops")
        operations.start(key, actor="ops")
    applied: dict[str, list[tuple[str, int]]] = {"c0": [], "c1": []}
    controllers = []
    for i in range(2):
        owner = f"c{i}"
        own_store = RedisStore(any_redis, namespace)
        ctl = RolloutController(
            own_store, lambda flag, i=i: AlwaysMoves(i), lambda data: Held(), ChangeAnnouncer(own_store),
            interval=0.02, owner=owner,
            on_decision=lambda d, owner=owner: d.applied and applied[owner].append((d.key, d.revision)),
        )
        ctl.lease_seconds = 0.2
        controllers.append(ctl)
    stop = threading.Event()

    def churn() -> None:
        """Drop leadership at random moments, and restart finished rollouts."""
        rng = random.Random(3)
        while not stop.wait(rng.uniform(0.02, 0.2)):
            rng.choice(controllers).release()
            for key in keys:
                state = store.get(key).state
                with contextlib.suppress(IllegalTransition):  # a controller may move it meanwhile
                    if state == State.COMPLETE:
                        operations.set_percent(key, 0, actor="ops")
                    if state in (State.COMPLETE, State.ROLLED_BACK):
                        operations.start(key, actor="ops")

    threads = [threading.Thread(target=ctl.run, args=(stop,)) for ctl in controllers]
    threads.append(threading.Thread(target=churn))
    for t in threads:
        t.start()
    stop.wait(seconds)  # the soak's length, not a synchronisation: the threads run until stop is set
    stop.set()
    for t in threads:
        t.join(10)

    decisions = applied["c0"] + applied["c1"]
    assert len(decisions) > 20 and applied["c0"] and applied["c1"]  # both led, many times
    assert len(set(decisions)) == len(decisions)  # no (flag, revision) acted on twice
    for key in keys:
        history = store.history(key, HISTORY_CAP)  # capped: a long run compares what is kept
        oldest = history[-1].revision
        moves = {e.revision for e in history if e.actor == "controller"}
        # a decision on revision r is the history entry of revision r + 1
        assert moves == {r + 1 for k, r in decisions if k == key and r + 1 >= oldest}

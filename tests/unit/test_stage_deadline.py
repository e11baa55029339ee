"""A policy for thin traffic: a stage past the flag's max_stage_seconds without a decision holds and says so
(on_max_stage "hold": reason, gauge, `flagctl watch` line) or advances with the reason in the history ("advance").
The real judge and controller on a memory store, on a clock the test moves."""

from __future__ import annotations

import itertools

from flagsvc.cli.flagctl import _watch_line
from flagsvc.domain import flag as flags
from flagsvc.domain.flag import State
from flagsvc.metrics import HeldRolloutCollector
from flagsvc.service.announce import ChangeAnnouncer
from flagsvc.service.controller import build_controller
from flagsvc.service.ingestion import OutcomeIngestion
from flagsvc.store.memory import MemoryStore
from flagsvc.store.roles import OutcomeEntry

_batches = itertools.count()


def _rolling(store, clock, **analysis):
    analysis = {"min_requests": 1_000, **analysis}  # out of reach of the trickle: the judge alone never advances
    flag, entry = flags.new_flag("quiet", {"stages": [10, 50, 100], "bake_seconds": 60, "analysis": analysis},
                                 now=clock(), actor="ops")
    store.create(flag, entry)
    started, entry = flags.start(flag, now=clock(), actor="ops")
    store.replace(started, entry, expected_revision=flag.revision)


def _trickle(store, canary_percent=None):
    """Thin traffic: a request a second, no errors, split as configured (or at `canary_percent`); the judge
    cannot reach min_requests for ages."""
    canary = round((canary_percent or store.get("quiet").percent) / 10)
    increments = {"stable:count": 10 - canary, "canary:count": canary, "stable:lat:232": 10 - canary,
                  "canary:lat:232": canary}
    store.add_outcomes(f"batch-{next(_batches):08d}",
                       {"quiet": OutcomeEntry(store.get("quiet").revision, increments, "only-reporter-1")})


def _looks(store, clock, seconds, canary_percent=None):
    ctl = build_controller(store, ChangeAnnouncer(store), clock=clock, owner="leader")
    decisions = []
    for _ in range(int(seconds // 10)):
        _trickle(store, canary_percent)
        clock.advance(10)
        decisions.extend(ctl.tick())
    return decisions


def test_an_overdue_stage_holds_and_says_so(manual_clock):
    store = MemoryStore(clock=manual_clock)
    _rolling(store, manual_clock, max_stage_seconds=300)
    before = _looks(store, manual_clock, 300)
    assert all(d.decision == "hold" and not d.reason.startswith("stage overdue") for d in before)
    [late] = _looks(store, manual_clock, 10)
    assert late.decision == "hold"
    assert late.reason.startswith("stage overdue: 310 s at 10 % (max_stage_seconds 300) without a decision; "
                                  "holding (on_max_stage hold): insufficient evidence")
    flag = store.get("quiet")
    assert (flag.state, flag.percent, flag.revision) == (State.ROLLING, 10, 2)
    verdict = store.load_judgement("quiet").verdict
    assert verdict["evidence"]["overdue"] == {"seconds": 310.0, "max_stage_seconds": 300.0, "on_max_stage": "hold",
                                              "acted": False}
    [driven, overdue] = HeldRolloutCollector(store).collect()
    assert [(s.labels["flag"], s.value) for s in overdue.samples] == [("quiet", 1.0)]
    assert [s.value for s in driven.samples] == [0.0]
    stats = OutcomeIngestion(store, store, store).stats("quiet")
    assert "stage overdue" in _watch_line(flag.to_dict(), stats)


def test_an_overdue_stage_advances_with_the_reason_in_the_history(manual_clock):
    store = MemoryStore(clock=manual_clock)
    _rolling(store, manual_clock, max_stage_seconds=300, on_max_stage="advance")
    assert {d.decision for d in _looks(store, manual_clock, 300)} == {"hold"}
    [late] = _looks(store, manual_clock, 10)
    assert late.decision == "advance" and late.applied
    flag = store.get("quiet")
    assert (flag.state, flag.percent, flag.stage_index) == (State.ROLLING, 50, 1)
    entry = store.history("quiet", 1)[0]
    assert (entry.actor, entry.action) == ("controller", "advance")
    assert entry.reason.startswith("advanced after max_stage_seconds with thin traffic: 310 s at 10 % "
                                   "(max_stage_seconds 300) without a decision; the judge: insufficient evidence")
    assert entry.evidence["overdue"]["acted"] is True
    # the next stage's clock starts afresh: not overdue again before another max_stage_seconds
    assert {d.decision for d in _looks(store, manual_clock, 300)} == {"hold"}
    assert store.get("quiet").percent == 50
    [again] = _looks(store, manual_clock, 10)
    assert again.decision == "advance" and store.get("quiet").percent == 100


def test_never_overdue_before_the_bake_time_nor_without_a_limit(manual_clock):
    store = MemoryStore(clock=manual_clock)
    _rolling(store, manual_clock, max_stage_seconds=30, on_max_stage="advance")  # below the 60 s bake time
    assert {d.decision for d in _looks(store, manual_clock, 60)} == {"hold"}
    assert _looks(store, manual_clock, 10)[0].decision == "advance"
    other = MemoryStore(clock=manual_clock)
    _rolling(other, manual_clock)
    assert all(not d.reason.startswith("stage overdue") for d in _looks(other, manual_clock, 3_000))


def test_a_skewed_split_is_not_advanced_when_overdue(manual_clock):
    store = MemoryStore(clock=manual_clock)
    _rolling(store, manual_clock, max_stage_seconds=300, on_max_stage="advance")
    decisions = _looks(store, manual_clock, 600, canary_percent=40)  # 40 % of requests at a 10 % stage
    assert {d.decision for d in decisions} == {"hold"} and store.get("quiet").percent == 10
    assert decisions[-1].reason.startswith("stage overdue: ") and "not advancing: the traffic split is off" in \
        decisions[-1].reason

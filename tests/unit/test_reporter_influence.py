"""No single reporter decides: the real judge and controller on a memory store, with outcomes from several SDK
instances (reporters), one of them hostile. The verdict must not follow the hostile one; with one reporter, the
controller behaves as before; honest reporters still get a real regression rolled back."""

from __future__ import annotations

import itertools
import random

from flagsvc.domain import flag as flags
from flagsvc.domain.flag import State
from flagsvc.domain.outcomes import ArmTotals
from flagsvc.domain.reporter_influence import at_least, disagreement, influence, without
from flagsvc.metrics import HeldRolloutCollector
from flagsvc.service.announce import ChangeAnnouncer
from flagsvc.service.commands import FlagCommands
from flagsvc.service.controller import build_controller
from flagsvc.service.ingestion import OutcomeIngestion
from flagsvc.store.memory import MemoryStore
from flagsvc.store.roles import OutcomeEntry, ReporterTotals
from tests.support.outcomes import envelope

HONEST = [f"honest-reporter-{i:02d}" for i in range(9)]
HOSTILE = "hostile-reporter-x"
# Every 2 s, 20x the honest volume at the right split, stable at 1 % errors and the canary a little better, so that
# with the honest canary's 6 % mixed in, the canary's errors look like stable's.
FLOOD = ((16_200, 162), (1_800, 13))
_batches = itertools.count()


def _flag(store, clock, key="checkout", **analysis):
    flag, entry = flags.new_flag(key, {"stages": [10, 50, 100], "bake_seconds": 30, "analysis": analysis},
                                 now=clock(), actor="ops")
    store.create(flag, entry)
    started, entry = flags.start(flag, now=clock(), actor="ops")
    store.replace(started, entry, expected_revision=flag.revision)
    return started


def _send(store, key, reporter, stable=(0, 0), canary=(0, 0)):
    """One batch from `reporter`: (requests, errors) per arm, every error a user of its own, 100 ms latencies."""
    increments = {}
    for arm, (n, errors) in (("stable", stable), ("canary", canary)):
        if n:
            increments.update({f"{arm}:count": n, f"{arm}:lat:232": n})
            if errors:
                increments.update({f"{arm}:errors": errors, f"{arm}:error_users": errors})
    revision = store.get(key).revision
    store.add_outcomes(f"batch-{next(_batches):08d}", {key: OutcomeEntry(revision, increments, reporter)})


def _binomial(rng, n, p):
    return sum(rng.random() < p for _ in range(n))


def _honest_look(store, key, rng, canary_error_rate, per_reporter=100):
    """Two seconds of honest traffic from nine SDK instances at the flag's percent, stable at 1 % errors."""
    share = store.get(key).percent / 100
    for reporter in HONEST:
        n_canary = _binomial(rng, per_reporter, share)
        n_stable = per_reporter - n_canary
        _send(store, key, reporter, (n_stable, _binomial(rng, n_stable, 0.01)),
              (n_canary, _binomial(rng, n_canary, canary_error_rate)))


def _controller(store, clock):
    return build_controller(store, ChangeAnnouncer(store), clock=clock, owner="leader")


def test_a_flood_of_healthy_looking_batches_does_not_advance_a_canary_with_six_times_the_errors(manual_clock):
    store, rng = MemoryStore(clock=manual_clock), random.Random(7)
    _flag(store, manual_clock)
    ctl = _controller(store, manual_clock)
    held_by_reporter = 0
    for _ in range(150):
        _honest_look(store, "checkout", rng, canary_error_rate=0.06)
        _send(store, "checkout", HOSTILE, *FLOOD)
        manual_clock.advance(2)
        [decision] = ctl.tick()
        assert decision.decision in ("hold", "rollback"), decision.reason  # never an advance
        if "one reporter drives this advance" in decision.reason:
            held_by_reporter += 1
            assert HOSTILE in decision.reason
        if decision.decision == "rollback":
            break
    flag = store.get("checkout")
    assert flag.percent in (10, 0) and flag.stage_index == 0
    assert held_by_reporter > 0, "the real judge never wanted to advance: the test did not test anything"
    verdict = store.load_judgement("checkout").verdict
    section = verdict["evidence"]["reporters"]
    assert section["reporters"] == 10 and section["top"][0]["reporter"] == HOSTILE
    assert section["top"][0]["share"] > 0.9 and section["driven_by"]["reporter"] == HOSTILE
    assert section["driven_by"]["without"] == "rollback"
    [driven, overdue] = HeldRolloutCollector(store).collect()
    assert [s.value for s in driven.samples] == [1.0] and [s.value for s in overdue.samples] == [0.0]


def test_a_few_canary_only_error_batches_from_one_reporter_do_not_roll_back_a_healthy_canary(manual_clock):
    store, rng = MemoryStore(clock=manual_clock), random.Random(3)
    _flag(store, manual_clock)
    ctl = _controller(store, manual_clock)
    decisions = []
    for look in range(60):
        _honest_look(store, "checkout", rng, canary_error_rate=0.01)
        if look in (3, 4, 5):
            _send(store, "checkout", HOSTILE, canary=(20, 20))
        manual_clock.advance(2)
        [decision] = ctl.tick()
        decisions.append(decision)
        assert decision.decision != "rollback", decision.reason
    held = [d for d in decisions if "one reporter drives this rollback" in d.reason]
    assert held, "the real judge never wanted to roll back: the test did not test anything"
    assert HOSTILE in held[0].reason and "canary errors" in held[0].reason
    assert store.get("checkout").state == State.ROLLING


def test_with_one_reporter_the_controller_acts_as_before_and_says_so(manual_clock):
    store, rng = MemoryStore(clock=manual_clock), random.Random(5)
    _flag(store, manual_clock)
    ctl = _controller(store, manual_clock)
    for _ in range(200):
        n_canary = _binomial(rng, 900, 0.1)
        _send(store, "checkout", HONEST[0], (900 - n_canary, _binomial(rng, 900 - n_canary, 0.01)),
              (n_canary, _binomial(rng, n_canary, 0.06)))
        manual_clock.advance(2)
        [decision] = ctl.tick()
        if decision.decision == "rollback":
            break
    assert store.get("checkout").state == State.ROLLED_BACK
    entry = store.history("checkout", 1)[0]
    assert entry.actor == "controller" and entry.action == "rollback"
    assert entry.evidence["reporters"]["note"] == "one reporter: influence not checked"
    assert entry.evidence["reporters"]["checked"] == []


def test_honest_reporters_still_get_a_real_regression_rolled_back(manual_clock):
    store, rng = MemoryStore(clock=manual_clock), random.Random(11)
    _flag(store, manual_clock)
    ctl = _controller(store, manual_clock)
    for _ in range(300):
        _honest_look(store, "checkout", rng, canary_error_rate=0.06)
        manual_clock.advance(2)
        [decision] = ctl.tick()
        if decision.decision == "rollback":
            break
    assert store.get("checkout").state == State.ROLLED_BACK
    section = store.history("checkout", 1)[0].evidence["reporters"]
    assert section["reporters"] == 9 and len(section["checked"]) == 3 and section["driven_by"] is None
    # a shadow without one honest reporter may not have got there yet: their outcomes agree, so the rollback stands
    assert section["note"].endswith("it stands") or section["note"].startswith("the rollback stands with each")


def test_influence_ranks_by_the_largest_share_and_leaves_one_out():
    by_reporter = {
        "big-volume-01": {"stable": ReporterTotals(9_000, 90), "canary": ReporterTotals(1_000, 10)},
        "few-errors-02": {"canary": ReporterTotals(10, 9)},
        "ordinary--03": {"stable": ReporterTotals(900, 9), "canary": ReporterTotals(100, 1)},
    }
    found = influence(by_reporter)
    assert [r.reporter for r in found.ranked] == ["big-volume-01", "few-errors-02", "ordinary--03"]
    assert found.ranked[1].of == "canary errors" and round(found.ranked[1].influence, 2) == 0.45
    summary = found.summary(n=2)
    assert summary["reporters"] == 3 and [r["reporter"] for r in summary["top"]] == ["big-volume-01",
                                                                                       "few-errors-02"]
    assert summary["others"] == {"reporters": 1, "requests": 1_000, "share_of_requests": round(1000 / 11010, 4)}
    stable = ArmTotals(9_900, 99, 99)
    canary = ArmTotals(1_110, 20, 18)
    stable.latency.add(100.0, 9_900)
    canary.latency.add(100.0, 1_110)
    left_stable, left_canary = without(stable, canary, found.ranked[1])
    assert (left_canary.count, left_canary.errors, left_canary.error_users) == (1_100, 11, 10)
    assert left_canary.latency.count == 1_100  # latencies scaled by the requests left: shape kept, volume gone
    assert (left_stable.count, left_stable.errors, left_stable.latency.count) == (9_900, 99, 9_900)
    assert at_least(left_canary, ArmTotals(1_000, 5, 5)).count == 1_100  # never backwards between looks


def test_once_the_flooder_is_excluded_ingestion_drops_it_and_the_canary_is_rolled_back(manual_clock):
    store, rng = MemoryStore(clock=manual_clock), random.Random(7)
    _flag(store, manual_clock)
    ctl = _controller(store, manual_clock)
    ingestion = OutcomeIngestion(store, store, store, clock=manual_clock)
    commands = FlagCommands(store, ChangeAnnouncer(store), manual_clock)

    def flood():
        (n_stable, e_stable), (n_canary, e_canary) = FLOOD
        arms = {"stable": {"count": n_stable, "errors": e_stable, "error_users": e_stable},
                "canary": {"count": n_canary, "errors": e_canary, "error_users": e_canary}}
        body = envelope({"checkout": {"revision": store.get("checkout").revision, "arms": arms}},
                        f"flood-{next(_batches):08d}", reporter=HOSTILE,
                        window=(manual_clock() - 2, manual_clock()))
        return ingestion.add_batch(body)

    for _ in range(40):
        _honest_look(store, "checkout", rng, canary_error_rate=0.06)
        assert flood()["accepted"] == 1
        manual_clock.advance(2)
        ctl.tick()
    assert "one reporter drives this advance" in store.load_judgement("checkout").verdict["reason"]
    commands.exclude_reporter("checkout", HOSTILE, actor="ops", reason="floods healthy-looking outcomes")
    for _ in range(100):
        _honest_look(store, "checkout", rng, canary_error_rate=0.06)
        assert flood()["excluded"] == 1
        manual_clock.advance(2)
        if [d.decision for d in ctl.tick()] == ["rollback"]:
            break
    assert store.get("checkout").state == State.ROLLED_BACK
    actions = [(e.actor, e.action, e.reason[:30]) for e in store.history("checkout", 2)]
    assert actions[1] == ("ops", "update", "floods healthy-looking outcome")
    assert actions[0][:2] == ("controller", "rollback")


def test_a_reporter_disagrees_only_beyond_chance():
    honest = influence({"a-reporter-1": {"stable": ReporterTotals(900, 9), "canary": ReporterTotals(100, 2)},
                        "b-reporter-2": {"stable": ReporterTotals(900, 10), "canary": ReporterTotals(100, 1)}})
    stable, canary = ArmTotals(1_800, 19), ArmTotals(200, 3)
    assert all(disagreement(share, stable, canary) is None for share in honest.ranked)
    framed = influence({"a-reporter-1": {"stable": ReporterTotals(900, 9), "canary": ReporterTotals(100, 1)},
                        "framer-00002": {"canary": ReporterTotals(20, 20)}})
    [framer] = [share for share in framed.ranked if share.reporter == "framer-00002"]
    odd = disagreement(framer, ArmTotals(900, 9), ArmTotals(120, 21))
    assert framer.of == "canary errors" and odd is not None
    assert odd.what in ("canary error rate", "canary share of requests") and odd.statistic >= 23.93

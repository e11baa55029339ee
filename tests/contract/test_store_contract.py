"""One behaviour for every store: memory, fakeredis, and real Redis (twice, in two namespaces)."""

from __future__ import annotations

import threading

import pytest

from flagsvc.domain import flag as flags
from flagsvc.domain.errors import FlagExists, FlagNotFound, RevisionConflict
from flagsvc.store.base import HISTORY_CAP, OutcomeEntry, Store


def new(key="new_checkout", **settings):
    return flags.new_flag(key, settings, now=1.0, actor="ops")


def test_implements_the_protocol(any_store):
    assert isinstance(any_store, Store)


def test_create_get_list(any_store):
    flag, entry = new()
    any_store.create(flag, entry)
    other, other_entry = new("alpha")
    any_store.create(other, other_entry)
    assert any_store.get("new_checkout") == flag
    assert any_store.get("missing") is None
    assert [f.key for f in any_store.list_flags()] == ["alpha", "new_checkout"]
    with pytest.raises(FlagExists):
        any_store.create(flag, entry)


def test_replace_is_compare_and_set(any_store):
    flag, entry = new()
    any_store.create(flag, entry)
    started, start_entry = flags.start(flag, now=2, actor="ops")
    any_store.replace(started, start_entry, expected_revision=1)
    assert any_store.get(flag.key) == started
    paused, pause_entry = flags.pause(started, now=3, actor="ops")
    stale, stale_entry = flags.rollback(flag, now=3, actor="controller")  # built from revision 1
    with pytest.raises(RevisionConflict):
        any_store.replace(stale, stale_entry, expected_revision=1)
    any_store.replace(paused, pause_entry, expected_revision=2)
    assert any_store.get(flag.key).state == "paused"
    # the refused change left no trace in the history
    assert [e.action for e in any_store.history(flag.key)] == ["pause", "start", "create"]


def test_replace_missing_flag(any_store):
    flag, _ = new()
    started, entry = flags.start(flag, now=2, actor="ops")
    with pytest.raises(FlagNotFound):
        any_store.replace(started, entry, expected_revision=1)


def test_history_newest_first_limited_and_capped(any_store):
    flag, entry = new()
    any_store.create(flag, entry)
    for percent in range(HISTORY_CAP + 5):
        changed, change = flags.set_percent(flag, percent % 100, now=2, actor="ops")
        any_store.replace(changed, change, expected_revision=flag.revision)
        flag = changed
    assert [e.revision for e in any_store.history(flag.key, limit=3)] == [flag.revision - i for i in range(3)]
    assert len(any_store.history(flag.key, limit=5000)) == HISTORY_CAP


def test_delete(any_store):
    flag, entry = new()
    any_store.create(flag, entry)
    assert any_store.delete(flag.key) is True
    assert any_store.get(flag.key) is None and any_store.history(flag.key) == []
    assert any_store.list_flags() == []
    assert any_store.delete(flag.key) is False
    any_store.create(flag, entry)  # the key is free again
    assert any_store.get(flag.key) == flag


def test_config_version_grows(any_store):
    first = any_store.config_version()
    bumped = any_store.bump_config_version()
    assert bumped.epoch == first.epoch and bumped.version == first.version + 1
    assert any_store.config_version() == bumped
    assert bumped.etag == f'"{bumped.epoch}-{bumped.version}"'


def test_ping(any_store):
    assert any_store.ping() is True


def test_concurrent_compare_and_set_loses_no_update(any_store):
    """16 threads each try to bump one flag 8 times with read-modify-CAS; every success is in the history."""
    flag, entry = new()
    any_store.create(flag, entry)
    applied = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        done = 0
        while done < 8:
            current = any_store.get(flag.key)
            changed, change = flags.set_percent(current, (n * 8 + done) % 100, now=3, actor=f"w{n}")
            try:
                any_store.replace(changed, change, expected_revision=current.revision)
            except RevisionConflict:
                continue
            done += 1
            with lock:
                applied.append(changed.revision)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(applied) == list(range(2, 2 + 16 * 8))
    assert any_store.get(flag.key).revision == 1 + 16 * 8
    assert len(any_store.history(flag.key, limit=1000)) == 1 + 16 * 8


def add_one(store: Store, key: str, revision: int, batch_id: str, increments: dict[str, int]) -> str:
    return store.add_outcomes(batch_id, {key: OutcomeEntry(revision, increments)})[key]


def test_outcomes_add_up_once_per_batch_for_the_current_revision(any_store):
    flag, entry = new()
    any_store.create(flag, entry)
    increments = {"stable:count": 90, "stable:errors": 2, "stable:error_users": 1, "canary:count": 10,
                  "canary:lat:233": 4, "canary:lat:240": 6}
    assert add_one(any_store, flag.key, 1, "batch-0001", increments) == "accepted"
    assert add_one(any_store, flag.key, 1, "batch-0001", increments) == "duplicate"
    assert add_one(any_store, flag.key, 1, "batch-0002", {"canary:count": 5, "canary:errors": 1}) == "accepted"
    assert add_one(any_store, flag.key, 7, "batch-0003", increments) == "stale"
    assert add_one(any_store, "ghost", 1, "batch-0004", increments) == "unknown"
    totals = any_store.outcome_totals(flag.key, 1)
    assert (totals["stable"].count, totals["stable"].errors, totals["stable"].error_users) == (90, 2, 1)
    assert (totals["canary"].count, totals["canary"].errors) == (15, 1)
    assert totals["canary"].latency.buckets == {233: 4, 240: 6}
    assert any_store.ingest_counts(flag.key) == {"accepted": 2, "duplicate": 1, "stale": 1}

    started, start_entry = flags.start(flag, now=2, actor="ops")  # a new revision starts from nothing
    any_store.replace(started, start_entry, expected_revision=1)
    assert any_store.outcome_totals(flag.key, 2)["canary"].count == 0
    assert add_one(any_store, flag.key, 1, "batch-0005", increments) == "stale"
    assert add_one(any_store, flag.key, 2, "batch-0006", {"canary:count": 3}) == "accepted"
    assert any_store.outcome_totals(flag.key, 2)["canary"].count == 3
    assert any_store.outcome_totals(flag.key, 2)["stable"].count == 0

    any_store.delete(flag.key)
    any_store.create(flag, entry)  # a new flag of the same name inherits nothing
    assert any_store.outcome_totals(flag.key, 1)["stable"].count == 0


def test_one_batch_many_flags_each_on_its_own(any_store):
    for key in ("a", "b"):
        flag, entry = new(key)
        any_store.create(flag, entry)
    batch = {"a": OutcomeEntry(1, {"canary:count": 4}), "b": OutcomeEntry(9, {"canary:count": 5}),
             "ghost": OutcomeEntry(1, {"canary:count": 6})}
    assert any_store.add_outcomes("batch-0001", batch) == {"a": "accepted", "b": "stale", "ghost": "unknown"}
    # the same batch again, with one more flag: only what was not added before is added
    flag, entry = new("c")
    any_store.create(flag, entry)
    again = {**batch, "c": OutcomeEntry(1, {"stable:count": 7})}
    assert any_store.add_outcomes("batch-0001", again) == {"a": "duplicate", "b": "stale", "ghost": "unknown",
                                                           "c": "accepted"}
    assert any_store.outcome_totals("a", 1)["canary"].count == 4
    assert any_store.outcome_totals("c", 1)["stable"].count == 7
    assert any_store.ingest_counts("a") == {"accepted": 1, "duplicate": 1, "stale": 0}
    assert any_store.ingest_counts("b") == {"accepted": 0, "duplicate": 0, "stale": 2}
    assert any_store.add_outcomes("batch-0002", {}) == {}


def test_lease_has_one_holder_and_a_growing_fencing_token(any_store):
    first = any_store.acquire_lease("a", ttl_seconds=30)
    assert first is not None
    assert any_store.acquire_lease("b", ttl_seconds=30) is None
    assert any_store.acquire_lease("a", ttl_seconds=30) == first  # renewal keeps the token
    any_store.release_lease("b")  # not b's to release
    assert any_store.acquire_lease("b", ttl_seconds=30) is None
    any_store.release_lease("a")
    second = any_store.acquire_lease("b", ttl_seconds=30)
    assert second is not None and second > first


def test_lease_expires(any_store):
    import time

    assert any_store.acquire_lease("a", ttl_seconds=0.05) is not None
    time.sleep(0.12)
    assert any_store.acquire_lease("b", ttl_seconds=30) is not None


def test_a_fenced_out_leader_cannot_write(any_store):
    from flagsvc.domain.errors import LeadershipLost

    flag, entry = new()
    any_store.create(flag, entry)
    started, start_entry = flags.start(flag, now=2, actor="ops")
    any_store.replace(started, start_entry, expected_revision=1)
    assert any_store.raise_fence(flag.key, 7)
    advanced, advance_entry = flags.advance(started, now=3, actor="controller", reason="ok")
    with pytest.raises(LeadershipLost):
        any_store.replace(advanced, advance_entry, expected_revision=2, fence=6)
    any_store.replace(advanced, advance_entry, expected_revision=2, fence=7)
    assert any_store.get(flag.key).revision == 3
    assert not any_store.raise_fence(flag.key, 5)
    paused, pause_entry = flags.pause(advanced, now=4, actor="ops")
    any_store.replace(paused, pause_entry, expected_revision=3)  # operators are never fenced


def test_judgement_round_trip(any_store):
    flag, entry = new()
    any_store.create(flag, entry)
    assert any_store.load_judgement(flag.key) is None
    any_store.save_judgement(flag.key, {"revision": 1, "state": {"s": 0.5}, "verdict": {"decision": "hold"}})
    assert any_store.load_judgement(flag.key)["state"] == {"s": 0.5}
    any_store.delete(flag.key)
    assert any_store.load_judgement(flag.key) is None

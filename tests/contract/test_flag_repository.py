"""The FlagRepository role, on every store: flags and their history, changed only by compare-and-set."""

from __future__ import annotations

import threading

import pytest

from flagsvc.domain import flag as flags
from flagsvc.domain.errors import FlagExists, FlagNotFound, RevisionConflict
from flagsvc.store.roles import HISTORY_CAP, FlagRepository
from tests.support.flags import new


def test_every_store_plays_the_role(any_store):
    assert isinstance(any_store, FlagRepository)


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


@pytest.mark.slow  # a thousand writes per store
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


@pytest.mark.slow  # 16 threads racing on each store
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


def test_a_write_with_an_idempotency_key_is_remembered_with_it(any_store):
    from flagsvc.store.roles import AlreadyApplied, Idempotency

    flag, entry = new()
    any_store.create(flag, entry, idempotency=Idempotency("k-create", "fp-create", "created"))
    with pytest.raises(AlreadyApplied) as again:  # the same key again: nothing done, the first answer back
        any_store.create(flag, entry, idempotency=Idempotency("k-create", "other", "x"))
    assert (again.value.fingerprint, again.value.answer) == ("fp-create", "created")
    started, start_entry = flags.start(flag, now=2, actor="ops")
    any_store.replace(started, start_entry, expected_revision=1, idempotency=Idempotency("k-start", "fp", "ok"))
    with pytest.raises(AlreadyApplied):
        any_store.replace(started, start_entry, expected_revision=1, idempotency=Idempotency("k-start", "fp", "ok"))
    assert any_store.get(flag.key).revision == 2 and len(any_store.history(flag.key)) == 2
    found = any_store.idempotent_answer(flag.key, "k-start")
    assert (found.fingerprint, found.answer) == ("fp", "ok")
    assert any_store.idempotent_answer(flag.key, "never-used") is None
    # a refused write remembers nothing
    stale, stale_entry = flags.set_percent(flag, 5, now=3, actor="ops")  # built from revision 1
    with pytest.raises(RevisionConflict):
        any_store.replace(stale, stale_entry, expected_revision=1, idempotency=Idempotency("k-stale", "fp", "x"))
    assert any_store.idempotent_answer(flag.key, "k-stale") is None


def test_a_delete_can_expect_a_revision_and_its_key_outlives_the_flag(any_store):
    from flagsvc.store.roles import AlreadyApplied, Idempotency

    flag, entry = new()
    any_store.create(flag, entry)
    with pytest.raises(RevisionConflict):
        any_store.delete(flag.key, expected_revision=5)
    assert any_store.get(flag.key) == flag  # nothing removed
    assert any_store.delete(flag.key, expected_revision=1, idempotency=Idempotency("k-del", "fp-del")) is True
    with pytest.raises(AlreadyApplied) as again:
        any_store.delete(flag.key, idempotency=Idempotency("k-del", "fp-del"))
    assert again.value.fingerprint == "fp-del" and again.value.answer == ""
    assert any_store.delete(flag.key) is False

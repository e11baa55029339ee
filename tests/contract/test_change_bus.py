"""The ChangeBus role and StoreHealth, on every store: a growing config version, announced to listeners."""

from __future__ import annotations

import threading

from flagsvc.store.roles import ChangeBus, StoreHealth


def test_every_store_plays_the_role(any_store):
    assert isinstance(any_store, ChangeBus)


def test_config_version_grows(any_store):
    first = any_store.config_version()
    bumped = any_store.bump_config_version()
    assert bumped.epoch == first.epoch and bumped.version == first.version + 1
    assert any_store.config_version() == bumped
    assert bumped.etag == f'"{bumped.epoch}-{bumped.version}"'


def test_ping(any_store):
    assert any_store.ping() is True


def test_every_store_reports_its_health(any_store):
    assert isinstance(any_store, StoreHealth)
    assert all(issubclass(error, Exception) for error in any_store.outage_errors)


def test_listeners_hear_of_every_announced_change(any_store):
    heard = threading.Semaphore(0)
    stop = threading.Event()
    listener = threading.Thread(target=any_store.listen_changes, args=(heard.release, stop), daemon=True)
    listener.start()
    try:
        assert heard.acquire(timeout=5)  # once subscribed: whatever happened before counts as a change
        for _ in range(3):
            any_store.bump_config_version()
            assert heard.acquire(timeout=5)
    finally:
        stop.set()
        any_store.bump_config_version()  # wakes the listener now rather than at its next poll
        listener.join(5)
    assert not listener.is_alive()  # stop ends the listening


def test_restarting_the_epoch_is_a_compare_and_set_and_announced(any_store):
    first = any_store.config_version()
    restarted = any_store.restart_epoch(first.epoch)
    assert restarted.epoch != first.epoch and any_store.config_version() == restarted
    again = any_store.restart_epoch(first.epoch)  # someone restarted it already: it stays theirs
    assert again.epoch == restarted.epoch and again.version == restarted.version + 1

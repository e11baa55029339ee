"""The change feed: one snapshot rebuild per change, served from memory to every stream and poll."""

from __future__ import annotations

import threading

from flagsvc.service.announce import ChangeAnnouncer
from flagsvc.service.change_feed import ChangeFeed
from flagsvc.service.commands import FlagCommands
from flagsvc.service.snapshots import SnapshotSource
from flagsvc.store.memory import MemoryStore
from tests.support import wait_for


class CountingSource(SnapshotSource):
    def __init__(self, store) -> None:
        super().__init__(store, store)
        self.rebuilds = 0
        self.reads = 0

    def current(self):
        self.reads += 1
        return super().current()


def test_a_change_is_read_once_per_process_and_fanned_out_from_memory():
    store = MemoryStore()
    source = CountingSource(store)
    feed = ChangeFeed(store.listen_changes, source)
    commands = FlagCommands(store, ChangeAnnouncer(store, feed.changed_here))
    feed.ensure_started()
    try:
        first = feed.latest()
        assert wait_for(lambda: feed._healthy and feed.generation > 0, timeout=2)  # subscribed
        reads_before = source.reads
        seen = [feed.generation] * 50
        versions = []

        def stream(i: int) -> None:
            feed.wait(seen[i], timeout=2)
            versions.append(feed.latest().version.version)

        threads = [threading.Thread(target=stream, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        commands.create("new_checkout", {}, actor="ops")
        for t in threads:
            t.join(3)
        assert len(versions) == 50 and min(versions) > first.version.version
        assert source.reads - reads_before <= 3  # the local refresh and the announcement, not one per stream
        assert b"new_checkout" in feed.latest().body  # read-your-writes in this process
    finally:
        feed.close()


def test_without_a_subscription_readers_fall_back_to_the_store():
    store = MemoryStore()
    feed = ChangeFeed(store.listen_changes, SnapshotSource(store, store, max_age=0.0), max_age=0.0)  # not started
    FlagCommands(store, ChangeAnnouncer(store)).create("a", {}, actor="ops")
    assert b'"a"' in feed.latest().body

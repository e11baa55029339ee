"""Fan-out of config changes to the streams of one server process.

Changes are announced through the store (Redis pub/sub across processes and replicas); one listener thread per
process rebuilds the snapshot once and wakes every waiting stream, which sends it from memory. A missed
announcement is healed by the snapshot's maximum age; a duplicated one costs an in-memory comparison.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from flagsvc.service.snapshots import ServedSnapshot, SnapshotSource

log = logging.getLogger("flagsvc.changes")

UNSUBSCRIBED_MAX_AGE = 0.1
Listen = Callable[[Callable[[], None], threading.Event], None]


class ChangeFeed:
    def __init__(self, listen: Listen, snapshots: SnapshotSource, *, retry_seconds: float = 1.0,
                 max_age: float = 1.0) -> None:
        """`listen(on_change, stop)` blocks, calling on_change for every announced change, until stop is set.

        The feed also keeps this process's latest snapshot, rebuilt once per change by the feed thread, so a
        change fans out to every stream without each of them asking Redis (streams and polls read it from
        memory). When no change was heard for `max_age` seconds, or the subscription is down, the next reader
        rebuilds it (one reader at a time) from the store."""
        self._listen = listen
        self._snapshots = snapshots
        self._max_age = max_age
        # The snapshot and when it was built, as one reference: a reader never pairs one with the other's time.
        self._kept: tuple[ServedSnapshot, float] | None = None
        self._healthy = False
        self._refresh_lock = threading.Lock()
        self._retry = retry_seconds
        self._cond = threading.Condition()
        self._generation = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    @property
    def generation(self) -> int:
        return self._generation

    def ensure_started(self) -> None:
        # Started lazily, in the process that serves (a forked gunicorn worker gets its own thread).
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        with self._cond:
            if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="flagsvc-change-feed", daemon=True)
            self._thread.start()

    def latest(self) -> ServedSnapshot:
        """The current snapshot: from memory while the subscription is up and fresh, else from the store."""
        snapshot = self.latest_in_memory()
        if snapshot is not None:
            return snapshot
        with self._refresh_lock:  # one reader rebuilds; the others waiting here take its result
            snapshot = self.latest_in_memory()  # rebuilt by the reader we waited for?
            return snapshot if snapshot is not None else self._refresh()

    def latest_in_memory(self) -> ServedSnapshot | None:
        """The current snapshot if memory holds a fresh one, else None; never touches the store."""
        kept = self._kept
        if kept is not None and time.monotonic() - kept[1] < self._limit():
            return kept[0]
        return None

    def _limit(self) -> float:
        # Without a live subscription, changes from other processes go unheard: keep the snapshot only briefly.
        return self._max_age if self._healthy else min(self._max_age, UNSUBSCRIBED_MAX_AGE)

    def _refresh(self) -> ServedSnapshot:
        snapshot = self._snapshots.current()
        self._kept = (snapshot, time.monotonic())
        return snapshot

    def changed_here(self) -> None:
        """A change made by this process: rebuild now, so this process reads its own writes at once (other
        processes hear of it through the store's announcement)."""
        if self._kept is not None:
            self._on_change(mark_healthy=False)

    def _on_change(self, mark_healthy: bool = True) -> None:
        try:
            with self._refresh_lock:
                self._refresh()
            if mark_healthy:  # only now: a longer max age must not apply to the snapshot from before the change
                self._healthy = True
        except Exception as e:  # the store is unreachable right now: readers fall back to it themselves
            log.warning("change feed could not rebuild the snapshot: %s", e)
            self._healthy = False
        self.notify()

    def notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Block until the generation moves past `seen`, the feed closes, or `timeout`; return the generation."""
        with self._cond:
            self._cond.wait_for(lambda: self._generation != seen or self._stop.is_set(), timeout)
            return self._generation

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen(self._on_change, self._stop)
            except Exception as e:  # the store is down: streams keep their last snapshot; retry
                if self._stop.is_set():
                    return  # closed while its Redis went away (a shutdown): nothing was lost
                was_healthy, self._healthy = self._healthy, False
                log.warning("change feed lost its subscription (%s); retrying in %.0fs", e, self._retry)
                if was_healthy:
                    self.notify()  # streams re-check now (and again once we are back), not on every retry
                time.sleep(self._retry)

"""Fan-out of config changes to the streams of one server process.

Changes are announced through the store (Redis pub/sub across processes and replicas); one listener thread per
process wakes every waiting stream. Streams then read the snapshot themselves, so a missed or duplicated
wake-up costs nothing but a cheap version check.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger("flagsvc.changes")

Listen = Callable[[Callable[[], None], threading.Event], None]


class ChangeFeed:
    def __init__(self, listen: Listen, *, retry_seconds: float = 1.0) -> None:
        """`listen(on_change, stop)` blocks, calling on_change for every announced change, until stop is set."""
        self._listen = listen
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
                self._listen(self.notify, self._stop)
            except Exception as e:  # the store is down: streams keep their last snapshot; retry
                log.warning("change feed lost its subscription (%s); retrying in %.0fs", e, self._retry)
                self.notify()  # streams re-check now, and again once we are back
                time.sleep(self._retry)

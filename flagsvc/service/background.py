"""The server process's background work: the rollout controller loop, the change feed streams wait on, and
periodic work (the dataset watcher, the on-disk export, webhook deliveries: `Periodic`).

Started after a worker process is forked (threads do not survive a fork) and stopped on shutdown: stopping
releases the controller's leadership at once, so another replica takes over without waiting for the lease to
expire, and closes the change feed, so open streams end and their SDKs reconnect elsewhere.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flagsvc.service.change_feed import ChangeFeed
from flagsvc.service.controller import RolloutController

log = logging.getLogger("flagsvc.background")


@dataclass(frozen=True)
class Periodic:
    """A step run at start and then every `interval` seconds on its own thread; a failing step is logged."""

    name: str
    step: Callable[[], object]
    interval: float

    def run(self, stop: threading.Event) -> None:
        while True:
            try:
                self.step()
            except Exception as e:  # Redis down, disk full: try again next time
                log.warning("%s failed: %s", self.name, e)
            if stop.wait(self.interval):
                return


class BackgroundWork:
    def __init__(self, controller: RolloutController[Any] | None, changes: ChangeFeed,
                 periodic: Sequence[Periodic] = (), stop: threading.Event | None = None) -> None:
        """`stop` is set on shutdown: a periodic step that can take long (webhook deliveries) watches it too."""
        self.controller = controller
        self.changes = changes
        self.periodic = tuple(periodic)
        self._stop = stop or threading.Event()
        self._thread: threading.Thread | None = None
        self._upkeep: list[threading.Thread] = []

    def start(self) -> None:
        self.changes.ensure_started()
        if self.controller is not None and self._thread is None:
            self._thread = threading.Thread(target=self.controller.run, args=(self._stop,),
                                            name="flagsvc-controller", daemon=True)
            self._thread.start()
        if not self._upkeep:
            self._upkeep = [threading.Thread(target=p.run, args=(self._stop,), name=f"flagsvc-{p.name}",
                                             daemon=True) for p in self.periodic]
            for thread in self._upkeep:
                thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.changes.close()
        for thread in self._upkeep:
            thread.join(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        elif self.controller is not None:
            self.controller.release()

"""The server process's background work: the rollout controller loop, and the change feed streams wait on.

Started after a worker process is forked (threads do not survive a fork) and stopped on shutdown: stopping
releases the controller's leadership at once, so another replica takes over without waiting for the lease to
expire, and closes the change feed, so open streams end and their SDKs reconnect elsewhere.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from flagsvc.service.change_feed import ChangeFeed
from flagsvc.service.controller import RolloutController

log = logging.getLogger("flagsvc.background")


class BackgroundWork:
    def __init__(self, controller: RolloutController[Any] | None, changes: ChangeFeed) -> None:
        self.controller = controller
        self.changes = changes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.changes.ensure_started()
        if self.controller is not None and self._thread is None:
            self._thread = threading.Thread(target=self.controller.run, args=(self._stop,),
                                            name="flagsvc-controller", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.changes.close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        elif self.controller is not None:
            self.controller.release()

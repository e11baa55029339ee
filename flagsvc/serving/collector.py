"""The worker's garbage-collection policy: its open streams are kept out of the collector's full collections.

CPython's cyclic collector walks every tracked object of a generation when it collects it, and a full
collection (generation 2) walks every object that has lived a while: in a worker holding thousands of SDK
streams, mostly the streams' own (a transport, its socket, a `Stream`: about 12 tracked objects each). A full
collection comes after enough objects have grown old (CPython 3.11: when those promoted since the last one
exceed a quarter of the old generation), and a flood of slow clients makes many objects old; each full collection
then stops the event loop, every request and stream of the worker with it, for as long as the walk takes (about
60 ms for 5,000 streams on an idle core, several times that on busy shared cores).

The policy: what the worker holds once it has started is frozen (`gc.freeze`: moved to a generation the collector
never walks), and so is every wave of new streams once it has settled: when at least `wave` streams have been
attached since the last freeze and none for `settle_seconds`, one full collection (of everything, the frozen
objects included, so that nothing that died frozen is kept) and a new freeze. A fleet connecting or reconnecting
costs one full collection at its end, and from then on the collector's walks are over what is new: requests,
slow clients, the streams opened since. The cost of freezing: an object that dies frozen in a reference cycle (a
closed stream's transport is one) is reclaimed only at the next such collection; a wave is at most `wave`
streams' turnover, so what waits is bounded by it.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger("flagsvc.serving")


class CollectorPolicy:
    def __init__(self, *, wave: int = 500, settle_seconds: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._wave = wave
        self._settle = settle_seconds
        self._clock = clock
        self._attached_at_freeze = 0
        self._last_attached = 0
        self._last_change = clock()
        self.refreezes = 0

    def start(self) -> None:
        """The worker has started: what it holds now (the app, its modules, its background work) is kept for
        the process's life."""
        gc.freeze()

    def tick(self, attached: int) -> None:
        """Called every fraction of a second with the number of streams attached so far (a running total)."""
        now = self._clock()
        if attached != self._last_attached:
            self._last_attached, self._last_change = attached, now
            return
        if attached - self._attached_at_freeze >= self._wave and now - self._last_change >= self._settle:
            self.refreeze()
            self._attached_at_freeze = attached

    def refreeze(self) -> None:
        started = time.perf_counter()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        self.refreezes += 1
        log.info("streams settled: full collection (%d unreachable) in %.0f ms, %d objects frozen",
                 collected, 1000 * (time.perf_counter() - started), gc.get_freeze_count())

"""Outcome reporting end to end: the window the hot path adds to, the delivery queue, and when to cut and send.

`step()` is the outcomes thread's loop body (cut the window every `flush_interval`, or early when a bound is
reached; send what is due). `flush()` does the same on the caller's thread, waiting for the acknowledgements.
"""

from __future__ import annotations

import threading
import time

from flagsvc_client._batches import build_batches
from flagsvc_client._delivery import OutcomeDelivery
from flagsvc_client._outcomes import OutcomeWindow

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from flagsvc_client._log import LogOnce
    from flagsvc_client._transport import Transport
    from flagsvc_client.settings import ClientSettings


def _new_reporter_id() -> str:
    import uuid  # off the import path

    return uuid.uuid4().hex


class OutcomeReporter:
    def __init__(
        self,
        settings: ClientSettings,
        transport: Transport,
        clock: Callable[[], float],
        random: Callable[[], float],
        log: LogOnce,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._s = settings
        self._clock = clock
        self._log = log
        self.wake = threading.Event()  # set to make the outcomes thread look now
        # Held from taking the window's tallies to queueing them: a flush() arriving meanwhile waits, so the
        # batches it must see sent are queued before it picks its target.
        self._cut_lock = threading.Lock()
        self.window = OutcomeWindow(settings.max_arms, settings.max_error_users, self._request_early_flush)
        self.delivery = OutcomeDelivery(settings, transport, clock, random, log)
        self._early = False
        self._next_cut = clock() + settings.flush_interval
        # Who reports, and since when (wall clock: the server checks a window against its own time). A new
        # reporter after a fork, since the reporter is built anew in the child.
        self._wall_clock = wall_clock
        self.reporter_id = _new_reporter_id()
        self._window_start = wall_clock()

    def _request_early_flush(self) -> None:
        self._early = True
        self.wake.set()

    def step(self) -> float:
        """Cut the window when due (or asked early), then send what is due; returns the seconds to wait."""
        if self._early or self._clock() >= self._next_cut:
            self._early = False
            self._next_cut = self._clock() + self._s.flush_interval
            self.cut()
        with self.delivery.send_lock:
            retry_in = self.delivery.send_due()
        until_cut = self._next_cut - self._clock()
        return max(0.0, until_cut if retry_in is None else min(until_cut, retry_in))

    def cut(self) -> bool:
        """Move the window's tallies into queued batches; False (and nothing cut) while the queue is full."""
        if not self.delivery.has_room():
            self._log.warning("queue_full", "outcome queue full (server unreachable?): aggregating meanwhile")
            return False
        with self._cut_lock:
            tallies = self.window.cut()
            start, end = self._window_start, max(self._wall_clock(), self._window_start)
            self._window_start = end
            if tallies:
                s = self._s
                self.delivery.enqueue(build_batches(tallies, s.max_flags_per_batch, s.max_buckets_per_arm),
                                      self.reporter_id, (start, end))
        return True

    def flush(self, timeout: float) -> bool:
        """Send everything recorded so far; True once all of it is acknowledged. `timeout` is real seconds:
        it bounds how long the caller is kept waiting (the injected clock drives ages and intervals)."""
        deadline = time.monotonic() + max(0.0, timeout)
        delivery = self.delivery
        drops = delivery.drops
        cut = self.cut()
        target = delivery.last_seq
        force = True  # the first attempt ignores the backoff: the caller asked for it now
        while True:
            retry_in = None
            if delivery.send_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                try:
                    retry_in = delivery.send_due(force=force)
                    if not cut and delivery.has_room():  # the queue drained: cut what waited, send it now
                        cut = self.cut()
                        target = delivery.last_seq
                        retry_in = delivery.send_due()
                finally:
                    delivery.send_lock.release()
                force = False
            if cut and not delivery.pending_through(target):
                return delivery.drops == drops
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(remaining if retry_in is None else min(retry_in, remaining))

    @property
    def stats(self) -> dict[str, int]:
        return {
            "outcomes_dropped_arm_limit": self.window.dropped,
            "batches_pending": len(self.delivery),
            **self.delivery.stats,
        }

"""Outcome batches on their way to the server: queued, sent oldest first, retried until acknowledged.

A batch keeps its `batch_id` and its exact body across retries, so a retry of a batch the server applied but
whose answer was lost is recognised there and not counted twice. Retried: no answer, 408, 429, 5xx. Dropped and
counted: any other 4xx (a retry would fail the same way), or older than `max_batch_age`. The queue is bounded in
bytes; while it is full, outcomes keep aggregating in the (itself bounded) window instead of being cut.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from flagsvc_client._backoff import Backoff
from flagsvc_client._log import LogOnce
from flagsvc_client._transport import TransportError, auth_headers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from flagsvc_client._transport import Transport
    from flagsvc_client.protocol.shapes import BatchWindow, FlagOutcome, OutcomeBatch
    from flagsvc_client.settings import ClientSettings

OUTCOMES_PATH = "/sdk/v1/outcomes"


class PendingBatch:
    __slots__ = ("attempts", "batch_id", "body", "created", "outcomes", "seq")

    def __init__(self, seq: int, batch_id: str, body: bytes, outcomes: int, created: float) -> None:
        self.seq = seq
        self.batch_id = batch_id
        self.body = body
        self.outcomes = outcomes
        self.created = created
        self.attempts = 0


def _new_batch_id() -> str:
    import uuid  # off the import path: only the flushing thread needs it

    return uuid.uuid4().hex


def _count(flags: dict[str, FlagOutcome]) -> int:
    return sum(arm["count"] for entry in flags.values() for arm in entry["arms"].values())


class OutcomeDelivery:
    def __init__(
        self,
        settings: ClientSettings,
        transport: Transport | None,
        clock: Callable[[], float],
        random: Callable[[], float],
        log: LogOnce,
        new_batch_id: Callable[[], str] = _new_batch_id,
    ) -> None:
        self._s = settings
        self._transport = transport
        self._clock = clock
        self._log = log
        self._new_batch_id = new_batch_id
        self._backoff = Backoff(settings.backoff_initial, settings.backoff_max, random)
        self._headers = {**auth_headers(settings.sdk_key), "Content-Type": "application/json"}
        self._lock = threading.Lock()  # guards the queue; held only for O(1) work
        self.send_lock = threading.Lock()  # one sender at a time (the flusher thread or a flush() caller)
        self._queue: deque[PendingBatch] = deque()
        self._bytes = 0
        self._seq = 0
        self._retry_at = 0.0
        self.stats = dict.fromkeys(
            ("batches_sent", "batches_acknowledged", "batches_retried", "batches_expired",
             "batches_rejected", "outcomes_acknowledged", "outcomes_expired", "outcomes_rejected"),
            0,
        )  # fmt: skip

    # -- queue ---------------------------------------------------------------------------------------------

    def has_room(self) -> bool:
        return self._bytes < self._s.max_pending_bytes

    def enqueue(self, flags_maps: list[dict[str, FlagOutcome]], reporter: str, window: tuple[float, float]) -> int:
        """Queue wire `flags` maps as batches from `reporter` covering the wall-clock `window` (start, end);
        returns the sequence number of the last one queued."""
        import json  # off the import path: only the flushing side needs it

        now = self._clock()
        span: BatchWindow = {"start": round(window[0], 3), "end": round(window[1], 3)}
        with self._lock:
            for flags in flags_maps:
                batch_id = self._new_batch_id()
                batch: OutcomeBatch = {"batch_id": batch_id, "reporter": reporter, "window": span, "flags": flags}
                body = json.dumps(batch, separators=(",", ":")).encode()
                self._seq += 1
                self._queue.append(PendingBatch(self._seq, batch_id, body, _count(flags), now))
                self._bytes += len(body)
            return self._seq

    @property
    def last_seq(self) -> int:
        return self._seq

    def pending_through(self, seq: int) -> bool:
        """Is any batch numbered `seq` or lower still waiting?"""
        with self._lock:
            return bool(self._queue) and self._queue[0].seq <= seq

    def __len__(self) -> int:
        return len(self._queue)

    def pending_outcomes(self) -> int:
        """Outcomes in batches not acknowledged yet."""
        with self._lock:
            return sum(batch.outcomes for batch in self._queue)

    @property
    def drops(self) -> int:
        return self.stats["batches_expired"] + self.stats["batches_rejected"]

    # -- sending -------------------------------------------------------------------------------------------

    def send_due(self, force: bool = False) -> float | None:
        """Send queued batches, oldest first, until one fails or none is left.

        Returns seconds until a retry is due, or None when the queue is empty. `force` ignores the backoff
        (flush() asked for an attempt now). Callers hold `send_lock`.
        """
        while True:
            now = self._clock()
            self._expire(now)
            with self._lock:
                if not self._queue:
                    return None
                batch = self._queue[0]
            if not force and now < self._retry_at:
                return self._retry_at - now
            force = False  # after one failure in this pass, wait like everyone else
            delay = self._send(batch, now)
            if delay is not None:
                self._retry_at = now + delay
                return delay

    def _send(self, batch: PendingBatch, now: float) -> float | None:
        """One attempt; returns None when the batch left the queue, else the retry delay."""
        assert self._transport is not None
        batch.attempts += 1
        self.stats["batches_sent"] += 1
        if batch.attempts > 1:
            self.stats["batches_retried"] += 1
        try:
            response = self._transport.request(
                "POST", OUTCOMES_PATH, self._headers, batch.body, self._s.request_timeout
            )
        except TransportError as exc:
            self._log.warning("outcomes_unreachable", "cannot send outcomes (will retry): %s", exc)
            return self._backoff.next()
        status = response.status
        if 200 <= status < 300:
            self._remove(batch, "batches_acknowledged", "outcomes_acknowledged")
            self._backoff.reset()
            self._retry_at = 0.0
            self._log.clear("outcomes_unreachable")
            self._log.clear("outcomes_server_error")
            return None
        if status in (408, 429) or status >= 500 or status < 200 or 300 <= status < 400:
            self._log.warning("outcomes_server_error", "outcome batch answered %s (will retry)", status)
            delay = self._backoff.next()
            retry_after = response.headers.get("retry-after", "")
            if retry_after.isascii() and retry_after.isdigit():
                delay = max(delay, min(float(retry_after), self._s.backoff_max))
            return delay
        self._log.warning(
            f"outcomes_rejected_{status}",
            "outcome batch rejected with %s, dropped: %s",
            status,
            response.body[:200],
        )
        self._remove(batch, "batches_rejected", "outcomes_rejected")
        return None

    def _expire(self, now: float) -> None:
        with self._lock:
            expired = [b for b in self._queue if now - b.created > self._s.max_batch_age]
        for batch in expired:
            self._log.warning("outcomes_expired", "dropped outcome batches older than %ss", self._s.max_batch_age)
            self._remove(batch, "batches_expired", "outcomes_expired")

    def _remove(self, batch: PendingBatch, batches_stat: str, outcomes_stat: str) -> None:
        with self._lock:
            try:
                self._queue.remove(batch)
            except ValueError:
                return
            self._bytes -= len(batch.body)
        self.stats[batches_stat] += 1
        self.stats[outcomes_stat] += batch.outcomes

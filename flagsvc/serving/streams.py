"""SDK streams (`GET /sdk/v1/stream`, Server-Sent Events) as coroutines: an open stream costs a few kilobytes of
memory, not a thread.

One relay task per process follows the change feed (`ChangeFeed`, a thread-side object: it waits on it in a
thread) and, on every change, or every second to heal a lost announcement, takes the current snapshot once and
wakes every stream, which writes it from memory. Admission counts streams per process and per SDK key; past
either cap the answer is 429 with `Retry-After`, which the SDK backs off on.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable

from flagsvc import metrics
from flagsvc.api.auth import Principal
from flagsvc.service.change_feed import ChangeFeed
from flagsvc.service.snapshots import ServedSnapshot
from flagsvc.serving.limits import ServingLimits

log = logging.getLogger("flagsvc.serving")

STREAM_PATH = "/sdk/v1/stream"
STREAM_HEADERS = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no")]
HEARTBEAT = b": heartbeat\n\n"
RELAY_SECONDS = 1.0  # the relay re-reads the snapshot at least this often

Write = Callable[[bytes], Awaitable[None]]


def event(snapshot: ServedSnapshot) -> bytes:
    return b"event: snapshot\nid: %s\ndata: %s\n\n" % (snapshot.etag.strip('"').encode(), snapshot.body)


def chunk(data: bytes) -> bytes:
    """`data` as one chunk of HTTP/1.1 chunked transfer coding: framed once per snapshot, written to every stream
    as is (a stream's response head and last chunk go through h11; its body chunks are these bytes)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


HEARTBEAT_CHUNK = chunk(HEARTBEAT)


class StreamHub:
    """Every stream of the process waits on one shared future, resolved when the snapshot changes, at each
    heartbeat tick, or at close: a wake-up costs one callback per stream, and no stream keeps a timer of its
    own."""

    def __init__(self, changes: ChangeFeed, limits: ServingLimits) -> None:
        self._changes = changes
        self._limits = limits
        self._snapshot: ServedSnapshot | None = None
        self._framed = b""  # the current snapshot's event, chunk-framed
        self._wake: asyncio.Future[None] | None = None
        self.by_key: Counter[str] = Counter()
        self.open = 0
        self.closing = False

    # -- admission -------------------------------------------------------------------------------------------

    def admit(self, principal: Principal) -> str | None:
        """None when `principal` may open one more stream (and it is counted), else why not."""
        if self.closing:
            return "the server is shutting down"
        if self.open >= self._limits.max_streams:
            return f"this server process holds its maximum of {self._limits.max_streams} streams"
        if self.by_key[principal.name] >= self._limits.max_streams_per_key:
            return (f"SDK key {principal.name!r} holds its maximum of {self._limits.max_streams_per_key} streams "
                    "on this server process")
        self.open += 1
        self.by_key[principal.name] += 1
        metrics.STREAMS.inc()
        return None

    def release(self, principal: Principal) -> None:
        self.open -= 1
        self.by_key[principal.name] -= 1
        if self.by_key[principal.name] <= 0:
            del self.by_key[principal.name]
        metrics.STREAMS.dec()

    def retry_after(self) -> int:
        """Seconds for a refused SDK to wait, spread so a refused fleet does not come back at once."""
        return random.randint(5, 15)

    # -- the relay -------------------------------------------------------------------------------------------

    def _set(self, snapshot: ServedSnapshot) -> None:
        self._snapshot, self._framed = snapshot, chunk(event(snapshot))

    async def current(self) -> ServedSnapshot:
        snapshot = self._snapshot
        if snapshot is None:
            snapshot = await asyncio.to_thread(self._changes.latest)
            if self._snapshot is None:
                self._set(snapshot)
        return snapshot

    def _wake_all(self) -> None:
        wake, self._wake = self._wake, None
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _next_wake(self) -> asyncio.Future[None]:
        if self._wake is None:
            self._wake = asyncio.get_running_loop().create_future()
        return self._wake

    async def relay(self) -> None:
        """Follow the change feed until closed, and tick the heartbeat; never raises (a store outage keeps the
        last snapshot)."""
        generation = self._changes.generation
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self._limits.heartbeat
        while not self.closing:
            try:
                generation = await asyncio.to_thread(self._changes.wait, generation, RELAY_SECONDS)
                if self.closing:
                    return
                latest = await asyncio.to_thread(self._changes.latest)
            except Exception as e:  # the store is unreachable: streams stay open on their last snapshot
                log.debug("stream relay could not read the snapshot: %s", e)
                latest = None
                await asyncio.sleep(RELAY_SECONDS)
            if latest is not None and (self._snapshot is None or latest.etag != self._snapshot.etag):
                self._set(latest)
                self._wake_all()
            elif loop.time() >= next_tick:
                self._wake_all()  # streams with nothing new send a heartbeat
            if loop.time() >= next_tick:
                next_tick = loop.time() + self._limits.heartbeat

    async def close(self) -> None:
        """End every stream (SDKs reconnect, to another replica if this one is going away)."""
        self.closing = True
        self._wake_all()

    # -- one stream ------------------------------------------------------------------------------------------

    async def serve(self, write: Write) -> None:
        """Write the snapshot now and after every change, a heartbeat at each quiet tick, until the hub closes or
        the client goes away (`write` raises). `write` takes chunk-framed bytes."""
        sent = await self.current()
        await write(chunk(event(sent)))
        while not self.closing:
            await asyncio.shield(self._next_wake())  # shared: one stream's cancellation must not cancel it
            if self.closing:
                return
            current = self._snapshot
            if current is not None and current.etag != sent.etag:
                sent = current
                await write(self._framed)
            else:
                await write(HEARTBEAT_CHUNK)

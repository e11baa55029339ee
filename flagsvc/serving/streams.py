"""SDK streams (`GET /sdk/v1/stream`, Server-Sent Events) written by the event loop: once its response head is
out, an open stream is its socket and one small protocol object (`Stream`), with no task, coroutine, timer or
future of its own.

One relay task per process follows the change feed (`ChangeFeed`, a thread-side object: it waits on it in a
thread) and, on every change, or every second to heal a lost announcement, takes the current snapshot once,
frames it once, and writes those same bytes to every stream's transport in turn; a quiet tick writes a heartbeat
the same way. A stream ends when its client hangs up (the transport's `connection_lost`), when its client stops
reading for `write_timeout` (the transport's flow control), or when the hub closes. Admission counts streams per
process and per SDK key; past either cap the answer is 429 with `Retry-After`, which the SDK backs off on.

Why no coroutine per stream: a worker holds thousands of streams, and every object a stream keeps alive is one
more for each full garbage collection to walk (docs/serving.md, "Garbage collection"). A stream that is its
transport and `Stream` keeps a few objects; one waiting in a coroutine kept about ninety.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter

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
WRITE_BUFFER_LIMIT = 256 * 1024  # a stream's unsent bytes past which its client counts as not reading
FAN_OUT_SLICE = 0.05  # seconds of writing streams between two turns of the event loop (requests interleave)
LAST_CHUNK = b"0\r\n\r\n"  # the chunked coding's end: the stream is over, the SDK reconnects


def event(snapshot: ServedSnapshot) -> bytes:
    return b"event: snapshot\nid: %s\ndata: %s\n\n" % (snapshot.etag.strip('"').encode(), snapshot.body)


def chunk(data: bytes) -> bytes:
    """`data` as one chunk of HTTP/1.1 chunked transfer coding: framed once per snapshot, written to every stream
    as is (a stream's response head goes through h11; its body chunks are these bytes)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


HEARTBEAT_CHUNK = chunk(HEARTBEAT)


class Stream(asyncio.Protocol):
    """One open stream, as its transport's protocol once the response head is out. The client has nothing more
    to say: what it sends is dropped, and its hanging up ends the stream at once."""

    __slots__ = ("_hub", "_stalled", "principal", "sent", "transport")

    def __init__(self, hub: StreamHub, principal: Principal, transport: asyncio.WriteTransport) -> None:
        self._hub = hub
        self.principal = principal
        self.transport = transport
        self.sent = b""  # the framed snapshot last written (compared by identity: the hub frames each one once)
        self._stalled: asyncio.TimerHandle | None = None  # while the client does not read: its drop

    def send(self, framed: bytes) -> None:
        """Write the hub's current snapshot if this stream has not had it; a stalled stream gets it when its
        client reads again."""
        if self._stalled is None and framed is not self.sent and not self.transport.is_closing():
            self.sent = framed
            self.transport.write(framed)

    def beat(self) -> None:
        if self._stalled is None and not self.transport.is_closing():
            self.transport.write(HEARTBEAT_CHUNK)

    def end(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(LAST_CHUNK)
            self.transport.close()  # after the buffer is sent

    # -- asyncio.Protocol -----------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the transport closes, and connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        self._hub.drop(self)

    def pause_writing(self) -> None:  # WRITE_BUFFER_LIMIT bytes unsent: the client is not reading
        loop = asyncio.get_running_loop()
        self._stalled = loop.call_later(self._hub.limits.write_timeout, self.transport.abort)

    def resume_writing(self) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        self.send(self._hub.framed)  # the snapshots it missed while stalled, in one: the latest


class StreamHub:
    """The process's open streams, and the one relay that writes to them."""

    def __init__(self, changes: ChangeFeed, limits: ServingLimits) -> None:
        self._changes = changes
        self.limits = limits
        self._snapshot: ServedSnapshot | None = None
        self.framed = b""  # the current snapshot's event, chunk-framed
        self._streams: set[Stream] = set()
        self.by_key: Counter[str] = Counter()
        self.open = 0
        self.attached = 0  # streams taken over so far, a running total (the collector policy's clock of waves)
        self.closing = False

    # -- admission -------------------------------------------------------------------------------------------

    def admit(self, principal: Principal) -> str | None:
        """None when `principal` may open one more stream (and it is counted), else why not."""
        if self.closing:
            return "the server is shutting down"
        if self.open >= self.limits.max_streams:
            return f"this server process holds its maximum of {self.limits.max_streams} streams"
        if self.by_key[principal.name] >= self.limits.max_streams_per_key:
            return (f"SDK key {principal.name!r} holds its maximum of {self.limits.max_streams_per_key} streams "
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

    # -- streams ---------------------------------------------------------------------------------------------

    def attach(self, transport: asyncio.Transport, principal: Principal) -> None:
        """Take over an admitted stream whose response head is written: from here the hub writes to it, and its
        transport's events end it. Its first event, the current snapshot, is written now (`current` must have
        been awaited)."""
        if transport.is_closing() or self.closing:  # gone already (its connection_lost went to the reader)
            if not transport.is_closing():
                transport.write(LAST_CHUNK)
                transport.close()
            self.release(principal)
            return
        stream = Stream(self, principal, transport)
        transport.set_protocol(stream)
        transport.set_write_buffer_limits(high=WRITE_BUFFER_LIMIT)
        transport.resume_reading()  # so that its hanging up is seen (a no-op when reading)
        self._streams.add(stream)
        self.attached += 1
        stream.send(self.framed)

    def drop(self, stream: Stream) -> None:
        if stream in self._streams:
            self._streams.remove(stream)
            self.release(stream.principal)

    async def current(self) -> ServedSnapshot:
        snapshot = self._snapshot
        if snapshot is None:
            snapshot = await asyncio.to_thread(self._changes.latest)
            if self._snapshot is None:
                self._set(snapshot)
        return snapshot

    def _set(self, snapshot: ServedSnapshot) -> None:
        self._snapshot, self.framed = snapshot, chunk(event(snapshot))

    async def _fan_out(self, heartbeat: bool) -> None:
        """The current snapshot (or a heartbeat) to every stream, in slices of FAN_OUT_SLICE seconds with a turn
        of the event loop between them. A stream that opens meanwhile got the current snapshot when attached.

        Slices by time, not by a count of streams: a turn of a loop busy with a flood of slow clients can take
        tens of milliseconds, and a fan-out that gave way every few hundred streams waited for twenty of them."""
        streams = list(self._streams)
        framed = self.framed
        clock = asyncio.get_running_loop().time
        deadline = clock() + FAN_OUT_SLICE
        for i, stream in enumerate(streams):
            if heartbeat:
                stream.beat()
            else:
                stream.send(framed)
            if i % 64 == 63 and clock() >= deadline:
                await asyncio.sleep(0)
                deadline = clock() + FAN_OUT_SLICE

    # -- the relay -------------------------------------------------------------------------------------------

    async def relay(self) -> None:
        """Follow the change feed until closed, and tick the heartbeat; never raises (a store outage keeps the
        last snapshot)."""
        generation = self._changes.generation
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self.limits.heartbeat
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
            if self.closing:
                return
            if latest is not None and (self._snapshot is None or latest.etag != self._snapshot.etag):
                self._set(latest)
                await self._fan_out(heartbeat=False)
            elif loop.time() >= next_tick:
                await self._fan_out(heartbeat=True)  # streams with nothing new send a heartbeat
            if loop.time() >= next_tick:
                next_tick = loop.time() + self.limits.heartbeat

    async def close(self) -> None:
        """End every stream with the chunked coding's last chunk (SDKs reconnect, to another replica if this one
        is going away); `open` reaches 0 as their transports finish writing."""
        self.closing = True
        for stream in list(self._streams):
            stream.end()

    def abort(self) -> None:
        """Cut the streams still open (their clients did not take their last chunk in time)."""
        for stream in list(self._streams):
            stream.transport.abort()

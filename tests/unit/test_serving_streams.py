"""SDK streams on the asyncio server, in-process with a change feed driven by hand: the first event, a change
written once to each stream, heartbeats, a client that hangs up or stops reading losing its place, the end at
shutdown. Also the worker's collector policy (when it freezes) and the liveness answer the server gives itself."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from flagsvc.api.auth import TokenRegistry
from flagsvc.serving import responses, worker
from flagsvc.serving.http import HttpServer
from flagsvc.serving.limits import ServingLimits
from flagsvc.serving.streams import HEARTBEAT_CHUNK, LAST_CHUNK, StreamHub, chunk, event
from flagsvc.serving.worker import CollectorPolicy
from tests.support import wait_for

KEY = "sdk-key-1"


@dataclass(frozen=True)
class Snapshot:
    etag: str
    body: bytes


class Feed:
    """The part of ChangeFeed the hub uses; `publish` is a change."""

    def __init__(self) -> None:
        self.snapshot = Snapshot('"e-1"', b'{"version": 1}')
        self.generation = 1
        self._cond = threading.Condition()

    def latest(self) -> Snapshot:
        return self.snapshot

    def wait(self, seen: int, timeout: float) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self.generation != seen, timeout)
            return self.generation

    def publish(self, body: bytes) -> Snapshot:
        with self._cond:
            self.generation += 1
            self.snapshot = Snapshot(f'"e-{self.generation}"', body)
            self._cond.notify_all()
        return self.snapshot


def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "0")])
    return []


class Running:
    def __init__(self, limits: ServingLimits) -> None:
        self.feed = Feed()
        self.hub = StreamHub(self.feed, limits)  # type: ignore[arg-type]
        self.http = HttpServer(app, TokenRegistry({}, {"web": KEY}), limits, max_body_bytes=1024, hub=self.hub,
                               answers_health=True)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.listener = self.call(self.http.listen(host="127.0.0.1", port=0))
        self.port = self.listener.sockets[0].getsockname()[1]

        async def start_relay() -> asyncio.Task[None]:
            return asyncio.create_task(self.hub.relay())

        self.relay = self.call(start_relay())

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def stream(self, **sockopts: int) -> socket.socket:
        conn = socket.socket()
        for opt, value in sockopts.items():
            conn.setsockopt(socket.SOL_SOCKET, getattr(socket, opt), value)
        conn.settimeout(5)
        conn.connect(("127.0.0.1", self.port))
        conn.sendall(f"GET /sdk/v1/stream HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {KEY}\r\n\r\n".encode())
        return conn

    def stop(self) -> None:
        async def stop() -> None:
            self.listener.close()
            await self.http.shut_down(grace=2.0)
            self.relay.cancel()

        self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def running() -> Iterator[Running]:
    server = Running(ServingLimits(write_timeout=0.5, heartbeat=3600))
    yield server
    server.stop()


def read_all(conn: socket.socket) -> bytes:
    """Until the server closes."""
    received = b""
    while data := conn.recv(65536):
        received += data
    return received


class Received:
    """What a connection has received, read as far as asked."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn, self.data = conn, b""

    def through(self, marker: bytes) -> bytes:
        """Everything up to and including `marker`, reading as needed."""
        while marker not in self.data:
            data = self.conn.recv(65536)
            assert data, f"closed before {marker[:40]!r}: {self.data[-200:]!r}"
            self.data += data
        upto = self.data.index(marker) + len(marker)
        taken, self.data = self.data[:upto], self.data[upto:]
        return taken


def test_a_stream_gets_the_snapshot_then_each_change_once_then_its_end(running):
    first = chunk(event(running.feed.snapshot))  # type: ignore[arg-type]
    conn = running.stream()
    received = Received(conn)
    head = received.through(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"transfer-encoding: chunked" in head.lower()
    assert received.through(first) == first
    assert running.hub.open == 1 and running.hub.by_key == {"web": 1}

    changed = chunk(event(running.feed.publish(b'{"version": 2}')))  # type: ignore[arg-type]
    assert received.through(changed) == changed
    running.call(running.hub._fan_out(heartbeat=True))  # a quiet tick
    assert received.through(HEARTBEAT_CHUNK) == HEARTBEAT_CHUNK

    running.call(running.http.shut_down(grace=2.0))
    assert received.data + read_all(conn) == LAST_CHUNK  # the chunked coding's end, nothing in between, then closed
    assert running.hub.open == 0
    conn.close()


def test_a_client_that_hangs_up_leaves_at_once(running):
    conns = [running.stream() for _ in range(3)]
    for conn in conns:
        Received(conn).through(b"\n\n\r\n")
    assert running.hub.open == 3
    conns[0].close()
    assert wait_for(lambda: running.hub.open == 2), running.hub.open
    for conn in conns[1:]:
        conn.close()
    assert wait_for(lambda: running.hub.open == 0 and not running.hub.by_key), running.hub.by_key


def test_a_client_that_stops_reading_is_dropped_at_the_write_timeout_and_the_rest_go_on(running):
    reader = running.stream()
    stalled = running.stream(SO_RCVBUF=4096)
    received = Received(reader)
    received.through(b"\n\n\r\n")
    assert wait_for(lambda: running.hub.open == 2)
    big = b'{"pad": "' + b"x" * (1 << 20) + b'"}'
    for _ in range(4):  # more than the kernel's buffers and the stream's own limit hold unread
        changed = chunk(event(running.feed.publish(big)))  # type: ignore[arg-type]
        assert received.through(changed).endswith(changed)
    assert wait_for(lambda: running.hub.open == 1, 10), running.hub.open  # the stalled one, cut
    assert running.hub.by_key == {"web": 1}
    reader.close()
    stalled.close()


def test_streams_past_the_per_key_cap_are_refused_with_retry_after():
    server = Running(ServingLimits(max_streams_per_key=1, heartbeat=3600))
    try:
        held = server.stream()
        Received(held).through(b"\n\n\r\n")
        refused = server.stream()
        answer = read_all(refused)
        assert answer.startswith(b"HTTP/1.1 429") and b"retry-after:" in answer.lower()
        assert server.hub.open == 1
        held.close()
        refused.close()
    finally:
        server.stop()


def test_healthz_is_answered_by_the_server_as_the_flask_view_answers(running, client):
    flask = client.get("/healthz")
    head, body = responses.health()
    assert flask.status_code == 200 and flask.get_data() == body
    assert flask.headers["Content-Type"] == dict(head)["Content-Type"]
    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nHEAD /healthz HTTP/1.1\r\nHost: t\r\n"
                     b"Connection: close\r\n\r\n")
        raw = read_all(conn)
    assert raw.count(b"HTTP/1.1 200 OK\r\n") == 2
    get, _, head_answer = raw.partition(body)
    assert get.endswith(b"\r\n\r\n") and b"content-length: 16" in get.lower()
    assert head_answer.endswith(b"\r\n\r\n") and body not in head_answer


# --- the collector policy -------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def gc_calls(monkeypatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(worker.gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(worker.gc, "unfreeze", lambda: calls.append("unfreeze"))
    monkeypatch.setattr(worker.gc, "collect", lambda *a: calls.append("collect") or 0)
    monkeypatch.setattr(worker.gc, "get_freeze_count", lambda: 0)
    return calls


def test_a_settled_wave_of_streams_is_collected_once_then_frozen(gc_calls):
    clock = Clock()
    policy = CollectorPolicy(wave=100, settle_seconds=2.0, clock=clock)
    policy.start()
    assert gc_calls == ["freeze"]
    for attached in (40, 90, 150):  # a fleet connecting
        clock.now += 0.2
        policy.tick(attached)
    clock.now += 1.0
    policy.tick(150)  # quiet, but not yet for settle_seconds
    assert policy.refreezes == 0
    clock.now += 1.5
    policy.tick(150)
    assert gc_calls == ["freeze", "unfreeze", "collect", "freeze"]
    clock.now += 60
    policy.tick(150)
    policy.tick(199)  # fewer than a wave since the freeze: nothing more
    clock.now += 60
    policy.tick(199)
    assert policy.refreezes == 1
    policy.tick(260)
    clock.now += 2.0
    policy.tick(260)
    assert policy.refreezes == 2


def test_an_open_stream_keeps_few_objects_for_the_collector(running):
    """What the worker's collection policy relies on (docs/serving.md, "Garbage collection"): an open stream is its
    transport and a `Stream`, with no task, coroutine or future of its own; each object a stream keeps is one more
    for every full collection to walk. About 12 per stream; when a stream was a coroutine, about 90."""
    import gc

    conns = [running.stream() for _ in range(100)]
    for conn in conns:
        Received(conn).through(b"\n\n\r\n")
    assert wait_for(lambda: running.hub.open == 100)
    gc.collect()
    with_streams = len(gc.get_objects())
    for conn in conns:
        conn.close()
    assert wait_for(lambda: running.hub.open == 0)
    gc.collect()
    per_stream = (with_streams - len(gc.get_objects())) / 100
    assert per_stream < 25, per_stream

#!/usr/bin/env python3
"""Fleet benchmark: ten thousand SDK streams on one `flagsvc serve` (2 workers, embedded Redis), a change's
propagation to all of them, the server's memory, and operators' latency while slow clients attack.

    .venv/bin/python bench/fleet.py [--streams 10000] [--changes 10] [--slow 1000] [--workers 2] [--quick]

One asyncio process is the whole fleet: N raw SSE connections (one SDK key, as a fleet shares one), each an
asyncio protocol that scans its stream for the `id: <epoch>-<version>` of every event as the bytes arrive. For
each change (`PUT /api/v1/flags/fleet/percent`) the clock starts just before the request is sent and stops, per
stream, when that stream reads an event of the new version; a stream that has not after 10 s counts as missed.

Then the attack, with the streams still open: `--slow` clients without a token that declare a 100 kB body and
trickle it a byte every 3 s (from 127.0.0.2), and `--slow` clients that trickle their headers a line every 3 s
(from 127.0.0.3); each reconnects a second after the server hangs up on it. The attack aims at the SDK
listener; operators use a listener of their own (`flagsvc serve --operator-port`, served by a worker of its
own; with `--one-listener`, they share the SDK listener instead, and the attack reaches their workers). The
attackers run in a process of their own (as they would on machines of their own), so that the fleet's event
loop only reads its streams and its delays are the server's, not the attackers' bookkeeping. Meanwhile, from
127.0.0.1, an operator's `GET /api/v1/flags/fleet` and `GET /healthz`, each on a new connection, 200 times each
(from processes of their own, so that the fleet's busy event loop does not delay them), the SDK listener's
`/healthz` as often for comparison, and more changes to the fleet.

Targets: propagation p99 <= 1 s with none missed; the server's memory (master and workers) <= 1 GiB; during
the attack, admin GET p99 <= 100 ms and /healthz p99 <= 50 ms. The fleet and the server share the machine's
2 cores: figures include the fleet's own CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import re
import resource
import sys
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import BenchServer, pct

FLAG = "fleet"
PROPAGATION_P99_MS, MEMORY_MB, ADMIN_P99_MS, HEALTH_P99_MS = 1000.0, 1024.0, 100.0, 50.0
EVENT_ID = re.compile(rb"id: [0-9a-f]+-(\d+)")


class StreamReader(asyncio.Protocol):
    """One SDK stream of the fleet, read as the bytes arrive (a protocol, not a coroutine per stream: the fleet's
    own cost per event is a method call and a regular-expression scan, so its delays are mostly the server's)."""

    def __init__(self, fleet: Fleet, ready: asyncio.Future[None], request: bytes) -> None:
        self.fleet, self.ready, self.request = fleet, ready, request
        self.seen, self.tail, self.counted = 0, b"", None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        window = self.tail + data
        fleet = self.fleet
        for match in EVENT_ID.finditer(window):
            version = int(match.group(1))
            if version > self.seen:
                self.seen = version
                if not self.ready.done():
                    self.ready.set_result(None)
                    fleet.connected += 1
                target = fleet.waiting_for
                if target is not None and version >= target and self.counted != target:  # once a change
                    self.counted = target
                    fleet.arrivals.append((time.perf_counter() - fleet.started_at) * 1000)
        self.tail = window[-64:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fleet.ended += 1
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"a stream ended before its first event: {self.tail[-200:]!r}"))


class Fleet:
    """N streams; `arrivals` collects, for the version being waited for, each stream's delay in ms."""

    def __init__(self, port: int, key: str) -> None:
        self.port, self.key = port, key
        self.connected = 0
        self.ended = 0
        self.waiting_for: int | None = None
        self.started_at = 0.0
        self.arrivals: list[float] = []
        self.transports: list[asyncio.BaseTransport] = []

    async def open(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        request = f"GET /sdk/v1/stream HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer {self.key}\r\n\r\n".encode()
        for start in range(0, n, 200):  # in waves: the listen backlog need not hold them all at once
            wave = [loop.create_future() for _ in range(min(200, n - start))]
            for ready in wave:
                transport, _ = await loop.create_connection(
                    lambda ready=ready: StreamReader(self, ready, request), "127.0.0.1", self.port)
                self.transports.append(transport)
            await asyncio.gather(*wave)

    def close(self) -> None:
        for transport in self.transports:
            transport.close()

    async def change(self, srv: BenchServer, percent: float, timeout: float = 10.0) -> tuple[list[float], int]:
        """One change; (each stream's delay in ms, streams that missed it)."""
        current = await asyncio.to_thread(srv.admin, "GET", "/sdk/v1/flags")
        self.arrivals = []
        self.waiting_for = int(current["version"]) + 1  # type: ignore[index]
        self.started_at = time.perf_counter()
        await asyncio.to_thread(srv.admin, "PUT", f"/api/v1/flags/{FLAG}/percent", {"percent": percent})
        deadline = time.monotonic() + timeout
        while len(self.arrivals) < self.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        got = list(self.arrivals)
        self.waiting_for = None
        return got, self.connected - len(got)


async def trickle(port: int, source: str, head: bytes, piece: Callable[[int], bytes], stop: asyncio.Event) -> None:
    """A slow client from `source`: `head`, then `piece(i)` every 3 s, until the server hangs up; a second
    later, again."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            writer.write(head)
            sent = 0
            while not stop.is_set() and not reader.at_eof():
                writer.write(piece(sent))
                sent += 1
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader.read(65536), 3.0)
            writer.close()
        except OSError:
            pass
        await asyncio.sleep(1.0)


def slow_body(port: int, stop: asyncio.Event) -> Coroutine[Any, Any, None]:
    """No token, a 100 kB body declared, sent a byte at a time."""
    head = b"POST /api/v1/flags HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    return trickle(port, "127.0.0.2", head, lambda _: b"{", stop)


def slow_header(port: int, stop: asyncio.Event) -> Coroutine[Any, Any, None]:
    """Headers sent a line at a time."""
    return trickle(port, "127.0.0.3", b"GET /healthz HTTP/1.1\r\n", lambda i: b"X-Slow-%d: 1\r\n" % i, stop)


def attack_from_process(port: int, n: int, stop: Event) -> None:
    """n slow-body and n slow-header clients, until `stop` is set."""

    async def attack() -> None:
        done = asyncio.Event()
        attackers = [asyncio.create_task(slow_body(port, done)) for _ in range(n)]
        attackers += [asyncio.create_task(slow_header(port, done)) for _ in range(n)]
        await asyncio.to_thread(stop.wait)
        done.set()
        for task in attackers:
            task.cancel()
        await asyncio.gather(*attackers, return_exceptions=True)

    asyncio.run(attack())


async def timed_gets(port: int, path: str, headers: str, n: int) -> tuple[list[float], int]:
    """n GETs, each on a new connection; (ms each, failures)."""
    times, failures = [], 0
    for _ in range(n):
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: b\r\n{headers}Connection: close\r\n\r\n".encode())
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            if not answer.startswith(b"HTTP/1.1 200"):
                failures += 1
        except (OSError, TimeoutError):
            failures += 1
        times.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.02)
    return times, failures


def probe(port: int, path: str, headers: str, n: int) -> tuple[list[float], int]:
    return asyncio.run(timed_gets(port, path, headers, n))


def loop_lags(srv: BenchServer) -> str:
    """How often the workers' event loops ran their 0.2 s timer late, from the server's own histogram."""
    text = srv.session.get(srv.url + "/metrics", timeout=10).text
    buckets = {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^flagsvc_event_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M)}
    total = buckets.get("+Inf", 0.0)
    late = {edge: total - buckets[edge] for edge in ("0.1", "0.5", "1.0") if edge in buckets}
    return f"{total:.0f} ticks, " + ", ".join(f"{n:.0f} later than {edge} s" for edge, n in late.items())


def summary(name: str, ms: list[float], target: float | None, missed: int = 0) -> str:
    if not ms:
        return f"| {name} | - | - | - | {missed} | NOT met |"
    verdict = "" if target is None else ("met" if pct(ms, 99) <= target and not missed else "NOT met")
    return (f"| {name} | {pct(ms, 50):.1f} | {pct(ms, 99):.1f} | {max(ms):.1f} | {missed} | "
            f"{'' if target is None else f'<= {target:g} ms: {verdict}'} |")


async def run(srv: BenchServer, args: argparse.Namespace) -> None:
    srv.admin("POST", "/api/v1/flags", {"key": FLAG})
    fleet = Fleet(srv.port, srv.sdk_headers["Authorization"].split()[1])
    started = time.monotonic()
    await fleet.open(args.streams)
    opened_in = time.monotonic() - started
    await asyncio.sleep(2.0)  # settle before measuring memory
    memory = srv.rss_mb()
    print(f"{fleet.connected:,} streams open in {opened_in:.1f} s; server memory {memory:,.0f} MB "
          f"(master, workers and embedded redis)", flush=True)
    rows = []
    delays: list[float] = []
    missed = 0
    for i in range(args.changes):
        got, lost = await fleet.change(srv, [12.5, 37.5][i % 2])
        delays += got
        missed += lost
        print(f"  change {i + 1}: p50 {pct(got, 50):.0f} ms, p99 {pct(got, 99):.0f} ms, missed {lost}", flush=True)
    rows.append(summary(f"a change reaches {fleet.connected:,} streams ({args.changes} changes)", delays,
                        PROPAGATION_P99_MS, missed))

    stop = multiprocessing.get_context("spawn").Event()
    attack = multiprocessing.get_context("spawn").Process(target=attack_from_process, args=(srv.port, args.slow, stop))
    attack.start()
    await asyncio.sleep(5.0)  # let the attack build up
    admin_header = f"Authorization: {srv.admin_headers['Authorization']}\r\n"
    # The operator probes run in processes of their own: this process's event loop is busy being the fleet and
    # the attackers, and its delays are not the server's
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(3) as probes:
        (admin_ms, admin_failed), (health_ms, health_failed), (sdk_health_ms, sdk_health_failed) = await asyncio.gather(
            loop.run_in_executor(probes, probe, srv.operator_port, f"/api/v1/flags/{FLAG}", admin_header, args.probes),
            loop.run_in_executor(probes, probe, srv.operator_port, "/healthz", "", args.probes),
            loop.run_in_executor(probes, probe, srv.port, "/healthz", "", args.probes),
        )
    attacked_delays: list[float] = []
    attacked_missed = 0
    for i in range(3):
        got, lost = await fleet.change(srv, [62.5, 87.5][i % 2])
        attacked_delays += got
        attacked_missed += lost
    memory_attacked = srv.rss_mb()
    stop.set()
    await asyncio.to_thread(attack.join, 30)
    lags = loop_lags(srv)
    rows.append(summary(f"admin GET during the attack ({args.probes}, new connection each)", admin_ms,
                        ADMIN_P99_MS, admin_failed))
    rows.append(summary(f"/healthz during the attack ({args.probes}, new connection each)", health_ms,
                        HEALTH_P99_MS, health_failed))
    if srv.operator_port != srv.port:
        rows.append(summary(f"/healthz of the SDK listener during the attack ({args.probes}), for comparison",
                            sdk_health_ms, None, sdk_health_failed))
    rows.append(summary("a change reaches the streams during the attack (3 changes)", attacked_delays,
                        PROPAGATION_P99_MS, attacked_missed))
    mem_ok = max(memory, memory_attacked) <= MEMORY_MB
    print(f"\n{args.streams:,} streams, {args.workers} workers, {args.slow:,} slow-body + {args.slow:,} slow-header "
          f"clients in the attack")
    print("| measurement | p50 ms | p99 ms | max ms | missed / failed | target |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(row)
    print(f"| server memory with the streams open / during the attack | {memory:,.0f} MB | "
          f"{memory_attacked:,.0f} MB | | | <= {MEMORY_MB:,.0f} MB: {'met' if mem_ok else 'NOT met'} |")
    print(f"the workers' event loops, late timers over the whole run (flagsvc_event_loop_lag_seconds): {lags}")
    fleet.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=10_000)
    ap.add_argument("--changes", type=int, default=10)
    ap.add_argument("--slow", type=int, default=1000, help="slow-body clients, and as many slow-header ones")
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="1,000 streams, 3 changes, 100 slow clients")
    ap.add_argument("--one-listener", action="store_true",
                    help="operators share the SDK listener (no --operator-port): the attack reaches their workers")
    args = ap.parse_args()
    if args.quick:
        args.streams, args.changes, args.slow, args.probes = 1000, 3, 100, 50
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = args.streams + 2 * args.slow + 1000
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(needed, soft)), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < needed:
        sys.exit(f"fleet: need {needed} open files, the hard limit is {hard} (ulimit -Hn)")
    with BenchServer(workers=args.workers, threads=32, operator_listener=not args.one_listener) as srv:
        asyncio.run(run(srv, args))


if __name__ == "__main__":
    main()

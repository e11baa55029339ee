#!/usr/bin/env python3
"""Propagation benchmark: how long an operator's change takes to reach N streaming clients.

    .venv/bin/python bench/propagation.py [--quick] [--clients 1,50,200] [--raw 1,200,500,1000]
                                          [--changes 10] [--raw-workers 1,2] [--skip-sdk] [--skip-raw]

Part 1: N real `FlagClient`s (SSE stream) in this process against a real `flagsvc serve` (gunicorn with
flagsvc's asyncio worker, embedded Redis) in a subprocess. For each change (`PUT /api/v1/flags/prop/percent`,
alternating values) the clock starts just before the request is sent; a poller thread checks
`client.evaluate(flag, user).revision` of every client still waiting, sleeping 1 ms between passes, and stops
that client's clock when it shows the new revision. Target: p99 <= 250 ms for N = 200.

Part 2: N raw SSE connections (one thread each, http.client, reading lines) to one server; the clock
stops for a connection when it reads an event whose `id` carries a config version above the one before the
change. Target: 1,000 connections, p99 <= 1 s.

The client side shares the same 2 cores as the server: figures include the clients' own CPU time.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import BenchServer, pct

FLAG, USER = "prop", "user-1"
SDK_TARGET_MS, SDK_TARGET_N = 250.0, 200
RAW_TARGET_MS, RAW_TARGET_N = 1000.0, 1000
# redis-py's pool limit, raised inside the server's stream generators
POOL_ERROR = "redis.exceptions.MaxConnectionsError"


def fmt(ms: list[float]) -> str:
    if not ms:
        return "      -        -        -"
    return f"{pct(ms, 50):7.1f}  {pct(ms, 99):7.1f}  {max(ms):7.1f}"


def percents(i: int) -> float:
    return [12.5, 37.5][i % 2]


# -- part 1: real SDK clients -------------------------------------------------------------------------------

def sdk_round(srv: BenchServer, clients: list, i: int, timeout: float) -> tuple[list[float], float, int]:
    """One change; returns (per-client ms, the PUT's own ms, clients that never saw it)."""
    waiting = list(range(len(clients)))
    done: list[float] = []
    target = {"rev": None}
    t0 = time.perf_counter()
    body = srv.admin("PUT", f"/api/v1/flags/{FLAG}/percent", {"percent": percents(i)})
    put_ms = (time.perf_counter() - t0) * 1000
    target["rev"] = rev = body["revision"]
    deadline = t0 + timeout
    while waiting and time.perf_counter() < deadline:
        still = []
        for c in waiting:
            if clients[c].evaluate(FLAG, USER).revision == rev:
                done.append((time.perf_counter() - t0) * 1000)
            else:
                still.append(c)
        waiting = still
        if waiting:
            time.sleep(0.001)
    return done, put_ms, len(waiting)


def run_sdk(ns: list[int], changes: int, timeout: float, pool: int | None = None) -> list[dict]:
    from flagsvc_client import FlagClient

    rows = []
    with BenchServer(workers=1, threads=max(ns) + 64, redis_pool=pool) as srv:
        srv.admin("POST", "/api/v1/flags", {"key": FLAG, "stages": [5, 25, 100]})
        srv.admin("POST", f"/api/v1/flags/{FLAG}/start")
        for n in ns:
            clients = []
            pool_before = srv.log_count(POOL_ERROR)
            try:
                t_start = time.perf_counter()
                for _ in range(n):
                    clients.append(FlagClient(srv.url, sdk_key=srv.sdk_key, flush_interval=60))
                ready = sum(c.wait_until_ready(timeout=30) for c in clients)
                # a warm-up change every client must see: proves every stream is connected
                _, _, missed = sdk_round(srv, clients, 1, 30)
                setup_s = time.perf_counter() - t_start
                if ready < n or missed:
                    print(f"  N={n}: only {ready} ready, {missed} missed the warm-up change", flush=True)
                all_ms, puts, lost = [], [], 0
                for i in range(changes):
                    ms, put_ms, missed = sdk_round(srv, clients, i, timeout)
                    all_ms += ms
                    puts.append(put_ms)
                    lost += missed
                    time.sleep(0.2)
                row = {"n": n, "ms": all_ms, "put": statistics.median(puts), "lost": lost, "changes": changes,
                       "setup": setup_s, "pool_errors": srv.log_count(POOL_ERROR) - pool_before}
                rows.append(row)
                print(f"  SDK N={n:4d}: {changes} changes  p50/p99/max ms {fmt(all_ms)}  "
                      f"(PUT itself {row['put']:.1f} ms median; missed {lost}; connect {setup_s:.1f} s; "
                      f"server streams killed by {POOL_ERROR!r}: {row['pool_errors']})", flush=True)
            finally:
                for c in clients:
                    c.close(timeout=1)
    return rows


# -- part 2: raw SSE connections ----------------------------------------------------------------------------

class RawStream(threading.Thread):
    def __init__(self, port: int, key: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.key, self.stop = port, key, stop
        self.events: list[tuple[int, float]] = []  # (config version, perf_counter when read)
        self.connected = threading.Event()
        self.error: str | None = None
        self.conn: http.client.HTTPConnection | None = None

    def run(self) -> None:
        try:
            self.conn = conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            conn.request("GET", "/sdk/v1/stream", headers={"Authorization": f"Bearer {self.key}",
                                                           "Accept": "text/event-stream"})
            resp = conn.getresponse()
            if resp.status != 200:
                self.error = f"HTTP {resp.status}"
                return
            while not self.stop.is_set():
                line = resp.readline()
                if not line:
                    self.error = self.error or "stream ended"
                    return
                if line.startswith(b"id: "):
                    self.events.append((int(line[4:].strip().rsplit(b"-", 1)[1]), time.perf_counter()))
                    self.connected.set()
        except Exception as e:
            if not self.stop.is_set():
                self.error = repr(e)

    def seen_after(self, version: int) -> float | None:
        for v, t in self.events:
            if v > version:
                return t
        return None

    def close(self) -> None:
        if self.conn is not None and self.conn.sock is not None:
            with contextlib.suppress(OSError):
                self.conn.sock.shutdown(2)


def config_version(srv: BenchServer) -> int:
    r = srv.session.get(srv.url + "/sdk/v1/flags", headers=srv.sdk_headers, timeout=10)
    return int(r.headers["ETag"].strip('"').rsplit("-", 1)[1])


def run_raw(ns: list[int], changes: int, timeout: float, workers: int, pool: int | None = None) -> list[dict]:
    rows = []
    threading.stack_size(256 * 1024)
    with BenchServer(workers=workers, threads=max(ns) + 64, redis_pool=pool) as srv:
        srv.admin("POST", "/api/v1/flags", {"key": FLAG, "stages": [5, 25, 100]})
        srv.admin("POST", f"/api/v1/flags/{FLAG}/start")
        base_rss = srv.rss_mb()
        for n in ns:
            stop = threading.Event()
            streams = [RawStream(srv.port, srv.sdk_key, stop) for _ in range(n)]
            row = {"n": n, "workers": workers, "ms": [], "lost": 0, "put": None, "failed": None, "errors": 0}
            pool_before = srv.log_count(POOL_ERROR)
            try:
                t_start = time.perf_counter()
                for s in streams:
                    s.start()
                deadline = time.perf_counter() + 60
                for s in streams:
                    s.connected.wait(max(0.0, deadline - time.perf_counter()))
                connected = sum(s.connected.is_set() for s in streams)
                row["connect_s"] = time.perf_counter() - t_start
                row["connected"] = connected
                row["rss"] = srv.rss_mb() - base_rss
                if connected < n:
                    errs = {s.error for s in streams if s.error}
                    row["failed"] = f"only {connected}/{n} streams got their first event in 60 s ({errs or 'no error'})"
                    print(f"  raw N={n:4d} w={workers}: {row['failed']}", flush=True)
                    rows.append(row)
                    continue
                puts = []
                for i in range(changes):
                    try:
                        v0 = config_version(srv)
                        t0 = time.perf_counter()
                        srv.admin("PUT", f"/api/v1/flags/{FLAG}/percent", {"percent": percents(i)}, timeout=10)
                    except Exception as e:
                        row["failed"] = (f"a control request (GET /sdk/v1/flags or the PUT) was not served within 10 s "
                                         f"with {n} streams open ({type(e).__name__}); server log: "
                                         f"{srv.log_tail(1)[-160:]!r}")
                        print(f"  raw N={n:4d} w={workers}: {row['failed']}", flush=True)
                        break
                    puts.append((time.perf_counter() - t0) * 1000)
                    end = t0 + timeout
                    while time.perf_counter() < end and any(s.is_alive() and s.seen_after(v0) is None for s in streams):
                        time.sleep(0.01)
                    for s in streams:
                        t = s.seen_after(v0)
                        if t is None:
                            row["lost"] += 1
                        else:
                            row["ms"].append((t - t0) * 1000)
                    time.sleep(0.3)
                row["put"] = statistics.median(puts) if puts else None
                row["errors"] = sum(1 for s in streams if s.error)
                row["pool_errors"] = srv.log_count(POOL_ERROR) - pool_before
                if row["ms"]:
                    print(f"  raw N={n:4d} w={workers}: {len(puts)} changes  p50/p99/max ms {fmt(row['ms'])}  "
                          f"(PUT {row['put']:.1f} ms median; missed {row['lost']}; connect {row['connect_s']:.1f} s;"
                          f" server RSS +{row['rss']:.0f} MB; streams ended by the server {row['errors']}, "
                          f"{POOL_ERROR} in its log {row['pool_errors']})", flush=True)
                rows.append(row)
            finally:
                stop.set()
                for s in streams:
                    s.close()
                for s in streams:
                    s.join(2)
                time.sleep(0.5)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--clients", help="comma-separated N for the SDK part (default 1,50,200)")
    ap.add_argument("--raw", help="comma-separated N for raw SSE (default 1,200,500,1000)")
    ap.add_argument("--raw-workers", default="1,2", help="gunicorn workers for the raw part (default 1,2)")
    ap.add_argument("--changes", type=int, help="changes per N (default 10; quick 4)")
    ap.add_argument("--redis-pool", type=int, help="run against FLAGSVC_REDIS_URL=...?max_connections=N "
                    "(same embedded redis-server, started by the benchmark) instead of the default pool")
    ap.add_argument("--skip-sdk", action="store_true")
    ap.add_argument("--skip-raw", action="store_true")
    a = ap.parse_args()
    sdk_ns = [int(x) for x in (a.clients or ("1,50" if a.quick else "1,50,200")).split(",")]
    raw_ns = [int(x) for x in (a.raw or ("1,200" if a.quick else "1,200,500,1000")).split(",")]
    changes = a.changes or (4 if a.quick else 10)
    pool = f"redis pool max_connections={a.redis_pool}" if a.redis_pool else "default redis pool (embedded mode)"
    print(f"propagation: changes per N = {changes}; {pool}; 2 cores shared by server and clients", flush=True)
    sdk_rows, raw_rows = [], []
    if not a.skip_sdk:
        print("part 1: FlagClient (SSE) -- PUT percent -> evaluate().revision", flush=True)
        sdk_rows = run_sdk(sdk_ns, changes, timeout=10, pool=a.redis_pool)
    if not a.skip_raw:
        for w in [int(x) for x in a.raw_workers.split(",")]:
            print(f"part 2: raw SSE connections, --workers {w}", flush=True)
            raw_rows += run_raw(raw_ns, changes, timeout=10, workers=w, pool=a.redis_pool)

    print("\n| clients | kind | workers | changes | p50 ms | p99 ms | max ms | missed | streams dropped | target |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in sdk_rows:
        p99 = pct(r["ms"], 99) if r["ms"] else float("inf")
        tgt = (f"p99 <= {SDK_TARGET_MS:.0f} ms: {'met' if p99 <= SDK_TARGET_MS and not r['lost'] else 'NOT met'}"
               if r["n"] == SDK_TARGET_N else "")
        p = [f"{pct(r['ms'], 50):.1f}", f"{p99:.1f}", f"{max(r['ms']):.1f}"] if r["ms"] else ["-"] * 3
        print(f"| {r['n']} | FlagClient | 1 | {r['changes']} | {' | '.join(p)} | {r['lost']} | "
              f"{r['pool_errors']} | {tgt} |")
    for r in raw_rows:
        if r["failed"] and not r["ms"]:
            print(f"| {r['n']} | raw SSE | {r['workers']} | - | - | - | - | - | - | FAILED: {r['failed']} |")
            continue
        p99 = pct(r["ms"], 99)
        tgt = (f"p99 <= {RAW_TARGET_MS:.0f} ms: {'met' if p99 <= RAW_TARGET_MS and not r['lost'] else 'NOT met'}"
               if r["n"] >= RAW_TARGET_N else "")
        print(f"| {r['n']} | raw SSE | {r['workers']} | {changes} | {pct(r['ms'], 50):.1f} | {p99:.1f} | "
              f"{max(r['ms']):.1f} | {r['lost']} | {r['errors']} | {tgt} {r['failed'] or ''} |")


if __name__ == "__main__":
    main()

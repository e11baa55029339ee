#!/usr/bin/env python3
"""Serving benchmark (issue 6): requests/s and p99 of `GET /sdk/v1/flags` (200, and 304 with If-None-Match)
with 50 flags, under `flagsvc serve --workers 1` and `--workers 2` (gunicorn gthread, embedded Redis).

    .venv/bin/python bench/serve.py [--quick] [--procs 4] [--duration 5] [--workers 1,2]

`wrk` is not installed here, so the load generator is Python: `--procs` processes, each one keep-alive
http.client connection sending requests back to back, bounded by time and count. It shares the 2 cores with the
server, so two ceilings are measured in the same run and printed next to the figures:
  * the client's own ceiling: the same generator against a trivial stdlib HTTP/1.1 server in another process
    (answers 304 with no body, no framework);
  * the server's cheapest endpoint: `GET /healthz` on the same flagsvc server.
Target: 304 >= 3,000 req/s on 2 cores.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import BenchServer, free_port, load

TARGET_304 = 3000.0


class _Trivial(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(304)
        self.send_header("ETag", '"x-1"')
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _serve_trivial(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), _Trivial).serve_forever()


def row(name: str, workers: str, r: dict, target: str = "") -> str:
    return (f"| {name} | {workers} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['n']} | "
            f"{r['errors']} | {dict(sorted(r['statuses'].items()))} | {target} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--procs", type=int, default=4, help="load generator processes (default 4)")
    ap.add_argument("--duration", type=float, help="seconds per measurement (default 5; quick 2)")
    ap.add_argument("--workers", default="1,2", help="gunicorn worker counts (default 1,2)")
    ap.add_argument("--flags", type=int, default=50)
    a = ap.parse_args()
    duration = a.duration or (2.0 if a.quick else 5.0)
    procs = a.procs
    print(f"serve: {procs} client processes x 1 keep-alive connection, {duration:.0f} s per line, 2 cores shared",
          flush=True)
    rows = []

    port = free_port()
    trivial = mp.get_context("fork").Process(target=_serve_trivial, args=(port,), daemon=True)
    trivial.start()
    try:
        import time

        time.sleep(0.3)
        r = load(port, "GET", "/", {}, procs=procs, duration=duration)
        rows.append(row("client ceiling: stdlib server, 304", "-", r))
        print(rows[-1], flush=True)
    finally:
        trivial.terminate()
        trivial.join(5)

    for w in [int(x) for x in a.workers.split(",")]:
        with BenchServer(workers=w, threads=64) as srv:
            srv.create_flags(a.flags)
            import requests

            etag = requests.get(srv.url + "/sdk/v1/flags", headers=srv.sdk_headers, timeout=10).headers["ETag"]
            body_len = len(requests.get(srv.url + "/sdk/v1/flags", headers=srv.sdk_headers, timeout=10).content)
            load(srv.port, "GET", "/healthz", {}, procs=procs, duration=min(1.0, duration))  # warm-up
            r = load(srv.port, "GET", "/healthz", {}, procs=procs, duration=duration)
            rows.append(row("GET /healthz (server baseline)", str(w), r))
            print(rows[-1], flush=True)
            r = load(srv.port, "GET", "/sdk/v1/flags", dict(srv.sdk_headers), procs=procs, duration=duration)
            rows.append(row(f"GET /sdk/v1/flags 200 ({a.flags} flags, {body_len} B)", str(w), r))
            print(rows[-1], flush=True)
            r = load(srv.port, "GET", "/sdk/v1/flags", {**srv.sdk_headers, "If-None-Match": etag}, procs=procs,
                     duration=duration)
            ok = r["rps"] >= TARGET_304 and not r["errors"] and set(r["statuses"]) == {304}
            rows.append(row("GET /sdk/v1/flags 304 (If-None-Match)", str(w), r,
                            f">= {TARGET_304:,.0f} req/s: {'met' if ok else 'NOT met'}"))
            print(rows[-1], flush=True)

    print("\n| request | workers | req/s | p50 ms | p99 ms | requests | errors | statuses | target |")
    print("|---|---|---|---|---|---|---|---|---|")
    for line in rows:
        print(line)


if __name__ == "__main__":
    main()

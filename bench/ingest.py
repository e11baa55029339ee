#!/usr/bin/env python3
"""Outcome ingestion benchmark: `POST /sdk/v1/outcomes` against a real `flagsvc serve`
(gunicorn with flagsvc's asyncio worker, embedded Redis with AOF `appendfsync always`).

    .venv/bin/python bench/ingest.py [--quick] [--senders 1,4,8] [--duration 5] [--workers 1]

Each batch is what an SDK sends: `--flags-per-batch` (default 3) of 5 rolling flags, both arms, ~50-bucket
latency sketches, counts of a busy SDK window, and a unique batch_id (so every batch is really applied, none is
a duplicate). K senders are processes, each one keep-alive HTTP/1.1 connection posting back to back, bounded in
time and count; bodies are built before the clock starts. Baseline in the same run, same senders, same server:
`GET /healthz` req/s, so the ingestion figure is also a ratio of the server's cheapest request.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import BenchServer, load


def sketch(rng: random.Random, center: int, n_buckets: int, total: int) -> dict[str, int]:
    buckets = {}
    left = total
    for b in range(center - n_buckets // 2, center + n_buckets // 2):
        c = min(left, rng.randint(1, max(1, 2 * total // n_buckets)))
        if c <= 0:
            break
        buckets[str(b)] = c
        left -= c
    return buckets


def make_batches(flags: dict[str, int], n: int, per_batch: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    keys = list(flags)
    out = []
    for _ in range(n):
        body = {}
        for k in rng.sample(keys, per_batch):
            arms = {}
            for arm, count, center in (("stable", rng.randint(500, 2000), 230), ("canary", rng.randint(20, 200), 235)):
                errors = rng.randint(0, max(1, count // 50))
                arms[arm] = {"count": count, "errors": errors, "error_users": min(errors, rng.randint(0, errors + 1)),
                             "latency": sketch(rng, center, 50, count)}
            body[k] = {"revision": flags[k], "arms": arms}
        now = time.time()  # a window that ends now: the run is far shorter than the oldest window accepted
        out.append(json.dumps({"batch_id": uuid.uuid4().hex, "reporter": f"bench-{seed:08d}",
                               "window": {"start": now - 5.0, "end": now}, "flags": body}).encode())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--senders", help="comma-separated K (default 1,4,8; quick 1,4)")
    ap.add_argument("--duration", type=float, help="seconds per measurement (default 5; quick 2)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--flags-per-batch", type=int, default=3)
    ap.add_argument("--appendfsync", choices=["always", "everysec", "no"],
                    help="run the same redis-server with this fsync policy, passed as FLAGSVC_REDIS_URL (default: "
                         "flagsvc's own embedded mode, which is 'always')")
    a = ap.parse_args()
    senders = [int(x) for x in (a.senders or ("1,4" if a.quick else "1,4,8")).split(",")]
    duration = a.duration or (2.0 if a.quick else 5.0)
    cap = 20000  # batches per sender at most (bounds the run whatever the speed)
    print(f"ingest: --workers {a.workers}, {duration:.0f} s per line, load average {os.getloadavg()[0]:.1f} "
          f"(2 cores, shared with the senders)", flush=True)
    rows = []
    ext = {"redis_pool": 100, "appendfsync": a.appendfsync} if a.appendfsync else {}
    print(f"redis: {'embedded mode (appendfsync always)' if not ext else 'external URL, appendfsync ' + a.appendfsync}")
    # The per-key rate limit is off: this measures what ingestion costs, not how much one key may send.
    with BenchServer(workers=a.workers, threads=64, env={"FLAGSVC_OUTCOME_BATCHES_PER_SECOND": "0"}, **ext) as srv:
        keys = srv.create_flags(5, prefix="ingest")
        flags = {k: srv.admin("GET", f"/api/v1/flags/{k}")["revision"] for k in keys}
        sample = make_batches(flags, 1, a.flags_per_batch, 0)[0]
        outcomes_per_batch = 0
        for f in json.loads(sample)["flags"].values():
            outcomes_per_batch += sum(arm["count"] for arm in f["arms"].values())
        print(f"batch: {a.flags_per_batch} flags x 2 arms, ~50 buckets/arm, {len(sample)} B, "
              f"~{outcomes_per_batch} outcomes", flush=True)
        headers = {**srv.sdk_headers, "Content-Type": "application/json"}
        for k in senders:
            base = load(srv.port, "GET", "/healthz", {}, procs=k, duration=duration, max_requests=cap)
            # enough unique batches for the fastest rate seen so far, x2, capped
            per_proc = int(min(cap, max(500, base["rps"] * duration * 2 / k)))
            bodies = [make_batches(flags, per_proc, a.flags_per_batch, seed=1000 * k + p) for p in range(k)]
            outcomes = sum(sum(arm["count"] for f in json.loads(b)["flags"].values() for arm in f["arms"].values())
                           for b in bodies[0]) / per_proc
            r = load(srv.port, "POST", "/sdk/v1/outcomes", headers, procs=k, duration=duration,
                     max_requests=per_proc, bodies_per_proc=bodies)
            rows.append((k, base, r, outcomes))
            print(f"  K={k}: healthz {base['rps']:,.0f} req/s; outcomes {r['rps']:,.1f} batches/s "
                  f"({r['rps'] * outcomes:,.0f} outcomes/s) p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms, "
                  f"statuses {r['statuses']}, errors {r['errors']}", flush=True)
        stats = srv.admin("GET", f"/api/v1/flags/{keys[0]}/stats")
        print(f"check: {keys[0]} ingest counters after the run: {stats.get('ingest')}", flush=True)
    print(f"\n(load average at the end {os.getloadavg()[0]:.1f})")
    print("\n| senders | batches/s | outcomes/s | p50 ms | p99 ms | errors | GET /healthz req/s (same run) | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for k, base, r, outcomes in rows:
        print(f"| {k} | {r['rps']:,.1f} | {r['rps'] * outcomes:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
              f"{r['errors'] + sum(v for s, v in r['statuses'].items() if s != 200)} | {base['rps']:,.0f} | "
              f"{r['rps'] / base['rps']:.2f} |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Hostile outcome batches against a real `flagsvc serve` (gunicorn, embedded redis-server), default limits.

    .venv/bin/python bench/flood.py [--seconds 5] [--senders 8] [--workers 1]

1. Absurd batches: the attacks that steered rollouts before plausibility checks (10^8 requests in a 5 s window,
   a million canary requests with no stable ones, more errors than requests, a window in the future). Each must be
   a 422 and count nothing.
2. A flood from one SDK key: `--senders` threads send distinct, plausible batches as fast as they can for
   `--seconds`. Past FLAGSVC_OUTCOME_BATCHES_PER_SECOND (200/s a process, bursts of 400) the answer is 429, so the
   accepted rate and the batch markers Redis keeps (one per batch and flag, an hour each) stay bounded.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import BenchServer


def envelope(flags: dict, window: tuple[float, float] | None = None, reporter: str = "bench-flood-0001") -> dict:
    now = time.time()
    start, end = window or (now - 5.0, now)
    return {"batch_id": uuid.uuid4().hex, "reporter": reporter, "window": {"start": start, "end": end},
            "flags": flags}


def arms(stable: tuple[int, int], canary: tuple[int, int]) -> dict:
    return {"stable": {"count": stable[0], "errors": stable[1]}, "canary": {"count": canary[0], "errors": canary[1]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--senders", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--limit", type=float, default=200.0, help="FLAGSVC_OUTCOME_BATCHES_PER_SECOND (default 200)")
    a = ap.parse_args()
    env = {"FLAGSVC_OUTCOME_BATCHES_PER_SECOND": f"{a.limit:g}"}
    with BenchServer(workers=a.workers, threads=64, redis_pool=64, env=env) as srv:
        srv.create_flags(1, prefix="flood")
        key = "flood_000"
        revision = srv.admin("GET", f"/api/v1/flags/{key}")["revision"]
        post = srv.session.post
        url, headers = srv.url + "/sdk/v1/outcomes", srv.sdk_headers
        now = time.time()
        attacks = {
            "10^8 requests per arm in 5 s": envelope({key: {"revision": revision, "arms": arms((10**8, 10**6),
                                                                                            (10**8, 10**6))}}),
            "10^6 canary requests, 0 stable, in 5 s": envelope({key: {"revision": revision,
                                                                    "arms": arms((0, 0), (10**6, 0))}}),
            "errors > requests": envelope({key: {"revision": revision, "arms": arms((10, 0), (10, 11))}}),
            "window an hour in the future": envelope({key: {"revision": revision, "arms": arms((10, 0), (1, 0))}},
                                                      window=(now + 3600, now + 3605)),
        }
        print(f"absurd batches (flag {key}, revision {revision}):")
        for name, body in attacks.items():
            r = post(url, json=body, headers=headers, timeout=10)
            print(f"  {name:<38} -> {r.status_code} {r.json()['error']['code'] if r.status_code >= 400 else ''}")
        stats = srv.admin("GET", f"/api/v1/flags/{key}/stats")
        counted = sum(arm["count"] for arm in stats["arms"].values())
        print(f"  outcomes counted after them: {counted}")

        statuses: Counter[int] = Counter()
        lock = threading.Lock()
        stop_at = time.monotonic() + a.seconds

        def sender(n: int) -> None:
            session = requests.Session()
            local: Counter[int] = Counter()
            while time.monotonic() < stop_at:
                body = envelope({key: {"revision": revision, "arms": arms((50, 1), (5, 0))}},
                                reporter=f"bench-flood-{n:04d}")
                local[session.post(url, json=body, headers=headers, timeout=10).status_code] += 1
            with lock:
                statuses.update(local)

        threads = [threading.Thread(target=sender, args=(n,)) for n in range(a.senders)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        assert srv._redis is not None
        client = redis.Redis.from_url(srv._redis.url, decode_responses=True)
        markers = sum(1 for _ in client.scan_iter(match="flagsvc:batch:*", count=1000))
        sent = sum(statuses.values())
        print(f"\nflood from one SDK key: {a.senders} senders, {elapsed:.1f} s, --workers {a.workers}")
        print(f"  sent {sent:,} batches ({sent / elapsed:,.0f}/s): " +
              ", ".join(f"{status}: {n:,}" for status, n in sorted(statuses.items())))
        print(f"  accepted {statuses[200] / elapsed:,.0f}/s (limit {a.limit:g}/s a process, "
              f"bursts of {2 * a.limit:g}); batch markers in Redis: {markers:,} "
              "(bound: accepted/s x 3600 s x flags per batch)")
        print(f"  GET /healthz after the flood: {requests.get(srv.url + '/healthz', timeout=5).status_code}")


if __name__ == "__main__":
    main()

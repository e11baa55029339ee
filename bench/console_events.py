#!/usr/bin/env python3
"""The console's live event stream under load: what `GET /ui/events` (the flags list's event) costs, and what
open console tabs do to operators' API calls, against a real `flagsvc serve` (embedded Redis).

    flock /tmp/flagsvc-bench.lock .venv/bin/python bench/console_events.py [--flags 300] [--rolling 100]
                                                                            [--tabs 16] [--seconds 20]

Creates --flags flags and starts --rolling of them (so their rows carry the judge's verdict), signs in to the
console, then:
  * one tab: --samples sequential requests of the list's event, each with the previous answer's id as
    Last-Event-ID, as EventSource sends it (nothing changed in between: the "nothing new" answer);
  * the admin API alone: --samples `GET /api/v1/flags` (the flag list) one after another;
  * --tabs tabs, each asking for the event once a second (EventSource's `retry: 1000` after each answer) for
    --seconds, while the admin API is asked again as above.
Prints median, p95 and max latency of each, in seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import BenchServer


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return (f"{name:<44} n={len(ordered):<5} median {statistics.median(ordered):.3f} s  p95 {p95:.3f} s  "
            f"max {ordered[-1]:.3f} s")


def event_id(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("id: "):
            return line[4:]
    return None


class Tab:
    """One console tab's EventSource: ask, wait `retry`, ask again with the last id."""

    def __init__(self, url: str, cookie: str) -> None:
        self.session = requests.Session()
        self.session.headers["Cookie"] = cookie
        self.url = url
        self.last: str | None = None
        self.latencies: list[float] = []

    def ask(self) -> None:
        headers = {"Last-Event-ID": self.last} if self.last else {}
        began = time.perf_counter()
        answer = self.session.get(self.url + "/ui/events", headers=headers, timeout=60)
        self.latencies.append(time.perf_counter() - began)
        answer.raise_for_status()
        self.last = event_id(answer.text) or self.last

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.ask()
            stop.wait(1.0)


def admin_calls(srv: BenchServer, n: int) -> list[float]:
    out = []
    for _ in range(n):
        began = time.perf_counter()
        assert srv.session.get(srv.url + "/api/v1/flags", headers=srv.admin_headers, timeout=60).status_code == 200
        out.append(time.perf_counter() - began)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flags", type=int, default=300)
    parser.add_argument("--rolling", type=int, default=100)
    parser.add_argument("--tabs", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with BenchServer(workers=args.workers) as srv:
        for n in range(args.flags):
            key = f"flag-{n:04d}"
            assert srv.session.post(srv.url + "/api/v1/flags", headers=srv.admin_headers, timeout=30,
                                    json={"key": key, "description": f"benchmark flag {n}"}).status_code == 201
            if n < args.rolling:
                assert srv.session.post(srv.url + f"/api/v1/flags/{key}/start", headers=srv.admin_headers,
                                        timeout=30).status_code == 200
        signed = requests.post(srv.url + "/ui/sign-in", timeout=30, headers={
            "Authorization": f"Bearer {srv.admin_token}", "X-Console-Form": ""})
        signed.raise_for_status()
        # requests keeps a Secure cookie for https:// only; a browser keeps it on 127.0.0.1 too
        cookie = f"flagsvc_console={signed.cookies['flagsvc_console']}"
        print(f"{args.flags} flags, {args.rolling} rolling, flagsvc serve --workers {args.workers}")

        one = Tab(srv.url, cookie)
        one.ask()  # the first answer carries the event
        one.latencies.clear()
        for _ in range(args.samples):
            one.ask()
        print(summary("/ui/events, one tab, nothing new", one.latencies))
        print(summary("GET /api/v1/flags, no tab open", admin_calls(srv, args.samples)))

        stop = threading.Event()
        tabs = [Tab(srv.url, cookie) for _ in range(args.tabs)]
        threads = [threading.Thread(target=t.run, args=(stop,), daemon=True) for t in tabs]
        for thread in threads:
            thread.start()
        time.sleep(2.0)  # every tab has asked at least once
        admin: list[float] = []
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            admin += admin_calls(srv, 1)
        stop.set()
        for thread in threads:
            thread.join(60)
        print(summary(f"GET /api/v1/flags, {args.tabs} tabs open", admin))
        print(summary(f"/ui/events, {args.tabs} tabs", [x for t in tabs for x in t.latencies]))


if __name__ == "__main__":
    main()

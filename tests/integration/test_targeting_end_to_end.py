"""Targeting end to end: a real `flagsvc serve` (gunicorn, embedded redis-server), the real controller and judge,
the real SDK over its live stream. A rollout restricted to one segment promotes within it only, and bucket_by
keeps every member of an organisation on one arm at every stage."""

from __future__ import annotations

import random
import threading
from collections import defaultdict

import pytest
import requests
from flagsvc_client import FlagClient

from tests.support import wait_for
from tests.support.servers import Server

pytestmark = pytest.mark.slow

ADMIN_SECRET, SDK_SECRET = "admin-targeting-e2e", "sdk-targeting-e2e"
ORGS = 10_000  # even orgs are in New Zealand (the segment), odd ones in the US; many, so the split is near the percent
USERS_PER_ORG = 3


def context_of(org: int) -> dict[str, object]:
    return {"org": f"org-{org}", "country": "NZ" if org % 2 == 0 else "US", "plan": "free", "seats": org % 40}


def test_a_segment_rollout_promotes_within_it_and_orgs_flip_together(tmp_path):
    server = Server(tmp_path / "data", "--workers", "1", env={
        "FLAGSVC_ADMIN_TOKENS": f"ops={ADMIN_SECRET}", "FLAGSVC_SDK_KEYS": f"web={SDK_SECRET}",
        "FLAGSVC_CONTROLLER_INTERVAL": "0.25",
    })
    admin = {"Authorization": f"Bearer {ADMIN_SECRET}"}

    def call(method: str, path: str, body: dict | None = None) -> dict:
        answer = requests.request(method, server.url + path, json=body, headers=admin, timeout=10)
        assert answer.ok, answer.text
        return answer.json() if answer.content else {}

    client = None
    stop = threading.Event()
    seen: dict[int, dict[str, set[bool]]] = defaultdict(lambda: defaultdict(set))  # revision -> org -> answers
    reasons: dict[str, set[str]] = defaultdict(set)  # country -> reasons
    try:
        call("POST", "/api/v1/segments", {"name": "nz", "conditions": [
            {"attribute": "country", "op": "in", "values": ["NZ"]}]})
        call("POST", "/api/v1/flags", {"key": "checkout", "stages": [10, 50, 100], "bake_seconds": 1,
                                       "eligible_segments": ["nz"], "bucket_by": "org",
                                       "analysis": {"min_requests": 200}})
        client = FlagClient(server.url, sdk_key=SDK_SECRET, flush_interval=0.25)
        assert client.wait_until_ready(timeout=10)
        call("POST", "/api/v1/flags/checkout/start")
        # traffic from the started flag on (before the SDK hears of the start, every answer is "killed")
        assert wait_for(lambda: client.evaluate("checkout", "u-0-0", context=context_of(0)).reason == "rollout")

        def traffic() -> None:
            rng = random.Random(5)
            while not stop.is_set():
                for _ in range(100):
                    org = rng.randrange(ORGS)
                    user = f"u-{org}-{rng.randrange(USERS_PER_ORG)}"
                    context = context_of(org)
                    answer = client.evaluate("checkout", user, context=context)
                    seen[answer.revision or 0][context["org"]].add(answer.value)
                    reasons[context["country"]].add(answer.reason)
                    # One latency for every request: this test is about who is targeted. With lognormal latencies
                    # from this fixed-seed stream, runs on busy cores sometimes rolled back on latency, rightly: the
                    # timing put the stage change at the same stretch of the stream each time, where the latencies
                    # the test itself gave were 7-8 % above stable's p95 in the canary's requests and 1.5-2 % in
                    # stable's (logged from the test; 8 runs with fresh seeds all promoted).
                    client.record("checkout", user, ok=rng.random() >= 0.01, latency_ms=80.0, context=context)
                stop.wait(0.02)

        thread = threading.Thread(target=traffic, daemon=True)
        thread.start()
        done = wait_for(lambda: call("GET", "/api/v1/flags/checkout")["state"] == "complete", timeout=90)
        assert done, call("GET", "/api/v1/flags/checkout/stats")["verdict"]["reason"]
        stop.set()
        thread.join(5)
        history = call("GET", "/api/v1/flags/checkout/history")["history"]
    finally:
        stop.set()
        if client is not None:
            client.close(timeout=2)
        server.stop()

    promotions = [e["to_percent"] for e in reversed(history) if e["actor"] == "controller"]
    assert promotions == [50, 100], history  # the judge promoted, stage by stage
    percents = {e["revision"]: e["to_percent"] for e in history}
    assert reasons["US"] == {"not_eligible"}  # outside the segment at every stage, 100 % included
    assert reasons["NZ"] == {"rollout"}
    for revision, orgs in seen.items():
        assert all(len(answers) == 1 for answers in orgs.values()), revision  # an org on one arm
        assert not any(True in orgs[f"org-{o}"] for o in range(1, ORGS, 2))  # never a US org
        nz = [next(iter(orgs[f"org-{o}"])) for o in range(0, ORGS, 2) if f"org-{o}" in orgs]
        if percents.get(revision) == 50:
            assert 0.3 < sum(nz) / len(nz) < 0.7  # half the New Zealand orgs, whole
        if percents.get(revision) == 100:
            assert all(nz)


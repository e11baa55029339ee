"""Stratified analysis end to end: a real `flagsvc serve` (gunicorn, embedded redis-server), the real controller
and judge, the real SDK counting outcomes per stratum of `stratify_by=plan` (docs/judge.md, "Strata").

Two flags at once. On `mixed`, the canary's users are mostly premium and stable's mostly free, and premium
requests fail more in both arms alike (5 % against 0.5 %): the same code, which a pooled comparison would blame
(the canary's pooled error rate is ~4x stable's). The stratified judge promotes it, and names the mix. On
`regressed`, the mix is even and the canary fails 4x as often in the premium stratum only: rolled back."""

from __future__ import annotations

import random
import threading

import pytest
import requests
from flagsvc_client import FlagClient

from tests.support import wait_for
from tests.support.servers import Server

pytestmark = pytest.mark.slow

ADMIN_SECRET, SDK_SECRET = "admin-strata-e2e", "sdk-strata-e2e"
ERROR_RATE = {"premium": 0.05, "free": 0.005}


def test_an_uneven_mix_is_promoted_and_named_and_a_one_stratum_regression_is_rolled_back(tmp_path):
    server = Server(tmp_path / "data", "--workers", "1", env={
        "FLAGSVC_ADMIN_TOKENS": f"ops={ADMIN_SECRET}", "FLAGSVC_SDK_KEYS": f"web={SDK_SECRET}",
        "FLAGSVC_CONTROLLER_INTERVAL": "0.25",
    })
    admin = {"Authorization": f"Bearer {ADMIN_SECRET}"}

    def call(method: str, path: str, body: dict | None = None) -> dict:
        answer = requests.request(method, server.url + path, json=body, headers=admin, timeout=10)
        assert answer.ok, answer.text
        return answer.json() if answer.content else {}

    def state(key: str) -> str:
        return str(call("GET", f"/api/v1/flags/{key}")["state"])

    client = None
    stop = threading.Event()
    try:
        analysis = {"stratify_by": ["plan"], "min_requests": 500}
        for key in ("mixed", "regressed"):
            call("POST", "/api/v1/flags", {"key": key, "stages": [50, 100], "bake_seconds": 1, "analysis": analysis})
        client = FlagClient(server.url, sdk_key=SDK_SECRET, flush_interval=0.25)
        assert client.wait_until_ready(timeout=10)
        for key in ("mixed", "regressed"):
            call("POST", f"/api/v1/flags/{key}/start")
            assert wait_for(lambda key=key: client.evaluate(key, "u-0").reason == "rollout")

        def traffic() -> None:
            rng = random.Random(11)
            n = 0
            while not stop.is_set():
                for _ in range(100):
                    n += 1
                    user = f"u-{n}"  # a new user each time: erroring users are errors
                    canary = client.is_enabled("mixed", user)
                    plan = "premium" if rng.random() < (0.8 if canary else 0.1) else "free"
                    client.record("mixed", user, ok=rng.random() >= ERROR_RATE[plan], latency_ms=20.0,
                                  context={"plan": plan})
                    canary = client.is_enabled("regressed", user)
                    plan = "premium" if rng.random() < 0.3 else "free"
                    rate = ERROR_RATE[plan] * (4 if canary and plan == "premium" else 1)
                    client.record("regressed", user, ok=rng.random() >= rate, latency_ms=20.0,
                                  context={"plan": plan})
                stop.wait(0.02)

        thread = threading.Thread(target=traffic, daemon=True)
        thread.start()
        assert wait_for(lambda: state("regressed") != "rolling", timeout=50), \
            call("GET", "/api/v1/flags/regressed/stats")
        assert wait_for(lambda: state("mixed") != "rolling", timeout=50), call("GET", "/api/v1/flags/mixed/stats")
        stop.set()
        thread.join(5)
        mixed, regressed = (call("GET", f"/api/v1/flags/{key}/history")["history"] for key in ("mixed", "regressed"))
    finally:
        stop.set()
        if client is not None:
            client.close(timeout=2)
        server.stop()

    promotion = next(e for e in reversed(mixed) if e["actor"] == "controller")  # the first of the controller's
    assert (promotion["to_state"], promotion["to_percent"]) == ("complete", 100), mixed
    assert "the canary's mix differs from stable's (" in promotion["reason"], promotion["reason"]
    assert "premium: " in promotion["reason"].partition("mix differs")[2], promotion["reason"]
    evidence = promotion["evidence"]
    rows = {row["stratum"]: row for row in evidence["strata"]}
    assert {"premium", "free"} <= set(rows) and rows["premium"]["split"]["mismatch"], rows
    # pooled, the canary looked several times worse; within each stratum it was not
    stable, canary = evidence["arms"]["stable"], evidence["arms"]["canary"]
    assert canary["error_rate"] > 2.5 * stable["error_rate"], evidence["arms"]
    rollback = next(e for e in reversed(regressed) if e["actor"] == "controller")
    assert rollback["to_state"] == "rolled_back", regressed
    assert "error" in rollback["reason"], rollback["reason"]
    premium = {row["stratum"]: row for row in rollback["evidence"]["strata"]}["premium"]
    assert premium["canary"]["error_rate"] > 2 * premium["stable"]["error_rate"], premium

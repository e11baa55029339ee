"""An SDK behind a load balancer rides through a replica's SIGTERM: its stream ends, it reconnects to the other
replica, keeps evaluating throughout, sees the next change, and loses no outcome."""

from __future__ import annotations

import signal
import threading
import time

import pytest
import requests
from flagsvc_client import FlagClient

from tests.support import wait_for
from tests.support.servers import Server
from tests.support.tcp_balancer import Balancer

pytestmark = pytest.mark.slow  # two real `flagsvc serve` processes and a SIGTERM (seconds)


def test_an_sdk_fails_over_to_the_other_replica(tmp_path, redis_url, namespace):
    env = {"FLAGSVC_REDIS_URL": redis_url, "FLAGSVC_REDIS_NAMESPACE": namespace,
           "FLAGSVC_ADMIN_TOKENS": "ops=admin-token-123", "FLAGSVC_SDK_KEYS": "web=sdk-key-12345"}
    first = Server(tmp_path / "a", env=env)
    second = Server(tmp_path / "b", env=env)
    balancer = Balancer([first.port, second.port], round_robin=False)
    admin = first.admin
    requests.post(f"{first.url}/api/v1/flags", json={"key": "checkout"}, headers=admin).raise_for_status()
    changed = requests.put(f"{first.url}/api/v1/flags/checkout/percent", json={"percent": 50}, headers=admin)
    changed.raise_for_status()
    client = FlagClient(f"http://127.0.0.1:{balancer.port}", sdk_key="sdk-key-12345", backoff_initial=0.1,
                        backoff_max=0.5, flush_interval=3600)
    errors: list[BaseException] = []
    evaluated = 0
    stop = threading.Event()

    def evaluate() -> None:  # the application keeps calling while the server it talks to goes away
        nonlocal evaluated
        while not stop.is_set():
            try:
                for i in range(100):
                    client.is_enabled("checkout", f"user-{i}")
                    client.record("checkout", f"user-{i}", ok=True, latency_ms=5.0)
                evaluated += 100
            except BaseException as e:  # the point is that nothing escapes
                errors.append(e)
                return
            time.sleep(0.01)  # the application's pace between requests (the subject), not synchronisation

    worker = threading.Thread(target=evaluate)
    try:
        assert client.wait_until_ready(10)
        # the SDK's first snapshot may be one a replica served before the change reached it: traffic starts on
        # the current revision, whose counts the test compares at the end
        revision = changed.json()["revision"]
        assert wait_for(lambda: client.evaluate("checkout", "u").revision == revision, 10)
        assert balancer.connections and set(balancer.connections) == {first.port}
        worker.start()
        assert wait_for(lambda: evaluated >= 500), evaluated  # outcomes recorded before the failover
        assert client.flush(timeout=10)

        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(15) == 0
        first.log.close()
        # the application goes on recording while the SDK reconnects: until it is on the other replica, and
        # has recorded more outcomes since the first one went away
        during = evaluated
        assert wait_for(lambda: second.port in balancer.connections and evaluated >= during + 500, 10), (
            balancer.connections, during, evaluated)
        stop.set()
        worker.join(10)
        # everything recorded, before and during the failover, is delivered (to the survivor) and counted once
        assert client.flush(timeout=10)
        assert errors == [] and evaluated > 0
        stats = requests.get(f"{second.url}/api/v1/flags/checkout/stats", headers=admin).json()
        assert stats["revision"] == revision
        assert sum(arm["count"] for arm in stats["arms"].values()) == evaluated
        assert client.stats["outcomes_acknowledged"] == evaluated

        # the next change, made on the surviving replica, reaches the SDK through its new stream
        requests.put(f"{second.url}/api/v1/flags/checkout/percent", json={"percent": 75},
                     headers=admin).raise_for_status()
        assert wait_for(lambda: client.evaluate("checkout", "u").revision > revision, 10)
        assert balancer.connections[-1] == second.port
        assert client.status == "ready"
        assert client.stats["config_mode"] == "stream"
    finally:
        stop.set()
        client.close()
        balancer.close()
        if first.proc.poll() is None:
            first.stop()
        assert second.stop() == 0

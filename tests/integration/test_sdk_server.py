"""The real SDK against the real server on real Redis: config, live changes, and outcome counts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import requests
from flagsvc_client import FlagClient
from werkzeug.serving import make_server

from tests.support import ADMIN, SDK_KEY, wait_for


class RestartableServer:
    """A threaded WSGI server on a fixed port that can be stopped and started again (the server 'going down')."""

    def __init__(self, app) -> None:
        self.app = app
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None
        self.start()

    def start(self) -> None:
        if self._server is None:
            self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        # a short poll interval: stop() waits up to one interval (0.5 s by default) for serve_forever to notice
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        self._server = None


@pytest.fixture
def server(real_app) -> Iterator[RestartableServer]:
    real_app.config["FLAGSVC_HEARTBEAT_SECONDS"] = 1.0
    server = RestartableServer(real_app)
    yield server
    real_app.extensions["flagsvc"].changes.close()
    if server._server is not None:
        server.stop()


def admin(server, method, path, **body):
    response = requests.request(method, server.url + path, json=body or None, headers=ADMIN, timeout=5)
    response.raise_for_status()
    return response.json() if response.content else None


def test_sdk_follows_changes_live_and_counts_outcomes_exactly(server):
    admin(server, "POST", "/api/v1/flags", key="new_checkout", stages=[50, 100])
    admin(server, "POST", "/api/v1/flags/new_checkout/start")
    with FlagClient(server.url, sdk_key=SDK_KEY, flush_interval=60) as client:
        assert client.wait_until_ready(timeout=5)
        canary_users = [u for u in range(1000) if client.is_enabled("new_checkout", u)]
        assert 400 < len(canary_users) < 600  # 50 %
        assert client.is_enabled("unknown_flag", 1, default=True) is True

        started = time.monotonic()
        admin(server, "POST", "/api/v1/flags/new_checkout/rollback", reason="test")
        assert wait_for(lambda: not any(client.is_enabled("new_checkout", u) for u in canary_users[:50]))
        assert time.monotonic() - started < 1.0  # streamed, not polled

        admin(server, "POST", "/api/v1/flags/new_checkout/start")
        assert wait_for(lambda: client.evaluate("new_checkout", canary_users[0]).value)
        revision = admin(server, "GET", "/api/v1/flags/new_checkout")["revision"]
        assert wait_for(lambda: client.evaluate("new_checkout", canary_users[0]).revision == revision)

        expected = {"stable": [0, 0], "canary": [0, 0]}
        for i in range(10_000):
            user = i % 997
            ok = i % 13 != 0
            arm = client.variant("new_checkout", user)
            client.record("new_checkout", user, ok=ok, latency_ms=5 + i % 50)
            expected[arm][0] += 1
            expected[arm][1] += 0 if ok else 1
        assert client.flush(timeout=5)
    stats = admin(server, "GET", "/api/v1/flags/new_checkout/stats")
    assert stats["revision"] == revision
    got = {arm: [stats["arms"][arm]["count"], stats["arms"][arm]["errors"]] for arm in ("stable", "canary")}
    assert got == expected
    assert stats["arms"]["canary"]["p50_ms"] == pytest.approx(29.5, rel=0.05)


def test_counts_stay_exact_when_the_server_is_down_during_flushes(server):
    admin(server, "POST", "/api/v1/flags", key="new_checkout", stages=[50, 100])
    admin(server, "POST", "/api/v1/flags/new_checkout/start")
    client = FlagClient(server.url, sdk_key=SDK_KEY, flush_interval=0.2, backoff_initial=0.05, backoff_max=0.2)
    try:
        assert client.wait_until_ready(timeout=5)
        canary = next(u for u in range(1000) if client.is_enabled("new_checkout", u))
        stable = next(u for u in range(1000) if not client.is_enabled("new_checkout", u))
        for i in range(1000):
            client.record("new_checkout", i, ok=i % 10 != 0, latency_ms=10)
        server.stop()
        for i in range(1000, 2000):
            client.record("new_checkout", i, ok=True, latency_ms=10)
        assert client.flush(timeout=0.5) is False  # nobody acknowledged
        # still answers from the last snapshot, not the default
        assert (client.is_enabled("new_checkout", canary), client.is_enabled("new_checkout", stable)) == (True, False)
        retried = client.stats["batches_retried"]
        assert wait_for(lambda: client.stats["batches_retried"] >= retried + 3)  # a few more failed flush attempts
        server.start()
        assert client.flush(timeout=10)
    finally:
        client.close()
    stats = admin(server, "GET", "/api/v1/flags/new_checkout/stats")
    arms = stats["arms"]
    assert arms["stable"]["count"] + arms["canary"]["count"] == 2000
    assert arms["stable"]["errors"] + arms["canary"]["errors"] == 100
    assert stats["ingest"]["duplicate"] == 0  # every attempt was refused or answered: no batch arrived twice

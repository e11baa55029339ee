"""Failure modes found by review: races between operators, a stream across a store outage, an announcement that
fails after the change was stored, reasons, and HTTP semantics of errors."""

from __future__ import annotations

import queue
import threading
import time

import pytest
import redis

from flagsvc.domain import flag as flags
from tests.support import ADMIN, SDK, wait_for


class StreamReader:
    """Reads an SSE response on a daemon thread, so a stream that falls silent fails the test instead of hanging
    it. The stream ends when the app's change feed closes (`end()`)."""

    def __init__(self, app, response) -> None:
        self.changes = app.extensions["flagsvc"].changes
        self.started = time.monotonic()
        self.chunks: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=lambda: [self.chunks.put(c) for c in response.response], daemon=True).start()

    def next(self, count: int, timeout: float = 5.0) -> list[tuple[float, bytes]]:
        """Up to `count` chunks, each with the seconds since the previous call began."""
        began, got = time.monotonic(), []
        deadline = began + timeout
        while len(got) < count:
            try:
                chunk = self.chunks.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                break
            got.append((time.monotonic() - began, chunk))
        return got

    def end(self) -> None:
        self.changes.close()


def test_a_create_racing_a_delete_stays_listed(real_store):
    """Operator A deletes `checkout` while operator B creates it again: B's create lands between A's script and
    A's removal from the index. The flag must stay listed (SDK snapshots, the controller and /metrics use it)."""
    flag, entry = flags.new_flag("checkout", {}, now=0, actor="a")
    real_store.create(flag, entry)
    real_srem = real_store.redis.srem

    def srem_after_b_creates(*args):
        again, entry_b = flags.new_flag("checkout", {}, now=1, actor="b")
        real_store.create(again, entry_b)
        return real_srem(*args)

    real_store.redis.srem = srem_after_b_creates
    try:
        assert real_store.delete("checkout")
    finally:
        real_store.redis.srem = real_srem
    assert real_store.get("checkout").created_at == 1
    assert [f.key for f in real_store.list_flags()] == ["checkout"]


def test_a_stream_wakes_for_a_change_made_while_it_opened(app, client):
    app.config["FLAGSVC_HEARTBEAT_SECONDS"] = 5.0
    client.post("/api/v1/flags", json={"key": "checkout"}, headers=ADMIN)
    changes = app.extensions["flagsvc"].changes
    changes.ensure_started()
    assert wait_for(lambda: changes.generation >= 1)  # subscribed (its first wake-up is done)
    real_latest = changes.latest
    calls = 0

    def latest_then_a_change():
        nonlocal calls
        calls += 1
        snapshot = real_latest()
        if calls == 1:  # the change lands while the view opens the stream, and both its wake-ups are over
            before = changes.generation
            app.test_client().post("/api/v1/flags/checkout/start", headers=ADMIN)
            assert wait_for(lambda: changes.generation >= before + 2)  # this process's wake-up and pub/sub's
        return snapshot

    changes.latest = latest_then_a_change
    stream = StreamReader(app, client.get("/sdk/v1/stream", headers=SDK, buffered=False))
    (_, first), (gap, second) = stream.next(2, timeout=8)
    stream.end()
    assert b'"state":"off"' in first.replace(b" ", b"")
    assert second.startswith(b"event: snapshot") and b'"state":"rolling"' in second.replace(b" ", b"")
    assert gap < 2.0, gap  # at once, not after the 5 s heartbeat


@pytest.mark.slow  # 2 s of real heartbeats: the outage must outlast the snapshot's 1 s maximum age
def test_a_stream_outlives_a_store_outage_on_heartbeats(app, client, fake_store, monkeypatch):
    app.config["FLAGSVC_HEARTBEAT_SECONDS"] = 0.2
    client.post("/api/v1/flags", json={"key": "checkout"}, headers=ADMIN)
    stream = StreamReader(app, client.get("/sdk/v1/stream", headers=SDK, buffered=False))
    [(_, first)] = stream.next(1)
    assert first.startswith(b"event: snapshot")

    def down(*args, **kwargs):
        raise redis.ConnectionError("Redis is down")

    monkeypatch.setattr(fake_store, "config_version", down)
    monkeypatch.setattr(fake_store, "list_flags", down)
    chunks = stream.next(10, timeout=10)  # 2 s of heartbeats: past the snapshot's 1 s max age
    stream.end()
    assert [c for _, c in chunks] == [b": heartbeat\n\n"] * 10


def test_a_change_stored_but_not_announced_is_still_a_success(app, client, fake_store, monkeypatch):
    client.post("/api/v1/flags", json={"key": "checkout"}, headers=ADMIN)

    def down(*args, **kwargs):
        raise redis.ConnectionError("connection reset")

    monkeypatch.setattr(fake_store, "bump_config_version", down)
    response = client.post("/api/v1/flags/checkout/start", headers=ADMIN)
    assert response.status_code == 200, response.get_json()
    assert client.get("/api/v1/flags/checkout", headers=ADMIN).get_json()["state"] == "rolling"


def test_start_and_resume_keep_the_operators_reason(client):
    client.post("/api/v1/flags", json={"key": "checkout"}, headers=ADMIN)
    client.post("/api/v1/flags/checkout/start", json={"reason": "CHG-123 approved"}, headers=ADMIN)
    client.post("/api/v1/flags/checkout/pause", json={"reason": "dashboard check"}, headers=ADMIN)
    client.post("/api/v1/flags/checkout/resume", json={"reason": "dashboard fine"}, headers=ADMIN)
    history = client.get("/api/v1/flags/checkout/history", headers=ADMIN).get_json()["history"]
    assert [(e["action"], e["reason"]) for e in history[:3]] == [
        ("resume", "dashboard fine"), ("pause", "dashboard check"), ("start", "CHG-123 approved")]
    client.post("/api/v1/flags", json={"key": "other"}, headers=ADMIN)
    client.post("/api/v1/flags/other/start", headers=ADMIN)
    assert client.get("/api/v1/flags/other/history", headers=ADMIN).get_json()["history"][0]["reason"] == \
        "rollout started"


def test_405_says_which_methods_are_allowed(client):
    response = client.delete("/api/v1/flags", headers=ADMIN)
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}
    assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_an_sdk_key_on_a_path_that_does_not_exist_gets_404_or_405_not_403(client):
    assert client.get("/sdk/v1/nothing", headers=SDK).status_code == 404
    assert client.put("/sdk/v1/outcomes", headers=SDK).status_code == 405
    assert client.get("/api/v1/flags", headers=SDK).status_code == 403  # an admin route stays forbidden
    assert client.get("/sdk/v1/nothing").status_code == 401  # and a token is still needed to learn anything


def test_a_stream_heartbeats_even_when_woken_often_for_nothing(app, client):
    """While Redis is down the change feed wakes streams without a new snapshot; the heartbeat must still go
    out every interval, or the SDK's read timeout drops the stream."""
    app.config["FLAGSVC_HEARTBEAT_SECONDS"] = 0.3
    client.post("/api/v1/flags", json={"key": "checkout"}, headers=ADMIN)
    changes = app.extensions["flagsvc"].changes
    stream = StreamReader(app, client.get("/sdk/v1/stream", headers=SDK, buffered=False))
    stream.next(1)
    stop = threading.Event()

    def wake_for_nothing():
        # The subject: wake-ups at a steady 20 per second, several per heartbeat interval (not synchronisation).
        while not stop.wait(0.05):
            changes.notify()

    threading.Thread(target=wake_for_nothing, daemon=True).start()
    try:
        chunks = stream.next(3, timeout=3)
    finally:
        stop.set()
        stream.end()
    assert [c for _, c in chunks] == [b": heartbeat\n\n"] * 3
    assert chunks[-1][0] < 1.5


def test_metrics_are_served_while_redis_is_down(app, client, fake_store, monkeypatch):
    client.post("/api/v1/flags", json={"key": "checkout"}, headers=ADMIN)
    assert "flagsvc_flag_state_readable 1.0" in client.get("/metrics").get_data(as_text=True)

    def down(*args, **kwargs):
        raise redis.ConnectionError("Redis is down")

    monkeypatch.setattr(fake_store, "list_flags", down)
    response = client.get("/metrics")
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "flagsvc_flag_state_readable 0.0" in text and "flagsvc_redis_errors_total" in text
    assert 'flagsvc_flag_percent{flag="checkout"}' not in text

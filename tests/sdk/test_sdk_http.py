"""The real HTTP code (HttpTransport, threads, real clock) against a stdlib fake server speaking the protocol.

One story: stream -> live update -> stream unavailable, ETag polling -> outcomes while the server is down
(refused), then back but losing one answer after applying -> exact counts, no double counting -> stream again.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from flagsvc_client import FlagClient
from flagsvc_client._transport import HttpTransport, TransportError
from flagsvc_client.protocol import bucketing

from tests.support import wait_for
from tests.support.sdk_fake_server import FakeFlagServer


def flag(percent: float) -> dict:
    return {"key": "new_checkout", "state": "rolling", "percent": percent, "revision": 1, "salt": "new_checkout"}


@pytest.fixture
def server():
    fake = FakeFlagServer({"new_checkout": flag(0.0)}, heartbeat=0.1)
    fake.start()
    yield fake
    fake.stop()


def test_stream_update_poll_fallback_and_outcomes_through_an_outage(server, tmp_path):
    url = f"http://127.0.0.1:{server.port}"
    client = FlagClient(
        url, sdk_key="sdk-test", flush_interval=0.1, backoff_initial=0.02, backoff_max=0.2,
        stream_fallback_after=2, stream_retry_interval=1.0, poll_interval=0.1, stale_after=5,
        stream_read_timeout=2, request_timeout=2, connect_timeout=1, cache_file=str(tmp_path / "cache.json"),
    )  # fmt: skip
    try:
        # 1. the stream delivers the config, then a change, well under a second
        assert client.wait_until_ready(5)
        assert client.status == "ready" and client.stats["config_mode"] == "stream"
        assert client.is_enabled("new_checkout", "u1") is False
        started = time.monotonic()
        server.update("new_checkout", percent=100.0)
        assert wait_for(lambda: client.is_enabled("new_checkout", "u1"), 2)
        assert time.monotonic() - started < 1.0

        # 2. the stream endpoint goes away: the client polls with ETag instead
        server.stream_enabled = False
        server.end_streams()
        assert wait_for(lambda: client.stats["config_mode"] == "poll", 5)
        server.update("new_checkout", percent=30.0)
        assert wait_for(lambda: client.evaluate("new_checkout", "u1").revision == 3, 5)
        assert wait_for(lambda: server.not_modified >= 2, 5)
        assert any(inm == f'"{server.epoch}-{server.version}"' for _, _, inm in server.requests if inm)

        # 3. record 10,000 outcomes at 30 %
        expected: Counter[tuple[str, str]] = Counter()
        for i in range(10_000):
            user, ok = f"user-{i}", i % 7 != 0
            arm = "canary" if bucketing.is_canary("new_checkout", user, 30.0) else "stable"
            client.record("new_checkout", user, ok=ok, latency_ms=1 + i % 50)
            expected[arm, "count"] += 1
            expected[arm, "errors"] += not ok

        # 4. the server goes down: flush fails, evaluation goes on from the last config, nothing raises
        server.stop()
        assert client.flush(timeout=0.3) is False
        assert client.is_enabled("new_checkout", "user-1") is bucketing.is_canary("new_checkout", "user-1", 30.0)
        assert client.is_enabled("unknown", "user-1", default=True) is True
        assert client.stats["batches_pending"] >= 1

        # 5. it comes back, applies the next batch but its answer is lost: the retry is a duplicate
        server.drop_after_apply = 1
        server.start()
        assert client.flush(timeout=5) is True
        totals = {(arm, k): v for (key, rev, arm), t in server.totals.items() if rev == 3 for k, v in t.items()}
        assert totals == dict(expected)  # exact: nothing lost, nothing counted twice
        assert sum(t["count"] for t in server.totals.values()) == 10_000
        assert server.duplicates >= 1 and len(server.posts) > len(server.applied_batches)
        stats = client.stats
        assert stats["outcomes_acknowledged"] == 10_000 and stats["batches_pending"] == 0

        # 6. the stream is back: the client returns to it
        server.stream_enabled = True
        assert wait_for(lambda: client.stats["config_mode"] == "stream", 5)
        server.update("new_checkout", percent=0.0)
        assert wait_for(lambda: client.is_enabled("new_checkout", "u1") is False, 2)
    finally:
        client.close(timeout=1)


def test_401_keeps_config_and_the_transport_reports_no_answer_as_transport_error(server):
    client = FlagClient(
        f"http://127.0.0.1:{server.port}", sdk_key="wrong", bootstrap={"epoch": "b", "version": 1, "flags": {}},
        background=False, auth_backoff=60,
    )  # fmt: skip
    assert 30 <= client._config_step() <= 60
    assert client.status == "stale"
    server.stop()
    with pytest.raises(TransportError) as info:
        HttpTransport(f"http://127.0.0.1:{server.port}").request("GET", "/sdk/v1/flags", {}, None, 1)
    assert info.value.refused


@pytest.mark.parametrize("connection_close", [False, True])
def test_close_interrupts_a_blocked_stream_read(server, connection_close):
    """Also when the server answered `Connection: close`, which makes http.client hand the socket over to the
    response and forget it."""
    server.stream_connection_close = connection_close
    client = FlagClient(f"http://127.0.0.1:{server.port}", sdk_key="sdk-test", stream_read_timeout=30)
    server.heartbeat = 30  # the reader sits in recv
    assert client.wait_until_ready(5)
    started = time.monotonic()
    client.close(timeout=1)
    assert time.monotonic() - started < 2.5
    assert not any(t.is_alive() for t in client._threads if t.name == "flagsvc-config")


@pytest.mark.slow  # building, sending and parsing 20,000 flags: ~2 s
def test_a_snapshot_longer_than_a_read_chunk_arrives_whole(server):
    server.flags = {
        f"flag-{i:05d}": {**flag(50.0), "key": f"flag-{i:05d}", "salt": f"flag-{i:05d}", "allow": [f"vip-{i}"]}
        for i in range(20_000)
    }  # ~2.5 MB of JSON on one `data:` line
    client = FlagClient(f"http://127.0.0.1:{server.port}", sdk_key="sdk-test", background=False)
    server.heartbeat = 0.05

    def end_once_applied() -> None:  # the stream stays open until the whole snapshot was read and installed
        wait_for(lambda: client.stats["snapshots_applied"] == 1, 10)  # on timeout, the assertions below fail
        server.end_streams()

    threading.Thread(target=end_once_applied, daemon=True).start()
    client._config_step()  # reads the stream until the server ends it
    assert client.stats["snapshots_applied"] == 1
    assert client.evaluate("flag-19999", "vip-19999").reason == "allow_list"
    assert len(client._config.snapshot.flags) == 20_000

"""Live config driven by hand: stream, reconnect with jittered backoff, polling fallback, auth, staleness."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from flagsvc_client._transport import Response, TransportError

from tests.support.sdk_fakes import FakeStream, flag, ok_json, snapshot, sse

STREAM, FLAGS = "/sdk/v1/stream", "/sdk/v1/flags"


def test_stream_applies_snapshots_and_heartbeats_confirm(make_client, transport, clock):
    client = make_client()
    assert client.status == "not_ready" and not client.wait_until_ready(0)
    v1 = snapshot(flag(percent=0.0), version=1)
    v2 = snapshot(flag(percent=100.0, revision=2), version=2)
    transport.streams.append(FakeStream([": hi", *sse(v1), ": heartbeat", *sse(v2)]))
    delay = client._config_step()  # reads until the server closes the stream
    assert client.is_enabled("new_checkout", "anyone") is True
    assert client.evaluate("new_checkout", "u").revision == 2
    assert client.status == "ready" and client.wait_until_ready(0)
    assert 0 <= delay <= 0.5  # reconnect soon after a healthy stream: backoff was reset by the events
    req = transport.requests[0]
    assert req["headers"]["Authorization"] == "Bearer sdk-test"
    assert req["headers"]["Accept"] == "text/event-stream"


def test_status_turns_stale_without_confirmation_and_back(make_client, transport, clock):
    client = make_client(stale_after=60, poll_interval=30)
    transport.streams.append(FakeStream(sse(snapshot(flag()))))
    client._config_step()
    clock.advance(59)
    assert client.status == "ready"
    clock.advance(2)
    assert client.status == "stale"
    transport.streams.append(FakeStream([": heartbeat"]))
    client._config_step()
    assert client.status == "ready"


def test_an_older_or_equal_version_never_replaces_a_newer(make_client, transport):
    client = make_client()
    new, old = snapshot(flag(percent=100.0), version=5), snapshot(flag(percent=0.0), version=4)
    transport.streams.append(FakeStream([*sse(new), *sse(old)]))
    client._config_step()
    assert client.is_enabled("new_checkout", "u") is True
    transport.streams.append(FakeStream(sse(snapshot(flag(percent=0.0), epoch="reset", version=1))))
    client._config_step()
    assert client.is_enabled("new_checkout", "u") is False  # another epoch: versions restarted


def test_a_malformed_snapshot_keeps_the_last_good_one_and_logs_once(make_client, transport, caplog):
    client = make_client()
    good = snapshot(flag(percent=100.0))
    broken = ["event: snapshot", "data: {not json", "", "event: snapshot", 'data: {"epoch": 3}', ""]
    transport.streams.append(FakeStream([*sse(good), *broken, *broken]))
    with caplog.at_level(logging.WARNING, logger="flagsvc_client"):
        client._config_step()
    assert client.is_enabled("new_checkout", "u") is True
    messages = [r.getMessage() for r in caplog.records]
    assert sum("malformed" in m for m in messages) == 2  # one per kind (not JSON / invalid), not per event


def test_reconnect_backoff_grows_with_full_jitter_then_resets(make_client, transport):
    client = make_client(backoff_initial=1.0, backoff_max=8.0, stream_fallback_after=100)
    transport.streams.extend([FakeStream([], status=500)] * 6)
    delays = [client._config_step() for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]  # random() = 0.5 times min(max, initial * 2**n)
    transport.streams.append(FakeStream(sse(snapshot(flag()))))
    assert client._config_step() == 0.5


def test_a_dead_connection_read_timeout_reconnects(make_client, transport):
    client = make_client()
    transport.streams.append(FakeStream([*sse(snapshot(flag())), TransportError("timed out")]))
    transport.streams.append(FakeStream(sse(snapshot(flag(percent=100.0), version=2))))
    client._config_step()
    client._config_step()
    assert client.is_enabled("new_checkout", "u") is True
    assert [r["method"] for r in transport.requests] == ["STREAM", "STREAM"]


def test_stream_404_falls_back_to_polling_with_etag_then_retries_the_stream(make_client, transport, clock):
    client = make_client(stream_fallback_after=3, stream_retry_interval=300, poll_interval=30)
    transport.streams.extend([FakeStream([], status=404)] * 3)
    for _ in range(3):
        client._config_step()
    assert client.stats["config_mode"] == "poll"
    v1 = snapshot(flag(percent=100.0), version=1)
    transport.answer(FLAGS, ok_json(v1, etag='"ep1-1"'), Response(304, {}, b""))
    assert client._config_step() == 30  # poll, applied
    assert client.is_enabled("new_checkout", "u") is True
    assert client._config_step() == 30  # 304: confirmed
    polls = [r for r in transport.requests if r["path"] == FLAGS]
    assert "If-None-Match" not in polls[0]["headers"]
    assert polls[1]["headers"]["If-None-Match"] == '"ep1-1"'
    clock.advance(301)
    transport.answer(FLAGS, Response(304, {}, b""))
    assert client._config_step() == 0  # retry interval passed: back to the stream
    assert client.stats["config_mode"] == "stream"
    transport.streams.append(FakeStream([], status=405))
    client._config_step()  # one failure is enough to fall back again
    assert client.stats["config_mode"] == "poll"


def test_connection_refused_falls_back_and_returns_to_the_stream_once_the_server_answers(make_client, transport):
    client = make_client(stream_fallback_after=2)
    # no scripted streams: every open_stream is refused
    client._config_step()
    client._config_step()
    assert client.stats["config_mode"] == "poll"
    transport.answer(FLAGS, TransportError("refused", refused=True), ok_json(snapshot(flag())))
    client._config_step()  # still down
    assert client.stats["config_mode"] == "poll"
    assert client._config_step() == 0  # answered: try the stream straight away
    assert client.stats["config_mode"] == "stream"


def test_an_html_answer_is_not_a_stream(make_client, transport):
    client = make_client(stream_fallback_after=1)
    transport.streams.append(FakeStream(["<html>"], status=200, content_type="text/html"))
    client._config_step()
    assert client.stats["config_mode"] == "poll"


def test_401_keeps_the_config_backs_off_long_and_keeps_trying(make_client, transport, caplog):
    client = make_client(auth_backoff=300, bootstrap=snapshot(flag(percent=100.0)))
    transport.streams.extend([FakeStream([], status=401), FakeStream([], status=403)])
    with caplog.at_level(logging.WARNING, logger="flagsvc_client"):
        delays = [client._config_step(), client._config_step()]
    assert delays == [225.0, 225.0]  # 300 * (0.5 + 0.5 * random()), random() = 0.5
    assert client.is_enabled("new_checkout", "u") is True
    assert sum("refused the SDK key" in r.getMessage() for r in caplog.records) == 1
    transport.streams.append(FakeStream(sse(snapshot(flag(percent=0.0), version=2))))
    client._config_step()  # the key was fixed: it recovers by itself
    assert client.is_enabled("new_checkout", "u") is False


def test_poll_only_mode_never_opens_the_stream(make_client, transport):
    client = make_client(stream=False, poll_interval=10, stale_after=20)
    transport.answer(FLAGS, ok_json(snapshot(flag())), TransportError("down"), Response(500, {}, b""))
    assert client._config_step() == 10
    assert client._config_step() == 0.25  # backoff_initial 0.5 * random 0.5
    assert client._config_step() == 0.5
    assert all(r["method"] == "GET" for r in transport.requests)


def test_a_bad_200_poll_body_is_ignored(make_client, transport):
    client = make_client(stream=False, bootstrap=snapshot(flag(percent=100.0)))
    transport.answer(FLAGS, Response(200, {}, b"<html>oops</html>"))
    client._config_step()
    assert client.is_enabled("new_checkout", "u") is True
    assert client.stats["snapshots_applied"] == 1


def test_the_cache_file_is_written_on_change_and_used_after_a_restart(make_client, transport, tmp_path):
    cache = str(tmp_path / "cache.json")
    client = make_client(cache_file=cache)
    transport.streams.append(FakeStream(sse(snapshot(flag(percent=100.0), version=3))))
    client._config_step()
    assert json.loads(Path(cache).read_text())["version"] == 3
    restarted = make_client(cache_file=cache)  # the server is down now: every stream is refused
    restarted._config_step()
    assert restarted.is_enabled("new_checkout", "u") is True
    assert restarted.status == "stale" and not restarted.wait_until_ready(0)
    assert restarted.evaluate("new_checkout", "u").reason == "rollout"


def test_a_bootstrap_dict_or_file_serves_before_the_server(make_client, tmp_path):
    path = tmp_path / "boot.json"
    path.write_text(json.dumps(snapshot(flag(percent=100.0))))
    for boot in (str(path), snapshot(flag(percent=100.0))):
        client = make_client(bootstrap=boot)
        assert client.is_enabled("new_checkout", "u") is True
        assert client.status == "stale"  # evaluating, but not confirmed by the server


def test_the_cache_file_replaces_an_older_bootstrap_of_the_same_epoch(make_client, tmp_path):
    cache = tmp_path / "cache.json"
    cache.write_text(json.dumps(snapshot(flag(percent=100.0), version=7)))
    client = make_client(bootstrap=snapshot(flag(percent=0.0), version=2), cache_file=str(cache))
    assert client.is_enabled("new_checkout", "u") is True
    client = make_client(bootstrap=snapshot(flag(percent=0.0), version=9), cache_file=str(cache))
    assert client.is_enabled("new_checkout", "u") is False


def test_offline_mode_uses_no_network_and_is_ready_with_a_bootstrap(make_client, transport):
    client = make_client(offline=True, bootstrap=snapshot(flag(percent=100.0)))
    assert client.status == "ready" and client.wait_until_ready(0)
    client.record("new_checkout", "u", ok=False)
    assert client.flush(0) is True
    client.close()
    assert transport.requests == []
    assert make_client(offline=True).status == "not_ready"

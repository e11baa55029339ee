"""The public API: answers and reasons, track, never throwing, logging once, threads, close, fork."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest
from flagsvc_client import ClientSettings, FlagClient
from flagsvc_client._lifecycle import spawn_loop
from flagsvc_client._transport import Response
from flagsvc_client.protocol import bucketing
from flagsvc_client.snapshot import parse_snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import wait_for
from tests.support.sdk_fakes import FakeStream, FakeTransport, flag, snapshot, sse

ACK = Response(200, {}, b"{}")




def test_evaluate_gives_value_arm_reason_and_revision(make_client):
    snap = snapshot(
        flag(percent=0.0, revision=4, allow=["vip"], deny=["blocked"]),
        flag("full", percent=100.0, deny=["blocked"]),
        flag("killed", state="rolled_back", percent=50.0, allow=["vip"]),
        flag("off", state="off", percent=100.0),
        flag("future", state="some_new_state", percent=100.0),
    )
    client = make_client(bootstrap=snap)
    ev = client.evaluate("new_checkout", "vip")
    assert (ev.value, ev.arm, ev.reason, ev.revision) == (True, "canary", "allow_list", 4)
    assert client.evaluate("full", "blocked").reason == "deny_list"
    assert client.evaluate("full", "x").reason == "rollout" and client.evaluate("full", "x").value is True
    assert client.evaluate("new_checkout", "x").arm == "stable"
    assert (client.evaluate("killed", "vip").value, client.evaluate("killed", "vip").reason) == (False, "killed")
    assert client.evaluate("off", "anyone").reason == "killed"
    assert client.evaluate("future", "anyone").value is True  # unknown states follow the rule
    nf = client.evaluate("missing", "x", default=True)
    assert (nf.value, nf.arm, nf.reason, nf.revision) == (True, None, "flag_not_found", None)
    assert client.evaluate("new_checkout", None).reason == "error"
    assert client.variant("new_checkout", "vip") == "canary" and client.variant("missing", "vip") == "stable"
    with pytest.raises(AttributeError):
        ev.value = False  # frozen


def test_is_enabled_agrees_with_evaluate_and_the_rule(make_client):
    client = make_client(bootstrap=snapshot(flag(percent=33.33)))
    for i in range(2000):
        user = f"user-{i}" if i % 2 else i
        expected = bucketing.is_canary("new_checkout", user, 33.33)
        assert client.is_enabled("new_checkout", user) is expected
        assert client.evaluate("new_checkout", user).value is expected


def test_not_ready_answers_the_default(make_client):
    client = make_client()
    assert client.is_enabled("new_checkout", "u", default=True) is True
    assert client.evaluate("new_checkout", "u").reason == "not_ready"
    assert client.status == "not_ready"


def test_unknown_flags_and_bad_ids_log_once_per_kind(make_client, caplog):
    client = make_client(bootstrap=snapshot(flag()))
    with caplog.at_level(logging.WARNING, logger="flagsvc_client"):
        for _ in range(1000):
            client.is_enabled("nope", "u")
            client.is_enabled("new_checkout", None)
            client.record("nope", "u")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages
    assert all(r.name == "flagsvc_client" for r in caplog.records)


def test_track_times_the_block_and_counts_exceptions_as_errors(make_client, transport):
    client = make_client(bootstrap=snapshot(flag(percent=100.0)))
    with client.track("new_checkout", "u") as canary:
        assert canary is True
    with pytest.raises(ZeroDivisionError), client.track("new_checkout", "u"):
        1 / 0  # noqa: B018
    with pytest.raises(KeyboardInterrupt), client.track("new_checkout", "u"):
        raise KeyboardInterrupt  # not an outcome of the code under test
    transport.answer("/sdk/v1/outcomes", ACK)
    assert client.flush(0)
    arm = transport.posted()[0]["flags"]["new_checkout"]["arms"]["canary"]
    assert (arm["count"], arm["errors"], arm["error_users"], sum(arm["latency"].values())) == (2, 1, 1, 2)


def test_settings_are_one_frozen_object_checked_at_construction():
    settings = ClientSettings(url="http://x", flush_interval=1.5)
    with pytest.raises(AttributeError):
        settings.flush_interval = 3  # type: ignore[misc]
    assert settings.replace(flush_interval=2).flush_interval == 2 and settings.flush_interval == 1.5
    assert settings == ClientSettings(url="http://x", flush_interval=1.5)
    assert "flush_interval=1.5" in repr(ClientSettings(url="http://x", flush_interval=1.5, sdk_key="s"))
    assert "'s'" not in repr(ClientSettings(url="http://x", sdk_key="s"))  # the key is not logged
    for bad in ({"flush_interval": 0}, {"poll_interval": float("nan")}, {"stream": "yes"}, {"nope": 1},
                {"max_buckets_per_arm": 2.5}, {"max_arms": 1e3}, {"max_arms": True}, {"poll_interval": 10**400}):
        with pytest.raises((TypeError, ValueError)):
            ClientSettings(url="http://x", **bad)
    with pytest.raises(ValueError):
        FlagClient(None)  # a URL is needed unless offline
    with pytest.raises(ValueError):
        FlagClient("ftp://x")


# -- never throws ------------------------------------------------------------------------------------------

odd_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(), st.binary(),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
odd_flags = st.fixed_dictionaries(
    {},
    optional={
        "key": odd_values, "state": st.sampled_from(["rolling", "off", "rolled_back", "x"]) | odd_values,
        "percent": st.floats(allow_nan=True, allow_infinity=True) | st.integers() | odd_values,
        "revision": st.integers() | odd_values, "salt": st.text() | odd_values,
        "allow": st.lists(st.text() | st.integers(), max_size=3) | odd_values,
        "deny": st.lists(st.text() | st.integers(), max_size=3) | odd_values,
    },
)  # fmt: skip
odd_snapshots = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"epoch": st.text(max_size=5) | odd_values, "version": st.integers() | odd_values,
         "flags": st.dictionaries(st.text(max_size=6), odd_flags, max_size=3) | odd_values},
    ),
)  # fmt: skip


@pytest.mark.slow  # 300 examples: ~2 s
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(snap=odd_snapshots, flag_key=odd_values, user_id=odd_values, latency=odd_values, ok=odd_values)
def test_nothing_ever_raises(make_client, transport, snap, flag_key, user_id, latency, ok):
    client = make_client(bootstrap=snap if isinstance(snap, dict) else None)
    transport.streams.append(FakeStream(["event: snapshot", f"data: {json.dumps(snap, default=repr)}", ""]))
    client._config_step()
    for key in (flag_key, "new_checkout", ""):
        assert client.is_enabled(key, user_id, default="D") in (True, False, "D")
        assert client.variant(key, user_id) in ("canary", "stable")
        ev = client.evaluate(key, user_id)
        assert ev.reason in ("rollout", "allow_list", "deny_list", "killed", "flag_not_found", "not_ready", "error")
        client.record(key, user_id, ok=ok, latency_ms=latency)
        with client.track(key, user_id):
            pass
    client._outcomes_step()
    assert client.status in ("not_ready", "ready", "stale")
    assert isinstance(client.stats, dict)
    assert client.flush(0) in (True, False)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user_id=st.one_of(st.text(), st.integers()), percent=st.integers(0, 10000))
def test_the_client_agrees_with_the_rule_on_ids_it_never_saw(make_client, user_id, percent):
    client = make_client(bootstrap=snapshot(flag(percent=percent / 100, salt="s")))
    try:
        expected = bucketing.is_canary("s", user_id, percent / 100)
    except UnicodeEncodeError:
        assert client.evaluate("new_checkout", user_id).reason == "error"
        return
    assert client.is_enabled("new_checkout", user_id) is expected
    assert client.evaluate("new_checkout", user_id).value is expected


# -- real threads -------------------------------------------------------------------------------------------


def test_background_threads_follow_the_stream_and_flush_on_their_own():
    transport = FakeTransport()
    transport.streams.append(FakeStream(sse(snapshot(flag(percent=100.0)))))
    transport.answer("/sdk/v1/outcomes", ACK)
    client = FlagClient("http://x", sdk_key="k", transport=transport, flush_interval=0.05)
    try:
        assert client.wait_until_ready(5)
        assert client.is_enabled("new_checkout", "u") is True
        client.record("new_checkout", "u")
        assert wait_for(lambda: client.stats["batches_acknowledged"] == 1)
        names = {t.name for t in client._threads}
        assert names == {"flagsvc-config", "flagsvc-outcomes"} and all(t.daemon for t in client._threads)
    finally:
        client.close(timeout=1)
    assert not any(t.is_alive() for t in client._threads)


def test_close_flushes_and_the_context_manager_closes():
    transport = FakeTransport()
    transport.answer("/sdk/v1/outcomes", ACK)
    with FlagClient("http://x", transport=transport, bootstrap=snapshot(flag()), flush_interval=60) as client:
        client.record("new_checkout", "u")
    assert len(transport.posted()) == 1
    client.record("new_checkout", "u")  # after close: nowhere to go, no error
    # still answers from the last config (flag(): 50 %, salted with its key), not with the default (False)
    canary_user = next(f"u{i}" for i in range(100) if bucketing.is_canary("new_checkout", f"u{i}", 50.0))
    assert client.is_enabled("new_checkout", canary_user) is True
    client.close()  # twice is fine


def test_a_bug_in_a_background_step_does_not_kill_its_thread():
    transport = FakeTransport()
    transport.streams.append(FakeStream(sse(snapshot(flag()))))
    client = FlagClient("http://x", transport=transport, background=False)
    calls = []

    def broken() -> float:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("bug")
        return client._sync.step()

    thread = spawn_loop("t", broken, client._stop, client._wake_config, client._log, delay_after_bug=0.01)
    assert client.wait_until_ready(5)
    client._stop.set()
    client._wake_config.set()
    thread.join(2)
    assert len(calls) >= 2


# -- fork ----------------------------------------------------------------------------------------------------


def test_a_forked_child_starts_clean_and_restarts_its_threads_lazily():
    transport = FakeTransport()
    transport.streams.append(FakeStream(sse(snapshot(flag(percent=100.0)))))
    transport.answer("/sdk/v1/outcomes", ACK, ACK, ACK)
    client = FlagClient("http://x", transport=transport, flush_interval=60)
    assert client.wait_until_ready(5)
    client.record("new_checkout", "parent")  # pending in the parent: the child must not send it
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        code = 1
        try:
            before = len(transport.posted())
            threads_before = [t.is_alive() for t in client._threads]
            answer = client.is_enabled("new_checkout", "child")  # first use: restarts the threads
            client.record("new_checkout", "child")
            flushed = client.flush(2)
            sent = transport.posted()[before:]
            report = {
                "threads_before": threads_before, "answer": answer, "flushed": flushed,
                "sent_users": sum(a["count"] for b in sent for a in b["flags"]["new_checkout"]["arms"].values()),
                "threads_after": sorted(t.name for t in client._threads if t.is_alive()),
                "status": client.status,
            }  # fmt: skip
            os.write(write_end, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    report = json.loads(os.read(read_end, 65536))
    os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report["threads_before"] == []
    assert report["answer"] is True and report["flushed"] is True
    assert report["sent_users"] == 1  # the child's outcome only: the parent's was not copied into it
    assert report["threads_after"] == ["flagsvc-config", "flagsvc-outcomes"]
    assert client.flush(2) is True  # the parent still sends its own
    parent_sent = transport.posted()
    assert sum(a["count"] for b in parent_sent for a in b["flags"]["new_checkout"]["arms"].values()) == 1
    client.close(timeout=1)


def test_importing_the_sdk_stays_light():
    # heavy modules are imported on first use, not by `import flagsvc_client` (the 50 ms import budget)
    code = (
        "import sys; import flagsvc_client; "
        "heavy = {'http.client', 'ssl', 'email', 'logging', 'json', 'dataclasses', 'inspect', 'typing', "
        "'uuid', 'random', 'tempfile', 'prometheus_client'}; print(sorted(heavy & set(sys.modules)))"
    )
    import subprocess

    import flagsvc_client

    path = [str(Path(flagsvc_client.__file__).parents[1]), *sys.path]  # -S: no site, no editable finder
    out = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path[:0] = {path!r}; {code}"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out.strip() == "[]"


def test_track_records_in_the_arm_and_revision_it_served_even_if_the_config_changes(make_client, transport):
    client = make_client(bootstrap=snapshot(flag(percent=100.0, revision=5), version=1))
    with client.track("new_checkout", "u") as canary:
        assert canary is True
        client._apply(parse_snapshot(snapshot(flag(percent=0.0, revision=6), version=2)))  # rolled back mid-request
    transport.answer("/sdk/v1/outcomes", ACK)
    assert client.flush(0)
    [batch] = transport.posted()
    entry = batch["flags"]["new_checkout"]
    assert entry["revision"] == 5 and entry["arms"]["canary"]["count"] == 1

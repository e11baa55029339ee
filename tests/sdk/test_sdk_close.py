"""close() and the flush at interpreter exit: what is recorded gets sent, the wait is bounded (server down or
hanging), a forked child sends its own outcomes only, and registering a client never keeps it alive."""

from __future__ import annotations

import gc
import json
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path

import flagsvc_client
import pytest
from flagsvc_client import ClientSettings, FlagClient, _lifecycle
from flagsvc_client._transport import Response, TransportError

from tests.support.sdk_fake_server import FakeFlagServer
from tests.support.sdk_fakes import FakeTransport, flag, snapshot

ACK = Response(200, {}, b"{}")
SNAP = snapshot(flag(percent=50.0))


class HangingTransport(FakeTransport):
    """A server that accepts the connection and never answers (until `release`)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def request(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | None, timeout: float
    ) -> Response:
        self.requests.append({"method": method, "path": path, "headers": dict(headers), "body": body})
        self.release.wait(30)
        raise TransportError("timed out")


def sent_count(transport: FakeTransport) -> int:
    return sum(arm["count"] for b in transport.posted() for e in b["flags"].values() for arm in e["arms"].values())


def manual_client(transport: FakeTransport, **settings: object) -> FlagClient:
    return FlagClient("http://x", sdk_key="k", transport=transport, bootstrap=SNAP, background=False,
                      flush_interval=60, **settings)  # fmt: skip


# -- close() ----------------------------------------------------------------------------------------------


def test_close_sends_what_was_recorded_then_answers_from_the_last_config_and_records_nothing():
    transport = FakeTransport()
    transport.answer("/sdk/v1/outcomes", ACK, ACK)
    client = manual_client(transport)
    for i in range(10):
        client.record("new_checkout", f"u{i}", ok=i != 3, latency_ms=5.0)
    answers = {f"u{i}": client.is_enabled("new_checkout", f"u{i}") for i in range(20)}
    client.close(timeout=2)
    assert sent_count(transport) == 10 and client.stats["outcomes_acknowledged"] == 10
    assert {u: client.is_enabled("new_checkout", u) for u in answers} == answers
    assert client.evaluate("new_checkout", "u1").reason == "rollout"
    client.record("new_checkout", "u1")  # nowhere to go: no error, nothing sent
    client.record("new_checkout", "u1", ok=False, latency_ms=float("nan"))
    client.close(timeout=2)  # twice: nothing more happens
    assert client.flush(1) is True
    assert len(transport.posted()) == 1 and sent_count(transport) == 10


def test_close_with_threads_running_stops_them_after_the_flush():
    transport = FakeTransport()
    transport.answer("/sdk/v1/outcomes", ACK)
    client = FlagClient("http://x", sdk_key="k", transport=transport, bootstrap=SNAP, stream=False, flush_interval=60)
    client.record("new_checkout", "u")
    client.close(timeout=2)
    assert sent_count(transport) == 1
    assert client._threads and not any(t.is_alive() for t in client._threads)


@pytest.mark.parametrize("server", ["down", "hanging"])
def test_close_waits_at_most_its_timeout(server):
    transport = HangingTransport() if server == "hanging" else FakeTransport()
    transport.default = TransportError("refused", refused=True)
    client = manual_client(transport, backoff_initial=0.05, backoff_max=0.05)
    client.record("new_checkout", "u")
    started = time.monotonic()
    client.close(timeout=0.3)
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 1.0, elapsed  # it tried for the whole timeout, and no longer
    assert transport.posted()  # it did try
    if server == "hanging":
        transport.release.set()
    client.record("new_checkout", "u")  # closed all the same: nothing counted, the undelivered batch kept
    assert len(client._window) == 0 and client.stats["batches_pending"] == 1


def test_close_says_how_many_outcomes_it_could_not_deliver(caplog):
    transport = FakeTransport()
    transport.default = Response(429, {"Retry-After": "30"}, b"")  # the server is rate-limiting this key
    client = manual_client(transport)
    for n in range(7):
        client.record("new_checkout", f"u{n}")
    with caplog.at_level("WARNING", logger="flagsvc_client"):
        client.close(timeout=0.2)
    assert "closing with 7 outcome(s) the server has not acknowledged" in caplog.text


def test_close_with_no_timeout_sends_nothing():
    transport = FakeTransport()
    client = manual_client(transport)
    client.record("new_checkout", "u")
    client.close(timeout=0)
    assert transport.requests == []


# -- the exit hook ------------------------------------------------------------------------------------------


def test_exit_flush_timeout_is_a_setting_and_zero_turns_it_off():
    assert ClientSettings(url="http://x").exit_flush_timeout == 3.0
    assert ClientSettings(url="http://x", exit_flush_timeout=0).exit_flush_timeout == 0
    for bad in (-1, float("nan"), float("inf"), "3", True):
        with pytest.raises((ValueError, TypeError)):
            ClientSettings(url="http://x", exit_flush_timeout=bad)

    transport = FakeTransport()
    client = manual_client(transport, exit_flush_timeout=0)
    client.record("new_checkout", "u")
    client._close_at_exit(time.monotonic())
    assert transport.requests == [] and not client._closed


def test_the_exit_hook_closes_within_what_is_left_of_the_shared_budget():
    transport = HangingTransport()
    client = manual_client(transport, exit_flush_timeout=1.0)
    client.record("new_checkout", "u")
    started = time.monotonic()
    client._close_at_exit(started - 0.8)  # other clients used 0.8 s of the budget already
    elapsed = time.monotonic() - started
    transport.release.set()
    assert client._closed and elapsed < 0.6, elapsed


def test_a_client_is_registered_weakly():
    client = manual_client(FakeTransport())
    assert client in set(_lifecycle._clients)
    ref = weakref.ref(client)
    del client
    gc.collect()
    assert ref() is None


# -- real interpreter exits ---------------------------------------------------------------------------------

SDK_PATH = str(Path(flagsvc_client.__file__).parents[1])


def run_python(code: str, timeout: float = 20) -> tuple[float, str]:
    """Run `code` in a fresh interpreter; (when it ended on the monotonic clock, its stdout)."""
    done = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {SDK_PATH!r})\n{code}"],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return time.monotonic(), done.stdout


@pytest.fixture
def fake_server():
    server = FakeFlagServer({"new_checkout": flag(percent=50.0)}, heartbeat=0.2, sdk_key="k")
    url = server.start()
    yield server, url
    server.stop()


def counted(server: FakeFlagServer) -> int:
    return sum(t["count"] for t in server.totals.values())


def test_outcomes_are_flushed_at_interpreter_exit_without_any_call(fake_server):
    server, url = fake_server
    run_python(f"""
from flagsvc_client import FlagClient
client = FlagClient({url!r}, sdk_key="k", flush_interval=60)
assert client.wait_until_ready(5)
for i in range(500):
    client.record("new_checkout", f"u{{i}}", ok=i % 10 != 0, latency_ms=3.0)
""")
    assert counted(server) == 500 and server.duplicates == 0
    assert sum(t["errors"] for t in server.totals.values()) == 50


def test_a_forked_child_flushes_its_own_outcomes_at_exit_and_never_the_parents(fake_server):
    server, url = fake_server
    run_python(f"""
import os
from flagsvc_client import FlagClient
client = FlagClient({url!r}, sdk_key="k", flush_interval=60)
assert client.wait_until_ready(5)
client.record("new_checkout", "parent")
pid = os.fork()
if pid == 0:  # a worker: records two, exits the normal way (atexit runs, as in a gunicorn worker)
    client.record("new_checkout", "child-1")
    client.record("new_checkout", "child-2")
    sys.exit(0)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
""")
    assert counted(server) == 3 and server.duplicates == 0
    assert len(server.applied_batches) == 2  # one from each process


@pytest.mark.parametrize("server", ["down", "hanging"])
def test_the_exit_flush_is_bounded_when_the_server_is_unreachable(server):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        if server == "hanging":
            listener.listen(8)  # connections are accepted by the kernel, and never answered
        else:
            listener.close()  # refused
        snap = json.dumps(SNAP)
        ended, out = run_python(f"""
import json, time
from flagsvc_client import FlagClient
client = FlagClient("http://127.0.0.1:{port}", sdk_key="k", bootstrap=json.loads({snap!r}), exit_flush_timeout=0.5)
client.record("new_checkout", "u")
print(time.monotonic())  # the same clock as the test's (CLOCK_MONOTONIC): from here on, the exit
""")
    exiting = ended - float(out)
    assert 0.4 <= exiting < 2.0, exiting  # it tried for its 0.5 s, and not for request_timeout (10 s)

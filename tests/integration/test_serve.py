"""`flagsvc serve` as an operator runs it: embedded Redis, generated tokens, restarts on the same data dir."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support import wait_for
from tests.support.servers import Server, alive, redis_pid

# Each test starts one or two real `flagsvc serve` processes (seconds each): not in the fast loop.
pytestmark = pytest.mark.slow


def test_state_survives_restarts_and_a_crash(tmp_path):
    data_dir = tmp_path / "data"
    server = Server(data_dir)
    assert "admin token:" in server.output()
    requests.post(f"{server.url}/api/v1/flags", json={"key": "new_checkout"}, headers=server.admin).raise_for_status()
    requests.post(f"{server.url}/api/v1/flags/new_checkout/start", headers=server.admin).raise_for_status()
    put = requests.put(f"{server.url}/api/v1/flags/new_checkout/percent", json={"percent": 25}, headers=server.admin)
    before = put.json()
    embedded_pid = redis_pid(data_dir)
    assert embedded_pid and alive(embedded_pid)

    assert server.stop(signal.SIGTERM) == 0  # clean shutdown: exit 0, embedded Redis stopped with it
    assert wait_for(lambda: not alive(embedded_pid)), f"embedded redis-server {embedded_pid} outlived the server"

    server = Server(data_dir)  # same data dir, same tokens
    after = requests.get(f"{server.url}/api/v1/flags/new_checkout", headers=server.admin).json()
    assert (after["revision"], after["percent"], after["state"]) == (before["revision"], 25.0, "manual")
    snapshot = requests.get(f"{server.url}/sdk/v1/flags", headers=server.admin).json()
    assert snapshot["flags"]["new_checkout"]["percent"] == 25.0

    server.stop(signal.SIGKILL)  # a crash: no cleanup ran
    server = Server(data_dir)  # recovers: the orphan (if any) is taken over, the AOF loads
    again = requests.get(f"{server.url}/api/v1/flags/new_checkout", headers=server.admin).json()
    assert again["revision"] == before["revision"]
    assert server.stop() == 0


def test_two_workers_one_leader_and_a_clean_stop(tmp_path):
    data_dir = tmp_path / "data"
    interval = 0.2  # the controller ticks (tries for the lease) this often; its lease lasts 1 s
    server = Server(data_dir, "--workers", "2", env={"FLAGSVC_CONTROLLER_INTERVAL": str(interval)})
    requests.post(f"{server.url}/api/v1/flags", json={"key": "a"}, headers=server.admin).raise_for_status()
    assert wait_for(lambda: server.output().count("Booting worker with pid") == 2, 20), server.output()
    assert wait_for(lambda: "leads (token" in server.output(), 10), server.output()
    # The subject, not synchronisation: nothing announces that a follower tried and lost, so "only one leader"
    # is checked over a window of several intervals in which both workers' controllers try for the lease.
    time.sleep(5 * interval)
    leaders = [line for line in server.output().splitlines() if "leads (token" in line]
    assert len(leaders) == 1, server.output()
    embedded_pid = redis_pid(data_dir)
    assert embedded_pid and alive(embedded_pid)
    assert server.stop() == 0
    assert wait_for(lambda: not alive(embedded_pid)), f"embedded redis-server {embedded_pid} outlived the server"


def test_sigterm_under_load_finishes_requests_and_hands_over_leadership(tmp_path, redis_url, namespace):
    """Two replicas on one Redis. The leader gets SIGTERM while busy: every request it accepted is answered,
    it exits 0 within seconds, its open SDK stream ends, and the other replica leads at once (not after the
    lease expires)."""
    env = {"FLAGSVC_REDIS_URL": redis_url, "FLAGSVC_REDIS_NAMESPACE": namespace,
           "FLAGSVC_ADMIN_TOKENS": "ops=admin-token-123", "FLAGSVC_SDK_KEYS": "web=sdk-key-12345",
           "FLAGSVC_CONTROLLER_INTERVAL": "2"}
    first = Server(tmp_path / "a", env=env)
    assert wait_for(lambda: "leads (token" in first.output(), 10), first.output()  # the first one leads
    second = Server(tmp_path / "b", env=env)
    requests.post(f"{first.url}/api/v1/flags", json={"key": "a"}, headers=first.admin).raise_for_status()
    assert "leads (token" in first.output() and "leads (token" not in second.output()

    stream = requests.get(f"{first.url}/sdk/v1/stream", headers={"Authorization": "Bearer sdk-key-12345"},
                          stream=True, timeout=10)
    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal answered
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    response = session.get(f"{first.url}/api/v1/flags/a", headers=first.admin, timeout=5)
                except requests.ConnectionError:
                    return  # refused: the server stopped accepting, which is fine
                if response.status_code != 200:
                    failures.append(str(response.status_code))
                answered += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    assert wait_for(lambda: answered >= 20), "no load reached the server"  # requests in flight when SIGTERM lands
    stopped_at = time.monotonic()
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(15) == 0
    took = time.monotonic() - stopped_at
    stop.set()
    for t in threads:
        t.join(5)
    assert failures == [] and answered > 0
    assert took < 8, took
    # the stream ended instead of hanging (a hang raises the 10 s read timeout), having sent the snapshot first
    remaining = b"".join(stream.iter_content(chunk_size=None))
    assert remaining.startswith(b"event: snapshot\n"), remaining[:200]
    # well under the 6 s lease: handed over, not expired
    assert wait_for(lambda: "leads (token" in second.output(), 4), second.output()
    assert second.stop() == 0


def test_json_logs_are_json_lines_gunicorns_included(tmp_path, redis_url, namespace):
    env = {"FLAGSVC_REDIS_URL": redis_url, "FLAGSVC_REDIS_NAMESPACE": namespace,
           "FLAGSVC_ADMIN_TOKENS": "ops=admin-token-123", "FLAGSVC_SDK_KEYS": "web=sdk-key-12345"}
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    server = Server(tmp_path / "a", "--workers", "2", "--log-format", "json", env={**env, "TMPDIR": str(scratch)})
    requests.post(f"{server.url}/api/v1/flags", json={"key": "a"}, headers=server.admin).raise_for_status()
    assert [p.name[:16] for p in scratch.iterdir()] == ["flagsvc-metrics-"]  # the workers' metric files
    assert server.stop() == 0
    assert list(scratch.iterdir()) == []  # removed at exit
    written = Path(server.log.name).read_text()  # the whole log, shutdown included
    lines = [line for line in written.splitlines() if line and not line.startswith("flagsvc: ")]
    records = [json.loads(line) for line in lines]  # every line, or this raises
    loggers = {r["logger"] for r in records}
    assert {"gunicorn.error", "flagsvc.controller"} <= loggers, loggers
    assert "gunicorn.access" not in loggers  # no access log line per request (a 304 poll is most traffic)

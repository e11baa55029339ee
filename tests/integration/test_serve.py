"""`flagsvc serve` as an operator runs it: embedded Redis, generated tokens, restarts on the same data dir."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith("FLAGSVC_")}
        env = {**base, "FLAGSVC_DATA_DIR": str(data_dir), **(env or {})}
        self.log = (data_dir.parent / f"serve-{self.port}.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flagsvc", "serve", "--port", str(self.port), "--threads", "8", *extra],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                if requests.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            raise AssertionError("server did not become ready:\n" + self.output())
        if "FLAGSVC_ADMIN_TOKENS" in env:
            self.admin = {"Authorization": "Bearer " + env["FLAGSVC_ADMIN_TOKENS"].split("=", 1)[1]}
        else:
            tokens = json.loads((data_dir / "tokens.json").read_text())
            self.admin = {"Authorization": "Bearer " + next(iter(tokens["admin_tokens"].values()))}

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(20)
        self.log.close()
        return code


def redis_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "redis.pid").read_text())
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


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
    time.sleep(0.2)
    assert not alive(embedded_pid)

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
    server = Server(data_dir, "--workers", "2")
    requests.post(f"{server.url}/api/v1/flags", json={"key": "a"}, headers=server.admin).raise_for_status()
    time.sleep(2.5)  # a controller interval or so: both workers have tried for the lease
    leaders = [line for line in server.output().splitlines() if "leads (token" in line]
    assert len(leaders) == 1, server.output()
    embedded_pid = redis_pid(data_dir)
    assert server.stop() == 0
    time.sleep(0.2)
    assert not alive(embedded_pid)


def test_sigterm_under_load_finishes_requests_and_hands_over_leadership(tmp_path, redis_url, namespace):
    """Two replicas on one Redis. The leader gets SIGTERM while busy: every request it accepted is answered,
    it exits 0 within seconds, its open SDK stream ends, and the other replica leads at once (not after the
    lease expires)."""
    env = {"FLAGSVC_REDIS_URL": redis_url, "FLAGSVC_REDIS_NAMESPACE": namespace,
           "FLAGSVC_ADMIN_TOKENS": "ops=admin-token-123", "FLAGSVC_SDK_KEYS": "web=sdk-key-12345",
           "FLAGSVC_CONTROLLER_INTERVAL": "2"}
    first = Server(tmp_path / "a", env=env)
    time.sleep(0.5)
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
    time.sleep(0.5)
    stopped_at = time.monotonic()
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(15) == 0
    took = time.monotonic() - stopped_at
    stop.set()
    for t in threads:
        t.join(5)
    assert failures == [] and answered > 0
    assert took < 8, took
    remaining = b"".join(stream.iter_content(chunk_size=None))  # the stream ended instead of hanging
    assert isinstance(remaining, bytes)
    deadline = time.monotonic() + 4  # well under the 6 s lease: handed over, not expired
    while "leads (token" not in second.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "leads (token" in second.output(), second.output()
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

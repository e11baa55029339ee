"""`flagsvc serve --operator-port`: operators get a listener of their own, served by a worker of its own, which
answers while every SDK worker is stopped dead, and which gunicorn replaces by another operator worker if it dies."""

from __future__ import annotations

import os
import re
import signal
import socket
from pathlib import Path

import pytest
import requests

from tests.support import wait_for
from tests.support.servers import Server, free_port, redis_pid

pytestmark = pytest.mark.slow

OPERATOR_LINE = re.compile(r"worker (\d+) serves the operator listener")


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.add(int(entry.name))
    return found


def operator_workers(server: Server) -> list[int]:
    return [int(pid) for pid in OPERATOR_LINE.findall(server.output())]


def answers_within(url: str, seconds: float, headers: dict[str, str] | None = None) -> int | None:
    try:
        return requests.get(url, headers=headers, timeout=seconds).status_code
    except requests.RequestException:
        return None


def test_operators_are_answered_while_every_sdk_worker_is_stopped(tmp_path: Path) -> None:
    operator_port = free_port()
    server = Server(tmp_path / "data", "--workers", "2", "--operator-port", str(operator_port))
    operators = f"http://127.0.0.1:{operator_port}"
    try:
        assert wait_for(lambda: len(operator_workers(server)) == 1, 20), server.output()
        (operator_pid,) = operator_workers(server)
        def sdk_workers_now() -> set[int]:
            return children(server.proc.pid) - {operator_pid, redis_pid(tmp_path / "data")}

        # --workers 2 for the SDK listener, and one more for operators (forked one after the other)
        assert wait_for(lambda: len(sdk_workers_now()) == 2, 20), (sdk_workers_now(), server.output())
        sdk_workers = sdk_workers_now()
        assert requests.post(f"{operators}/api/v1/flags", json={"key": "op"}, headers=server.admin,
                             timeout=10).status_code == 201

        for pid in sdk_workers:
            os.kill(pid, signal.SIGSTOP)
        try:
            # The SDK listener is served by the stopped workers alone: its connections are accepted by the kernel
            # and never answered. The operator listener answers: admin API, health, readiness, metrics.
            assert answers_within(f"{server.url}/healthz", 1.0) is None
            assert answers_within(f"{operators}/api/v1/flags/op", 10, server.admin) == 200
            assert answers_within(f"{operators}/healthz", 10) == 200
            assert answers_within(f"{operators}/readyz", 10) == 200
            assert answers_within(f"{operators}/metrics", 10) == 200
        finally:
            for pid in sdk_workers:
                os.kill(pid, signal.SIGCONT)
        assert wait_for(lambda: answers_within(f"{server.url}/healthz", 2) == 200, 20)
    finally:
        assert server.stop() == 0, server.output()


def test_a_dead_operator_worker_is_replaced_by_an_operator_worker(tmp_path: Path) -> None:
    operator_port = free_port()
    server = Server(tmp_path / "data", "--workers", "1", "--operator-port", str(operator_port))
    operators = f"http://127.0.0.1:{operator_port}"
    try:
        assert wait_for(lambda: len(operator_workers(server)) == 1, 20), server.output()
        (first,) = operator_workers(server)
        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: len(operator_workers(server)) == 2, 30), server.output()
        second = operator_workers(server)[1]
        assert second != first
        assert wait_for(lambda: answers_within(f"{operators}/healthz", 2) == 200, 20)
        # Still exactly one worker per listener: the replacement took the operator role, not a second SDK one.
        assert wait_for(lambda: len(children(server.proc.pid) - {redis_pid(tmp_path / "data")}) == 2, 20)
    finally:
        assert server.stop() == 0, server.output()


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTTOU], ids=["SIGHUP", "SIGTTOU"])
def test_a_reload_or_fewer_workers_keeps_the_operator_listener_served(tmp_path: Path, sig: signal.Signals) -> None:
    """SIGHUP forks new workers before stopping the old, SIGTTOU stops one: gunicorn's own rule (the oldest go)
    would stop the operator worker and leave its listener unserved."""
    operator_port = free_port()
    server = Server(tmp_path / "data", "--workers", "2", "--operator-port", str(operator_port))
    operators = f"http://127.0.0.1:{operator_port}"
    data = tmp_path / "data"
    try:
        assert wait_for(lambda: len(children(server.proc.pid) - {redis_pid(data)}) == 3, 20), server.output()
        before = children(server.proc.pid) - {redis_pid(data)}
        server.proc.send_signal(sig)
        wanted = 3 if sig == signal.SIGHUP else 2
        assert wait_for(lambda: len(children(server.proc.pid) - {redis_pid(data)}) == wanted
                        and children(server.proc.pid) != before | {redis_pid(data)}, 30), server.output()
        (operator_pid,) = [pid for pid in operator_workers(server) if pid in children(server.proc.pid)]
        assert answers_within(f"{operators}/api/v1/flags", 10, server.admin) == 200
        os.kill(operator_pid, signal.SIGSTOP)  # and it is the operator worker that answers there
        try:
            assert answers_within(f"{operators}/healthz", 1.0) is None
        finally:
            os.kill(operator_pid, signal.SIGCONT)
        assert wait_for(lambda: answers_within(f"{server.url}/healthz", 2) == 200, 20)
    finally:
        assert server.stop() == 0, server.output()


def test_the_operator_port_must_differ_from_the_port(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "flagsvc", "serve", "--port", str(port), "--operator-port", str(port)],
                          env={**os.environ, "FLAGSVC_DATA_DIR": str(tmp_path)}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "--operator-port must differ from --port" in done.stderr

"""`flagsvc serve --operator-port`: operators get a listener of their own, served by a worker of its own, which
answers while every SDK worker is stopped dead, and which gunicorn replaces by another operator worker if it dies."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
from collections.abc import Iterator
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


@contextlib.contextmanager
def operator_listener_server(tmp_path: Path, workers: int) -> Iterator[tuple[Server, str]]:
    """`flagsvc serve --workers N --operator-port P`, once its operator worker and its N SDK workers are up;
    (the server, the operator listener's URL). Stopped at the end, and it must exit 0."""
    operator_port = free_port()
    server = Server(tmp_path / "data", "--workers", str(workers), "--operator-port", str(operator_port))
    try:
        assert wait_for(lambda: len(operator_workers(server)) == 1, 20), server.output()
        assert wait_for(lambda: len(workers_of(server)) == workers + 1, 20), server.output()  # forked one by one
        yield server, f"http://127.0.0.1:{operator_port}"
    finally:
        assert server.stop() == 0, server.output()


def workers_of(server: Server) -> set[int]:
    return children(server.proc.pid) - {redis_pid(server.data_dir)}


def live_operator_worker(server: Server) -> int:
    (pid,) = [pid for pid in operator_workers(server) if pid in workers_of(server)]
    return pid


def test_operators_are_answered_while_every_sdk_worker_is_stopped_and_a_dead_operator_worker_is_replaced(
        tmp_path: Path) -> None:
    with operator_listener_server(tmp_path, workers=2) as (server, operators):
        operator_pid = live_operator_worker(server)
        sdk_workers = workers_of(server) - {operator_pid}
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

        # The operator worker dies: gunicorn forks a replacement, and it serves the operator listener again.
        os.kill(operator_pid, signal.SIGKILL)
        assert wait_for(lambda: len(operator_workers(server)) == 2, 30), server.output()
        assert operator_workers(server)[1] != operator_pid
        assert wait_for(lambda: answers_within(f"{operators}/healthz", 2) == 200, 20)
        # Still one worker per listener role: the replacement took the operator role, not another SDK one.
        assert wait_for(lambda: workers_of(server) == sdk_workers | {operator_workers(server)[1]}, 20)


def test_a_reload_or_fewer_workers_keeps_the_operator_listener_served(tmp_path: Path) -> None:
    """SIGHUP forks new workers before stopping the old, SIGTTOU stops one: gunicorn's own rule (the oldest go)
    would stop the operator worker and leave its listener unserved."""
    with operator_listener_server(tmp_path, workers=2) as (server, operators):
        for sig, wanted in ((signal.SIGHUP, 3), (signal.SIGTTOU, 2)):
            before = workers_of(server)
            server.proc.send_signal(sig)
            assert wait_for(lambda wanted=wanted, before=before: len(workers_of(server)) == wanted
                            and workers_of(server) != before, 30), (sig, server.output())
            operator_pid = live_operator_worker(server)
            assert answers_within(f"{operators}/api/v1/flags", 10, server.admin) == 200
            os.kill(operator_pid, signal.SIGSTOP)  # and it is the operator worker that answers there
            try:
                assert answers_within(f"{operators}/healthz", 1.0) is None, sig
            finally:
                os.kill(operator_pid, signal.SIGCONT)
            assert wait_for(lambda: answers_within(f"{server.url}/healthz", 2) == 200, 20)


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

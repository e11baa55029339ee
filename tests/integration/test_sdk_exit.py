"""No outcome lost on a clean exit: a real gunicorn app using the SDK as the READMEs show, under load, SIGTERMed
while requests are in flight, and a real `flagsvc serve` on a real redis-server counting what arrived.

The app (tests/support/outcome_app.py) builds its client at import and does nothing at exit: the SDK's own exit
flush has to deliver every outcome. Every response the driver got stands for exactly one recorded outcome, and
every worker also writes what it recorded at exit; the server must have counted exactly that many, per arm.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support import wait_for
from tests.support.servers import Server, free_port

ADMIN_TOKEN = "admin-token-exit-1"
SDK_KEY = "sdk-key-exit-12345"
FLAG = "exit_checkout"
REPO = Path(__file__).resolve().parents[2]


class Driver:
    """`threads` clients sending GET /?u<n> on fresh connections, until stopped or `limit` requests were sent.
    Counts the 200 answers per arm; a cut connection is not an answer and counts nothing; a refused one (the
    listener is gone: gunicorn is shutting down) also ends that thread."""

    def __init__(self, port: int, threads: int = 8, limit: int = 20_000) -> None:
        self.port, self.limit = port, limit
        self.answers: dict[str, int] = {"canary": 0, "stable": 0}
        self.answered_at: list[float] = []  # time.monotonic() of each answer
        self.failed = 0
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._next = 0
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def _take(self) -> int | None:
        with self._lock:
            if self.stop.is_set() or self._next >= self.limit:
                return None
            self._next += 1
            return self._next

    def _run(self) -> None:
        while (n := self._take()) is not None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", f"/?u{n}", headers={"Connection": "close"})
                response = conn.getresponse()
                body = response.read().decode()
                ok = response.status == 200 and body in self.answers
            except ConnectionRefusedError:
                return
            except (OSError, http.client.HTTPException):
                ok = False
            finally:
                conn.close()
            with self._lock:
                if ok:
                    self.answers[body] += 1
                    self.answered_at.append(time.monotonic())
                else:
                    self.failed += 1

    @property
    def answered(self) -> int:
        return sum(self.answers.values())

    def join(self, timeout: float) -> None:
        self.stop.set()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "driver threads still running"


@pytest.fixture
def flag_server(tmp_path, redis_url, namespace):
    env = {"FLAGSVC_REDIS_URL": redis_url, "FLAGSVC_REDIS_NAMESPACE": namespace,
           "FLAGSVC_ADMIN_TOKENS": f"ops={ADMIN_TOKEN}", "FLAGSVC_SDK_KEYS": f"web={SDK_KEY}"}  # fmt: skip
    server = Server(tmp_path / "flagsvc", "--workers", "2", env=env)
    try:
        for method, path, body in (("POST", "", {"key": FLAG}), ("PUT", f"/{FLAG}/percent", {"percent": 50})):
            response = requests.request(method, f"{server.url}/api/v1/flags{path}", json=body, headers=server.admin,
                                        timeout=5)  # fmt: skip
            assert response.ok, f"{method} {path}: {response.status_code} {response.text}\n{server.output()}"
        yield server
    finally:
        server.stop()


def start_gunicorn(
    tmp_path: Path, server: Server, worker_class: str, settings: dict[str, float], *extra: str
) -> tuple[subprocess.Popen, int]:
    counts = tmp_path / "counts"
    counts.mkdir()
    port = free_port()
    env = {**os.environ, "OUTCOME_APP_URL": server.url, "OUTCOME_APP_SDK_KEY": SDK_KEY, "OUTCOME_APP_FLAG": FLAG,
           "OUTCOME_APP_COUNTS": str(counts), "OUTCOME_APP_SETTINGS": json.dumps(settings),
           "OUTCOME_APP_WORK_MS": "3"}  # fmt: skip
    log = (tmp_path / "gunicorn.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--chdir", str(REPO), "-b", f"127.0.0.1:{port}", "-w", "2",
         "-k", worker_class, "--threads", "4", "--graceful-timeout", "20", *extra, "tests.support.outcome_app:app"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    return proc, port


def probe(port: int, answered: dict[str, int]) -> bool:
    """One request (the app records it too): True, and its arm counted in `answered`, once the app answers."""
    try:
        response = requests.get(f"http://127.0.0.1:{port}/?probe", timeout=5)
    except requests.ConnectionError:
        return False
    if response.status_code == 200:
        answered[response.text] = answered.get(response.text, 0) + 1
    return response.status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize(
    ("worker_class", "settings", "extra"),
    [
        # several periodic flushes during the load: the exit flush races the outcomes thread's own sends
        ("gthread", {"flush_interval": 0.3}, ()),
        # the client built once in the master and forked: each worker sends its own outcomes, the master none
        ("sync", {}, ("--preload",)),
    ],
)
def test_sigterm_under_load_loses_no_recorded_outcome(tmp_path, flag_server, worker_class, settings, extra):
    """Both cases lose outcomes without the exit flush (measured: 159 of 1,012, and all 1,012)."""
    proc, port = start_gunicorn(tmp_path, flag_server, worker_class, settings, *extra)
    log = tmp_path / "gunicorn.log"
    try:
        probes: dict[str, int] = {}
        assert wait_for(lambda: proc.poll() is None and probe(port, probes), 30), log.read_text()
        driver = Driver(port)
        assert wait_for(lambda: driver.answered >= 1000, 30), f"only {driver.answered} answers"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # the driver keeps sending: requests are in flight
        code = proc.wait(30)
        exit_seconds = time.monotonic() - started
        driver.join(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert code == 0, log.read_text()

    files = [json.loads(p.read_text()) for p in (tmp_path / "counts").glob("*.json")]
    recorded = sum(f["recorded"] for f in files)
    errors = sum(f["errors"] for f in files)
    stats = requests.get(f"{flag_server.url}/api/v1/flags/{FLAG}/stats", headers=flag_server.admin, timeout=5).json()
    counted = {arm: stats["arms"][arm]["count"] for arm in ("canary", "stable")}
    after_sigterm = sum(t > started for t in driver.answered_at)
    for arm, n in probes.items():
        driver.answers[arm] += n
    summary = (f"{worker_class} {settings} {' '.join(extra)}: answered {driver.answered} {driver.answers}, "
               f"{after_sigterm} of them after SIGTERM, {driver.failed} cut; recorded {recorded} by {len(files)} "
               f"processes; counted {counted}, ingest {stats['ingest']}; exit {exit_seconds:.2f} s")  # fmt: skip
    print(summary)
    assert len([f for f in files if f["recorded"]]) == 2, summary  # both workers served
    assert after_sigterm > 0, summary  # requests were in flight at the signal, and finished
    assert recorded == driver.answered, summary  # every answer is one recorded outcome
    assert sum(counted.values()) == recorded, summary
    assert sum(stats["arms"][arm]["errors"] for arm in counted) == errors, summary
    assert counted == driver.answers, summary
    assert exit_seconds < 10, summary

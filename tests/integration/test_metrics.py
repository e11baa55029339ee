"""/metrics under the production server with several workers: request counts from every worker, and per-flag
rollout gauges that follow the flag."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
import requests

from tests.support import wait_for
from tests.support.servers import Server

pytestmark = pytest.mark.slow  # each test starts a real two-worker `flagsvc serve` (seconds)


def metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + ("{" if labels else " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_follow_flags_and_count_every_worker(tmp_path):
    server = Server(tmp_path / "data", "--workers", "2")
    try:
        requests.post(f"{server.url}/api/v1/flags", json={"key": "new_checkout"}, headers=server.admin)
        requests.post(f"{server.url}/api/v1/flags/new_checkout/start", headers=server.admin)
        for _ in range(40):  # spread over both workers by the kernel
            requests.get(f"{server.url}/api/v1/flags/new_checkout", headers=server.admin)
        etag = requests.get(f"{server.url}/sdk/v1/flags", headers=server.admin).headers["ETag"]
        for _ in range(30):  # mostly answered by the 304 fast path, before Flask: counted all the same
            r = requests.get(f"{server.url}/sdk/v1/flags", headers={**server.admin, "If-None-Match": etag})
            assert r.status_code == 304
        first = requests.get(f"{server.url}/metrics").text
        assert metric(first, "flagsvc_flag_percent", flag="new_checkout") == 1.0
        assert metric(first, "flagsvc_flag_state", flag="new_checkout", state="rolling") == 1.0
        requests.put(f"{server.url}/api/v1/flags/new_checkout/percent", json={"percent": 30}, headers=server.admin)
        second = requests.get(f"{server.url}/metrics").text
        assert metric(second, "flagsvc_flag_percent", flag="new_checkout") == 30.0
        assert metric(second, "flagsvc_flag_state", flag="new_checkout", state="manual") == 1.0
        gets = metric(second, "flagsvc_http_requests_total", endpoint="/api/v1/flags/<key>", method="GET",
                      status="200")
        assert gets == 40.0  # the sum over both workers, whichever answered the scrape
        assert re.search(r'flagsvc_http_request_duration_seconds_bucket\{.*endpoint="/api/v1/flags/<key>"', second)
        assert metric(second, "flagsvc_http_requests_total", endpoint="/sdk/v1/flags", method="GET",
                      status="304") == 30.0
        assert metric(second, "flagsvc_http_request_duration_seconds_count", endpoint="/sdk/v1/flags") == 31.0
        assert metric(second, "flagsvc_controller_leader") == 1.0
    finally:
        assert server.stop() == 0


def _workers(server: Server) -> list[int]:
    """The gunicorn workers: children of the server process running flagsvc (not the embedded redis-server)."""
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    workers = []
    for pid in children:
        try:
            if b"flagsvc" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.append(int(pid))
        except OSError:  # gone meanwhile
            pass
    return workers


def test_a_killed_workers_live_gauges_leave_the_scrape(tmp_path):
    """A worker killed outright (OOM killer, gunicorn's timeout) runs no exit hook of its own: the master marks
    it dead, so its open streams and its leadership stop being reported."""
    server = Server(tmp_path / "data", "--workers", "2")
    try:
        assert wait_for(lambda: len(_workers(server)) == 2, 20), _workers(server)  # ready: one worker answers
        streams = [requests.get(f"{server.url}/sdk/v1/stream", headers=server.admin, stream=True, timeout=10)
                   for _ in range(3)]
        assert all(s.status_code == 200 for s in streams)
        assert metric(requests.get(f"{server.url}/metrics").text, "flagsvc_sse_clients") == 3.0
        old = _workers(server)
        assert len(old) == 2
        for pid in old:
            os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: len(set(_workers(server)) - set(old)) == 2, 20), (old, _workers(server))
        text = requests.get(f"{server.url}/metrics", timeout=10).text
        assert metric(text, "flagsvc_sse_clients") == 0.0
        for s in streams:
            s.close()
    finally:
        assert server.stop() == 0

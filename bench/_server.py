"""Shared helper for the server benchmarks: a real `flagsvc serve` (gunicorn, asyncio workers, embedded Redis) in a
subprocess, on a free loopback port, with its data dir in a temp dir; stopped with SIGTERM (then SIGKILL) so
nothing outlives the benchmark.

    with BenchServer(workers=1, threads=256) as srv:
        srv.admin("POST", "/api/v1/flags", {"key": "f"})
        requests.get(srv.url + "/sdk/v1/flags", headers=srv.sdk_headers)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BenchServer:
    def __init__(self, *, workers: int = 1, threads: int = 256, env: dict[str, str] | None = None,
                 redis_pool: int | None = None, appendfsync: str = "always", operator_listener: bool = False) -> None:
        """`redis_pool`: None = the default embedded mode (`flagsvc serve` starts its own Redis). A number: start
        the same embedded redis-server here and pass FLAGSVC_REDIS_URL=...?max_connections=<n>, so the server's
        redis-py pool has that size (a benchmark-only way to see what a larger pool changes); `appendfsync` is that
        redis-server's fsync policy (flagsvc's embedded mode always uses "always")."""
        self.appendfsync = appendfsync
        self.workers, self.threads, self.redis_pool = workers, threads, redis_pool
        self._redis = None
        self.extra_env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # With `operator_listener`, `flagsvc serve --operator-port`: operators' calls (`admin`) go to a listener of
        # their own, served by a worker of its own; without it, operators share the one listener.
        self.operator_port = free_port() if operator_listener else self.port
        self.operator_url = f"http://127.0.0.1:{self.operator_port}"
        self._tmp = tempfile.TemporaryDirectory(prefix="flagsvc-bench-")
        self.data_dir = Path(self._tmp.name)
        self.proc: subprocess.Popen[bytes] | None = None
        self.session = requests.Session()

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> BenchServer:
        env = {**os.environ, "FLAGSVC_DATA_DIR": str(self.data_dir), **self.extra_env}
        env.pop("FLAGSVC_REDIS_URL", None)
        if self.redis_pool is not None:
            import secrets

            from flagsvc.embedded import EmbeddedRedis

            self._redis = EmbeddedRedis(self.data_dir / "redis", appendfsync=self.appendfsync)
            url = self._redis.start()
            admin, sdk = "fsa_" + secrets.token_urlsafe(16), "fss_" + secrets.token_urlsafe(16)
            env.update(FLAGSVC_REDIS_URL=f"{url}?max_connections={self.redis_pool}",
                       FLAGSVC_ADMIN_TOKENS=f"admin={admin}", FLAGSVC_SDK_KEYS=f"sdk={sdk}")
            (self.data_dir / "tokens.json").write_text(
                json.dumps({"admin_tokens": {"admin": admin}, "sdk_keys": {"sdk": sdk}}))
        self.log_path = self.data_dir / "server.log"
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flagsvc", "serve", "--port", str(self.port),
             "--workers", str(self.workers), "--threads", str(self.threads),
             *(["--operator-port", str(self.operator_port)] if self.operator_port != self.port else [])],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if all(requests.get(url + "/healthz", timeout=1).status_code == 200
                       for url in {self.url, self.operator_url}):
                    break
            time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"server did not come up:\n{self.log_tail()}")
        tokens = json.loads((self.data_dir / "tokens.json").read_text())
        self.admin_token = next(iter(tokens["admin_tokens"].values()))
        self.sdk_key = next(iter(tokens["sdk_keys"].values()))
        self.admin_headers = {"Authorization": f"Bearer {self.admin_token}"}
        self.sdk_headers = {"Authorization": f"Bearer {self.sdk_key}"}
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:  # the whole session: gunicorn workers and redis too
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if proc is not None:
            # anything of ours left in the process group (a worker, the embedded redis)?
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, 0)
                time.sleep(0.5)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        if self._redis is not None:
            self._redis.stop()
            self._redis = None
        self.session.close()
        with contextlib.suppress(OSError):
            self._tmp.cleanup()

    def __enter__(self) -> BenchServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def log_count(self, text: str) -> int:
        """How many lines of the server's log (gunicorn errors included) contain `text`."""
        try:
            return sum(text in line for line in self.log_path.read_text(errors="replace").splitlines())
        except OSError:
            return 0

    def rss_mb(self) -> float:
        """Resident memory of the server's process tree (master, workers, embedded redis), MB."""
        total = 0
        if self.proc is None:
            return 0.0
        pids = {self.proc.pid}
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                with contextlib.suppress(OSError):
                    stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
                    if int(stat[3]) == self.proc.pid or int(stat[2]) == self.proc.pid:  # pgid/ppid
                        pids.add(int(d.name))
        for pid in pids:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total / 1024

    # -- API -----------------------------------------------------------------------------------------------

    def admin(self, method: str, path: str, body: object = None, timeout: float = 30) -> object:
        r = self.session.request(method, self.operator_url + path, json=body, headers=self.admin_headers,
                                 timeout=timeout)
        r.raise_for_status()
        return r.json() if r.content else None

    def create_flags(self, n: int, prefix: str = "flag", start: bool = True) -> list[str]:
        keys = [f"{prefix}_{i:03d}" for i in range(n)]
        for k in keys:
            self.admin("POST", "/api/v1/flags", {"key": k, "stages": [5, 25, 100], "allow": [f"qa-{k}"]})
            if start:
                self.admin("POST", f"/api/v1/flags/{k}/start")
        return keys


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]


# -- a small load generator: processes, each one keep-alive http.client connection, bounded in count and time --

def _load_worker(args: tuple) -> tuple[int, int, list[float], float, dict[int, int]]:
    import http.client

    port, method, path, headers, bodies, duration, max_requests, start_at = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    lat: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    while time.time() < start_at:  # all processes start together
        time.sleep(0.001)
    t_end = time.perf_counter() + duration
    t0 = time.perf_counter()
    i = 0
    while i < max_requests and time.perf_counter() < t_end:
        body = bodies[i % len(bodies)] if bodies else None
        s = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            statuses[r.status] = statuses.get(r.status, 0) + 1
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
        lat.append(time.perf_counter() - s)
        i += 1
    elapsed = time.perf_counter() - t0
    conn.close()
    return i, errors, lat, elapsed, statuses


def load(port: int, method: str, path: str, headers: dict[str, str], *, procs: int, duration: float,
         max_requests: int = 10**6, bodies_per_proc: list[list[bytes]] | None = None) -> dict:
    """Run `procs` processes hammering one endpoint for `duration` s (or max_requests each); aggregate figures."""
    import multiprocessing as mp

    start_at = time.time() + 0.3
    jobs = [(port, method, path, headers, (bodies_per_proc[p] if bodies_per_proc else None), duration,
             max_requests, start_at) for p in range(procs)]
    with mp.get_context("fork").Pool(procs) as pool:
        results = pool.map(_load_worker, jobs)
    n = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    lat = [x for r in results for x in r[2]]
    elapsed = max(r[3] for r in results)
    statuses: dict[int, int] = {}
    for r in results:
        for k, v in r[4].items():
            statuses[k] = statuses.get(k, 0) + v
    return {"n": n, "errors": errors, "rps": n / elapsed if elapsed else 0.0, "p50_ms": pct(lat, 50) * 1000,
            "p99_ms": pct(lat, 99) * 1000, "statuses": statuses, "elapsed": elapsed}

"""`flagsvc serve` as a real process, for the tests that need the production server (gunicorn workers, signals,
the embedded Redis on a data dir), and the small process probes those tests use."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import requests

from tests.support import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m flagsvc serve` on a free port; the constructor returns once /readyz answers 200."""

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
        assert wait_for(self._ready, 30), "server did not become ready:\n" + self.output()
        if "FLAGSVC_ADMIN_TOKENS" in env:
            self.admin = {"Authorization": "Bearer " + env["FLAGSVC_ADMIN_TOKENS"].split("=", 1)[1]}
        else:
            tokens = json.loads((data_dir / "tokens.json").read_text())
            self.admin = {"Authorization": "Bearer " + next(iter(tokens["admin_tokens"].values()))}

    def _ready(self) -> bool:
        assert self.proc.poll() is None, self.output()  # exited: fail now, with its output
        try:
            return requests.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

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
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        os.kill(pid, 0)
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False

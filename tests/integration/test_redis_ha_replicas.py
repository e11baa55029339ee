"""Three `flagsvc serve` processes behind one address (a round-robin TCP balancer), on one Sentinel-managed Redis:
the leader's process is killed (SIGKILL, its worker with it) while an operator writes through the balancer and
SDKs stream from it. Leadership moves to another process, the SDKs whose stream ran through the dead one
reconnect, no acknowledged change is lost and every SDK comes to the last one, evaluating without error
throughout."""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
import uuid

import psutil
import pytest
import requests
from flagsvc_client import FlagClient

from flagsvc.store.redis_store import RedisStore
from flagsvc.store.roles import HISTORY_CAP
from tests.support import wait_for
from tests.support.failover_load import SDK_ERRORS
from tests.support.servers import Server
from tests.support.tcp_balancer import Balancer

pytestmark = pytest.mark.slow  # three real server processes (seconds each)

SDK_KEY = "sdk-key-12345"
LEADS = re.compile(r"controller (\S+) leads \(token (\d+)\)")


def leader_of(servers: list[Server]) -> tuple[Server, int] | None:
    """The server whose controller took the lease last, and its token."""
    found = [(int(m.group(2)), server) for server in servers if server.proc.poll() is None
             for m in LEADS.finditer(server.output())]
    if not found:
        return None
    token, server = max(found, key=lambda pair: pair[0])
    return server, token


def test_the_leaders_process_dies_behind_the_balancer(tmp_path, sentinel_setup, namespace):
    env = {"FLAGSVC_REDIS_URL": sentinel_setup.url, "FLAGSVC_REDIS_NAMESPACE": namespace,
           "FLAGSVC_ADMIN_TOKENS": "ops=admin-token-123", "FLAGSVC_SDK_KEYS": f"web={SDK_KEY}",
           "FLAGSVC_CONTROLLER_INTERVAL": "0.5"}  # a lease of 1.5 s: it expires soon after its holder dies
    servers = [Server(tmp_path / f"replica-{n}", "--workers", "1", env=env) for n in range(3)]
    balancer = Balancer([s.port for s in servers])
    admin = {"Authorization": "Bearer admin-token-123"}
    requests.post(f"{balancer.url}/api/v1/flags", json={"key": "checkout"}, headers=admin).raise_for_status()
    clients = [FlagClient(balancer.url, sdk_key=SDK_KEY, backoff_initial=0.1, backoff_max=0.5,
                          flush_interval=3600, exit_flush_timeout=0) for _ in range(30)]
    stop = threading.Event()
    acked: list[str] = []  # the reason of every write answered 2xx
    errors: dict[str, int] = {}
    evaluations = 0

    def operator() -> None:
        """Writes through the balancer; a write that failed is retried with its Idempotency-Key until answered."""
        n = 0
        with requests.Session() as session:
            while not stop.is_set():
                n += 1
                key = uuid.uuid4().hex
                while not stop.is_set():
                    with contextlib.suppress(requests.RequestException):
                        response = session.put(f"{balancer.url}/api/v1/flags/checkout/percent", timeout=5,
                                               json={"percent": n % 100, "reason": f"w{n}"},
                                               headers={**admin, "Idempotency-Key": key})
                        if response.status_code == 200:
                            acked.append(f"w{n}")
                            break
                    time.sleep(0.05)
                time.sleep(0.02)

    def evaluate() -> None:
        nonlocal evaluations
        user = 0
        while not stop.is_set():
            for client in clients:
                user += 1
                reason = client.evaluate("checkout", f"user-{user}").reason
                evaluations += 1
                if reason in SDK_ERRORS:
                    errors[reason] = errors.get(reason, 0) + 1
            time.sleep(0.01)

    threads = [threading.Thread(target=operator), threading.Thread(target=evaluate)]
    try:
        assert all(c.wait_until_ready(10) for c in clients)
        # each SDK's stream is one connection, dealt round robin: every replica carries some
        assert {s.port for s in servers} <= set(balancer.connections)
        assert wait_for(lambda: leader_of(servers) is not None, 10), [s.output() for s in servers]
        leader, token = leader_of(servers)  # type: ignore[misc]
        for t in threads:
            t.start()
        assert wait_for(lambda: len(acked) >= 20, 10), "no write was answered before the kill"
        connections_before = len(balancer.connections)
        workers = psutil.Process(leader.proc.pid).children(recursive=True)
        killed_at = time.monotonic()
        for process in [psutil.Process(leader.proc.pid), *workers]:  # the machine is gone: no handover
            process.send_signal(signal.SIGKILL)
        leader.proc.wait(5)
        survivors = [s for s in servers if s is not leader]

        # leadership moves to a survivor, with a newer fencing token, once the dead leader's lease expires
        assert wait_for(lambda: (leader_of(survivors) or (None, 0))[1] > token, 10), \
            [s.output()[-2000:] for s in survivors]
        moved_after = time.monotonic() - killed_at
        # the SDKs whose stream ran through the dead process reconnect through the balancer to the survivors
        assert wait_for(lambda: len(balancer.connections) > connections_before, 10)
        written_after_kill = len(acked)
        assert wait_for(lambda: len(acked) >= written_after_kill + 20, 10), "writes did not go on"
        stop.set()
        for t in threads:
            t.join(10)

        # no acknowledged change lost, and every SDK comes to the last one over its (new) stream
        truth = RedisStore.from_url(sentinel_setup.url, namespace)
        history = truth.history("checkout", limit=HISTORY_CAP)
        assert len(history) < HISTORY_CAP
        kept = {entry.reason for entry in history}
        assert [w for w in acked if w not in kept] == []
        final = truth.get("checkout")
        assert final is not None
        assert wait_for(lambda: all(c.evaluate("checkout", "u").revision == final.revision for c in clients), 10), \
            sorted({c.evaluate("checkout", "u").revision for c in clients})
        assert all(c.stats["config_mode"] == "stream" and c.status == "ready" for c in clients)
        assert errors == {} and evaluations > 0
        print(f"\nleader killed: leadership moved in {moved_after:.1f} s (token {token} -> "
              f"{leader_of(survivors)[1]}); {len(acked)} writes acknowledged, none lost; "  # type: ignore[index]
              f"{len(balancer.connections) - connections_before} connections after the kill; "
              f"{evaluations} evaluations on {len(clients)} SDKs, 0 errors")
        truth.redis.close()
    finally:
        stop.set()
        for client in clients:
            client.close(timeout=0.1)
        balancer.close()
        for server in servers:
            if server.proc.poll() is None:
                server.stop()

"""A primary killed (SIGKILL) or paused past the failover timeout (SIGSTOP, then SIGCONT) under a stream of operator
writes, on Sentinel and on a Cluster of their own: how long until writes succeed again, and which acknowledged
writes the failover lost; then the same under the whole load (tests/support/failover_load.py): controllers,
outcome batches and 200 streaming SDKs.

Each write sets one flag's percent with an actor of its own, so an acknowledged write that a failover lost is
one whose actor is missing from the flag's history afterwards. Each test prints what it measured (`-s`).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import redis

from flagsvc.domain import flag as flags
from flagsvc.domain.errors import RevisionConflict
from flagsvc.store.redis_store import RedisStore, ReplicasDidNotAck
from flagsvc.store.roles import HISTORY_CAP
from tests.support.failover_load import run_failover
from tests.support.flags import new
from tests.support.redis_ha import ClusterSetup, SentinelSetup

pytestmark = pytest.mark.slow  # a setup of its own each, and a failover (seconds)

WRITES_BACK_WITHIN = 10.0  # seconds, with down-after-milliseconds / cluster-node-timeout 2000


@dataclass
class Writer:
    """One operator writing as fast as it can; remembers what was acknowledged and when writes failed."""

    store: RedisStore
    key: str
    acked: list[str] = field(default_factory=list)  # actors of acknowledged writes
    successes: list[float] = field(default_factory=list)
    failures: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                current = self.store.get(self.key)
                assert current is not None
                changed, entry = flags.set_percent(current, n % 100, now=2, actor=f"w{n}")
                self.store.replace(changed, entry, expected_revision=current.revision)
            except (redis.RedisError, RevisionConflict):
                self.failures += 1
                time.sleep(0.02)
                continue
            self.acked.append(f"w{n}")
            self.successes.append(time.monotonic())
            time.sleep(0.005)  # about a hundred writes a second: the whole run fits in the history kept

    def lost(self, truth: RedisStore) -> list[str]:
        history = truth.history(self.key, limit=HISTORY_CAP)
        assert len(history) < HISTORY_CAP, "the history was trimmed: losses could not be told from the trimming"
        kept = {entry.actor for entry in history}
        return [actor for actor in self.acked if actor not in kept]


def through_failover(store: RedisStore, kill: Callable[[], None],
                     truth: Callable[[], RedisStore]) -> tuple[float, list[str], Writer]:
    """Write for a second, kill, write until writes have been back for a second; (seconds until writes
    succeeded again, acknowledged writes lost, the writer)."""
    store.create(*new("checkout"))
    writer = Writer(store, "checkout")
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    time.sleep(1.0)
    assert writer.successes, f"no write succeeded before the kill ({writer.failures} failed)"
    killed_at = time.monotonic()
    kill()
    deadline = killed_at + WRITES_BACK_WITHIN + 20
    while time.monotonic() < deadline and not any(t > killed_at + 0.5 for t in writer.successes[-1:]):
        time.sleep(0.05)
    back = [t for t in writer.successes if t > killed_at]
    # the last success before the kill may have been in flight at it: the first one after a gap counts
    gap_end = next((later for earlier, later in zip([killed_at, *back], back, strict=False)
                    if later - earlier > 0.3), back[0] if back else None)
    time.sleep(1.0)
    writer.stop.set()
    thread.join(10)
    assert gap_end is not None, f"writes never came back ({writer.failures} failed)"
    return gap_end - killed_at, writer.lost(truth()), writer


def sigkill(pid: int | None) -> None:
    assert pid is not None
    os.kill(pid, signal.SIGKILL)


def test_sentinel_failover_with_one_replica_ack_loses_no_acknowledged_write(tmp_path):
    with SentinelSetup(tmp_path) as setup:
        store = RedisStore.from_url(setup.url, "fo:", min_replicas_ack=1, ack_timeout=1)
        seconds, lost, writer = through_failover(store, lambda: sigkill(setup.primary.pid),
                                                 lambda: RedisStore.from_url(setup.url, "fo:"))
        print(f"\nsentinel, MIN_REPLICAS_ACK=1: writes back {seconds:.2f} s after SIGKILL; "
              f"{len(writer.acked)} acknowledged, {len(lost)} lost, {writer.failures} failed attempts")
        assert seconds < WRITES_BACK_WITHIN
        assert lost == []
        store.redis.close()


def test_sentinel_failover_without_acks_is_measured(tmp_path):
    with SentinelSetup(tmp_path) as setup:
        store = RedisStore.from_url(setup.url, "fo:")
        seconds, lost, writer = through_failover(store, lambda: sigkill(setup.primary.pid),
                                                 lambda: RedisStore.from_url(setup.url, "fo:"))
        print(f"\nsentinel, MIN_REPLICAS_ACK=0: writes back {seconds:.2f} s after SIGKILL; "
              f"{len(writer.acked)} acknowledged, {len(lost)} lost {lost[:5]}, {writer.failures} failed attempts")
        assert seconds < WRITES_BACK_WITHIN
        store.redis.close()


def test_cluster_failover_of_the_flags_primary(tmp_path):
    with ClusterSetup(tmp_path) as setup:
        store = RedisStore.from_url(setup.url, "fo:")
        node = store.redis.get_node_from_key(store.keys.flag("checkout"))
        primary = next(n for n in setup.nodes if n.url.endswith(f":{node.port}/0"))
        seconds, lost, writer = through_failover(store, lambda: sigkill(primary.pid),
                                                 lambda: RedisStore.from_url(setup.url, "fo:"))
        print(f"\ncluster, MIN_REPLICAS_ACK=0: writes back {seconds:.2f} s after SIGKILL of the flag's primary; "
              f"{len(writer.acked)} acknowledged, {len(lost)} lost {lost[:5]}, {writer.failures} failed attempts")
        assert seconds < WRITES_BACK_WITHIN
        store.redis.close()


def test_cluster_with_one_replica_ack_refuses_the_failed_shards_writes_until_a_replica_is_back(tmp_path):
    """Each primary has one replica: once it is promoted it has none, and a write asking for one cannot be
    answered. The killed node, started again, rejoins as the new primary's replica, and writes come back."""
    with ClusterSetup(tmp_path) as setup:
        store = RedisStore.from_url(setup.url, "fo:", min_replicas_ack=1, ack_timeout=0.5)
        node = store.redis.get_node_from_key(store.keys.flag("checkout"))
        primary = next(n for n in setup.nodes if n.url.endswith(f":{node.port}/0"))
        replica = next(redis.Redis.from_url(n.url, decode_responses=True) for n in setup.nodes
                       if redis.Redis.from_url(n.url).info("replication").get("master_port") == node.port)
        store.create(*new("checkout"))
        writer = Writer(store, "checkout")
        thread = threading.Thread(target=writer.run, daemon=True)
        thread.start()
        time.sleep(1.0)
        killed_at = time.monotonic()
        sigkill(primary.pid)
        deadline = killed_at + WRITES_BACK_WITHIN
        while time.monotonic() < deadline and replica.info("replication")["role"] != "master":
            time.sleep(0.05)
        promoted_after = time.monotonic() - killed_at
        assert promoted_after < WRITES_BACK_WITHIN, "the replica was not promoted"
        time.sleep(2.0)  # a client that learnt of the promotion still cannot be answered
        refused_for = time.monotonic() - killed_at
        assert not [t for t in writer.successes if t > killed_at + 1], "a write was answered with no replica"
        restarted_at = time.monotonic()
        primary.start()
        deadline = restarted_at + 20
        while time.monotonic() < deadline and not [t for t in writer.successes if t > restarted_at]:
            time.sleep(0.05)
        back = [t for t in writer.successes if t > restarted_at]
        writer.stop.set()
        thread.join(10)
        assert back, "writes did not come back with the replica"
        lost = writer.lost(RedisStore.from_url(setup.url, "fo:"))
        print(f"\ncluster, MIN_REPLICAS_ACK=1: replica promoted {promoted_after:.2f} s after SIGKILL, writes "
              f"still refused {refused_for:.1f} s after the kill (the promoted replica has no replica), back "
              f"{back[0] - restarted_at:.2f} s after the killed node restarted; "
              f"{len(writer.acked)} acknowledged, {len(lost)} lost")
        assert lost == []
        store.redis.close()
        replica.close()


@pytest.mark.parametrize("acks", [0, 1])
def test_writes_the_replicas_never_got_are_lost_in_a_failover_unless_a_replica_acknowledged_them(tmp_path, acks):
    """The replication links are cut (the primary drops its replicas and, with a password set, keeps them out),
    twenty writes are made, then the primary is killed and a replica promoted. Without acknowledgements all
    twenty were answered and all are lost; with MIN_REPLICAS_ACK=1 none was answered (each a 503-class error),
    so no answered write is lost."""
    with SentinelSetup(tmp_path) as setup:
        store = RedisStore.from_url(setup.url, "fo:", min_replicas_ack=acks, ack_timeout=0.2)
        flag, entry = new("checkout")
        store.create(flag, entry)
        primary = redis.Redis.from_url(setup.primary.url)
        primary.config_set("requirepass", "replicas-stay-out")  # connections already open stay in
        primary.client_kill_filter(_type="replica")
        answered, refused = [], 0
        for n in range(20):
            current = store.get("checkout")
            changed, change = flags.set_percent(current, n + 1, now=2, actor=f"cut{n}")
            try:
                store.replace(changed, change, expected_revision=current.revision)
                answered.append(f"cut{n}")
            except ReplicasDidNotAck:
                refused += 1
        sigkill(setup.primary.pid)
        truth = RedisStore.from_url(setup.url, "fo:")
        deadline = time.monotonic() + WRITES_BACK_WITHIN
        while time.monotonic() < deadline:
            try:
                if truth.ping() and truth.redis.info("replication")["role"] == "master":
                    break
            except redis.RedisError:
                pass
            time.sleep(0.1)
        kept = {e.actor for e in truth.history("checkout", limit=100)}
        lost = [actor for actor in answered if actor not in kept]
        print(f"\nsentinel, replication cut, MIN_REPLICAS_ACK={acks}: {len(answered)} answered, {refused} refused, "
              f"{len(lost)} answered and lost in the failover")
        if acks:
            assert (len(answered), refused, lost) == (0, 20, [])
        else:
            assert (len(answered), refused, len(lost)) == (20, 0, 20)
        primary.close()
        store.redis.close()
        truth.redis.close()


UNDER_LOAD_WRITES_BACK_WITHIN = 20.0  # seconds; a paused primary holds its clients' requests for their 5 s timeout


@pytest.mark.parametrize(("kind", "fault"), [("sentinel", "pause"), ("cluster", "pause"), ("sentinel", "kill")])
def test_a_failover_under_the_whole_load_with_one_replica_ack(tmp_path, kind, fault):
    """The primary fails for 6 s (SIGSTOP past down-after-milliseconds / cluster-node-timeout, or SIGKILL) and
    comes back (SIGCONT, or restarted) while an operator writes, two controllers decide, outcome batches arrive
    and 200 SDKs stream. The old primary comes back as a replica, and with MIN_REPLICAS_ACK=1 nothing answered
    is lost: no write, no decision taken twice or under an older token, no outcome batch, and no SDK answers an
    error or misses the last change."""
    with (SentinelSetup if kind == "sentinel" else ClusterSetup)(tmp_path / "redis") as setup:
        figures = run_failover(setup, fault, acks=1, sdks=200, work_dir=tmp_path)
    print("\n" + figures.line())
    assert figures.writes_back_s is not None and figures.writes_back_s < UNDER_LOAD_WRITES_BACK_WITHIN
    assert figures.old_primary_role == "slave"
    assert figures.writes_lost == []
    assert figures.decisions > 0 and figures.double_decisions == [] and figures.stale_decisions == []
    assert figures.batches_acked > 0 and figures.batches_lost == [] and figures.outcomes_double_counted == 0
    assert figures.sdk_evaluations > 0 and figures.sdk_errors == 0 and figures.sdks_behind == 0

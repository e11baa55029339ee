"""flagsvc on a Redis Cluster and on a Sentinel-managed primary, beyond the store contract (which runs on both):
where the keys land, the fan-out of changes to every node, a snapshot across slots, scripts a node never saw,
and the clients FLAGSVC_REDIS_URL builds."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from redis.cluster import RedisCluster

from flagsvc.domain import flag as flags
from flagsvc.store.connection import parse_redis_url
from flagsvc.store.redis_store import RedisStore, ReplicasDidNotAck
from flagsvc.store.roles import Idempotency, OutcomeEntry
from tests.support.flags import new


def node_clients(cluster: RedisCluster) -> list[redis.Redis]:
    return [redis.Redis(host=n.host, port=n.port, decode_responses=True) for n in cluster.get_nodes()]


def next_message(pubsub: redis.client.PubSub, timeout: float = 5.0) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)  # None also for a subscription's confirmation
        if message is not None:
            return message["data"]
    return None


def test_a_change_reaches_listeners_on_every_cluster_node(cluster_client, namespace):
    """Each flagsvc process subscribes on a node of its own; a change published once must reach all six."""
    store = RedisStore(cluster_client, namespace)
    subscriptions = []
    clients = node_clients(cluster_client)  # kept: a client collected closes its pool, subscriptions included
    for client in clients:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(store.keys.changes_channel)
        subscriptions.append(pubsub)
    assert len(subscriptions) == 6
    version = store.bump_config_version()
    assert [next_message(pubsub) for pubsub in subscriptions] == [f"{version.epoch}-{version.version}"] * 6
    for pubsub in subscriptions:
        pubsub.close()


def test_listeners_on_a_cluster_spread_over_its_nodes_and_all_hear_a_change(cluster_client, namespace):
    store = RedisStore(cluster_client, namespace)
    stop = threading.Event()
    heard = [threading.Semaphore(0) for _ in range(12)]
    threads = [threading.Thread(target=store.listen_changes, args=(h.release, stop), daemon=True) for h in heard]
    for thread in threads:
        thread.start()
    try:
        assert all(h.acquire(timeout=5) for h in heard)  # subscribed
        subscribers = [client.pubsub_numsub(store.keys.changes_channel)[0][1]
                       for client in node_clients(cluster_client)]
        assert sum(subscribers) == 12 and len([n for n in subscribers if n]) >= 2  # 12 draws from 6 nodes
        store.bump_config_version()
        assert all(h.acquire(timeout=5) for h in heard)
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    assert not any(thread.is_alive() for thread in threads)


def test_a_snapshot_reads_flags_from_every_primary(cluster_client, namespace):
    store = RedisStore(cluster_client, namespace)
    keys = [f"flag-{n:02d}" for n in range(30)]
    for key in keys:
        store.create(*new(key))
    primaries = {cluster_client.get_node_from_key(store.keys.flag(key)).name for key in keys}
    assert len(primaries) == 3  # the flags are spread over the whole cluster
    assert [flag.key for flag in store.list_flags()] == keys
    results = store.add_outcomes("batch-1", {key: OutcomeEntry(1, {"canary:count": 2}) for key in keys})
    assert set(results.values()) == {"accepted"}
    assert store.outcome_totals("flag-29", 1)["canary"].count == 2


def test_outcomes_reach_a_node_that_lost_its_scripts(cluster_client, namespace):
    """A node that never saw the outcomes script (new, or a replica promoted without it) answers NOSCRIPT: the
    store loads the script and sends again only the entries that did not run."""
    store = RedisStore(cluster_client, namespace)
    keys = [f"flag-{n:02d}" for n in range(12)]
    for key in keys:
        store.create(*new(key))
    store.add_outcomes("batch-1", {key: OutcomeEntry(1, {"stable:count": 1}) for key in keys[:6]})
    for client in node_clients(cluster_client):
        client.script_flush()
    results = store.add_outcomes("batch-2", {key: OutcomeEntry(1, {"stable:count": 1}) for key in keys})
    assert set(results.values()) == {"accepted"}
    assert [store.outcome_totals(key, 1)["stable"].count for key in keys] == [2] * 6 + [1] * 6
    assert [store.ingest_counts(key)["accepted"] for key in keys] == [2] * 6 + [1] * 6  # nothing ran twice


def test_the_cluster_client_blocks_when_busy_and_never_resends(cluster_setup):
    client = RedisStore.from_url(cluster_setup.url, "t:", max_connections=9).redis
    assert isinstance(client, RedisCluster) and client.ping()
    pools = [node.redis_connection.connection_pool for node in client.get_nodes()]
    assert len(pools) == 6
    assert all(isinstance(pool, redis.BlockingConnectionPool) and pool.max_connections == 9 for pool in pools)
    assert client.retry.get_retries() == 0
    client.close()


def test_the_sentinel_client_writes_to_the_primary_and_blocks_when_busy(sentinel_setup, namespace):
    store = RedisStore.from_url(sentinel_setup.url, namespace, max_connections=9)
    store.create(*new("checkout"))
    pool = store.redis.connection_pool
    assert isinstance(pool, redis.BlockingConnectionPool) and pool.max_connections == 9
    assert store.redis.info("replication")["role"] == "master"
    primary = redis.Redis.from_url(sentinel_setup.primary.url, decode_responses=True)
    assert primary.hget(store.keys.flag("checkout"), "revision") == "1"
    assert parse_redis_url(sentinel_setup.url).service == "flagsvc"
    store.redis.close()


def test_with_replica_acks_a_write_is_answered_once_every_asked_replica_has_it(sentinel_setup, namespace):
    store = RedisStore.from_url(sentinel_setup.url, namespace, min_replicas_ack=2, ack_timeout=2)
    flag, entry = new("checkout")
    store.create(flag, entry)
    store.add_outcomes("batch-1", {"checkout": OutcomeEntry(1, {"canary:count": 3})})
    store.bump_config_version()
    for replica in sentinel_setup.replicas:  # no waiting here: the answer came after both had it
        client = redis.Redis.from_url(replica.url, decode_responses=True)
        assert client.hget(store.keys.flag("checkout"), "revision") == "1"
        assert client.sismember(store.keys.index, "checkout")
        assert client.hget(store.keys.outcomes("checkout"), "canary:count") == "3"
        client.close()
    store.redis.close()


def test_a_write_fewer_replicas_confirm_is_an_outage_and_stays_applied(sentinel_setup, namespace):
    """One replica stalls (DEBUG SLEEP): a write asking for both is refused as an outage (503: retry with the
    idempotency key), though it stands on the primary; asking for one, it is answered."""
    asks_both = RedisStore.from_url(sentinel_setup.url, namespace, min_replicas_ack=2, ack_timeout=0.3)
    asks_one = RedisStore.from_url(sentinel_setup.url, namespace, min_replicas_ack=1, ack_timeout=2)
    flag, entry = new("checkout")
    asks_one.create(flag, entry)
    started, start_entry = flags.start(flag, now=2, actor="ops")
    stalled = redis.Redis.from_url(sentinel_setup.replicas[0].url, socket_timeout=5)
    sleeper = threading.Thread(target=stalled.execute_command, args=("DEBUG", "SLEEP", "1.5"))
    sleeper.start()
    try:
        time.sleep(0.2)
        began = time.monotonic()
        with pytest.raises(ReplicasDidNotAck, match="1 of 2 replicas"):
            asks_both.replace(started, start_entry, expected_revision=1)
        assert 0.25 < time.monotonic() - began < 1.2
        assert asks_both.get("checkout") == started  # applied on the primary all the same
        asks_one.create(*new("other"))
        assert sleeper.is_alive()  # answered while one replica still slept
        assert issubclass(ReplicasDidNotAck, asks_both.outage_errors)
    finally:
        sleeper.join()
        stalled.close()


def test_on_a_cluster_each_write_waits_on_its_own_primary(cluster_client, namespace):
    """Each primary has one replica: asking for one is answered, for every flag whichever node serves it; asking
    for two never can be."""
    store = RedisStore(cluster_client, namespace, min_replicas_ack=1, ack_timeout=2)
    keys = [f"flag-{n:02d}" for n in range(12)]
    for key in keys:
        store.create(*new(key))
    assert set(store.add_outcomes("b-1", {key: OutcomeEntry(1, {"canary:count": 1}) for key in keys}).values()) \
        == {"accepted"}
    assert store.acquire_lease("me", 10) is not None
    store.bump_config_version()
    too_many = RedisStore(cluster_client, namespace, min_replicas_ack=2, ack_timeout=0.05)
    with pytest.raises(ReplicasDidNotAck, match="1 of 2 replicas"):
        too_many.bump_config_version()
    with pytest.raises(ReplicasDidNotAck):
        too_many.add_outcomes("b-2", {key: OutcomeEntry(1, {"canary:count": 1}) for key in keys})


def test_a_replayed_answer_waits_for_replicas_as_the_first_try_did(sentinel_setup, namespace):
    """A write whose replicas did not confirm it is answered 503; its retry, with the same idempotency key, finds
    it applied and replays the first answer. That replay must not be a 2xx the replicas still lack: while one of
    the two replicas stalls, the replay is refused as the write was; once it is back, it is answered."""
    store = RedisStore.from_url(sentinel_setup.url, namespace, min_replicas_ack=2, ack_timeout=0.3)
    flag, entry = new("checkout")
    store.create(flag, entry)
    started, start_entry = flags.start(flag, now=2, actor="ops")
    stalled = redis.Redis.from_url(sentinel_setup.replicas[0].url, socket_timeout=5)
    sleeper = threading.Thread(target=stalled.execute_command, args=("DEBUG", "SLEEP", "1.5"))
    sleeper.start()
    try:
        time.sleep(0.2)
        with pytest.raises(ReplicasDidNotAck):
            store.replace(started, start_entry, expected_revision=1,
                          idempotency=Idempotency("k-1", "fingerprint-1", "the first answer"))
        with pytest.raises(ReplicasDidNotAck):
            store.idempotent_answer("checkout", "k-1")
        assert sleeper.is_alive()  # refused while the replica slept, not after
    finally:
        sleeper.join()
        stalled.close()
    replayed = store.idempotent_answer("checkout", "k-1")
    assert replayed is not None and (replayed.fingerprint, replayed.answer) == ("fingerprint-1", "the first answer")
    assert store.idempotent_answer("checkout", "never-used") is None
    store.redis.close()

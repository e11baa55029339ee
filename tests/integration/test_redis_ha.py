"""flagsvc on a Redis Cluster and on a Sentinel-managed primary, beyond the store contract (which runs on both):
where the keys land, the fan-out of changes to every node, a snapshot across slots, scripts a node never saw,
and the clients FLAGSVC_REDIS_URL builds."""

from __future__ import annotations

import threading
import time

import redis
from redis.cluster import RedisCluster

from flagsvc.store.connection import parse_redis_url
from flagsvc.store.redis_store import RedisStore
from flagsvc.store.roles import OutcomeEntry
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

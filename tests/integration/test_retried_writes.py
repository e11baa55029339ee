"""Writes that can be retried: after a 503 whose write did reach Redis (its answer was lost on the way back),
a retry with the same Idempotency-Key gets the answer and applies nothing twice; on a real redis-server."""

from __future__ import annotations

import uuid

from flagsvc.api import create_app
from flagsvc.store.redis_store import RedisStore
from tests.support import ADMIN, TEST_SETTINGS
from tests.support.redis_proxy import answer_losing_proxy


def _writes(n: int):
    """n operator writes that are each legal whatever came before: percents and descriptions, in turn."""
    for i in range(n):
        if i % 2 == 0:
            yield "PUT", "/api/v1/flags/checkout/percent", {"percent": (i * 7) % 100 + 0.5, "reason": f"step {i}"}
        else:
            yield "PATCH", "/api/v1/flags/checkout", {"description": f"edit {i}"}


def test_fifty_writes_each_answered_503_after_reaching_redis_are_applied_exactly_once(redis_url, real_redis, namespace):
    with answer_losing_proxy(redis_url) as proxy:
        store = RedisStore.from_url(f"redis://127.0.0.1:{proxy.port}/0", namespace)
        truth = RedisStore(real_redis, namespace)  # reads Redis directly, past the proxy
        client = create_app(TEST_SETTINGS, store=store, controller=False).test_client()
        assert client.post("/api/v1/flags", json={"key": "checkout"}, headers=ADMIN).status_code == 201
        assert client.post("/api/v1/flags/checkout/start", headers=ADMIN).status_code == 200  # scripts loaded
        ambiguous = replayed = 0
        for method, path, body in _writes(50):
            before = truth.get("checkout").revision
            headers = {**ADMIN, "Idempotency-Key": uuid.uuid4().hex}
            proxy.lose_next_answer_to(b"EVALSHA")
            first = client.open(path, method=method, json=body, headers=headers)
            assert first.status_code == 503 and not proxy.armed, first.get_json()
            assert truth.get("checkout").revision == before + 1  # ... although the write was applied
            ambiguous += 1
            again = client.open(path, method=method, json=body, headers=headers)
            assert again.status_code == 200, again.get_json()
            assert again.get_json()["revision"] == before + 1 and again.headers["ETag"] == f'"{before + 1}"'
            assert truth.get("checkout").revision == before + 1  # the retry applied nothing
            replayed += 1
        history = truth.history("checkout", 1000)
        assert (ambiguous, replayed, proxy.lost) == (50, 50, 50)
        assert len(history) == 2 + 50  # create, start, and each of the 50 writes once
        assert [e.revision for e in history] == list(range(52, 0, -1))


def test_without_a_key_a_retry_after_a_lost_answer_applies_twice(redis_url, real_redis, namespace):
    """Why the key matters: the same lost answer, retried without one, is a second change."""
    with answer_losing_proxy(redis_url) as proxy:
        store = RedisStore.from_url(f"redis://127.0.0.1:{proxy.port}/0", namespace)
        client = create_app(TEST_SETTINGS, store=store, controller=False).test_client()
        client.post("/api/v1/flags", json={"key": "checkout"}, headers=ADMIN)
        client.post("/api/v1/flags/checkout/start", headers=ADMIN)
        proxy.lose_next_answer_to(b"EVALSHA")
        assert client.post("/api/v1/flags/checkout/promote", headers=ADMIN).status_code == 503
        assert client.post("/api/v1/flags/checkout/promote", headers=ADMIN).status_code == 200
        moves = [e.action for e in RedisStore(real_redis, namespace).history("checkout") if e.action == "promote"]
        assert len(moves) == 2  # promoted twice: two stages, where the operator meant one


def test_a_delete_whose_answer_was_lost_is_acknowledged_on_retry(redis_url, real_redis, namespace):
    with answer_losing_proxy(redis_url) as proxy:
        store = RedisStore.from_url(f"redis://127.0.0.1:{proxy.port}/0", namespace)
        client = create_app(TEST_SETTINGS, store=store, controller=False).test_client()
        client.post("/api/v1/flags", json={"key": "checkout"}, headers=ADMIN)
        client.delete("/api/v1/flags/other", headers=ADMIN)  # the delete script loaded
        headers = {**ADMIN, "Idempotency-Key": "delete-checkout-1"}
        proxy.lose_next_answer_to(b"EVALSHA")
        assert client.delete("/api/v1/flags/checkout", headers=headers).status_code == 503
        assert RedisStore(real_redis, namespace).get("checkout") is None  # it was deleted
        assert client.delete("/api/v1/flags/checkout", headers=headers).status_code == 204  # not a 404
        assert client.delete("/api/v1/flags/checkout", headers=ADMIN).status_code == 404

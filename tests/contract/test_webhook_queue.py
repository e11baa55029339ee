"""The WebhookStore role, on every store: webhooks kept and removed, an event enqueued once whoever raises it, a
delivery claimed by one worker at a time (until its lease ends), only the claim's holder records the outcome, and
a bounded delivery log."""

from __future__ import annotations

from flagsvc.store.keys import WEBHOOK_LOG_CAP
from flagsvc.store.webhooks import WebhookStore, delivery_id, webhooks_for

HOOK = {"id": "wh_0000000000000001", "url": "https://hooks.example.com/x", "secret": "s"}


def test_every_store_has_webhooks(any_store):
    assert isinstance(webhooks_for(any_store), WebhookStore)


def test_webhooks_are_kept_listed_and_removed(any_store):
    hooks = webhooks_for(any_store)
    assert hooks.add_webhook(HOOK) is True
    assert hooks.add_webhook({**HOOK, "url": "https://other.example.com/"}) is False  # the id exists: unchanged
    assert hooks.add_webhook({**HOOK, "id": "wh_0000000000000000"}) is True
    assert [h["id"] for h in hooks.webhooks()] == ["wh_0000000000000000", "wh_0000000000000001"]
    assert hooks.webhooks()[1]["url"] == HOOK["url"]
    assert hooks.delete_webhook(HOOK["id"]) is True
    assert hooks.delete_webhook(HOOK["id"]) is False
    assert [h["id"] for h in hooks.webhooks()] == ["wh_0000000000000000"]


def test_an_event_is_enqueued_once(any_store):
    hooks = webhooks_for(any_store)
    assert hooks.enqueue_event("f@1/2/rollback", "rollback", "f", "{}", ["wh_a", "wh_b"], now=100.0) is True
    assert hooks.enqueue_event("f@1/2/rollback", "rollback", "f", "{}", ["wh_a", "wh_b"], now=101.0) is False
    assert sorted(hooks.due_deliveries(101.0, 10)) == [delivery_id("f@1/2/rollback", "wh_a"),
                                                       delivery_id("f@1/2/rollback", "wh_b")]
    assert hooks.due_deliveries(99.0, 10) == []
    [logged] = hooks.deliveries("wh_a")
    assert (logged["status"], logged["attempts"], logged["event"], logged["created_at"]) == ("pending", 0,
                                                                                            "rollback", 100.0)


def test_one_claim_at_a_time_until_the_lease_ends(any_store):
    hooks = webhooks_for(any_store)
    hooks.enqueue_event("f@1/2/rollback", "rollback", "f", '{"a":1}', ["wh_a"], now=100.0)
    one = delivery_id("f@1/2/rollback", "wh_a")
    first = hooks.claim_delivery(one, "worker-1", now=100.0, lease=30.0)
    assert first is not None and first["body"] == '{"a":1}' and first["doc"]["attempts"] == 1
    assert hooks.claim_delivery(one, "worker-2", now=100.5, lease=30.0) is None  # the other worker's try
    assert hooks.due_deliveries(129.0, 10) == []
    second = hooks.claim_delivery(one, "worker-2", now=130.0, lease=30.0)  # the first worker died mid-attempt
    assert second is not None and second["doc"]["attempts"] == 2
    assert hooks.finish_delivery(one, "worker-1", now=131.0, status="delivered") is False  # its lease had ended
    assert hooks.finish_delivery(one, "worker-2", now=131.0, status="retrying", error="HTTP 500",
                                 response_code=500, next_at=135.0) is True
    [logged] = hooks.deliveries("wh_a")
    assert (logged["status"], logged["response_code"], logged["last_error"], logged["next_attempt_at"]) == (
        "retrying", 500, "HTTP 500", 135.0)
    assert hooks.claim_delivery(one, "worker-1", now=134.0, lease=30.0) is None
    third = hooks.claim_delivery(one, "worker-1", now=135.0, lease=30.0)
    assert third is not None and third["doc"]["attempts"] == 3
    assert hooks.finish_delivery(one, "worker-1", now=136.0, status="delivered", response_code=204)
    assert hooks.due_deliveries(10_000.0, 10) == []
    assert hooks.claim_delivery(one, "worker-2", now=10_000.0, lease=30.0) is None
    [logged] = hooks.deliveries("wh_a")
    assert (logged["status"], logged["attempts"], logged["next_attempt_at"]) == ("delivered", 3, None)


def test_the_delivery_log_is_bounded_and_goes_with_the_webhook(any_store):
    hooks = webhooks_for(any_store)
    hooks.add_webhook({**HOOK, "id": "wh_a"})
    for n in range(WEBHOOK_LOG_CAP + 5):
        hooks.enqueue_event(f"f@1/{n}/hold", "hold", "f", "{}", ["wh_a"], now=100.0 + n)
    log = hooks.deliveries("wh_a", limit=1000)
    assert len(log) == WEBHOOK_LOG_CAP and log[0]["event_id"] == f"f@1/{WEBHOOK_LOG_CAP + 4}/hold"
    hooks.delete_webhook("wh_a")
    assert hooks.deliveries("wh_a") == []

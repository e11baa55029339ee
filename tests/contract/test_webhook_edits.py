"""The WebhookStore role, on every store: a webhook's settings replaced in place, and never brought back by an
edit that raced its deletion."""

from __future__ import annotations

from flagsvc.store.webhooks import webhooks_for

HOOK = {"id": "wh_0000000000000001", "url": "https://hooks.example.com/x", "secret": "s"}


def test_a_webhook_is_replaced_only_while_it_exists(any_store):
    hooks = webhooks_for(any_store)
    assert hooks.replace_webhook(HOOK) is False  # no such webhook: nothing stored
    assert hooks.webhooks() == []
    assert hooks.add_webhook(HOOK) is True
    assert hooks.replace_webhook({**HOOK, "url": "https://hooks.example.com/y", "secret": "t"}) is True
    assert hooks.webhooks() == [{**HOOK, "url": "https://hooks.example.com/y", "secret": "t"}]
    assert hooks.delete_webhook(HOOK["id"]) is True
    assert hooks.replace_webhook(HOOK) is False
    assert hooks.webhooks() == []

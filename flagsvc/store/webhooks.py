"""Webhook storage: the `WebhookStore` role (webhooks' settings, the delivery queue, each webhook's delivery log),
its memory and Redis implementations. The Redis keys are keys.Keys.webhook_*, all in one hash slot; three
scripts (lua/webhook_enqueue.lua, webhook_claim.lua, webhook_finish.lua) make each queue step atomic.

The queue: an event is enqueued once (its id is deterministic; a marker set NX decides), as one delivery per
webhook. A worker claims a due delivery for one attempt with a lease and a random token; only the holder of the
claim records the outcome, then the delivery is done or due again later. `webhooks_for(store)` gives the one
that goes with a store.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, Protocol, TypedDict, cast, runtime_checkable

from flagsvc.store.keys import WEBHOOK_KEEP, WEBHOOK_LOG_CAP, Keys


class DeliveryDoc(TypedDict):
    """One event for one webhook, as its delivery log shows it; times in Unix seconds."""

    id: str
    webhook: str
    event_id: str
    event: str
    flag: str
    status: str  # pending, delivering, retrying, delivered, failed
    attempts: int
    last_error: str
    response_code: int | None
    created_at: float
    updated_at: float
    next_attempt_at: float | None


class ClaimedDelivery(TypedDict):
    doc: DeliveryDoc
    body: str


def delivery_id(event_id: str, webhook_id: str) -> str:
    return f"{event_id}>{webhook_id}"


def _doc(fields: Mapping[str, str]) -> DeliveryDoc:
    return {"id": fields["id"], "webhook": fields["webhook"], "event_id": fields["event_id"],
            "event": fields["event"], "flag": fields["flag"], "status": fields["status"],
            "attempts": int(fields["attempts"]), "last_error": fields["last_error"],
            "response_code": int(fields["response_code"]) if fields["response_code"] else None,
            "created_at": int(fields["created_at"]) / 1000, "updated_at": int(fields["updated_at"]) / 1000,
            "next_attempt_at": int(fields["next_at"]) / 1000 if fields["next_at"] else None}


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


@runtime_checkable
class WebhookStore(Protocol):
    def add_webhook(self, doc: Mapping[str, Any]) -> bool:
        """Store a new webhook (JSON-ready, with an `id`); False, nothing changed, when that id exists."""

    def webhooks(self) -> list[dict[str, Any]]:
        """Every webhook, by id."""

    def replace_webhook(self, doc: Mapping[str, Any]) -> bool:
        """Store new settings for the webhook `doc["id"]`; False, nothing changed, when there is no such webhook."""

    def delete_webhook(self, webhook_id: str) -> bool:
        """Remove a webhook and its delivery log; False when there was none."""

    def enqueue_event(self, event_id: str, event: str, flag: str, body: str, webhook_ids: Sequence[str], *,
                      now: float) -> bool:
        """One delivery per webhook, due now, unless this event id was enqueued before (then False)."""

    def due_deliveries(self, now: float, count: int) -> list[str]:
        """Up to `count` delivery ids due at `now`, the longest waiting first (claim each before acting)."""

    def claim_delivery(self, delivery: str, token: str, *, now: float, lease: float) -> ClaimedDelivery | None:
        """Claim a due delivery for one attempt until `now + lease`; None when it is not due (another claimed it)."""

    def finish_delivery(self, delivery: str, token: str, *, now: float, status: str, error: str = "",
                        response_code: int | None = None, next_at: float | None = None) -> bool:
        """Record the attempt's outcome if `token` still holds the claim; due again at `next_at`, or done."""

    def deliveries(self, webhook_id: str, limit: int = 100) -> list[DeliveryDoc]:
        """The webhook's delivery log, newest first."""


class MemoryWebhooks:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks: dict[str, str] = {}
        self._events: dict[str, float] = {}  # event id -> until when it is remembered
        self._due: dict[str, int] = {}
        self._deliveries: dict[str, dict[str, str]] = {}
        self._logs: dict[str, list[str]] = {}

    def add_webhook(self, doc: Mapping[str, Any]) -> bool:
        with self._lock:
            if doc["id"] in self._hooks:
                return False
            self._hooks[doc["id"]] = json.dumps(doc)
            return True

    def webhooks(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(self._hooks[k]) for k in sorted(self._hooks)]

    def replace_webhook(self, doc: Mapping[str, Any]) -> bool:
        with self._lock:
            if doc["id"] not in self._hooks:
                return False
            self._hooks[doc["id"]] = json.dumps(doc)
            return True

    def delete_webhook(self, webhook_id: str) -> bool:
        with self._lock:
            self._logs.pop(webhook_id, None)
            return self._hooks.pop(webhook_id, None) is not None

    def enqueue_event(self, event_id: str, event: str, flag: str, body: str, webhook_ids: Sequence[str], *,
                      now: float) -> bool:
        with self._lock:
            if self._events.get(event_id, -1.0) > now:
                return False
            self._events = {known: until for known, until in self._events.items() if until > now}  # expired go
            self._events[event_id] = now + WEBHOOK_KEEP
            at = str(_ms(now))
            for webhook in webhook_ids:
                one = delivery_id(event_id, webhook)
                self._deliveries[one] = {
                    "id": one, "webhook": webhook, "event_id": event_id, "event": event, "flag": flag, "body": body,
                    "status": "pending", "attempts": "0", "last_error": "", "response_code": "", "claim": "",
                    "created_at": at, "updated_at": at, "next_at": at}
                self._due[one] = _ms(now)
                self._logs[webhook] = [one, *self._logs.get(webhook, [])][:WEBHOOK_LOG_CAP]
            return True

    def due_deliveries(self, now: float, count: int) -> list[str]:
        with self._lock:
            due = sorted((at, one) for one, at in self._due.items() if at <= _ms(now))
            return [one for _, one in due[:count]]

    def claim_delivery(self, delivery: str, token: str, *, now: float, lease: float) -> ClaimedDelivery | None:
        with self._lock:
            fields = self._deliveries.get(delivery)
            if delivery not in self._due or self._due[delivery] > _ms(now) or fields is None:
                return None
            self._due[delivery] = _ms(now) + _ms(lease)
            fields.update(claim=token, status="delivering", updated_at=str(_ms(now)),
                          attempts=str(int(fields["attempts"]) + 1))
            return {"doc": _doc(fields), "body": fields["body"]}

    def finish_delivery(self, delivery: str, token: str, *, now: float, status: str, error: str = "",
                        response_code: int | None = None, next_at: float | None = None) -> bool:
        with self._lock:
            fields = self._deliveries.get(delivery)
            if fields is None or fields["claim"] != token:
                return False
            fields.update(status=status, last_error=error, claim="", updated_at=str(_ms(now)),
                          response_code="" if response_code is None else str(response_code),
                          next_at="" if next_at is None else str(_ms(next_at)))
            if next_at is None:
                self._due.pop(delivery, None)
            else:
                self._due[delivery] = _ms(next_at)
            return True

    def deliveries(self, webhook_id: str, limit: int = 100) -> list[DeliveryDoc]:
        with self._lock:
            return [_doc(self._deliveries[one]) for one in self._logs.get(webhook_id, [])[:limit]
                    if one in self._deliveries]


def _script(redis: Any, name: str) -> Any:
    return redis.register_script(resources.files("flagsvc.store").joinpath("lua", name).read_text())


class RedisWebhooks:
    def __init__(self, store: Any) -> None:
        self._redis = store.redis
        self.keys: Keys = store.keys
        self._enqueue = _script(self._redis, "webhook_enqueue.lua")
        self._claim = _script(self._redis, "webhook_claim.lua")
        self._finish = _script(self._redis, "webhook_finish.lua")
        self._replace = _script(self._redis, "webhook_replace.lua")

    def add_webhook(self, doc: Mapping[str, Any]) -> bool:
        return bool(self._redis.hsetnx(self.keys.webhook_configs, doc["id"], json.dumps(doc, separators=(",", ":"))))

    def webhooks(self) -> list[dict[str, Any]]:
        found = cast(dict[str, str], self._redis.hgetall(self.keys.webhook_configs))
        return [json.loads(found[k]) for k in sorted(found)]

    def replace_webhook(self, doc: Mapping[str, Any]) -> bool:
        return bool(self._replace(keys=[self.keys.webhook_configs],
                                  args=[doc["id"], json.dumps(doc, separators=(",", ":"))]))

    def delete_webhook(self, webhook_id: str) -> bool:
        removed = bool(self._redis.hdel(self.keys.webhook_configs, webhook_id))
        self._redis.delete(self.keys.webhook_log(webhook_id))
        return removed

    def enqueue_event(self, event_id: str, event: str, flag: str, body: str, webhook_ids: Sequence[str], *,
                      now: float) -> bool:
        keys = [self.keys.webhook_event(event_id), self.keys.webhook_due]
        args: list[Any] = [_ms(now), WEBHOOK_KEEP, WEBHOOK_LOG_CAP, event_id, event, flag, body]
        for webhook in webhook_ids:
            one = delivery_id(event_id, webhook)
            keys += [self.keys.webhook_delivery(one), self.keys.webhook_log(webhook)]
            args += [one, webhook]
        return bool(self._enqueue(keys=keys, args=args))

    def due_deliveries(self, now: float, count: int) -> list[str]:
        return cast(list[str], self._redis.zrangebyscore(self.keys.webhook_due, "-inf", _ms(now), start=0,
                                                         num=count))

    def claim_delivery(self, delivery: str, token: str, *, now: float, lease: float) -> ClaimedDelivery | None:
        flat = self._claim(keys=[self.keys.webhook_due, self.keys.webhook_delivery(delivery)],
                           args=[delivery, _ms(now), _ms(lease), token])
        if not flat:
            return None
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        return {"doc": _doc(fields), "body": fields["body"]}

    def finish_delivery(self, delivery: str, token: str, *, now: float, status: str, error: str = "",
                        response_code: int | None = None, next_at: float | None = None) -> bool:
        return bool(self._finish(keys=[self.keys.webhook_due, self.keys.webhook_delivery(delivery)], args=[
            delivery, token, _ms(now), status, error, "" if response_code is None else response_code,
            "" if next_at is None else _ms(next_at), WEBHOOK_KEEP]))

    def deliveries(self, webhook_id: str, limit: int = 100) -> list[DeliveryDoc]:
        ids = cast(list[str], self._redis.lrange(self.keys.webhook_log(webhook_id), 0, limit - 1))
        found = [cast(dict[str, str], self._redis.hgetall(self.keys.webhook_delivery(one))) for one in ids]
        return [_doc(fields) for fields in found if fields]


_MEMORY: weakref.WeakKeyDictionary[object, MemoryWebhooks] = weakref.WeakKeyDictionary()
_MEMORY_LOCK = threading.Lock()


def webhooks_for(store: object) -> WebhookStore:
    """The webhook store that goes with `store` (for memory stores, one per store)."""
    if isinstance(store, WebhookStore):
        return store
    if hasattr(store, "redis") and hasattr(store, "keys"):
        return RedisWebhooks(store)
    with _MEMORY_LOCK:
        found = _MEMORY.get(store)
        if found is None:
            found = _MEMORY[store] = MemoryWebhooks()
        return found

"""Webhooks, the tier's door: `WebhookCommands` (create, list, get, delete, the delivery log; the allow-list is
checked at creation) and `WebhookNotifier`, which turns the controller's looks into events and enqueues each
once (domain/webhook.py: the events, payloads, signatures; service/webhook_delivery.py sends them).

Enqueuing never fails the controller: an event that cannot be written is logged (`flagsvc.webhooks`) and the
look goes on. Its id is deterministic (the flag's life, the revision judged, the event), and the store enqueues
an id once, so a new leader, a second replica or a retried write cannot make a second delivery.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import secrets
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

from flagsvc.domain import webhook as hooks
from flagsvc.domain.destinations import AllowList
from flagsvc.domain.errors import IdempotencyKeyReused, InvalidFlag, WebhookNotFound
from flagsvc.domain.flag import Flag, HistoryEntry, State
from flagsvc.domain.webhook import Webhook, WebhookDoc
from flagsvc.service.audit import AuditLog
from flagsvc.store.webhooks import DeliveryDoc, WebhookStore

log = logging.getLogger("flagsvc.webhooks")
DEFAULT_HOLD_SECONDS = 3600.0
DEFAULT_SECRET_OVERLAP = 86400.0  # after a rotation, the old secret signs too for a day
MAX_SECRET_OVERLAP = 30 * 86400.0
REMEMBERED_EVENTS = 10_000


class WebhookCreatedDoc(WebhookDoc):
    """The webhook, with the secret its deliveries are signed with: shown this once."""

    secret: str


class WebhookListDoc(TypedDict):
    webhooks: list[WebhookDoc]


class DeliveryListDoc(TypedDict):
    """The webhook's delivery log, newest first (the newest 100 deliveries are kept)."""

    deliveries: list[DeliveryDoc]


class WebhookCommands:
    def __init__(self, store: WebhookStore, allow: AllowList, clock: Callable[[], float] = time.time, *,
                 audit: AuditLog | None = None, new_id: Callable[[], str] = lambda: f"wh_{secrets.token_hex(8)}",
                 new_secret: Callable[[], str] = lambda: f"whsec_{secrets.token_urlsafe(32)}") -> None:
        self._store = store
        self.allow = allow
        self._clock = clock
        self._audit = audit
        self.new_id = new_id  # how ids are made (tests fix them)
        self._new_secret = new_secret

    def create(self, body: Mapping[str, Any], *, actor: str, idempotency_key: str | None = None,
               fingerprint: str = "") -> WebhookCreatedDoc:
        """A new webhook from `body` (url, events; flag, hold_seconds, description); InvalidFlag naming the
        fields, nothing stored, when a setting is wrong or the URL's host is not allowed. With an
        `idempotency_key`, the webhook's id comes from it (and the actor), so the same request sent again gets the
        first answer back (its secret too) while the webhook exists, and another request with that key is refused
        (IdempotencyKeyReused)."""
        url, flag, events = body.get("url"), body.get("flag"), body.get("events")
        hold, description = body.get("hold_seconds", DEFAULT_HOLD_SECONDS), body.get("description", "")
        self._check({"url": url, "flag": flag, "events": events, "hold_seconds": hold, "description": description})
        webhook_id = self.new_id() if idempotency_key is None else "wh_" + hashlib.sha256(
            f"{actor}\0{idempotency_key}".encode()).hexdigest()[:16]
        webhook = Webhook(id=webhook_id, url=str(url), flag=flag, events=tuple(dict.fromkeys(events or [])),
                          hold_seconds=float(hold), secret=self._new_secret(), description=str(description),
                          created_at=self._clock(), created_by=actor)
        if not self._store.add_webhook({**webhook.to_stored(), "fingerprint": fingerprint}):
            first = next((doc for doc in self._store.webhooks() if doc["id"] == webhook_id), None)
            if first is None or idempotency_key is None or first.get("fingerprint") != fingerprint:
                raise IdempotencyKeyReused()
            return {**Webhook.from_stored(first).to_dict(), "secret": first["secret"]}  # the first answer again
        if self._audit is not None:
            self._audit.record("create", kind="webhook", target=webhook.id, actor=actor, flag=flag,
                               detail={"url": webhook.url, "events": list(webhook.events),
                                       "hold_seconds": webhook.hold_seconds})
        return {**webhook.to_dict(), "secret": webhook.secret}

    def update(self, webhook_id: str, body: Mapping[str, Any], *, actor: str) -> WebhookDoc:
        """New settings for a webhook (any of url, events, flag, hold_seconds, description; the others kept),
        checked as at creation (InvalidFlag naming the fields, nothing changed); WebhookNotFound. Deliveries
        already queued go to the new URL."""
        stored = self._find_stored(webhook_id)
        found = Webhook.from_stored(stored)
        merged = {"url": found.url, "events": list(found.events), "flag": found.flag,
                  "hold_seconds": found.hold_seconds, "description": found.description, **body}
        self._check(merged)
        changed = dataclasses.replace(found, url=str(merged["url"]), flag=merged["flag"],
                                      events=tuple(dict.fromkeys(merged["events"])),
                                      hold_seconds=float(merged["hold_seconds"]),
                                      description=str(merged["description"]))
        self._store_replaced(stored, changed, actor, "update",
                             {k: v for k, v in changed.to_dict().items() if k in body})
        return changed.to_dict()

    def rotate_secret(self, webhook_id: str, *, actor: str, overlap_seconds: float = DEFAULT_SECRET_OVERLAP,
                      idempotency_key: str | None = None) -> WebhookCreatedDoc:
        """A new signing secret, shown once; deliveries are signed with the old one too for `overlap_seconds`
        (0: not at all), so a receiver can switch over without losing one. The same `idempotency_key` as the
        last rotation gets that rotation's answer again (a retried request must not rotate twice: the secret
        the receiver still has would stop signing)."""
        if isinstance(overlap_seconds, bool) or not isinstance(overlap_seconds, int | float) \
                or not 0 <= overlap_seconds <= MAX_SECRET_OVERLAP:
            raise InvalidFlag("invalid rotation", {"keep_previous_seconds": [
                f"must be seconds from 0 to {MAX_SECRET_OVERLAP}"]})
        stored = self._find_stored(webhook_id)
        found = Webhook.from_stored(stored)
        if idempotency_key is not None and found.rotation_key == f"{actor}\0{idempotency_key}":
            return {**found.to_dict(), "secret": found.secret}
        rotated = dataclasses.replace(found, secret=self._new_secret(), previous_secret=found.secret,
                                      previous_until=self._clock() + overlap_seconds if overlap_seconds else 0.0,
                                      rotation_key=None if idempotency_key is None else f"{actor}\0{idempotency_key}")
        self._store_replaced(stored, rotated, actor, "rotate_secret", {"keep_previous_seconds": overlap_seconds})
        return {**rotated.to_dict(), "secret": rotated.secret}

    def _check(self, body: Mapping[str, Any]) -> None:
        problems = hooks.validate(body.get("url"), body.get("flag"), body.get("events"), body.get("hold_seconds"),
                                  body.get("description"))
        if "url" not in problems:
            host = urllib.parse.urlsplit(str(body.get("url"))).hostname or ""
            if not self.allow.permits_host(host):
                problems["url"] = [f"host {host!r} is not in FLAGSVC_WEBHOOK_ALLOW ({self.allow.describe()})"]
        if problems:
            raise InvalidFlag(f"invalid webhook: {', '.join(sorted(problems))}", problems)

    def _store_replaced(self, stored: Mapping[str, Any], after: Webhook, actor: str, action: str,
                        detail: Mapping[str, Any]) -> None:
        """`after` in place of the webhook as it was `stored` (its create's idempotency fingerprint kept)."""
        if not self._store.replace_webhook({**after.to_stored(), "fingerprint": stored.get("fingerprint", "")}):
            raise WebhookNotFound(after.id)
        if self._audit is not None:
            self._audit.record(action, kind="webhook", target=after.id, actor=actor, flag=after.flag,
                               detail=dict(detail))

    def list(self) -> WebhookListDoc:
        return {"webhooks": [Webhook.from_stored(doc).to_dict() for doc in self._store.webhooks()]}

    def _find_stored(self, webhook_id: str) -> dict[str, Any]:
        for doc in self._store.webhooks():
            if doc["id"] == webhook_id:
                return doc
        raise WebhookNotFound(webhook_id)

    def _find(self, webhook_id: str) -> Webhook:
        return Webhook.from_stored(self._find_stored(webhook_id))

    def get(self, webhook_id: str) -> WebhookDoc:
        return self._find(webhook_id).to_dict()

    def delete(self, webhook_id: str, *, actor: str) -> None:
        found = self._find(webhook_id)
        if not self._store.delete_webhook(webhook_id):
            raise WebhookNotFound(webhook_id)
        if self._audit is not None:
            self._audit.record("delete", kind="webhook", target=webhook_id, actor=actor, flag=found.flag,
                               detail={"url": found.url})

    def deliveries(self, webhook_id: str, limit: int = 100) -> DeliveryListDoc:
        self._find(webhook_id)
        return {"deliveries": self._store.deliveries(webhook_id, limit)}


class WebhookNotifier:
    """What the controller calls after each look: the events of that look, enqueued once each; and what the
    operator commands call after a change: an operator's rollback or promotion to complete is told as the
    controller's is, with who did it."""

    def __init__(self, store: WebhookStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        # Events this process has enqueued (or found enqueued): a hold is seen at every look, and need not be
        # written again each time.
        self._seen: OrderedDict[str, None] = OrderedDict()

    def look(self, flag: Flag, decision: str, reason: str, evidence: Mapping[str, Any], after: Flag | None, *,
             held_seconds: float, at: float) -> None:
        """The events of one look at `flag` (`after`: the flag once the verdict was applied, None if it was not).
        Never raises: a failure is logged and the controller goes on."""
        try:
            self._look(flag, decision, reason, evidence, after, held_seconds, at)
        except Exception as e:
            log.error("webhook event of flag %s not enqueued (the rollout goes on): %s", flag.key, e,
                      extra={"flag": flag.key, "revision": flag.revision, "decision": decision})

    def operator_change(self, before: Flag, after: Flag, entry: HistoryEntry) -> None:
        """A change an operator made (`entry`: its history entry). Never raises: a failure is logged and the
        change stands."""
        if after.state == before.state or after.state not in (State.ROLLED_BACK, State.COMPLETE):
            return
        event = "rollback" if after.state == State.ROLLED_BACK else "complete"
        try:
            wanting = [w.id for w in (Webhook.from_stored(doc) for doc in self._store.webhooks())
                       if w.wants(before.key, event)]
            if wanting:
                reason = f"by {entry.actor}" + (f": {entry.reason}" if entry.reason else "")
                self._enqueue(before, after, event, event, reason, {"actor": entry.actor}, entry.at, wanting)
        except Exception as e:
            log.error("webhook event of flag %s not enqueued (the change stands): %s", before.key, e,
                      extra={"flag": before.key, "revision": after.revision, "event": event})

    def _look(self, flag: Flag, decision: str, reason: str, evidence: Mapping[str, Any], after: Flag | None,
              held_seconds: float, at: float) -> None:
        events: list[tuple[str, dict[str, Any]]] = []
        if after is not None and decision == "rollback":
            events.append(("rollback", {}))
        if after is not None and after.state == State.COMPLETE:
            events.append(("complete", {}))
        if decision == "blind":
            events.append(("blind", {"blind": evidence.get("blind")}))
        reporters = evidence.get("reporters")
        if isinstance(reporters, Mapping) and reporters.get("driven_by"):
            events.append(("reporter_anomaly", {"driven_by": reporters["driven_by"]}))
        if decision in ("hold", "blind"):
            events.append(("hold", {"held_seconds": held_seconds}))
        if not events:
            return
        subscribed = [Webhook.from_stored(doc) for doc in self._store.webhooks()]
        shown = after or flag
        for event, detail in events:
            wanting = [w for w in subscribed if w.wants(flag.key, event)]
            if event == "hold":  # one event per threshold reached: each webhook waits as long as it asked
                for threshold in sorted({w.hold_seconds for w in wanting if w.hold_seconds <= held_seconds}):
                    self._enqueue(flag, shown, f"hold>{threshold:g}s", "hold", reason, detail, at,
                                  [w.id for w in wanting if w.hold_seconds == threshold])
            elif wanting:
                self._enqueue(flag, shown, event, event, reason, detail, at, [w.id for w in wanting])

    def _enqueue(self, judged: Flag, shown: Flag, name: str, event: str, reason: str, detail: dict[str, Any],
                 at: float, webhook_ids: list[str]) -> None:
        event_id = hooks.event_id(judged.key, judged.created_at, judged.revision, name)
        with self._lock:
            if event_id in self._seen:
                return
        doc = hooks.payload(event, event_id=event_id, flag=judged.key, revision=shown.revision, reason=reason,
                            percent=shown.percent, state=shown.state.value, at=at, detail=detail)
        if self._store.enqueue_event(event_id, event, judged.key, hooks.body_of(doc).decode(), webhook_ids, now=at):
            log.info("webhook event %s enqueued for %d webhook(s)", event_id, len(webhook_ids),
                     extra={"flag": judged.key, "event": event})
        with self._lock:
            self._seen[event_id] = None
            while len(self._seen) > REMEMBERED_EVENTS:
                self._seen.popitem(last=False)

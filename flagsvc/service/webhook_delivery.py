"""Webhook delivery: `DeliveryWorker.step` (run by the server's background work, service/background.py) claims
due deliveries from the queue (store/webhooks.py), checks the destination against the allow-list again after
resolving its name, sends the signed event, and records the outcome: delivered on a 2xx; otherwise tried again
after an exponential backoff with jitter, until the attempts run out (then `failed`).

Redirects are never followed (a 3xx is a failed attempt: a redirect could lead anywhere the allow-list does not
allow), and every attempt has a short timeout. The HTTP sender, the name resolver, the clock and the random
source are parameters, so tests drive a worker by hand.

Exactly one delivery per event and webhook, across replicas: a worker acts only on a delivery it has claimed
(store/webhooks.py), and a claim lasts longer than an attempt can take. A worker that dies mid-attempt leaves the
delivery to be claimed again when its lease ends, so a receiver may then see one event twice: the payload's `id`
is the same both times.
"""

from __future__ import annotations

import http.client
import logging
import random
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from flagsvc.domain import webhook as hooks
from flagsvc.domain.destinations import AllowList
from flagsvc.domain.webhook import RetryPolicy, Webhook
from flagsvc.store.webhooks import ClaimedDelivery, WebhookStore

log = logging.getLogger("flagsvc.webhooks")
USER_AGENT = "flagsvc-webhooks/1"


class Sender(Protocol):
    def __call__(self, url: str, address: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        """POST `body` to `url`, connecting to `address` (already checked); the response's status code. Raises
        OSError (or http.client.HTTPException) when no answer came."""


Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int | None, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int | None, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def http_sender(url: str, address: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
    """The real sender: one POST over http.client to the checked address (the certificate is checked against the
    URL's host), no redirect followed, the answer's body read up to 64 KiB and dropped."""
    parts = urllib.parse.urlsplit(url)
    kind = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    connection = kind(parts.hostname or "", parts.port, address, timeout)
    try:
        path = parts.path or "/"
        connection.request("POST", path + (f"?{parts.query}" if parts.query else ""), body=body,
                           headers=dict(headers))
        response = connection.getresponse()
        response.read(65536)
        return response.status
    finally:
        connection.close()


@dataclass
class DeliveryWorker:
    store: WebhookStore
    allow: AllowList
    sender: Sender = http_sender
    resolver: Resolver = resolve
    clock: Callable[[], float] = time.time
    rng: random.Random = field(default_factory=random.Random)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 5.0
    batch: int = 20
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def lease(self) -> float:
        """How long a claim lasts: longer than resolving, connecting and the answer can take together."""
        return 3 * self.timeout + 10

    def step(self) -> int:
        """Attempt every delivery due now (at most `batch`); the number attempted."""
        attempted = 0
        due = self.store.due_deliveries(self.clock(), self.batch)
        if not due:
            return 0
        webhooks = {doc["id"]: Webhook.from_stored(doc) for doc in self.store.webhooks()}
        for delivery in due:
            if self.stopping.is_set():
                break
            token = secrets.token_hex(8)
            claimed = self.store.claim_delivery(delivery, token, now=self.clock(), lease=self.lease)
            if claimed is None:  # another worker has it
                continue
            attempted += 1
            self._attempt(delivery, token, claimed, webhooks.get(claimed["doc"]["webhook"]))
        return attempted

    def _attempt(self, delivery: str, token: str, claimed: ClaimedDelivery, webhook: Webhook | None) -> None:
        doc = claimed["doc"]
        if webhook is None:
            self._finish(delivery, token, "failed", "the webhook was deleted", None, None)
            return
        code: int | None = None
        try:
            code = self._send(webhook, claimed["body"].encode())
            error = "" if 200 <= code < 300 else (
                f"HTTP {code}: a redirect, not followed" if 300 <= code < 400 else f"HTTP {code}")
        except Exception as e:  # refused by the allow-list, no answer, a timeout: an attempt that failed
            error = f"{type(e).__name__}: {e}"[:500]
        if not error:
            self._finish(delivery, token, "delivered", "", code, None)
            log.info("webhook %s: delivered %s (attempt %d)", webhook.id, doc["event_id"], doc["attempts"])
            return
        delay = self.policy.delay(doc["attempts"], self.rng)
        log.warning("webhook %s: attempt %d of %s failed: %s%s", webhook.id, doc["attempts"], doc["event_id"],
                    error, "; giving up" if delay is None else f"; again in {delay:.1f} s")
        next_at = None if delay is None else self.clock() + delay
        self._finish(delivery, token, "failed" if delay is None else "retrying", error, code, next_at)

    def _send(self, webhook: Webhook, body: bytes) -> int:
        parts = urllib.parse.urlsplit(webhook.url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = self.resolver(host, port)  # resolved once: the address checked is the address used
        refused = self.allow.refusal(host, addresses)
        if refused:
            raise PermissionError(refused)
        timestamp = int(self.clock())
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   hooks.SIGNATURE_HEADER: hooks.signature(webhook.secrets_at(self.clock()), timestamp, body)}
        return self.sender(webhook.url, addresses[0], body, headers, self.timeout)

    def _finish(self, delivery: str, token: str, status: str, error: str, code: int | None,
                next_at: float | None) -> None:
        if not self.store.finish_delivery(delivery, token, now=self.clock(), status=status, error=error,
                                          response_code=code, next_at=next_at):
            log.warning("webhook delivery %s: the claim ended before the attempt did; its outcome is not recorded",
                        delivery)


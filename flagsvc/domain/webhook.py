"""Webhooks: what one is (a destination, the events it wants, globally or for one flag), the events the
controller raises, the payload sent for an event (a Slack-compatible `text` and the structured fields), its
signature, and when a failed delivery is tried again.

The signature is Stripe's scheme: `Flagsvc-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
The timestamp is inside the signed text, so a receiver that refuses old timestamps refuses replays too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import random
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any, TypedDict

from flagsvc.domain.errors import InvalidFlag
from flagsvc.domain.flag import KEY_PATTERN

EVENTS = ("rollback", "complete", "hold", "blind", "reporter_anomaly")
SIGNATURE_HEADER = "Flagsvc-Signature"
EVENT_HEADER = "Flagsvc-Event"
ID_PATTERN = re.compile(r"^wh_[0-9a-f]{16}\Z")
MAX_URL = 2000
MAX_HOLD_SECONDS = 30 * 86400


class WebhookDoc(TypedDict):
    """A webhook as the API shows it (never its secret, which is given once, at creation)."""

    id: str
    url: str
    flag: str | None
    events: list[str]
    hold_seconds: float
    description: str
    created_at: float
    created_by: str
    previous_secret_until: float | None  # after a rotation: deliveries are signed with the old secret too until then


@dataclass(frozen=True)
class Webhook:
    id: str
    url: str
    flag: str | None  # None: every flag
    events: tuple[str, ...]
    hold_seconds: float  # a `hold` event once a rollout has held this long at one revision
    secret: str
    description: str
    created_at: float
    created_by: str
    # After a secret rotation, deliveries are signed with the old secret too until `previous_until`, so that a
    # receiver can switch to the new one at its own pace (docs/notifications.md).
    previous_secret: str | None = None
    previous_until: float = 0.0
    rotation_key: str | None = None  # the Idempotency-Key of the last rotation: sent again, the same answer

    def secrets_at(self, now: float) -> tuple[str, ...]:
        """The secrets a delivery made at `now` is signed with: the current one, and the previous one while it
        overlaps."""
        if self.previous_secret and now < self.previous_until:
            return (self.secret, self.previous_secret)
        return (self.secret,)

    def wants(self, flag: str, event: str) -> bool:
        return event in self.events and (self.flag is None or self.flag == flag)

    def to_dict(self) -> WebhookDoc:
        return {"id": self.id, "url": self.url, "flag": self.flag, "events": list(self.events),
                "hold_seconds": self.hold_seconds, "description": self.description, "created_at": self.created_at,
                "created_by": self.created_by,
                "previous_secret_until": self.previous_until if self.previous_secret else None}

    def to_stored(self) -> dict[str, Any]:
        return {**self.to_dict(), "secret": self.secret, "previous_secret": self.previous_secret,
                "previous_until": self.previous_until, "rotation_key": self.rotation_key}

    @classmethod
    def from_stored(cls, doc: dict[str, Any]) -> Webhook:
        return cls(id=doc["id"], url=doc["url"], flag=doc["flag"], events=tuple(doc["events"]),
                   hold_seconds=float(doc["hold_seconds"]), secret=doc["secret"], description=doc["description"],
                   created_at=float(doc["created_at"]), created_by=doc["created_by"],
                   previous_secret=doc.get("previous_secret"), previous_until=float(doc.get("previous_until") or 0),
                   rotation_key=doc.get("rotation_key"))


def validate(url: Any, flag: Any, events: Any, hold_seconds: Any, description: Any) -> dict[str, list[str]]:
    """Every problem of a webhook's settings at once, by field (empty: valid). The allow-list is checked apart."""
    problems: dict[str, list[str]] = {}
    if not isinstance(url, str) or not url or len(url) > MAX_URL or not url.isprintable() or " " in url:
        problems["url"] = [f"must be an http(s) URL of at most {MAX_URL} printable characters"]
    else:
        parts = urllib.parse.urlsplit(url)
        try:
            parts.port  # noqa: B018  # raises ValueError for a port that is not a number in range
        except ValueError:
            problems["url"] = ["has a port that is not a number from 1 to 65535"]
        else:
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problems["url"] = ["must be an http:// or https:// URL with a host"]
            elif parts.username is not None or parts.password is not None:
                problems["url"] = ["must not carry credentials (user:password@)"]
    if flag is not None and (not isinstance(flag, str) or not KEY_PATTERN.match(flag)):
        problems["flag"] = [f"must be a flag key ({KEY_PATTERN.pattern}) or null for every flag"]
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        problems["events"] = [f"must be a non-empty list of: {', '.join(EVENTS)}"]
    elif unknown := sorted(set(events) - set(EVENTS)):
        problems["events"] = [f"unknown events {unknown}; known: {', '.join(EVENTS)}"]
    if isinstance(hold_seconds, bool) or not isinstance(hold_seconds, int | float) or not math.isfinite(
            hold_seconds) or not 1 <= hold_seconds <= MAX_HOLD_SECONDS:
        problems["hold_seconds"] = [f"must be seconds from 1 to {MAX_HOLD_SECONDS}"]
    if not isinstance(description, str) or len(description) > 200 or not description.isprintable():
        problems["description"] = ["must be at most 200 printable characters"]
    return problems


def checked(url: Any, flag: Any, events: Any, hold_seconds: Any, description: Any) -> None:
    problems = validate(url, flag, events, hold_seconds, description)
    if problems:
        raise InvalidFlag(f"invalid webhook: {', '.join(sorted(problems))}", problems)


# --- events and payloads ----------------------------------------------------------------------------------

class EventDoc(TypedDict):
    """What a webhook receives: `text` for people (Slack shows it), the rest for programs."""

    text: str
    id: str
    event: str
    flag: str
    revision: int
    reason: str
    percent: float
    state: str
    at: float
    detail: dict[str, Any]


def event_id(flag: str, incarnation: float, revision: int, event: str) -> str:
    """The same event always gets the same id, whichever replica raises it and however often: a flag's life
    (its created_at: a flag deleted and created again starts afresh), the revision judged, the event."""
    return f"{flag}@{incarnation:.6f}/{revision}/{event}"


_TEXT = {
    "rollback": "rolled back to 0 %",
    "complete": "completed: 100 % for everyone",
    "hold": "has held for {held}",
    "blind": "is blind: one arm's outcomes are missing",
    "reporter_anomaly": "is held: one reporter (SDK instance) alone decides the verdict",
}


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def payload(event: str, *, event_id: str, flag: str, revision: int, reason: str, percent: float, state: str,
            at: float, detail: dict[str, Any] | None = None) -> EventDoc:
    held = (detail or {}).get("held_seconds", 0.0)
    summary = _TEXT[event].format(held=_duration(float(held)))
    # Slack reads `text` as mrkdwn: the flag's key is plain [a-z0-9_.-]; the reason (the judge's words, or an
    # operator's) has &, < and > escaped as Slack asks, so that no reason can mention @channel or forge a link.
    text = f"flagsvc: flag `{flag}` {summary} (revision {revision}, {percent:g} %). {_slack_escaped(reason)}".strip()
    return {"text": text, "id": event_id, "event": event, "flag": flag, "revision": revision, "reason": reason,
            "percent": percent, "state": state, "at": at, "detail": dict(detail or {})}


def _slack_escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def body_of(doc: EventDoc) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


# --- signatures ---------------------------------------------------------------------------------------------

def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature(secret: str | tuple[str, ...], timestamp: int, body: bytes) -> str:
    """The header value for `body` sent at `timestamp` (Unix seconds): one `v1=` per secret (two while a
    rotated secret overlaps the new one)."""
    secrets = (secret,) if isinstance(secret, str) else secret
    return ",".join([f"t={timestamp}", *(f"v1={_mac(s, timestamp, body)}" for s in secrets)])


def verify(secret: str, header: str, body: bytes, *, now: float, tolerance: float = 300) -> bool:
    """Whether `header` signs `body` with `secret` (any of its `v1=` values), made within `tolerance` seconds of
    `now`."""
    parts = [part.split("=", 1) for part in header.split(",") if "=" in part]
    timestamp = next((value for name, value in parts if name == "t"), "")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    expected = _mac(secret, int(timestamp), body)
    return any(hmac.compare_digest(expected, value) for name, value in parts if name == "v1")


# --- retries ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RetryPolicy:
    """Delivery attempts: at most `max_attempts`; after the n-th failure the next comes after a delay drawn
    uniformly from [0, min(cap, base * 2^(n-1))] ("full jitter"), so receivers that come back are not hit by
    every sender at the same instant."""

    max_attempts: int = 8
    base: float = 2.0
    cap: float = 600.0

    def delay(self, failures: int, rng: random.Random) -> float | None:
        """Seconds until the next attempt after `failures` failed ones; None: give up."""
        if failures >= self.max_attempts:
            return None
        return rng.uniform(0, min(self.cap, self.base * 2 ** (failures - 1)))

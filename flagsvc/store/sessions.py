"""Console session storage: the `SessionStore` role (a session's document under the digest of its cookie, gone
when it expires or is dropped), its memory and Redis implementations. The Redis key is keys.Keys.console_session,
a plain string with an expiry: every server process and replica sees a sign-in and a sign-out at once.

`sessions_for(store)` gives the one that goes with a store.
"""

from __future__ import annotations

import json
import math
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from flagsvc.store.keys import Keys
from flagsvc.store.roles import Clock


@runtime_checkable
class SessionStore(Protocol):
    def put_session(self, digest: str, doc: Mapping[str, Any], *, ttl: float) -> None:
        """Keep `doc` (JSON-ready) under `digest` for `ttl` seconds."""

    def get_session(self, digest: str) -> dict[str, Any] | None:
        """The document under `digest`, or None when there is none (never kept, expired or dropped)."""

    def drop_session(self, digest: str) -> None:
        """Forget `digest`; nothing happens when it is not there."""


class MemorySessions:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._docs: dict[str, tuple[float, str]] = {}

    def put_session(self, digest: str, doc: Mapping[str, Any], *, ttl: float) -> None:
        with self._lock:
            now = self._clock()
            self._docs = {d: kept for d, kept in self._docs.items() if kept[0] > now}
            self._docs[digest] = (now + ttl, json.dumps(doc))

    def get_session(self, digest: str) -> dict[str, Any] | None:
        with self._lock:
            kept = self._docs.get(digest)
            if kept is None or kept[0] <= self._clock():
                return None
            return dict(json.loads(kept[1]))

    def drop_session(self, digest: str) -> None:
        with self._lock:
            self._docs.pop(digest, None)


class RedisSessions:
    def __init__(self, store: Any) -> None:
        self._redis = store.redis
        self.keys: Keys = store.keys

    def put_session(self, digest: str, doc: Mapping[str, Any], *, ttl: float) -> None:
        self._redis.set(self.keys.console_session(digest), json.dumps(doc, separators=(",", ":")),
                        px=max(math.ceil(ttl * 1000), 1))

    def get_session(self, digest: str) -> dict[str, Any] | None:
        raw = self._redis.get(self.keys.console_session(digest))
        if raw is None:
            return None
        doc = json.loads(raw)
        return dict(doc) if isinstance(doc, dict) else None

    def drop_session(self, digest: str) -> None:
        self._redis.delete(self.keys.console_session(digest))


_MEMORY: weakref.WeakKeyDictionary[object, MemorySessions] = weakref.WeakKeyDictionary()
_MEMORY_LOCK = threading.Lock()


def sessions_for(store: object) -> SessionStore:
    """The session storage that goes with `store` (for memory stores, one per store)."""
    if isinstance(store, SessionStore):
        return store
    if hasattr(store, "redis") and hasattr(store, "keys"):
        return RedisSessions(store)
    with _MEMORY_LOCK:
        found = _MEMORY.get(store)
        if found is None:
            found = _MEMORY[store] = MemorySessions()
        return found

"""Audit storage: the `AuditLogStore` role (one append-only stream of changes, trimmed by count and age), its
memory and Redis implementations. The Redis key is keys.Keys.audit; one script (lua/audit_append.lua) appends
and trims.

Entry ids are `<ms>-<seq>` from the writer's clock, kept increasing by the store, so the log reads in order
and an id is a cursor. `audit_log_for(store)` gives the one that goes with a store.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections.abc import Mapping
from importlib import resources
from typing import Any, Protocol, cast, runtime_checkable

from flagsvc.store.keys import Keys
from flagsvc.store.roles import Clock


def parse_id(entry_id: str) -> tuple[int, int]:
    """`<ms>-<seq>` -> (ms, seq); ValueError for anything else."""
    ms, dash, seq = entry_id.partition("-")
    if not dash or not ms.isascii() or not ms.isdigit() or not seq.isascii() or not seq.isdigit():
        raise ValueError(f"not an audit entry id: {entry_id!r}")
    if int(ms) >= 2**64 or int(seq) >= 2**64:  # each part of a Redis stream id is 64 bits
        raise ValueError(f"not an audit entry id: {entry_id!r}")
    return int(ms), int(seq)


@runtime_checkable
class AuditLogStore(Protocol):
    def append_audit(self, doc: Mapping[str, Any], *, now: float, max_entries: int, max_age: float) -> str:
        """Append `doc` (JSON-ready) at `now` (seconds), then keep the newest `max_entries` entries younger than
        `max_age` seconds; the entry's id."""

    def read_audit(self, *, before: str | None = None, count: int = 100) -> list[tuple[str, dict[str, Any]]]:
        """Up to `count` entries, newest first, older than id `before` (None: from the newest)."""


class MemoryAuditLog:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._entries: list[tuple[tuple[int, int], str]] = []
        self._last = (0, 0)

    def append_audit(self, doc: Mapping[str, Any], *, now: float, max_entries: int, max_age: float) -> str:
        with self._lock:
            ms, seq = int(now * 1000), 0
            if self._last[0] >= ms:
                ms, seq = self._last[0], self._last[1] + 1
            self._last = (ms, seq)
            self._entries.append(((ms, seq), json.dumps(doc)))
            oldest = (int((now - max_age) * 1000), 0)
            self._entries = [e for e in self._entries[-max_entries:] if e[0] >= oldest]
            return f"{ms}-{seq}"

    def read_audit(self, *, before: str | None = None, count: int = 100) -> list[tuple[str, dict[str, Any]]]:
        limit = parse_id(before) if before is not None else None
        with self._lock:
            chosen = [e for e in reversed(self._entries) if limit is None or e[0] < limit][:count]
        return [(f"{i[0]}-{i[1]}", json.loads(doc)) for i, doc in chosen]


class RedisAuditLog:
    def __init__(self, store: Any) -> None:
        self._redis = store.redis
        self.keys: Keys = store.keys
        self._append = self._redis.register_script(
            resources.files("flagsvc.store").joinpath("lua", "audit_append.lua").read_text())

    def append_audit(self, doc: Mapping[str, Any], *, now: float, max_entries: int, max_age: float) -> str:
        return str(self._append(keys=[self.keys.audit], args=[
            int(now * 1000), json.dumps(doc, separators=(",", ":")), max_entries, max(int((now - max_age) * 1000), 0)]))

    def read_audit(self, *, before: str | None = None, count: int = 100) -> list[tuple[str, dict[str, Any]]]:
        if before is not None and parse_id(before) == (0, 0):
            return []  # nothing is older than the first possible id (and Redis refuses "(0-0" as an end)
        found = cast(list[tuple[str, dict[str, str]]],
                     self._redis.xrevrange(self.keys.audit, f"({before}" if before else "+", "-", count=count))
        return [(entry_id, json.loads(fields["doc"])) for entry_id, fields in found]


_MEMORY: weakref.WeakKeyDictionary[object, MemoryAuditLog] = weakref.WeakKeyDictionary()
_MEMORY_LOCK = threading.Lock()


def audit_log_for(store: object) -> AuditLogStore:
    """The audit log that goes with `store` (for memory stores, one per store)."""
    if isinstance(store, AuditLogStore):
        return store
    if hasattr(store, "redis") and hasattr(store, "keys"):
        return RedisAuditLog(store)
    with _MEMORY_LOCK:
        found = _MEMORY.get(store)
        if found is None:
            found = _MEMORY[store] = MemoryAuditLog()
        return found

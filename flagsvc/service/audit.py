"""The audit log: every change, by whom (the token's name, or `controller`), into one append-only stream that
outlives the flags it names, capped by count and age (FLAGSVC_AUDIT_MAX_ENTRIES, FLAGSVC_AUDIT_MAX_DAYS).

The doors that change things (FlagCommands, SegmentCommands, WebhookCommands, the controller's moves) record
here after their change is applied. A change is applied first and recorded second, in separate steps (the stream
is one key of its own, on another hash slot than the flag), so an entry that cannot be written is logged, with
the change, and the change stands; a flag's own history keeps its entries atomically with the change.

The HTTP layer names who acts for the request (`acting_as`), so a door whose API passes no actor still records
the token that acted.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

from flagsvc.domain.flag import HistoryEntry
from flagsvc.store.audit import AuditLogStore, parse_id

__all__ = ["AuditEntryDoc", "AuditFilter", "AuditLog", "AuditPageDoc", "acting", "acting_as", "parse_id"]
log = logging.getLogger("flagsvc.audit")
_ACTING: contextvars.ContextVar[str | None] = contextvars.ContextVar("flagsvc_acting", default=None)
SCAN_CHUNK = 500
MAX_SCANNED = 20_000  # entries one request reads at most; then it answers with a cursor to go on from


def acting_as(name: str | None) -> None:
    """Who acts for the rest of this request (the HTTP layer sets it from the token, and clears it)."""
    _ACTING.set(name)


def acting() -> str | None:
    return _ACTING.get()


class AuditEntryDoc(TypedDict):
    """One change: when, who (a token's name, or `controller`), what, on which object, why."""

    id: str
    at: float
    actor: str
    action: str
    kind: str
    target: str
    flag: str | None
    revision: int | None
    reason: str
    detail: dict[str, Any] | None


class AuditPageDoc(TypedDict):
    """Audit entries, newest first; `next_cursor` (null at the end) fetches the older ones that match."""

    entries: list[AuditEntryDoc]
    next_cursor: str | None


class AuditFilter(TypedDict, total=False):
    flag: str
    actor: str
    action: str
    since: float
    until: float


class AuditLog:
    def __init__(self, store: AuditLogStore, clock: Callable[[], float] = time.time, *,
                 max_entries: int = 100_000, max_age: float = 90 * 86400) -> None:
        self._store = store
        self._clock = clock
        self.max_entries = max_entries
        self.max_age = max_age

    def record(self, action: str, *, kind: str, target: str, actor: str | None = None, flag: str | None = None,
               revision: int | None = None, reason: str = "", detail: Mapping[str, Any] | None = None) -> bool:
        """Append one entry; False (logged, never raised: the change it records stands) when the store refused."""
        now = self._clock()
        doc = {"at": now, "actor": actor or acting() or "unknown", "action": action, "kind": kind,
               "target": target, "flag": flag, "revision": revision, "reason": reason,
               "detail": dict(detail) if detail is not None else None}
        try:
            self._store.append_audit(doc, now=now, max_entries=self.max_entries, max_age=self.max_age)
            return True
        except Exception as e:
            log.error("audit entry not written (the change stands): %s %s %s by %s: %s", kind, target, action,
                      doc["actor"], e, extra={"audit": doc})
            return False

    def flag_change(self, key: str, entry: HistoryEntry) -> None:
        """A flag's history entry, as it was kept with the change."""
        detail = entry.to_dict()
        for copied in ("at", "actor", "action", "revision", "reason"):
            detail.pop(copied, None)  # type: ignore[misc]  # a copy of a TypedDict, made smaller
        self.record(entry.action.value, kind="flag", target=key, actor=entry.actor, flag=key,
                    revision=entry.revision, reason=entry.reason, detail=detail)

    def entries(self, filters: AuditFilter, *, limit: int = 100, cursor: str | None = None) -> AuditPageDoc:
        """Matching entries, newest first, older than `cursor`; ValueError for a malformed cursor."""
        if cursor is not None:
            parse_id(cursor)
        elif "until" in filters:
            cursor = f"{int(filters['until'] * 1000) + 1}-0"
        since_ms = int(filters["since"] * 1000) if "since" in filters else None
        found: list[AuditEntryDoc] = []
        scanned = 0
        while True:
            chunk = self._store.read_audit(before=cursor, count=SCAN_CHUNK)
            for entry_id, doc in chunk:
                cursor, scanned = entry_id, scanned + 1
                if since_ms is not None and parse_id(entry_id)[0] < since_ms:
                    return {"entries": found, "next_cursor": None}
                if _matches(doc, filters):
                    found.append({"id": entry_id, **doc})  # type: ignore[typeddict-item]
                    if len(found) == limit:
                        return {"entries": found, "next_cursor": entry_id}
            if len(chunk) < SCAN_CHUNK:
                return {"entries": found, "next_cursor": None}
            if scanned >= MAX_SCANNED:
                return {"entries": found, "next_cursor": cursor}


def _matches(doc: Mapping[str, Any], filters: AuditFilter) -> bool:
    return all(doc.get(name) == filters[name] for name in ("flag", "actor", "action")
               if name in filters) and ("until" not in filters or doc.get("at", 0) <= filters["until"])

"""The operations' part of the OpenAPI document (openapi.py merges it): rollouts' time series and the audit log.
Same tuple shape as openapi.OPERATIONS."""

from __future__ import annotations

from typing import Any

from flagsvc.domain.flag import KEY_PATTERN
from flagsvc.domain.timeline import TIMELINE_REVISIONS, FlagTimelineDoc, RevisionTimelineDoc, TimelinePointDoc
from flagsvc.service.audit import AuditEntryDoc, AuditPageDoc

ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]
KEY = {"name": "key", "in": "path", "required": True, "description": "The flag's key",
       "schema": {"type": "string", "pattern": KEY_PATTERN.pattern}}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


REVISION = {"type": "integer", "minimum": 1, "maximum": 999_999_999}
TIMELINE_PARAMS = [
    _query("from_revision", "The first revision (default 1)", REVISION),
    _query("to_revision", "The last revision (default: the newest)", REVISION),
    _query("revisions", f"At most this many revisions, the newest (1 to {TIMELINE_REVISIONS})",
           {"type": "integer", "minimum": 1, "maximum": TIMELINE_REVISIONS, "default": TIMELINE_REVISIONS}),
]

TEXT = {"type": "string", "minLength": 1, "maxLength": 200}
SECONDS = {"type": "number", "minimum": 0, "maximum": 999_999_999_999}
AUDIT_PARAMS = [
    _query("flag", "Only entries about this flag (deleted ones too)", TEXT),
    _query("actor", "Only entries by this token's name (or `controller`)", TEXT),
    _query("action", "Only this action (create, update, delete, start, rollback, advance, ...)", TEXT),
    _query("since", "Only entries at or after this time (Unix seconds)", SECONDS),
    _query("until", "Only entries at or before this time (Unix seconds)", SECONDS),
    _query("limit", "At most this many entries (1 to 1000)",
           {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
    _query("cursor", "A `next_cursor` of an earlier answer: the older entries that match",
           {"type": "string", "pattern": "^[0-9]{1,19}-[0-9]{1,19}$"}),
]

RESPONSES: tuple[type, ...] = (TimelinePointDoc, RevisionTimelineDoc, FlagTimelineDoc, AuditEntryDoc, AuditPageDoc)
OPERATIONS: list[tuple[str, str, str, list, Any, bool, int, Any, list, tuple[int, ...]]] = [
    ("/api/v1/flags/{key}/timeline", "get", "The rollout's time series per revision: each kept look's per-arm "
     "figures and the judge's statistics with their thresholds (downsampled to about 500 points a revision)",
     ADMIN, None, False, 200, FlagTimelineDoc, [KEY, *TIMELINE_PARAMS], (400, 401, 403, 404, 503)),
    ("/api/v1/audit", "get", "Every change (flags, settings, segments, webhooks, the controller's moves), by whom, "
     "newest first; it outlives deleted flags", ADMIN, None, False, 200, AuditPageDoc, AUDIT_PARAMS,
     (400, 401, 403, 503)),
]

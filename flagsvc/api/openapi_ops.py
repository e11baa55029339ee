"""The operations' part of the OpenAPI document (openapi.py merges it): rollouts' time series, the audit log,
webhooks and their deliveries. Same tuple shape as openapi.OPERATIONS."""

from __future__ import annotations

from typing import Any

from flagsvc.domain.flag import KEY_PATTERN
from flagsvc.domain.timeline import TIMELINE_REVISIONS, FlagTimelineDoc, RevisionTimelineDoc, TimelinePointDoc

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

RESPONSES: tuple[type, ...] = (TimelinePointDoc, RevisionTimelineDoc, FlagTimelineDoc)
OPERATIONS: list[tuple[str, str, str, list, Any, bool, int, Any, list, tuple[int, ...]]] = [
    ("/api/v1/flags/{key}/timeline", "get", "The rollout's time series per revision: each kept look's per-arm "
     "figures and the judge's statistics with their thresholds (downsampled to about 500 points a revision)",
     ADMIN, None, False, 200, FlagTimelineDoc, [KEY, *TIMELINE_PARAMS], (400, 401, 403, 404, 503)),
]

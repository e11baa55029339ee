"""The operations' part of the OpenAPI document (openapi.py merges it): rollouts' time series, the audit log and
webhooks. Same tuple shape as openapi.OPERATIONS."""

from __future__ import annotations

from typing import Any

from flagsvc.api import schemas
from flagsvc.domain.flag import KEY_PATTERN
from flagsvc.domain.timeline import TIMELINE_REVISIONS, FlagTimelineDoc, RevisionTimelineDoc, TimelinePointDoc
from flagsvc.domain.webhook import WebhookDoc
from flagsvc.service.audit import AuditEntryDoc, AuditPageDoc
from flagsvc.service.webhooks import DeliveryListDoc, WebhookCreatedDoc, WebhookListDoc
from flagsvc.store.webhooks import DeliveryDoc

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

WEBHOOK = {"name": "webhook_id", "in": "path", "required": True, "description": "The webhook's id",
           "schema": {"type": "string", "pattern": "^wh_[0-9a-f]{16}$"}}
IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": False,
                   "description": "Sent again with the same request, the first answer comes back (the same webhook "
                                  "and secret) and nothing is created twice; with another request, 409",
                   "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"}}
ROTATION_KEY = {**IDEMPOTENCY_KEY, "description": "Sent again with the same key as the last rotation, that "
                "rotation's answer comes back (the same new secret) and the secret is not rotated twice"}
DELIVERY_LIMIT = _query("limit", "At most this many deliveries, the newest (1 to 100)",
                        {"type": "integer", "minimum": 1, "maximum": 100, "default": 100})

RESPONSES: tuple[type, ...] = (TimelinePointDoc, RevisionTimelineDoc, FlagTimelineDoc, AuditEntryDoc, AuditPageDoc,
                               WebhookDoc, WebhookCreatedDoc, WebhookListDoc, DeliveryDoc, DeliveryListDoc)
OPERATIONS: list[tuple[str, str, str, list, Any, bool, int, Any, list, tuple[int, ...]]] = [
    ("/api/v1/flags/{key}/timeline", "get", "The rollout's time series per revision: each kept look's per-arm "
     "figures and the judge's statistics with their thresholds (downsampled to about 500 points a revision)",
     ADMIN, None, False, 200, FlagTimelineDoc, [KEY, *TIMELINE_PARAMS], (400, 401, 403, 404, 503)),
    ("/api/v1/audit", "get", "Every change (flags, settings, segments, webhooks, the controller's moves), by whom, "
     "newest first; it outlives deleted flags", ADMIN, None, False, 200, AuditPageDoc, AUDIT_PARAMS,
     (400, 401, 403, 503)),
    ("/api/v1/webhooks", "get", "Every webhook (never their secrets)", ADMIN, None, False, 200, WebhookListDoc, [],
     (401, 403, 503)),
    ("/api/v1/webhooks", "post", "Create a webhook, for every flag or one, for some events (docs/notifications.md); "
     "its URL's host must be in FLAGSVC_WEBHOOK_ALLOW (else 400 naming `url`). The signing secret is shown once, "
     "here", ADMIN, schemas.WebhookCreateSchema, True, 201, WebhookCreatedDoc, [IDEMPOTENCY_KEY],
     (400, 401, 403, 409, 413, 503)),
    ("/api/v1/webhooks/{webhook_id}", "get", "One webhook", ADMIN, None, False, 200, WebhookDoc, [WEBHOOK],
     (401, 403, 404, 503)),
    ("/api/v1/webhooks/{webhook_id}", "patch", "Change a webhook's settings (any of url, events, flag, hold_seconds, "
     "description), checked as at creation; queued deliveries go to the new URL", ADMIN,
     schemas.WebhookUpdateSchema, True, 200, WebhookDoc, [WEBHOOK], (400, 401, 403, 404, 413, 503)),
    ("/api/v1/webhooks/{webhook_id}/rotate-secret", "post", "A new signing secret, shown once, here; deliveries "
     "are signed with the old one too for `keep_previous_seconds` (default 86400, 0 to 2592000)", ADMIN,
     schemas.SecretRotationSchema, False, 200, WebhookCreatedDoc, [WEBHOOK, ROTATION_KEY],
     (400, 401, 403, 404, 413, 503)),
    ("/api/v1/webhooks/{webhook_id}", "delete", "Delete a webhook (its pending deliveries fail)", ADMIN, None, False,
     204, None, [WEBHOOK], (401, 403, 404, 503)),
    ("/api/v1/webhooks/{webhook_id}/deliveries", "get", "The webhook's delivery log, newest first: each event's "
     "status, attempts, last error and response code", ADMIN, None, False, 200, DeliveryListDoc,
     [WEBHOOK, DELIVERY_LIMIT], (400, 401, 403, 404, 503)),
]

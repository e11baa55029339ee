"""The OpenAPI 3 document of the HTTP API, served at `GET /openapi.json`.

Request bodies come from the marshmallow schemas the views load them with (`schemas.py`); response bodies from
the typed definitions of what the views send (`typed_schema.py` reads them). `tests/unit/test_openapi.py` fails
when a route of the app is missing here (or is documented but gone).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flagsvc_client.protocol.shapes import FlagStats, OutcomeReceipt, SnapshotDoc

from flagsvc.api import openapi_ofrep, openapi_ops, schemas
from flagsvc.api.admin import FlagHistoryDoc, FlagListDoc
from flagsvc.api.backup import DatasetStatusDoc, ExportDocumentSchema
from flagsvc.api.errors import STATUS_BY_CODE, ErrorDoc
from flagsvc.api.health import StatusDoc
from flagsvc.api.segments import SegmentListDoc
from flagsvc.api.typed_schema import object_schema
from flagsvc.domain.flag import KEY_PATTERN, FlagDoc, HistoryEntryDoc
from flagsvc.domain.segment import SegmentDoc
from flagsvc.service import TRANSITIONS
from flagsvc.service.backup import ExportDoc, ImportResultDoc

# Response bodies: named after their typed definitions (the `Doc` suffix dropped), so the document and the code
# that sends them cannot drift apart.
RESPONSES: tuple[type, ...] = (
    ErrorDoc, FlagDoc, FlagListDoc, HistoryEntryDoc, FlagHistoryDoc, FlagStats, SnapshotDoc, OutcomeReceipt,
    StatusDoc, ExportDoc, ImportResultDoc, DatasetStatusDoc, SegmentDoc, SegmentListDoc, *openapi_ops.RESPONSES,
)


def _component(typed: type) -> str:
    return typed.__name__.removesuffix("Doc")


def _ref(typed: type) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{_component(typed)}"}


def _error_schema() -> dict[str, Any]:
    schema = object_schema(ErrorDoc)
    detail = schema["properties"]["error"]
    detail["properties"]["code"]["enum"] = [*STATUS_BY_CODE, "internal_error"]
    return schema


# --- operations -------------------------------------------------------------------------------------------

ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]
SDK: list[dict[str, list[str]]] = [{"sdkKey": []}, {"adminToken": []}]
OPEN: list[dict[str, list[str]]] = []

ERROR_TEXT = {
    400: "The request is malformed or not valid (`bad_request`, `validation_error`); nothing changed",
    401: "No valid bearer token (`unauthorized`)",
    403: "An SDK key on an admin endpoint, or a read-only token (FLAGSVC_READ_TOKENS) on a write (`forbidden`); "
         "nothing changed",
    404: "No such flag, segment or action (`not_found`)",
    409: "Illegal transition, existing key, lost compare-and-set, a segment flags still use, or an Idempotency-Key "
         "reused for another request (`conflict`); nothing changed",
    412: "If-Match names a revision the flag is no longer at (`precondition_failed`); nothing changed",
    413: "The request body is larger than FLAGSVC_MAX_BODY_BYTES (`payload_too_large`)",
    422: "No SDK instance could have sent this batch (`implausible_batch`: counts beyond its window at "
         "FLAGSVC_MAX_REPORTER_RATE, contradicting counts, a window in the future or too old); nothing counted",
    429: "Too many outcome batches from this SDK key (`rate_limited`); retry after `Retry-After` seconds",
    503: "The flag store (Redis) did not answer (`unavailable`); a write may or may not have been applied: retry "
         "it with the same Idempotency-Key",
}
KEY_PARAM = {"name": "key", "in": "path", "required": True, "description": "The flag's key",
             "schema": {"type": "string", "pattern": KEY_PATTERN.pattern}}
SEGMENT_PARAM = {"name": "name", "in": "path", "required": True, "description": "The segment's name",
                 "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,63}$"}}
ACTION_PARAM = {"name": "action", "in": "path", "required": True,
                "schema": {"type": "string", "enum": list(TRANSITIONS)}}
LIMIT_PARAM = {"name": "limit", "in": "query", "required": False, "description": "Newest entries first, 1 to 1000",
               "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}
HISTORY_PARAM = {"name": "history", "in": "query", "required": False,
                 "description": "Also export each flag's newest history entries, 0 to 1000",
                 "schema": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 0}}
REPLACE_PARAM = {"name": "replace", "in": "query", "required": False,
                 "description": "Overwrite flags that exist (by default they are left alone)",
                 "schema": {"type": "boolean", "default": False}}
IF_MATCH_PARAM = {"name": "If-Match", "in": "header", "required": False,
                  "description": 'The revision the flag must be at, as its ETag gives it ("7"); else 412, nothing '
                                 "changed",
                  "schema": {"type": "string"}}
IDEMPOTENCY_KEY_PARAM = {"name": "Idempotency-Key", "in": "header", "required": False,
                         "description": "Sent again with the same request (within 24 h), the first answer comes back "
                                        "and nothing is applied twice, also after an unclear 503",
                         "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"}}
IF_NONE_MATCH = {"name": "If-None-Match", "in": "header", "required": False,
                 "description": "The ETag of the snapshot held; 304 if it is still current",
                 "schema": {"type": "string"}}

# One Server-Sent Event of /sdk/v1/stream (heartbeats are comments, not events): `data` is a snapshot, as JSON.
SSE_EVENT = {"type": "object", "required": ["event", "id", "data"], "properties": {
    "event": {"type": "string", "enum": ["snapshot"]},
    "id": {"type": "string", "description": '"<epoch>-<version>", the ETag of the snapshot in `data`'},
    "data": {"type": "string", "description": "The snapshot (GET /sdk/v1/flags), one line of JSON"},
}}

# (path, method, summary, security, request schema (or None), body required, success status, success schema,
#  parameters, 4xx/5xx statuses)
OPERATIONS: list[tuple[str, str, str, list, Any, bool, int, Any, list, tuple[int, ...]]] = [
    ("/api/v1/flags", "get", "List every flag", ADMIN, None, False, 200, FlagListDoc, [], (401, 403, 503)),
    ("/api/v1/flags", "post", "Create a flag (state off)", ADMIN, schemas.FlagCreateSchema, True, 201, FlagDoc,
     [], (400, 401, 403, 409, 413, 503)),
    ("/api/v1/flags/{key}", "get", "One flag", ADMIN, None, False, 200, FlagDoc, [KEY_PARAM],
     (401, 403, 404, 503)),
    ("/api/v1/flags/{key}", "patch", "Change a flag's settings", ADMIN, schemas.FlagUpdateSchema, True, 200,
     FlagDoc, [KEY_PARAM], (400, 401, 403, 404, 409, 413, 503)),
    ("/api/v1/flags/{key}", "delete", "Delete a flag", ADMIN, None, False, 204, None, [KEY_PARAM],
     (401, 403, 404, 503)),
    ("/api/v1/flags/{key}/{action}", "post", "A rollout transition: start, pause, resume, promote or rollback",
     ADMIN, schemas.ReasonSchema, False, 200, FlagDoc, [KEY_PARAM, ACTION_PARAM],
     (400, 401, 403, 404, 409, 413, 503)),
    ("/api/v1/flags/{key}/reporters/exclude", "post", "Take a reporter (SDK instance) out of the flag's analysis "
     "(a settings change, kept in the history)", ADMIN, schemas.ReporterChangeSchema, True, 200, FlagDoc,
     [KEY_PARAM], (400, 401, 403, 404, 409, 413, 503)),
    ("/api/v1/flags/{key}/reporters/include", "post", "Put an excluded reporter back into the flag's analysis",
     ADMIN, schemas.ReporterChangeSchema, True, 200, FlagDoc, [KEY_PARAM], (400, 401, 403, 404, 409, 413, 503)),
    ("/api/v1/flags/{key}/percent", "put", "Set the percent by hand (state manual)", ADMIN, schemas.PercentSchema,
     True, 200, FlagDoc, [KEY_PARAM], (400, 401, 403, 404, 409, 413, 503)),
    ("/api/v1/flags/{key}/history", "get", "Who did what, when, why (newest first)", ADMIN, None, False, 200,
     FlagHistoryDoc, [KEY_PARAM, LIMIT_PARAM], (400, 401, 403, 404, 503)),
    ("/api/v1/flags/{key}/stats", "get", "Live outcome totals of the current revision", ADMIN, None, False, 200,
     FlagStats, [KEY_PARAM], (401, 403, 404, 503)),
    ("/api/v1/segments", "get", "List every targeting segment", ADMIN, None, False, 200, SegmentListDoc, [],
     (401, 403, 503)),
    ("/api/v1/segments", "post", "Create a segment: conditions on the evaluation context (docs/targeting.md)",
     ADMIN, schemas.SegmentCreateSchema, True, 201, SegmentDoc, [], (400, 401, 403, 409, 413, 503)),
    ("/api/v1/segments/{name}", "get", "One segment", ADMIN, None, False, 200, SegmentDoc, [SEGMENT_PARAM],
     (401, 403, 404, 503)),
    ("/api/v1/segments/{name}", "patch", "Change a segment's conditions or description (reaches SDKs like any "
     "change)", ADMIN, schemas.SegmentUpdateSchema, True, 200, SegmentDoc, [SEGMENT_PARAM],
     (400, 401, 403, 404, 409, 413, 503)),
    ("/api/v1/segments/{name}", "delete", "Delete a segment no flag uses (else 409 naming the flags)", ADMIN, None,
     False, 204, None, [SEGMENT_PARAM], (401, 403, 404, 409, 503)),
    ("/api/v1/export", "get", "Export every flag with its rollout state (and recent history)", ADMIN, None, False,
     200, ExportDoc, [HISTORY_PARAM], (400, 401, 403, 503)),
    ("/api/v1/import", "post", "Restore flags from an export: missing ones created as exported; all checked first",
     ADMIN, ExportDocumentSchema, True, 200, ImportResultDoc, [REPLACE_PARAM], (400, 401, 403, 409, 413, 503)),
    ("/api/v1/dataset", "get", "Whether a dataset reset is open, and which flags are still missing", ADMIN, None,
     False, 200, DatasetStatusDoc, [], (401, 403, 503)),
    ("/api/v1/dataset/acknowledge", "post", "Accept a dataset reset's losses: /readyz answers 200 again", ADMIN,
     None, False, 200, DatasetStatusDoc, [], (401, 403, 503)),
    ("/sdk/v1/flags", "get", "The SDK config snapshot (ETag; If-None-Match -> 304)", SDK, None, False, 200,
     SnapshotDoc, [IF_NONE_MATCH], (401, 503)),
    ("/sdk/v1/stream", "get", "Server-Sent Events: the snapshot on connect and on every change", SDK, None, False,
     200, "text/event-stream", [], (401, 503)),
    ("/sdk/v1/outcomes", "post", "Report a batch of outcomes", SDK, schemas.OutcomeBatchSchema, True, 200,
     OutcomeReceipt, [], (400, 401, 403, 413, 422, 429, 503)),
    ("/healthz", "get", "Liveness", OPEN, None, False, 200, StatusDoc, [], ()),
    ("/readyz", "get", "Readiness: the flag store answers, no dataset reset is open", OPEN,
     None, False, 200, StatusDoc, [], (503,)),
    ("/metrics", "get", "Prometheus metrics (the flags' gauges are read from the store)", OPEN, None, False, 200,
     "text/plain", [], (503,)),
    ("/openapi.json", "get", "This document", OPEN, None, False, 200, "application/json", [], ()),
    *openapi_ops.OPERATIONS,
]


def _flag_write(path: str, method: str, parameters: list[Any], errors: tuple[int, ...]) -> tuple[list[Any],
                                                                                                 tuple[int, ...]]:
    """Every operator write to a flag takes an Idempotency-Key; all but the create take If-Match (412). A malformed
    header of either is a 400."""
    if not path.startswith(("/api/v1/flags", "/api/v1/segments")) or method == "get":
        return parameters, errors
    if path in ("/api/v1/flags", "/api/v1/segments"):
        return [*parameters, IDEMPOTENCY_KEY_PARAM], tuple(sorted({*errors, 400}))
    return [*parameters, IF_MATCH_PARAM, IDEMPOTENCY_KEY_PARAM], tuple(sorted({*errors, 400, 412}))


def _operation(summary: str, security: list, request: Any, body_required: bool, status: int, success: Any,
               parameters: list, errors: tuple[int, ...]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if success is None:
        responses[str(status)] = {"description": "Done; no body"}
    elif isinstance(success, str):
        body = {"text/plain": {"type": "string"}, "application/json": {"type": "object"}}.get(success, SSE_EVENT)
        responses[str(status)] = {"description": "OK", "content": {success: {"schema": body}}}
    else:
        responses[str(status)] = {"description": "OK", "content": {"application/json": {"schema": _ref(success)}}}
    if any(p is IF_NONE_MATCH for p in parameters):
        etag = {"ETag": {"description": '"<epoch>-<version>"', "schema": {"type": "string"}}}
        responses[str(status)]["headers"] = etag
        responses["304"] = {"description": "Not modified: the If-None-Match ETag is current", "headers": etag}
    for code in errors:
        responses[str(code)] = {"description": ERROR_TEXT[code], "content": {"application/json": {"schema": "Error"}}}
    operation: dict[str, Any] = {"summary": summary, "security": security, "responses": responses}
    if parameters:
        operation["parameters"] = copy.deepcopy(parameters)
    if request is not None:
        operation["requestBody"] = {"required": body_required,
                                    "content": {"application/json": {"schema": request}}}
    return operation


def _portable(node: Any) -> Any:
    """Make the generated JSON Schema portable: Python's `\\Z` is `$` in ECMA regexes, and a length limit on an
    object (a marshmallow Dict) is `maxProperties`."""
    if isinstance(node, dict):
        out = {k: _portable(v) for k, v in node.items()}
        if isinstance(out.get("pattern"), str):
            out["pattern"] = out["pattern"].replace("\\Z", "$")
        if out.get("type") == "object" and "maxLength" in out:
            out["maxProperties"] = out.pop("maxLength")
        return out
    if isinstance(node, list):
        return [_portable(v) for v in node]
    return node


@functools.cache
def _document() -> dict[str, Any]:
    spec = APISpec(
        title="flagsvc",
        version="1",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin(schema_name_resolver=_name)],
        info={"description": "Progressive-delivery feature flags. Every error is one JSON shape, "
                             '{"error": {"code", "message", "fields"}} (docs/protocol.md).'},
    )
    bearer = {"type": "http", "scheme": "bearer"}
    spec.components.security_scheme("adminToken", {**bearer, "description": "An operator's token: every endpoint"})
    spec.components.security_scheme("sdkKey", {**bearer, "description": "An SDK key: /sdk/v1/* only"})
    spec.components.schema("Error", component=_error_schema())
    for typed in RESPONSES[1:]:
        spec.components.schema(_component(typed), component=object_schema(typed))
    by_path: dict[str, dict[str, Any]] = {}
    for path, method, summary, security, request, required, status, success, parameters, errors in OPERATIONS:
        parameters, errors = _flag_write(path, method, parameters, errors)
        rest = (summary, security, request, required, status, success, parameters, errors)
        by_path.setdefault(path, {})[method] = _operation(*rest)
    for name, component in openapi_ofrep.schemas().items():
        spec.components.schema(name, component=component)
    by_path.update(openapi_ofrep.paths())  # OFREP's own error shapes (docs/ofrep.md)
    for path, operations in by_path.items():
        spec.path(path=path, operations=operations)
    return _portable(spec.to_dict())


def _name(schema: Any) -> str:
    cls = schema if isinstance(schema, type) else type(schema)
    return cls.__name__.removesuffix("Schema")


def document() -> dict[str, Any]:
    """The OpenAPI document (a fresh copy: callers may change it)."""
    return copy.deepcopy(_document())

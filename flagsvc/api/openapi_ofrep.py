"""The OFREP part of the OpenAPI document (openapi.py merges it): /ofrep/v1, whose failures have OFREP's shapes
(`errorCode`, `errorDetails`) rather than flagsvc's one error shape. Read from the OFREP specification
(open-feature/protocol, service/openapi.yaml); the response bodies come from the typed definitions in ofrep.py.
"""

from __future__ import annotations

from typing import Any

from flagsvc.api.ofrep import (
    OfrepBulkDoc,
    OfrepBulkFailureDoc,
    OfrepFailureDoc,
    OfrepFlagNotFoundDoc,
    OfrepSuccessDoc,
)
from flagsvc.api.typed_schema import object_schema

SDK: list[dict[str, list[str]]] = [{"sdkKey": []}, {"adminToken": []}]
ERROR = {"$ref": "#/components/schemas/Error"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def schemas() -> dict[str, dict[str, Any]]:
    """The OFREP components, by name."""
    found = {typed.__name__.removesuffix("Doc"): object_schema(typed) for typed in (
        OfrepSuccessDoc, OfrepFailureDoc, OfrepFlagNotFoundDoc, OfrepBulkFailureDoc, OfrepBulkDoc)}
    found["OfrepBulk"]["properties"]["flags"]["items"] = {"oneOf": [_ref("OfrepSuccess"), _ref("OfrepFailure")]}
    found["OfrepRequest"] = {
        "type": "object", "required": ["context"], "description": "The evaluation context: `targetingKey` is the "
        "user id, every other attribute is what targeting reads (docs/targeting.md)",
        "properties": {"context": {"type": "object", "required": ["targetingKey"], "additionalProperties": True,
                                   "properties": {"targetingKey": {"type": "string"}}}},
    }
    return found


def _json(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}, **extra}


ETAG = {"ETag": {"description": "The config version and the context evaluated: send it back as If-None-Match",
                 "schema": {"type": "string"}}}
SHARED_ERRORS = {
    "401": _json(ERROR, "No valid bearer token (`unauthorized`)"),
    "403": _json(ERROR, "A read-only token: OFREP takes an SDK key or an admin token (`forbidden`)"),
    "413": _json(ERROR, "The request body is larger than FLAGSVC_MAX_BODY_BYTES (`payload_too_large`)"),
    "503": _json(ERROR, "The flag store (Redis) did not answer (`unavailable`)"),
}


def paths() -> dict[str, dict[str, Any]]:
    body = {"required": True, "content": {"application/json": {"schema": _ref("OfrepRequest")}}}
    single = {
        "summary": "OFREP: evaluate one flag for a context (true: the canary path; variant canary or stable)",
        "security": SDK,
        "parameters": [{"name": "key", "in": "path", "required": True, "description": "The flag's key",
                        "schema": {"type": "string"}}],
        "requestBody": body,
        "responses": {
            "200": _json(_ref("OfrepSuccess"), "The flag evaluated"),
            "400": _json(_ref("OfrepFailure"), "The request or its context cannot be evaluated (PARSE_ERROR, "
                         "TARGETING_KEY_MISSING, INVALID_CONTEXT, GENERAL)"),
            "404": _json({"anyOf": [_ref("OfrepFlagNotFound"), ERROR]}, "No such flag (FLAG_NOT_FOUND); a path "
                         "that is no route at all has the server's error shape"),
            **SHARED_ERRORS,
        },
    }
    bulk = {
        "summary": "OFREP: evaluate every flag for a context (ETag; If-None-Match -> 304)",
        "security": SDK,
        "parameters": [{"name": "If-None-Match", "in": "header", "required": False,
                        "description": "The ETag of an earlier answer for the same context; 304 if still current",
                        "schema": {"type": "string"}}],
        "requestBody": body,
        "responses": {
            "200": _json(_ref("OfrepBulk"), "Every flag evaluated", headers=ETAG),
            "304": {"description": "Not modified: no flag and not the context changed", "headers": ETAG},
            "400": _json(_ref("OfrepBulkFailure"), "The request or its context cannot be evaluated (PARSE_ERROR, "
                         "TARGETING_KEY_MISSING, INVALID_CONTEXT)"),
            **SHARED_ERRORS,
        },
    }
    return {"/ofrep/v1/evaluate/flags/{key}": {"post": single}, "/ofrep/v1/evaluate/flags": {"post": bulk}}

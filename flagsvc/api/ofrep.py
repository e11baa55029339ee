"""OFREP, the OpenFeature Remote Evaluation Protocol (docs/ofrep.md): /ofrep/v1 (SDK keys and admin tokens;
read-only tokens are refused, an evaluation being a POST).

`POST /ofrep/v1/evaluate/flags/{key}` evaluates one flag for a context, `POST /ofrep/v1/evaluate/flags` every flag
(with an ETag; If-None-Match -> 304). Failures have OFREP's shapes, not flagsvc's error shape: a 400 or 404 with
`errorCode` (PARSE_ERROR, TARGETING_KEY_MISSING, INVALID_CONTEXT, GENERAL, FLAG_NOT_FOUND) and `errorDetails`.
A missing token (401), a body too large (413) or Redis unreachable (503) keep the server's one error shape.
The spec no longer has a configuration endpoint (removed from OFREP in 2024), so there is none here.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict, cast

from flask import Blueprint, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState

from flagsvc.api.body import NotJson, parse_json, raw_body
from flagsvc.api.context import services
from flagsvc.service.ofrep import CompiledSnapshot, FlagAnswer, OfrepEvaluator, OfrepRequestError, parse_request

bp = Blueprint("ofrep", __name__, url_prefix="/ofrep/v1")
EXTENSION = "flagsvc.ofrep"


class OfrepMetadataDoc(TypedDict):
    """flagsvc's facts about the answer: the flag's revision, percent and state, flagsvc's own reason, and the
    user bucket (0-63) an outcome of this user is counted in, absent when it counts in neither arm."""

    revision: int
    percent: float
    state: str
    flagsvcReason: str
    unit: NotRequired[int]


class OfrepSuccessDoc(TypedDict):
    """One flag evaluated: true on the canary path. `variant` is the arm."""

    key: str
    value: bool
    reason: Literal["STATIC", "TARGETING_MATCH", "SPLIT", "DISABLED", "UNKNOWN"]
    variant: Literal["canary", "stable"]
    metadata: OfrepMetadataDoc


class OfrepFailureDoc(TypedDict):
    """One flag that could not be evaluated for this context (OFREP's evaluationFailure)."""

    key: str
    errorCode: Literal["PARSE_ERROR", "TARGETING_KEY_MISSING", "INVALID_CONTEXT", "GENERAL"]
    errorDetails: str


class OfrepFlagNotFoundDoc(TypedDict):
    """No flag has this key."""

    key: str
    errorCode: Literal["FLAG_NOT_FOUND"]
    errorDetails: str


class OfrepBulkFailureDoc(TypedDict):
    """The bulk request as a whole cannot be evaluated."""

    errorCode: Literal["PARSE_ERROR", "TARGETING_KEY_MISSING", "INVALID_CONTEXT"]
    errorDetails: str


class OfrepBulkMetadataDoc(TypedDict):
    version: str  # the config version evaluated, "<epoch>-<version>"


class OfrepBulkDoc(TypedDict):
    """Every flag evaluated for the context: each a success or a failure (both shapes may appear)."""

    flags: list[dict[str, Any]]
    metadata: OfrepBulkMetadataDoc


@bp.record_once
def _install(state: BlueprintSetupState) -> None:
    changes = state.app.extensions["flagsvc"].changes
    state.app.extensions[EXTENSION] = OfrepEvaluator(changes.latest)


def _current() -> CompiledSnapshot:
    services().changes.ensure_started()
    return cast(OfrepEvaluator, current_app.extensions[EXTENSION]).current()


def _reply(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _document(answer: FlagAnswer) -> OfrepSuccessDoc | OfrepFailureDoc:
    if answer.error_code is not None:
        return cast(OfrepFailureDoc, {"key": answer.key, "errorCode": answer.error_code,
                                      "errorDetails": answer.details})
    return cast(OfrepSuccessDoc, {"key": answer.key, "value": answer.value, "reason": answer.reason,
                                  "variant": answer.variant, "metadata": answer.metadata})


def _body() -> object:
    """The request body as JSON (413 past the size limit, as everywhere); OfrepRequestError if it is not JSON."""
    try:
        return parse_json(raw_body())
    except NotJson as e:
        raise OfrepRequestError("PARSE_ERROR", str(e)) from None


@bp.post("/evaluate/flags/<key>")
def evaluate_flag(key: str) -> Response:
    try:
        evaluation = parse_request(_body())
    except OfrepRequestError as e:
        return _reply({"key": key, "errorCode": e.code, "errorDetails": e.details}, 400)
    answer = _current().evaluate(key, evaluation)
    if answer is None:
        return _reply({"key": key, "errorCode": "FLAG_NOT_FOUND", "errorDetails": f"no flag {key!r}"}, 404)
    return _reply(_document(answer), 400 if answer.error_code else 200)


@bp.post("/evaluate/flags")
def evaluate_flags() -> Response:
    try:
        evaluation = parse_request(_body())
    except OfrepRequestError as e:
        return _reply({"errorCode": e.code, "errorDetails": e.details}, 400)
    compiled = _current()
    etag = compiled.bulk_etag(evaluation)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    # `*` matches any current representation, and HTTP answers a POST that sends it 412, not 304: it is no
    # cached answer of this context, so it is ignored and the evaluation answered
    if not request.if_none_match.star_tag and request.if_none_match.contains_weak(etag.strip('"')):
        return Response(status=304, headers=headers)
    body: OfrepBulkDoc = {"flags": [dict(_document(a)) for a in compiled.evaluate_all(evaluation)],
                          "metadata": {"version": compiled.etag.strip('"')}}
    return _reply(body, 200, headers)

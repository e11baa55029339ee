"""One error shape for every failure: {"error": {"code", "message", "fields"}} (docs/protocol.md)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, TypedDict

from flask import Flask, Response, jsonify
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import RequestRedirect

from flagsvc import metrics
from flagsvc.domain.errors import FlagError, RateLimited

log = logging.getLogger("flagsvc.api")

STATUS_BY_CODE = {
    "bad_request": 400,
    "validation_error": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "precondition_failed": 412,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "implausible_batch": 422,
    "rate_limited": 429,
    "unavailable": 503,
}
CODE_BY_HTTP_STATUS = {status: code for code, status in STATUS_BY_CODE.items() if code != "validation_error"}


class ErrorDetailDoc(TypedDict):
    """What went wrong: a stable code, a sentence for people, and the problems of each named field."""

    code: str
    message: str
    fields: dict[str, list[str]]


class ErrorDoc(TypedDict):
    """Every error, whatever the endpoint."""

    error: ErrorDetailDoc


class ApiError(Exception):
    def __init__(self, code: str, message: str, fields: Mapping[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = dict(fields or {})
        self.status = STATUS_BY_CODE[code]


def error_response(code: str, message: str, fields: Mapping[str, Any] | None = None,
                   status: int | None = None) -> Response:
    body: ErrorDoc = {"error": {"code": code, "message": message, "fields": dict(fields or {})}}
    response = jsonify(body)
    response.status_code = status or STATUS_BY_CODE[code]
    if response.status_code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="flagsvc"'
    return response


def flatten_messages(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested error dicts -> {"analysis.alpha": ["..."]}; list positions become `.0`, `.1`."""
    if isinstance(messages, Mapping):
        out: dict[str, list[str]] = {}
        for name, inner in messages.items():
            key = f"{prefix}.{name}" if prefix else str(name)
            out.update(flatten_messages(inner, key))
        return out
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return {prefix or "_body": list(messages)}
    return {prefix or "_body": [str(messages)]}


def register_error_handlers(app: Flask, outage_errors: tuple[type[Exception], ...] = ()) -> None:
    """Every error one JSON shape; `outage_errors` (what the store raises when it does not answer) become 503s."""
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return error_response(error.code, error.message, error.fields)

    @app.errorhandler(FlagError)
    def _flag_error(error: FlagError):
        message = f"{error.message}: {_summary(error.fields)}" if error.fields else error.message
        response = error_response(error.code, message, error.fields)
        if isinstance(error, RateLimited):
            response.headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
        return response

    @app.errorhandler(ValidationError)
    def _validation_error(error: ValidationError):
        fields = flatten_messages(error.messages)
        return error_response("validation_error", "the request body is not valid: " + _summary(fields), fields)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        if isinstance(error, RequestRedirect):
            return error  # merged slashes etc.: let the client follow the canonical URL
        status = error.code or 500
        code = CODE_BY_HTTP_STATUS.get(status, "bad_request" if status < 500 else "internal_error")
        message = {
            404: "no such resource",
            405: "method not allowed here",
            413: "the request body is too large",
        }.get(status, error.description or error.name)
        response = error_response(code, message, status=status)
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    def _store_outage(error: Exception) -> Response:
        log.error("flag store error: %s", error)
        metrics.REDIS_ERRORS.inc()
        return error_response("unavailable", "the flag store did not answer: a write may or may not have been "
                              "applied; retry it with the same Idempotency-Key to be sure it applies once")

    for outage in outage_errors:
        app.register_error_handler(outage, _store_outage)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.exception("unhandled error")
        return error_response("internal_error", "internal error", status=500)


def _summary(fields: Mapping[str, list[str]]) -> str:
    return "; ".join(f"{name}: {', '.join(problems)}" for name, problems in fields.items())

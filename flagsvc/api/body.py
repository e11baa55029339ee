"""Reading a JSON request body: size-limited, parsed strictly, loaded through a schema."""

from __future__ import annotations

import json
from typing import Any

from flask import request
from marshmallow import Schema

from flagsvc.api.errors import ApiError


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def json_body(schema: Schema, *, allow_empty: bool = False) -> dict[str, Any]:
    """The body loaded through `schema`. Any content type is read as JSON (curl's default is form-encoded).
    Reading enforces MAX_CONTENT_LENGTH, which raises 413 before anything is parsed."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if allow_empty:
            return schema.load({})
        raise ApiError("bad_request", "a JSON object body is required")
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise ApiError("bad_request", "the body is not UTF-8 text") from None
    except ValueError as e:
        raise ApiError("bad_request", f"malformed JSON: {e}") from None
    except RecursionError:
        raise ApiError("bad_request", "the JSON body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError("bad_request", f"the body must be a JSON object, not {type(data).__name__}")
    return schema.load(data)

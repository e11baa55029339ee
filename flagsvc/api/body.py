"""Reading a JSON request body: size-limited, parsed strictly, loaded through a schema."""

from __future__ import annotations

import json
from typing import Any

from flask import g, request
from marshmallow import Schema
from werkzeug.exceptions import RequestEntityTooLarge

from flagsvc.api.errors import ApiError


class NotJson(ValueError):
    """A body that is not strict JSON; the message says why (each API answers it in its own error shape)."""


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> object:
    """`raw` parsed as strict JSON (no NaN or Infinity); NotJson saying why it is not."""
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise NotJson("the body is not UTF-8 text") from None
    except ValueError as e:
        raise NotJson(f"malformed JSON: {e}") from None
    except RecursionError:
        raise NotJson("the JSON body is nested too deeply") from None


def raw_body() -> bytes:
    """The whole request body, read once: 413 past MAX_CONTENT_LENGTH however it is framed. A body with a
    Content-Length over the limit is refused before it is read (Werkzeug); a chunked one is read up to one byte
    past the limit and refused then, never cut to the limit and used."""
    if "raw_body" in g:
        return g.raw_body
    limit = request.max_content_length  # the app's limit, or a route's own (an import is larger)
    chunked = request.content_length is None and request.environ.get("wsgi.input_terminated")
    if not chunked or limit is None:  # a length the limit is checked against, or no body at all
        raw = request.get_data(cache=True)
    else:
        raw = request.environ["wsgi.input"].read(limit + 1)
        if len(raw) > limit:
            raise RequestEntityTooLarge()
    g.raw_body = raw
    return raw


def json_body(schema: Schema, *, allow_empty: bool = False) -> dict[str, Any]:
    """The body loaded through `schema`. Any content type is read as JSON (curl's default is form-encoded).
    Reading enforces MAX_CONTENT_LENGTH, which raises 413 before anything is parsed."""
    raw = raw_body()
    if not raw.strip():
        if allow_empty:
            return schema.load({})
        raise ApiError("bad_request", "a JSON object body is required")
    try:
        data = parse_json(raw)
    except NotJson as e:
        raise ApiError("bad_request", str(e)) from None
    if not isinstance(data, dict):
        raise ApiError("bad_request", f"the body must be a JSON object, not {type(data).__name__}")
    return schema.load(data)

"""The SDKs' API: /sdk/v1 (SDK keys or admin tokens)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from flagsvc.api import schemas
from flagsvc.api.body import json_body
from flagsvc.api.services import services

bp = Blueprint("sdk", __name__, url_prefix="/sdk/v1")


@bp.get("/flags")
def snapshot():
    current = services().snapshots.current()
    headers = {"ETag": current.etag, "Cache-Control": "no-cache"}
    if current.etag in request.if_none_match or request.if_none_match.contains_weak(current.etag.strip('"')):
        return Response(status=304, headers=headers)
    return Response(current.body, mimetype="application/json", headers=headers)


@bp.post("/outcomes")
def outcomes():
    batch = json_body(schemas.outcome_batch)
    return jsonify(services().outcomes.add_batch(batch))

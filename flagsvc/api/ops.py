"""Service endpoints, open without a token: liveness, readiness, metrics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST

from flagsvc import metrics as prometheus
from flagsvc.api.errors import error_response
from flagsvc.api.services import services

bp = Blueprint("ops", __name__)

PUBLIC_ENDPOINTS = frozenset({"ops.healthz", "ops.readyz", "ops.metrics", "ops.openapi"})


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    if not services().operations.store.ping():
        return error_response("unavailable", "the flag store (Redis) is unreachable")
    return jsonify({"status": "ready"})


@bp.get("/metrics")
def metrics():
    return Response(prometheus.render(services().operations.store), mimetype=CONTENT_TYPE_LATEST)


@bp.get("/openapi.json")
def openapi():
    from flagsvc.api.openapi import document

    return jsonify(document())

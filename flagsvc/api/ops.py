"""Service endpoints, open without a token: liveness, readiness, metrics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from flagsvc.api.errors import error_response
from flagsvc.api.services import services

bp = Blueprint("ops", __name__)

PUBLIC_ENDPOINTS = frozenset({"ops.healthz", "ops.readyz", "ops.metrics"})


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
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)

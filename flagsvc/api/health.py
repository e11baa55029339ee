"""Health endpoints, open without a token: liveness, readiness, metrics, and the OpenAPI document."""

from __future__ import annotations

from typing import TypedDict

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST

from flagsvc.api.context import services
from flagsvc.api.errors import error_response
from flagsvc.service.dataset import describe

bp = Blueprint("health", __name__)


class StatusDoc(TypedDict):
    status: str


PUBLIC_ENDPOINTS = frozenset({"health.healthz", "health.readyz", "health.metrics", "health.openapi"})


@bp.get("/healthz")
def healthz():
    body: StatusDoc = {"status": "ok"}
    return jsonify(body)


@bp.get("/readyz")
def readyz():
    if not services().status.store_reachable():
        return error_response("unavailable", "the flag store (Redis) is unreachable")
    dataset = services().dataset
    notice = dataset.notice()
    if notice is not None:  # until restored or acknowledged (docs/recovery.md)
        return error_response("unavailable", describe(notice, dataset.missing(notice)))
    body: StatusDoc = {"status": "ready"}
    return jsonify(body)


@bp.get("/metrics")
def metrics():
    return Response(services().status.metrics(), mimetype=CONTENT_TYPE_LATEST)


@bp.get("/openapi.json")
def openapi():
    from flagsvc.api.openapi import document

    return jsonify(document())

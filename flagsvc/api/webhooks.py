"""/api/v1/webhooks: webhooks created, listed, read, edited, their secrets rotated and deleted (admin tokens
write, read tokens read), and each one's delivery log (docs/notifications.md)."""

from __future__ import annotations

import re

from flask import Blueprint, g, jsonify, request, url_for

from flagsvc.api import schemas
from flagsvc.api.body import json_body
from flagsvc.api.context import services
from flagsvc.api.errors import ApiError
from flagsvc.api.preconditions import write_request
from flagsvc.service.webhooks import DEFAULT_SECRET_OVERLAP

bp = Blueprint("webhooks", __name__, url_prefix="/api/v1")
LIMIT = re.compile(r"^[0-9]{1,3}\Z")


@bp.get("/webhooks")
def list_webhooks():
    return jsonify(services().webhooks.list())


@bp.post("/webhooks")
def create_webhook():
    body, asked = json_body(schemas.webhook_create), write_request()
    created = services().webhooks.create(body, actor=g.principal.name, idempotency_key=asked.idempotency_key,
                                         fingerprint=asked.fingerprint)
    response = jsonify(created)
    response.status_code = 201
    response.headers["Location"] = url_for("webhooks.get_webhook", webhook_id=created["id"])
    return response


@bp.get("/webhooks/<webhook_id>")
def get_webhook(webhook_id: str):
    return jsonify(services().webhooks.get(webhook_id))


@bp.patch("/webhooks/<webhook_id>")
def update_webhook(webhook_id: str):
    body = json_body(schemas.webhook_update)
    return jsonify(services().webhooks.update(webhook_id, body, actor=g.principal.name))


@bp.post("/webhooks/<webhook_id>/rotate-secret")
def rotate_secret(webhook_id: str):
    body, asked = json_body(schemas.secret_rotation, allow_empty=True), write_request()
    overlap = body.get("keep_previous_seconds", DEFAULT_SECRET_OVERLAP)
    return jsonify(services().webhooks.rotate_secret(webhook_id, actor=g.principal.name, overlap_seconds=overlap,
                                                     idempotency_key=asked.idempotency_key))


@bp.delete("/webhooks/<webhook_id>")
def delete_webhook(webhook_id: str):
    services().webhooks.delete(webhook_id, actor=g.principal.name)
    return "", 204


@bp.get("/webhooks/<webhook_id>/deliveries")
def deliveries(webhook_id: str):
    limit = request.args.get("limit", "100")
    if not LIMIT.match(limit) or not 1 <= int(limit) <= 100:
        raise ApiError("bad_request", "limit must be an integer from 1 to 100",
                       {"limit": ["must be an integer from 1 to 100"]})
    return jsonify(services().webhooks.deliveries(webhook_id, int(limit)))

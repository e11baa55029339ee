"""The SDKs' API: /sdk/v1 (SDK keys or admin tokens)."""

from __future__ import annotations

import time
from typing import cast

from flagsvc_client.protocol.shapes import OutcomeBatch
from flask import Blueprint, Response, current_app, g, jsonify, request

from flagsvc import metrics
from flagsvc.api import schemas
from flagsvc.api.body import json_body
from flagsvc.api.context import services
from flagsvc.service import ServedSnapshot
from flagsvc.service.change_feed import ChangeFeed

bp = Blueprint("sdk", __name__, url_prefix="/sdk/v1")


@bp.get("/flags")
def snapshot():
    changes = services().changes
    changes.ensure_started()
    current = changes.latest()
    headers = {"ETag": current.etag, "Cache-Control": "no-cache"}
    if current.etag in request.if_none_match or request.if_none_match.contains_weak(current.etag.strip('"')):
        return Response(status=304, headers=headers)
    return Response(current.body, mimetype="application/json", headers=headers)


HEARTBEAT_SECONDS = 15.0


def _latest_or(changes: ChangeFeed, sent: ServedSnapshot) -> ServedSnapshot:
    """The current snapshot; while the store is unreachable, the one this stream sent last, so the stream stays
    open on heartbeats (the change feed logs the outage) instead of dropping every SDK at once."""
    try:
        return changes.latest()
    except Exception:
        return sent


def _event(snapshot: ServedSnapshot) -> bytes:
    return b"event: snapshot\nid: %s\ndata: %s\n\n" % (snapshot.etag.strip('"').encode(), snapshot.body)


@bp.get("/stream")
def stream():
    """Server-Sent Events: the snapshot now and after every change; a heartbeat comment when quiet. Each wake-up
    (or heartbeat) re-reads the snapshot, so a change whose announcement was lost still arrives."""
    svc = services()
    svc.changes.ensure_started()
    seen_generation = svc.changes.generation  # before reading: a change landing in between wakes the stream
    first = svc.changes.latest()
    heartbeat = current_app.config.get("FLAGSVC_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS)

    def events():
        metrics.STREAMS.inc()
        try:
            sent = first
            yield _event(first)
            written_at = time.monotonic()
            generation = seen_generation
            while not svc.changes.closed:
                quiet_for = time.monotonic() - written_at
                generation = svc.changes.wait(generation, max(heartbeat - quiet_for, 0.0))
                current = _latest_or(svc.changes, sent)
                if current.version != sent.version:
                    sent = current
                    yield _event(current)
                    written_at = time.monotonic()
                elif time.monotonic() - written_at >= heartbeat:  # whatever woke us: keep the connection alive
                    yield b": heartbeat\n\n"
                    written_at = time.monotonic()
        finally:
            metrics.STREAMS.dec()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(events(), mimetype="text/event-stream", headers=headers)


@bp.post("/outcomes")
def outcomes():
    batch = cast(OutcomeBatch, json_body(schemas.outcome_batch))  # the schema checked every field of the shape
    return jsonify(services().ingestion.add_batch(batch, sender=g.principal.name))

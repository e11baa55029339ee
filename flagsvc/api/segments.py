"""Operators' REST API for targeting segments: /api/v1/segments (admin tokens only; docs/targeting.md)."""

from __future__ import annotations

from typing import TypedDict

from flask import Blueprint, Response, g, jsonify, url_for

from flagsvc.api import schemas
from flagsvc.api.body import json_body
from flagsvc.api.context import services
from flagsvc.api.preconditions import write_request
from flagsvc.domain.segment import Segment, SegmentDoc

bp = Blueprint("segments", __name__, url_prefix="/api/v1")


class SegmentListDoc(TypedDict):
    """Every segment, ordered by name."""

    segments: list[SegmentDoc]


def segment_response(segment: Segment, status: int = 200) -> Response:
    response = jsonify(segment.to_dict())
    response.status_code = status
    response.headers["ETag"] = f'"{segment.revision}"'
    return response


@bp.get("/segments")
def list_segments():
    body: SegmentListDoc = {"segments": [s.to_dict() for s in services().segments.list_segments()]}
    return jsonify(body)


@bp.post("/segments")
def create_segment():
    body = json_body(schemas.segment_create)
    segment = services().segments.create(body.pop("name"), body, actor=g.principal.name, request=write_request())
    response = segment_response(segment, 201)
    response.headers["Location"] = url_for("segments.get_segment", name=segment.name)
    return response


@bp.get("/segments/<name>")
def get_segment(name: str):
    return segment_response(services().segments.get(name))


@bp.patch("/segments/<name>")
def update_segment(name: str):
    body = json_body(schemas.segment_update)
    return segment_response(services().segments.update(name, body, actor=g.principal.name, request=write_request()))


@bp.delete("/segments/<name>")
def delete_segment(name: str):
    services().segments.delete(name, request=write_request())
    return "", 204

"""GET /api/v1/flags/<key>/timeline: a rollout's time series per revision (admin and read tokens)."""

from __future__ import annotations

import re

from flask import Blueprint, jsonify, request

from flagsvc.api.context import services
from flagsvc.api.errors import ApiError
from flagsvc.domain.timeline import TIMELINE_REVISIONS

bp = Blueprint("timeline", __name__, url_prefix="/api/v1")
NUMBER = re.compile(r"^[0-9]{1,9}\Z")  # ASCII digits only: int("²") raises


def _number(name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not NUMBER.match(raw) or not low <= int(raw) <= high:
        raise ApiError("bad_request", f"{name} must be an integer from {low} to {high}",
                       {name: [f"must be an integer from {low} to {high}"]})
    return int(raw)


@bp.get("/flags/<key>/timeline")
def timeline(key: str):
    first = _number("from_revision", 1, 1, 999_999_999) or 1
    last = _number("to_revision", None, 1, 999_999_999)
    revisions = _number("revisions", TIMELINE_REVISIONS, 1, TIMELINE_REVISIONS) or TIMELINE_REVISIONS
    if last is not None and last < first:
        raise ApiError("bad_request", "to_revision must not be below from_revision",
                       {"to_revision": [f"must be at least from_revision ({first})"]})
    return jsonify(services().timeline.timeline(key, first=first, last=last, revisions=revisions))

"""Operators' REST API: /api/v1/flags (admin tokens only)."""

from __future__ import annotations

import re
from typing import TypedDict

from flask import Blueprint, g, jsonify, request, url_for

from flagsvc.api import schemas
from flagsvc.api.body import json_body
from flagsvc.api.context import services
from flagsvc.api.errors import ApiError
from flagsvc.api.preconditions import flag_response, write_request
from flagsvc.domain.flag import FlagDoc, HistoryEntryDoc
from flagsvc.service import TRANSITIONS

bp = Blueprint("admin", __name__, url_prefix="/api/v1")


class FlagListDoc(TypedDict):
    """Every flag, ordered by key."""

    flags: list[FlagDoc]


class FlagHistoryDoc(TypedDict):
    """A flag's changes, newest first."""

    key: str
    history: list[HistoryEntryDoc]


LIMIT_PATTERN = re.compile(r"^[0-9]{1,4}\Z")


@bp.get("/flags")
def list_flags():
    body: FlagListDoc = {"flags": [f.to_dict() for f in services().commands.list_flags()]}
    return jsonify(body)


@bp.post("/flags")
def create_flag():
    body = json_body(schemas.flag_create)
    flag = services().commands.create(body.pop("key"), body, actor=g.principal.name, request=write_request())
    response = flag_response(flag, 201)
    response.headers["Location"] = url_for("admin.get_flag", key=flag.key)
    return response


@bp.get("/flags/<key>")
def get_flag(key: str):
    return flag_response(services().commands.get(key))


@bp.patch("/flags/<key>")
def update_flag(key: str):
    body = json_body(schemas.flag_update)
    return flag_response(services().commands.update(key, body, actor=g.principal.name, request=write_request()))


@bp.delete("/flags/<key>")
def delete_flag(key: str):
    services().commands.delete(key, request=write_request(), actor=g.principal.name)
    return "", 204


@bp.post("/flags/<key>/<action>")
def transition(key: str, action: str):
    if action not in TRANSITIONS:
        raise ApiError("not_found", f"no action {action!r}; one of {', '.join(TRANSITIONS)}")
    body = json_body(schemas.reason_body, allow_empty=True)
    flag = services().commands.transition(key, action, actor=g.principal.name, reason=body.get("reason", ""),
                                          request=write_request())
    return flag_response(flag)


@bp.post("/flags/<key>/reporters/exclude")
def exclude_reporter(key: str):
    body = json_body(schemas.reporter_change)
    return flag_response(services().commands.exclude_reporter(
        key, body["reporter"], actor=g.principal.name, reason=body.get("reason", ""), request=write_request()))


@bp.post("/flags/<key>/reporters/include")
def include_reporter(key: str):
    body = json_body(schemas.reporter_change)
    return flag_response(services().commands.include_reporter(
        key, body["reporter"], actor=g.principal.name, reason=body.get("reason", ""), request=write_request()))


@bp.put("/flags/<key>/percent")
def set_percent(key: str):
    body = json_body(schemas.percent_body)
    flag = services().commands.set_percent(key, body["percent"], actor=g.principal.name,
                                           reason=body.get("reason", ""), request=write_request())
    return flag_response(flag)


@bp.get("/flags/<key>/history")
def history(key: str):
    limit = request.args.get("limit", "100")
    if not LIMIT_PATTERN.match(limit) or not 1 <= int(limit) <= 1000:  # ASCII digits only: int("²") raises
        raise ApiError("bad_request", "limit must be an integer from 1 to 1000", {"limit": ["must be 1 to 1000"]})
    entries = services().commands.history(key, int(limit))
    body: FlagHistoryDoc = {"key": key, "history": [e.to_dict() for e in entries]}
    return jsonify(body)


@bp.get("/flags/<key>/stats")
def stats(key: str):
    return jsonify(services().ingestion.stats(key))

"""GET /api/v1/audit: every change, by whom, newest first, filtered (admin and read tokens)."""

from __future__ import annotations

import math
import re

from flask import Blueprint, jsonify, request

from flagsvc.api.context import services
from flagsvc.api.errors import ApiError
from flagsvc.service.audit import AuditFilter, parse_id

bp = Blueprint("audit", __name__, url_prefix="/api/v1")
LIMIT = re.compile(r"^[0-9]{1,4}\Z")
CURSOR = re.compile(r"^[0-9]{1,19}-[0-9]{1,19}\Z")
TIME = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,6})?\Z")
TEXT_FILTERS = ("flag", "actor", "action")


def _bad(name: str, problem: str) -> ApiError:
    return ApiError("bad_request", f"{name} {problem}", {name: [problem]})


@bp.get("/audit")
def audit():
    filters: AuditFilter = {}
    for name in TEXT_FILTERS:
        value = request.args.get(name)
        if value is not None:
            if not 1 <= len(value) <= 200 or not value.isprintable():
                raise _bad(name, "must be 1 to 200 printable characters")
            filters[name] = value  # type: ignore[literal-required]
    for name in ("since", "until"):
        value = request.args.get(name)
        if value is not None:
            if not TIME.match(value) or not math.isfinite(float(value)):
                raise _bad(name, "must be Unix seconds (digits, up to 6 decimals)")
            filters[name] = float(value)  # type: ignore[literal-required]
    if "since" in filters and "until" in filters and filters["until"] < filters["since"]:
        raise _bad("until", "must not be before since")
    limit = request.args.get("limit", "100")
    if not LIMIT.match(limit) or not 1 <= int(limit) <= 1000:
        raise _bad("limit", "must be an integer from 1 to 1000")
    cursor = request.args.get("cursor")
    if cursor is not None:
        try:
            if not CURSOR.match(cursor):
                raise ValueError(cursor)
            parse_id(cursor)
        except ValueError:
            raise _bad("cursor", "must be a next_cursor this endpoint gave") from None
    return jsonify(services().audit.entries(filters, limit=int(limit), cursor=cursor))

"""Operators' backup and recovery API (admin tokens only): export and import the whole configuration, and the
dataset-reset notice (docs/recovery.md)."""

from __future__ import annotations

import re
from typing import TypedDict

from flask import Blueprint, g, jsonify, request
from marshmallow import INCLUDE, Schema, fields, validate

from flagsvc.api.body import json_body
from flagsvc.api.context import services
from flagsvc.api.errors import ApiError
from flagsvc.service.dataset import DatasetNoticeDoc, describe

bp = Blueprint("backup", __name__, url_prefix="/api/v1")
HISTORY_PATTERN = re.compile(r"^[0-9]{1,4}\Z")
# An export carries every flag with its allow and deny lists, so it may be larger than any other request.
MAX_IMPORT_BYTES = 64 * 1024 * 1024


class ExportDocumentSchema(Schema):
    """An export (GET /api/v1/export) to restore; every flag is checked before anything is applied."""

    class Meta:
        unknown = INCLUDE  # epoch, version, exported_at, history: informational

    format = fields.String(load_default="flagsvc-export")
    format_version = fields.Integer(required=True, strict=True, validate=validate.Equal(1))
    flags = fields.List(fields.Dict(), required=True)


export_document = ExportDocumentSchema()


class DatasetStatusDoc(TypedDict):
    """`ok`, or `reset`: the open notice of a reset dataset, the vanished flags still missing, what to do."""

    status: str
    notice: DatasetNoticeDoc | None
    missing: list[str]
    message: str


def _flag(name: str) -> bool:
    value = request.args.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise ApiError("bad_request", f"{name} must be true or false", {name: ["must be true or false"]})
    return value in ("true", "1")


@bp.get("/export")
def export():
    history = request.args.get("history", "0")
    if not HISTORY_PATTERN.match(history) or int(history) > 1000:
        raise ApiError("bad_request", "history must be an integer from 0 to 1000", {"history": ["must be 0 to 1000"]})
    return jsonify(services().backup.export(int(history)))


@bp.post("/import")
def import_flags():
    replace = _flag("replace")
    request.max_content_length = MAX_IMPORT_BYTES
    document = json_body(export_document)
    return jsonify(services().backup.restore(document, replace=replace, actor=g.principal.name))


def _dataset_status() -> DatasetStatusDoc:
    dataset = services().dataset
    notice = dataset.notice()
    if notice is None:
        return {"status": "ok", "notice": None, "missing": [], "message": "no dataset reset is open"}
    missing = dataset.missing(notice)
    return {"status": "reset", "notice": notice, "missing": missing, "message": describe(notice, missing)}


@bp.get("/dataset")
def dataset_status():
    return jsonify(_dataset_status())


@bp.post("/dataset/acknowledge")
def acknowledge():
    services().dataset.acknowledge(g.principal.name)
    return jsonify(_dataset_status())

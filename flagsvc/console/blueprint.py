"""The console's blueprint: /ui/, its templates and static files, its security headers on every answer."""

from __future__ import annotations

from flask import Blueprint

from flagsvc.console.security import secure_headers

bp = Blueprint("console", __name__, url_prefix="/ui", template_folder="templates", static_folder="static")
bp.after_request(secure_headers)

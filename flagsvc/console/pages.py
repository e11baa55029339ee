"""The console's pages (GET) and its sign-in and sign-out: server-rendered, every value autoescaped by Jinja."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from flask import Response, abort, jsonify, redirect, render_template, request, url_for
from marshmallow import validate

from flagsvc.api import schemas
from flagsvc.api.auth import Scope, bearer_secret
from flagsvc.api.context import services, tokens
from flagsvc.console import model
from flagsvc.console.blueprint import bp
from flagsvc.console.security import origin_problem
from flagsvc.console.session import (
    COOKIE,
    FORM_HEADER,
    clear_cookie,
    current,
    form,
    secure_cookie,
    sessions,
    set_cookie,
)
from flagsvc.domain.analysis import FIELD_NAMES
from flagsvc.domain.errors import FlagNotFound, WebhookNotFound
from flagsvc.domain.flag import State
from flagsvc.service.audit import AuditFilter
from flagsvc.service.console_sessions import token_tag

STATES = tuple(s.value for s in State)
ACTIONS = ("start", "pause", "resume", "promote", "rollback")
TEXT_FILTER_MAX = 200
# The reason fields' maxlength: what the API's schema takes, so the form never lets through what it refuses.
REASON_MAX = next(v.max for v in schemas.ReasonSchema().fields["reason"].validators
                  if isinstance(v, validate.Length))


@bp.app_template_filter("when")
def _when(at: float | None) -> str:
    if not at:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _signed_in() -> Any:
    session = current()
    if session is None:
        abort(redirect(url_for("console.sign_in_page")))
    return session


def _page(template: str, **values: Any) -> str:
    return render_template(template, session=current(), **values)


@bp.get("")
def bare():
    """/ui as people type it (the cookie's path is /ui/, so it is not sent here): on to /ui/. Without this rule
    /ui would get the API's 401 for a path it does not know."""
    return redirect(url_for("console.index"))


@bp.get("/")
def index():
    return redirect(url_for("console.flags" if current() else "console.sign_in_page"))


@bp.get("/sign-in")
def sign_in_page():
    return _page("console/sign_in.html", problem=None, secure_cookie=secure_cookie())


@bp.post("/sign-in")
def sign_in():
    """An admin or read token, as `Authorization: Bearer` (console.js) or a form's `token` field."""
    scripted = FORM_HEADER in request.headers
    secret = bearer_secret(request.headers.get("Authorization")) or form().get("token", "").strip()
    wrong_origin = origin_problem()
    principal = tokens().identify(secret) if secret and wrong_origin is None else None
    if principal is None or principal.scope == Scope.SDK:
        if wrong_origin is not None:  # the token is not even looked at
            status, code, problem, field = 403, "forbidden", wrong_origin, "Origin"
        else:
            status, code, field = 401, "unauthorized", "token"
            problem = "that is not an admin or read-only token" if principal else "unknown token"
        if scripted:
            response = jsonify({"error": {"code": code, "message": problem, "fields": {field: [problem]}}})
            response.status_code = status
            return response
        return _page("console/sign_in.html", problem=problem, secure_cookie=secure_cookie()), status
    sessions().close(request.cookies.get(COOKIE))  # a session signed in over is ended, never reused
    session_id, session = sessions().open(principal.name, principal.scope.value, token_tag(secret))
    answer: Response = jsonify({"next": url_for("console.flags")}) if scripted else \
        cast(Response, redirect(url_for("console.flags"), 303))
    set_cookie(answer, session_id, session)
    return answer


@bp.post("/sign-out")
def sign_out():
    session = current()
    if session is not None and not session.csrf_matches(form().get("csrf") or request.headers.get("X-CSRF-Token")):
        abort(403, description="the form's CSRF token is missing or wrong: reload the page")
    sessions().close(request.cookies.get(COOKIE))
    answer: Response = jsonify({"next": url_for("console.sign_in_page")}) if FORM_HEADER in request.headers else \
        cast(Response, redirect(url_for("console.sign_in_page"), 303))
    clear_cookie(answer)
    return answer


def _text_arg(name: str) -> str:
    value = request.args.get(name, "")
    return value[:TEXT_FILTER_MAX] if value.isprintable() else ""


@bp.get("/flags")
def flags():
    _signed_in()
    query, state = _text_arg("q"), _text_arg("state")
    state = state if state in STATES else ""
    return _page("console/flags.html", rows=model.rows(services(), query, state), query=query, state=state,
                 states=STATES)


@bp.get("/flags/<key>")
def flag(key: str):
    _signed_in()
    try:
        page = model.flag_page(services(), key)
    except FlagNotFound:
        return _page("console/missing.html", what=f"flag {key}"), 404
    return _page("console/flag.html", page=page, actions=ACTIONS, analysis_fields=FIELD_NAMES,
                 reason_max=REASON_MAX)


@bp.get("/flags/<key>/data")
def flag_data(key: str):
    """The flag page's data for its charts and live refresh (JSON; session-authenticated like the pages)."""
    if current() is None:
        abort(401, description="sign in first")
    return jsonify(model.flag_page(services(), key))


@bp.get("/audit")
def audit():
    _signed_in()
    filters: AuditFilter = {}
    for name in ("flag", "actor", "action"):
        value = _text_arg(name)
        if value:
            filters[name] = value
    cursor = request.args.get("cursor") or None
    try:
        found = services().audit.entries(filters, limit=50, cursor=cursor)
    except ValueError:
        found = services().audit.entries(filters, limit=50)
    return _page("console/audit.html", entries=found["entries"], next_cursor=found["next_cursor"],
                 filters=filters)


@bp.get("/webhooks")
def webhooks():
    _signed_in()
    return _page("console/webhooks.html", webhooks=services().webhooks.list()["webhooks"])


@bp.get("/webhooks/<webhook_id>")
def webhook(webhook_id: str):
    _signed_in()
    try:
        hook = services().webhooks.get(webhook_id)
        deliveries = services().webhooks.deliveries(webhook_id, 100)["deliveries"]
    except WebhookNotFound:
        return _page("console/missing.html", what=f"webhook {webhook_id}"), 404
    return _page("console/webhook.html", hook=hook, deliveries=deliveries)

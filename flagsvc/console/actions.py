"""The console's changes (POST): a flag's transitions, its percent set by hand, its analysis settings. Each needs
an admin session, the session's CSRF token, the `confirm` box ticked, and the revision the page showed, sent on
as the write's If-Match: a change made since (by anyone, the controller too) makes it a 412 and changes nothing.
Bodies go through the API's schemas, so a bad value is the same 4xx naming the field."""

from __future__ import annotations

import re
from typing import Any

from flask import jsonify, redirect, request, url_for
from werkzeug.wrappers import Response

from flagsvc.api import schemas
from flagsvc.api.context import services
from flagsvc.api.errors import ApiError
from flagsvc.console.blueprint import bp
from flagsvc.console.security import origin_problem
from flagsvc.console.session import FORM_HEADER, form, require_change
from flagsvc.domain.analysis import FIELD_NAMES
from flagsvc.domain.flag import Flag
from flagsvc.service import TRANSITIONS, WriteRequest

REVISION = re.compile(r"^[0-9]{1,15}\Z")
NUMBER = re.compile(r"^-?[0-9]{1,12}(\.[0-9]{1,12})?([eE]-?[0-9]{1,3})?\Z")


def _change() -> tuple[dict[str, str], str, WriteRequest]:
    """The form, the acting session's name and the write as asked (its revision)."""
    problem = origin_problem()
    if problem:
        raise ApiError("forbidden", problem, {"Origin": ["is not this console's origin"]})
    fields = form()
    session = require_change(fields)
    if fields.get("confirm") != "yes":
        raise ApiError("bad_request", "tick the confirmation box first", {"confirm": ["must be ticked"]})
    revision = fields.get("revision", "")
    if not REVISION.match(revision):
        raise ApiError("bad_request", "the page's flag revision is missing", {"revision": ["must be a revision"]})
    return fields, session.name, WriteRequest(if_revision=int(revision))


def _done(flag: Flag) -> Response:
    if FORM_HEADER in request.headers:
        response = jsonify({"flag": flag.to_dict()})
        response.headers["ETag"] = f'"{flag.revision}"'
        return response
    return redirect(url_for("console.flag", key=flag.key), 303)


@bp.post("/flags/<key>/actions/<action>")
def act(key: str, action: str) -> Response:
    fields, actor, asked = _change()
    if action == "percent":
        body = schemas.percent_body.load({"percent": _number("percent", fields.get("percent", "")),
                                          "reason": fields.get("reason", "")})
        return _done(services().commands.set_percent(key, body["percent"], actor=actor, reason=body["reason"],
                                                     request=asked))
    if action not in TRANSITIONS:
        raise ApiError("not_found", f"no action {action!r}; one of {', '.join(TRANSITIONS)}, percent")
    body = schemas.reason_body.load({"reason": fields.get("reason", "")})
    return _done(services().commands.transition(key, action, actor=actor, reason=body["reason"], request=asked))


@bp.post("/flags/<key>/analysis")
def edit_analysis(key: str) -> Response:
    """The scalar settings sent, typed as the flag holds them now: text stays text, anything else is a number or
    empty (null). console.js sends only the settings the operator changed, so a setting changed meanwhile by
    someone else is not put back (and the revision sent makes any change since a 412 anyway). Lists (excluded
    reporters, say) are edited by their own commands, not here."""
    fields, actor, asked = _change()
    current = services().commands.get(key).analysis
    analysis: dict[str, Any] = {}
    for name in FIELD_NAMES:
        value = current.get(name)
        if name not in fields or isinstance(value, list | tuple | dict):
            continue
        raw = fields[name].strip()
        analysis[name] = raw if isinstance(value, str) else (None if raw == "" else _number(name, raw))
    if not analysis:  # a new revision that changes nothing would restart the judge for nothing
        raise ApiError("bad_request", "no setting was sent: change one first", {"analysis": ["no setting sent"]})
    body = schemas.flag_update.load({"analysis": analysis})
    return _done(services().commands.update(key, body, actor=actor, request=asked))


def _number(name: str, raw: str) -> Any:
    """A form's number as JSON would carry it (an int stays an int, so integer settings are not refused)."""
    raw = raw.strip()
    if not NUMBER.match(raw):
        raise ApiError("bad_request", f"{name} must be a number", {name: ["must be a number"]})
    value = float(raw)
    return int(value) if value.is_integer() and "." not in raw and "e" not in raw.lower() else value

"""The console's request guard: the session cookie (HttpOnly, SameSite=Strict, Secure unless
FLAGSVC_CONSOLE_INSECURE_COOKIE opts out, expiring with the session), the CSRF check on every state change, and
reading a submitted form.

A form arrives in one of two ways. A browser without the console's script posts it as a body. flagsvc's own
front (serving/http.py) refuses a body from a request without a bearer token before reading it, and a console
request carries a cookie, not a token; so console.js sends every form as a bodiless POST with the fields
URL-encoded in the `X-Console-Form` header (and a sign-in's token as `Authorization: Bearer`). Both are read
here the same way.
"""

from __future__ import annotations

import hmac
from typing import cast
from urllib.parse import parse_qs

from flask import Response, abort, current_app, g, request

from flagsvc.config import Settings
from flagsvc.service import Services
from flagsvc.service.console_sessions import ConsoleSession, ConsoleSessions, token_tag

COOKIE = "flagsvc_console"
FORM_HEADER = "X-Console-Form"
MAX_FORM_HEADER = 8192
MAX_FORM_FIELDS = 50


def sessions() -> ConsoleSessions:
    return cast(Services, current_app.extensions["flagsvc"]).console_sessions


def current() -> ConsoleSession | None:
    """The request's live session, looked up once per request."""
    if "console_session" not in g:
        found = sessions().find(request.cookies.get(COOKIE))
        g.console_session = found if found is not None and _token_still_configured(found) else None
    return cast(ConsoleSession | None, g.console_session)


def _token_still_configured(session: ConsoleSession) -> bool:
    """The token the session signed in with is still configured, with its scope and its secret: removing or
    rotating a token ends its console sessions at once (on each server given the new configuration)."""
    settings = cast(Settings, current_app.extensions["flagsvc.settings"])
    configured = settings.admin_tokens if session.scope == "admin" else settings.read_tokens
    secret = configured.get(session.name)
    return secret is not None and hmac.compare_digest(token_tag(secret), session.token)


def secure_cookie() -> bool:
    """`Secure` unless the settings opt out (FLAGSVC_CONSOLE_INSECURE_COOKIE) and the request came over plain
    HTTP. Whether it did is not known here behind a TLS-terminating proxy (flagsvc's front serves plain HTTP),
    hence Secure by default: browsers keep a Secure cookie from https:// and from http://localhost or 127.0.0.1."""
    settings = cast(Settings, current_app.extensions["flagsvc.settings"])
    return request.is_secure or not settings.console_insecure_cookie


def set_cookie(response: Response, session_id: str, session: ConsoleSession) -> None:
    response.set_cookie(COOKIE, session_id, max_age=int(sessions().lifetime), path="/ui/", httponly=True,
                        samesite="Strict", secure=secure_cookie())


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/ui/", httponly=True, samesite="Strict", secure=secure_cookie())


def form() -> dict[str, str]:
    """The submitted fields, from the body or the X-Console-Form header; the last value of a repeated name."""
    header = request.headers.get(FORM_HEADER)
    if header is not None:
        if len(header) > MAX_FORM_HEADER:
            abort(400, description=f"{FORM_HEADER} is longer than {MAX_FORM_HEADER} characters")
        try:
            parsed = parse_qs(header, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
        except ValueError:
            abort(400, description=f"{FORM_HEADER} holds more than {MAX_FORM_FIELDS} fields")
        return {name: values[-1] for name, values in parsed.items()}
    return {name: request.form.getlist(name)[-1] for name in request.form}


def require_change(fields: dict[str, str]) -> ConsoleSession:
    """The session of a state change: signed in (401), the session's CSRF token sent (403), an admin (403)."""
    session = current()
    if session is None:
        abort(401, description="sign in first")
    if not session.csrf_matches(fields.get("csrf") or request.headers.get("X-CSRF-Token")):
        abort(403, description="the form's CSRF token is missing or wrong: reload the page")
    if not session.can_write:
        abort(403, description=f"{session.name!r} signed in with a read-only token: it changes nothing")
    return session

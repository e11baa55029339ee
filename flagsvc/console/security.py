"""The headers every console response carries: a strict Content-Security-Policy (scripts and styles from the
console's own files only, no inline script or style attribute, no framing, forms and fetches to this origin),
no sniffing, no referrer, and no caching of pages that show a session's data."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Response, request

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
))


def secure_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def same_origin() -> bool:
    """A change must come from the console's own pages: an Origin header, when the browser sends one, names this
    host (a second line behind the CSRF token and the SameSite=Strict cookie)."""
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host

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


DEFAULT_PORTS = {"http": 80, "https": 443}
SHOWN_ORIGIN_MAX = 200  # characters of a refused Origin quoted back in the error


def _origin(scheme: str, netloc: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) with the scheme's default port filled in; None for what is no origin at all."""
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or scheme not in DEFAULT_PORTS:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def console_origin() -> str:
    """This console's origin as the browser sees it: the request's host, over HTTPS when the request came so or
    a TLS-terminating proxy says so (`X-Forwarded-Proto: https`; a page of another site cannot set that header
    on a request without a CORS preflight, which the console never grants)."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    scheme = "https" if request.is_secure or forwarded == "https" else "http"
    return f"{scheme}://{request.host}"


def origin_problem() -> str | None:
    """Why the request's Origin is not this console's, or None when it is (or the browser sent none): a change
    and a sign-in must come from the console's own pages, the same scheme, host and port (a second line behind
    the CSRF token and the SameSite=Strict cookie)."""
    sent = request.headers.get("Origin")
    if sent is None:
        return None
    ours = console_origin()
    scheme, _, netloc = ours.partition("://")
    parts = urlsplit(sent.strip())
    theirs = _origin(parts.scheme.lower(), parts.netloc) if not parts.path.strip("/") else None
    if theirs is not None and theirs == _origin(scheme, netloc):
        return None
    shown = sent if len(sent) <= SHOWN_ORIGIN_MAX else sent[:SHOWN_ORIGIN_MAX] + "..."
    return (f"the request's Origin ({shown!r}) is not this console's ({ours}): open the console at its own "
            "address and send the form from its page")

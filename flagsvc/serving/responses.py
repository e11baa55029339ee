"""The answers the server itself gives, before or instead of the Flask app: the same JSON error shape as every
other error (docs/protocol.md), with the status and headers h11 needs."""

from __future__ import annotations

import functools
import json
from http import HTTPStatus

from flagsvc.api.errors import CODE_BY_HTTP_STATUS, ErrorDoc

HEALTH_PATH = "/healthz"
HEALTH_BODY = b'{"status":"ok"}\n'  # what flagsvc.api.health's view answers (a test compares the two)
SERVER_CODES = {408: "request_timeout", 414: "uri_too_long", 431: "headers_too_large", 500: "internal_error"}


def error(status: int, message: str, *, close: bool = True,
          headers: list[tuple[str, str]] | None = None) -> tuple[list[tuple[str, str]], bytes]:
    """The headers and body of a JSON error response; `close` adds `Connection: close` (the server then hangs
    up)."""
    code = CODE_BY_HTTP_STATUS.get(status) or SERVER_CODES.get(status, "error")
    doc: ErrorDoc = {"error": {"code": code, "message": message, "fields": {}}}
    body = json.dumps(doc).encode()
    head = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *(headers or [])]
    if status == 401:
        head.append(("WWW-Authenticate", 'Bearer realm="flagsvc"'))
    if close:
        head.append(("Connection", "close"))
    return head, body


def reason(status: int) -> str:
    """The status line's reason phrase ("" for a status HTTP does not name)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def raw(status: int, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """The response as bytes on the wire, for when the protocol state allows no other way (a request too
    broken for h11 to answer)."""
    lines = [f"HTTP/1.1 {status} {reason(status) or 'Error'}", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@functools.lru_cache(maxsize=256)
def error_bytes(status: int, message: str, headers: tuple[tuple[str, str], ...] = (), *, body: bool = True) -> bytes:
    """A whole JSON error response, `Connection: close`, as bytes on the wire (without its body for a HEAD): the
    server's own refusals (401 before a body, 408, 429, ...) come in floods, so each distinct one is rendered
    once."""
    head, content = error(status, message, headers=list(headers))
    return raw(status, head, content if body else b"")


def health() -> tuple[list[tuple[str, str]], bytes]:
    """The liveness answer, `GET /healthz`, as the Flask view gives it."""
    return [("Content-Type", "application/json"), ("Content-Length", str(len(HEALTH_BODY)))], HEALTH_BODY

"""Running the Flask app (any WSGI app) for one parsed request, on a worker thread: PEP 3333's environ in,
status, headers and the whole body out. Every response but an SSE stream is finite, so it is read whole here
and written by the event loop."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from flagsvc.serving import responses

log = logging.getLogger("flagsvc.serving")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class ParsedRequest:
    method: str
    target: str  # as sent: path and query
    headers: list[tuple[str, str]]  # names lower-case, in order, repeats kept
    body: bytes
    client: tuple[str, int]
    server: tuple[str, int]


@dataclass(frozen=True)
class AppResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def environ_of(request: ParsedRequest) -> dict[str, Any]:
    path, _, query = request.target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        # PEP 3333: the path percent-decoded, its bytes as latin-1 (what Werkzeug expects to re-encode)
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": request.server[0],
        "SERVER_PORT": str(request.server[1]),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": request.client[0],
        "REMOTE_PORT": str(request.client[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in request.headers:
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
        elif name == "content-length":
            environ["CONTENT_LENGTH"] = value
        elif name == "transfer-encoding":
            continue  # the body is already de-chunked: its length is known
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    if "CONTENT_LENGTH" not in environ and request.body:
        environ["CONTENT_LENGTH"] = str(len(request.body))
    return environ


def call_app(app: WsgiApp, request: ParsedRequest) -> AppResponse:
    """The app's answer; a 500 in the JSON error shape when the app itself fails (Flask's handlers already turn
    its own errors into that shape: this is for a failure outside them)."""
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        started[:] = [status, headers]
        return _no_write

    try:
        result = app(environ_of(request), start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = started
        return AppResponse(int(status.split(" ", 1)[0]), list(headers), body)
    except Exception:
        log.exception("the app failed on %s %s", request.method, request.target[:200])
        headers, body = responses.error(500, "internal server error", close=False)
        return AppResponse(500, headers, body)


def _no_write(data: bytes) -> None:
    raise RuntimeError("the write() callable of start_response is not supported")

"""GET /ui/events: what the open page shows, as server-sent events, for the session's browser.

Each response is short: it looks once, sends one event when what the page shows differs from what the browser
last got (`Last-Event-ID`, a digest of it), and ends, telling EventSource to come back after RETRY_MS. flagsvc's
front runs Flask on a small pool of operator threads and hands a Flask answer to the client whole (see
serving/wsgi_bridge.py), so a held-open stream would pin a thread and deliver nothing until it ended; this way
a console tab costs one short request a second and pins nothing, on any WSGI server. The SDKs' own stream
(/sdk/v1/stream) is a different thing: a socket held by the event loop.

    ?flag=<key>   also the flag's row and timeline size (a flag page), else the flags' rows (the list)
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, abort, request

from flagsvc.api.context import services
from flagsvc.console import model
from flagsvc.console.blueprint import bp
from flagsvc.console.session import current

RETRY_MS = 1000


def _event(name: str, event_id: str, data: Any) -> str:
    # json.dumps escapes newlines inside strings, so the data is one `data:` line whatever the text holds
    return f"id: {event_id}\nevent: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@bp.get("/events")
def events() -> Response:
    if current() is None:
        abort(401, description="sign in first")
    key = request.args.get("flag")
    if key is not None:
        name, doc = "flag", model.flag_summary(services(), key[:200])
    else:
        name, doc = "flags", {"rows": model.rows(services())}
    event_id = model.digest(doc)
    body = f"retry: {RETRY_MS}\n\n"
    if event_id != request.headers.get("Last-Event-ID"):
        body += _event(name, event_id, doc)
    return Response(body, mimetype="text/event-stream", headers={"X-Accel-Buffering": "no"})

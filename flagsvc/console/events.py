"""GET /ui/events: what the open page shows, as server-sent events, for the session's browser.

Each response is short: it looks once, sends one event when what the page shows differs from what the browser
last got (`Last-Event-ID`, a digest of it), and ends, telling EventSource to come back after RETRY_MS. flagsvc's
front runs Flask on a small pool of operator threads and hands a Flask answer to the client whole (see
serving/wsgi_bridge.py), so a held-open stream would pin a thread and deliver nothing until it ended; this way
a console tab costs one short request a second and pins nothing, on any WSGI server. The SDKs' own stream
(/sdk/v1/stream) is a different thing: a socket held by the event loop.

What a page shows is built once per process and shared by its tabs (LiveDocs), keyed by the configuration's
version as this process's change feed holds it (in memory): every flag change, by an operator or the
controller, moves it. While it has not moved, a tab's request compares ids and answers "nothing new" without
reading a flag. The judge's verdicts (and a flag page's count of looks) change at each of the controller's looks,
which move no version, so a doc holding a judged flag is rebuilt when it is a second old, its verdicts read again
and the rest of its rows taken from the version's; one without is rebuilt only when the version moves (or after
UNJUDGED_MAX_AGE, in case a change went unannounced).

    ?flag=<key>   also the flag's row and timeline size (a flag page), else the flags' rows (the list)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from flask import Response, abort, current_app, request

from flagsvc.api.context import services
from flagsvc.console import model
from flagsvc.console.blueprint import bp
from flagsvc.console.session import current

RETRY_MS = 1000
JUDGED_MAX_AGE = 1.0  # seconds a doc holding judge verdicts is shared before it is rebuilt
UNJUDGED_MAX_AGE = 10.0  # seconds a doc without any is shared while the version stays
MAX_DOCS = 256  # docs a process keeps (the list, and one per flag page open)
EXTENSION = "flagsvc.console.live"


@dataclass(frozen=True)
class LiveDoc:
    version: str
    built_at: float
    name: str
    doc: Any
    event_id: str
    judged: bool  # holds a rolling or paused flag: changes with the controller's looks


class LiveDocs:
    """Each page's doc, built by one request at a time and shared by every tab of this process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, judged_max_age: float = JUDGED_MAX_AGE,
                 unjudged_max_age: float = UNJUDGED_MAX_AGE, max_docs: int = MAX_DOCS) -> None:
        self._clock = clock
        self._judged_max_age = judged_max_age
        self._unjudged_max_age = unjudged_max_age
        self._max_docs = max_docs
        self._docs: dict[str, LiveDoc] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.builds = 0  # docs built, for tests

    def _fresh(self, kept: LiveDoc | None, version: str) -> bool:
        if kept is None or kept.version != version:
            return False
        age = self._clock() - kept.built_at
        return age < (self._judged_max_age if kept.judged else self._unjudged_max_age)

    def get(self, page: str, version: str, build: Callable[[], tuple[str, Any, bool]]) -> LiveDoc:
        """The doc of `page` at `version`; `build()` -> (event name, doc, judged) when there is no fresh one."""
        kept = self._docs.get(page)
        if self._fresh(kept, version):
            return cast(LiveDoc, kept)
        with self._guard:
            lock = self._locks.setdefault(page, threading.Lock())
        with lock:  # one build at a time per page; requests waiting here take its result
            kept = self._docs.get(page)
            if self._fresh(kept, version):
                return cast(LiveDoc, kept)
            name, doc, judged = build()
            self.builds += 1
            built = LiveDoc(version, self._clock(), name, doc, model.digest(doc), judged)
            with self._guard:
                self._docs.pop(page, None)
                self._docs[page] = built  # newest last: the oldest go first
                while len(self._docs) > self._max_docs:
                    oldest = next(iter(self._docs))
                    del self._docs[oldest]
                    self._locks.pop(oldest, None)
            return built


def live_docs() -> LiveDocs:
    docs = current_app.extensions.get(EXTENSION)
    if docs is None:
        docs = current_app.extensions.setdefault(EXTENSION, LiveDocs())
    return cast(LiveDocs, docs)


def _event(name: str, event_id: str, data: Any) -> str:
    # json.dumps escapes newlines inside strings, so the data is one `data:` line whatever the text holds
    return f"id: {event_id}\nevent: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _flag_doc(key: str) -> tuple[str, Any, bool]:
    summary = model.flag_summary(services(), key)
    return "flag", summary, bool(summary and summary["row"]["judged"])


def _list_doc(version: str) -> tuple[str, Any, bool]:
    # the rows but their verdicts change only with the version: a rebuild for the judge's looks reads verdicts only
    bases = live_docs().get("flags:base", version, lambda: ("", model.base_rows(services()), False)).doc
    rows = model.with_verdicts(services(), bases)
    return "flags", {"rows": rows}, any(r["judged"] for r in rows)


@bp.get("/events")
def events() -> Response:
    if current() is None:
        abort(401, description="sign in first")
    key = request.args.get("flag")
    version = services().changes.latest().etag
    if key is not None:
        key = key[:200]
        live = live_docs().get(f"flag:{key}", version, lambda: _flag_doc(key))
    else:
        live = live_docs().get("flags", version, lambda: _list_doc(version))
    body = f"retry: {RETRY_MS}\n\n"
    if live.event_id != request.headers.get("Last-Event-ID"):
        body += _event(live.name, live.event_id, live.doc)
    return Response(body, mimetype="text/event-stream", headers={"X-Accel-Buffering": "no"})

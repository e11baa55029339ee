"""The one hot request, answered before Flask: an SDK poll whose ETag is current (`GET /sdk/v1/flags` ->
304 Not Modified).

Every polling SDK sends it once per interval, so it is most of a server's traffic, and Flask's request
machinery (request context, URL matching, hooks, response object) costs several times the answer itself. This
middleware answers the plain case straight from the change feed's in-memory snapshot and gives everything else
to Flask untouched: any doubt (a query string, an ETag list, `*`, a token it does not know, a snapshot that is
not fresh in memory) falls through, so Flask stays the only place where errors, 401/403 and 200s are made. The
answer, its authentication and its metrics are the ones the Flask view gives; a test compares the two.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from flagsvc import metrics
from flagsvc.api.auth import TokenRegistry, bearer_secret
from flagsvc.service.change_feed import ChangeFeed

PATH = "/sdk/v1/flags"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class NotModifiedFastPath:
    def __init__(self, app: WSGIApp, changes: ChangeFeed, tokens: TokenRegistry) -> None:
        self.app = app
        self.changes = changes
        self.tokens = tokens
        self.answered = 0  # 304s given here, not by Flask (for tests and curiosity)
        self._requests = metrics.HTTP_REQUESTS.labels(PATH, "GET", "304")
        self._latency = metrics.HTTP_LATENCY.labels(PATH)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = self.answer(environ)
        if headers is None:
            return self.app(environ, start_response)
        start_response("304 NOT MODIFIED", headers)
        return []

    def answer(self, environ: dict[str, Any]) -> list[tuple[str, str]] | None:
        """The 304's headers when this request is the plain case (answered and counted here), else None (for
        Flask). Never blocks: an asynchronous server calls it on its event loop."""
        started = time.perf_counter()
        etag = self._current_etag_if_not_modified(environ)
        if etag is None:
            return None
        self.answered += 1
        self._requests.inc()
        self._latency.observe(time.perf_counter() - started)
        return [("ETag", etag), ("Cache-Control", "no-cache")]

    def _current_etag_if_not_modified(self, environ: dict[str, Any]) -> str | None:
        if (environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "GET"
                or environ.get("QUERY_STRING")):
            return None
        sent = environ.get("HTTP_IF_NONE_MATCH")
        if not sent:
            return None
        snapshot = self.changes.latest_in_memory()
        if snapshot is None:
            return None
        etag = snapshot.etag
        sent = sent.strip(" \t")  # HTTP's optional whitespace only, as Werkzeug's parser
        if sent != etag and sent != "W/" + etag:
            return None
        secret = bearer_secret(environ.get("HTTP_AUTHORIZATION"))
        if secret is None or self.tokens.identify(secret) is None:  # any scope may read /sdk/v1
            return None
        return etag

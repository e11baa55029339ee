"""The HTTP layer: `create_app` wires settings, store and blueprints; views stay thin."""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Flask, Response, g, request

from flagsvc import metrics
from flagsvc.api import admin, ops, sdk
from flagsvc.api.auth import Scope, TokenRegistry, bearer_secret
from flagsvc.api.errors import ApiError, register_error_handlers
from flagsvc.api.fastpath import NotModifiedFastPath
from flagsvc.api.services import Services
from flagsvc.background import BackgroundWork
from flagsvc.changes import ChangeFeed
from flagsvc.config import Settings
from flagsvc.controller import build_controller
from flagsvc.operations import FlagOperations
from flagsvc.outcomes import OutcomeIngest
from flagsvc.snapshot import SnapshotSource
from flagsvc.store.base import Store
from flagsvc.store.redis_store import RedisStore


def create_app(
    settings: Settings | None = None, *, store: Store | None = None, clock: Callable[[], float] = time.time,
    controller: bool = True,
) -> Flask:
    """The WSGI app. Its background work (controller loop, change feed) is built here and started by whoever
    runs the app, after forking: `app.extensions["flagsvc.background"].start()`."""
    settings = settings or Settings.from_env()
    if store is None:
        if not settings.redis_url:
            raise ValueError("no store: give a store or settings.redis_url")
        store = RedisStore.from_url(settings.redis_url, settings.namespace)
    app = Flask("flagsvc")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.url_map.strict_slashes = True
    snapshots = SnapshotSource(store)
    changes = ChangeFeed(store.listen_changes, snapshots)
    tokens = TokenRegistry(settings.admin_tokens, settings.sdk_keys)
    app.extensions["flagsvc"] = Services(
        operations=FlagOperations(store, clock, on_change=changes.changed_here),
        snapshots=snapshots,
        outcomes=OutcomeIngest(store),
        changes=changes,
        tokens=tokens,
    )
    rollout = build_controller(store, clock=clock, interval=settings.controller_interval,
                               on_change=changes.changed_here) if controller else None
    app.extensions["flagsvc.background"] = BackgroundWork(rollout, changes)
    app.extensions["flagsvc.settings"] = settings
    register_error_handlers(app)
    app.before_request(_start_timer)
    app.before_request(_authenticate)
    app.after_request(_count_request)
    for blueprint in (admin.bp, sdk.bp, ops.bp):
        app.register_blueprint(blueprint)
    app.wsgi_app = NotModifiedFastPath(app.wsgi_app, changes, tokens)  # type: ignore[method-assign]
    return app


def _start_timer() -> None:
    g.started = time.perf_counter()


def _count_request(response: Response) -> Response:
    endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
    metrics.HTTP_REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
    if "started" in g and not response.is_streamed:
        metrics.HTTP_LATENCY.labels(endpoint).observe(time.perf_counter() - g.started)
    return response


def _authenticate() -> None:
    endpoint = request.endpoint
    if endpoint in ops.PUBLIC_ENDPOINTS:
        return
    from flagsvc.api.services import services

    secret = bearer_secret(request.headers.get("Authorization"))
    principal = services().tokens.identify(secret) if secret else None
    if principal is None:
        raise ApiError("unauthorized", "a valid bearer token is required (Authorization: Bearer <token>)")
    if endpoint is None and request.routing_exception is not None:
        return  # any valid token may learn that a path does not exist (404) or takes other methods (405)
    if principal.scope != Scope.ADMIN and not (endpoint or "").startswith("sdk."):
        raise ApiError("forbidden", f"token {principal.name!r} is an SDK key; this endpoint needs an admin token")
    g.principal = principal

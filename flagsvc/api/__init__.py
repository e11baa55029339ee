"""The HTTP layer: `create_app` wires settings, the application tier (`flagsvc.service`) and the blueprints;
views stay thin and talk to the services only."""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Flask, Response, g, request

from flagsvc import metrics
from flagsvc.api import admin, audit, backup, health, ofrep, sdk, segments, timeline, webhooks
from flagsvc.api.auth import TokenRegistry, bearer_secret, refusal
from flagsvc.api.context import tokens
from flagsvc.api.errors import ApiError, register_error_handlers
from flagsvc.api.fastpath import NotModifiedFastPath
from flagsvc.config import Settings
from flagsvc.console import bp as console_bp
from flagsvc.service import Services, build_services
from flagsvc.service.audit import acting_as
from flagsvc.store.roles import Store


def create_app(
    settings: Settings | None = None, *, services: Services | None = None, store: Store | None = None,
    clock: Callable[[], float] = time.time, controller: bool = True,
) -> Flask:
    """The WSGI app, on `services` (by default `build_services(settings, store, clock)`). Its background work
    (controller loop, change feed) is started by whoever runs the app, after forking:
    `app.extensions["flagsvc.background"].start()`."""
    settings = settings or Settings.from_env()
    if services is None:
        services = build_services(settings, store, clock, controller=controller)
    app = Flask("flagsvc")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]  # Flask's DefaultJSONProvider has it
    app.url_map.strict_slashes = True
    registry = TokenRegistry(settings.admin_tokens, settings.sdk_keys, settings.read_tokens)
    app.extensions["flagsvc"] = services
    app.extensions["flagsvc.tokens"] = registry
    app.extensions["flagsvc.background"] = services.background
    app.extensions["flagsvc.settings"] = settings
    register_error_handlers(app, services.status.outage_errors)
    app.before_request(_start_timer)
    app.before_request(_authenticate)
    app.after_request(_count_request)
    app.teardown_request(_forget_actor)
    for blueprint in (admin.bp, segments.bp, backup.bp, sdk.bp, health.bp, timeline.bp, audit.bp, webhooks.bp,
                      ofrep.bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(console_bp)
    app.wsgi_app = NotModifiedFastPath(app.wsgi_app, services.changes, registry)  # type: ignore[method-assign]
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
    if endpoint in health.PUBLIC_ENDPOINTS or (endpoint or "").startswith("console."):
        return  # the console guards its own pages with a session (flagsvc/console/session.py)
    secret = bearer_secret(request.headers.get("Authorization"))
    principal = tokens().identify(secret) if secret else None
    if principal is None:
        raise ApiError("unauthorized", "a valid bearer token is required (Authorization: Bearer <token>)")
    if endpoint is None and request.routing_exception is not None:
        return  # any valid token may learn that a path does not exist (404) or takes other methods (405)
    refused = refusal(principal, endpoint or "", request.method)
    if refused:
        raise ApiError("forbidden", refused)
    g.principal = principal
    acting_as(principal.name)  # the audit log's actor for doors whose callers name none


def _forget_actor(error: BaseException | None) -> None:
    acting_as(None)

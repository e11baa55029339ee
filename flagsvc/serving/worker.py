"""A gunicorn worker class that serves with `HttpServer` on one asyncio event loop.

gunicorn stays the process manager: it binds the sockets, forks the workers, restarts one that dies, and on
SIGTERM asks each to stop (`alive` goes False). Here, in each worker: the event loop accepts on gunicorn's
sockets, a heartbeat task tells the master the worker lives, and on SIGTERM the worker stops accepting, ends its
SDK streams (so SDKs reconnect elsewhere), lets requests in flight finish within the graceful timeout, and
returns (exit 0). The app's background work (controller, change feed) is started and stopped by the hooks in
`flagsvc.cli.wsgi`, as with any worker class.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from gunicorn.workers.base import Worker

from flagsvc import metrics
from flagsvc.api.auth import TokenRegistry
from flagsvc.api.fastpath import NotModifiedFastPath
from flagsvc.serving.http import HttpServer
from flagsvc.serving.limits import ServingLimits
from flagsvc.serving.roles import EVERYTHING, OPERATOR, listeners_for
from flagsvc.serving.streams import StreamHub

log = logging.getLogger("flagsvc.serving")

CHECK_SECONDS = 0.2  # how often the loop looks at `alive` and tells the master it lives


def build_server(app: Any, limits: ServingLimits) -> HttpServer:
    """The server for a WSGI app: a flagsvc app (from `create_app`) gets its SDK streams served here, token
    checks before bodies, and its body limit; any other WSGI app (a benchmark's no-op baseline) is served
    plainly, with no token known."""
    extensions = getattr(app, "extensions", {})
    services = extensions.get("flagsvc")
    tokens = extensions.get("flagsvc.tokens") or TokenRegistry({}, {})
    settings = extensions.get("flagsvc.settings")
    hub = StreamHub(services.changes, limits) if services is not None else None
    max_body = settings.max_body_bytes if settings is not None else 1024 * 1024
    fast_path = getattr(app, "wsgi_app", None)
    not_modified = fast_path.answer if isinstance(fast_path, NotModifiedFastPath) else None
    return HttpServer(app, tokens, limits, max_body_bytes=max_body, hub=hub, not_modified=not_modified,
                      answers_health=services is not None)


class CollectorPolicy:
    """The worker's garbage-collection policy: its open streams are kept out of the collector's full collections.

    CPython's cyclic collector walks every tracked object of a generation when it collects it, and a full
    collection (generation 2) walks every object that has lived a while: in a worker holding thousands of SDK
    streams, mostly the streams' own (a transport, its socket, a `Stream`: about 12 tracked objects each). A full
    collection comes after enough objects have grown old (CPython 3.11: when those promoted since the last one
    exceed a quarter of the old generation), and a flood of slow clients makes many objects old; each full collection
    then stops the event loop, every request and stream of the worker with it, for as long as the walk takes (about
    60 ms for 5,000 streams on an idle core, several times that on busy shared cores).

    The policy: what the worker holds once it has started is frozen (`gc.freeze`: moved to a generation the collector
    never walks), and so is every wave of new streams once it has settled: when at least `wave` streams have been
    attached since the last freeze and none for `settle_seconds`, one full collection (of everything, the frozen
    objects included, so that nothing that died frozen is kept) and a new freeze. A fleet connecting or reconnecting
    costs one full collection at its end, and from then on the collector's walks are over what is new: requests,
    slow clients, the streams opened since. The cost of freezing: an object that dies frozen in a reference cycle (a
    closed stream's transport is one) is reclaimed only at the next such collection; a wave is at most `wave`
    streams' turnover, so what waits is bounded by it."""

    def __init__(self, *, wave: int = 500, settle_seconds: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._wave = wave
        self._settle = settle_seconds
        self._clock = clock
        self._attached_at_freeze = 0
        self._last_attached = 0
        self._last_change = clock()
        self.refreezes = 0

    def start(self) -> None:
        """The worker has started: what it holds now (the app, its modules, its background work) is kept for
        the process's life."""
        gc.freeze()

    def tick(self, attached: int) -> None:
        """Called every fraction of a second with the number of streams attached so far (a running total)."""
        now = self._clock()
        if attached != self._last_attached:
            self._last_attached, self._last_change = attached, now
            return
        if attached - self._attached_at_freeze >= self._wave and now - self._last_change >= self._settle:
            self.refreeze()
            self._attached_at_freeze = attached

    def refreeze(self) -> None:
        started = time.perf_counter()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        self.refreezes += 1
        log.info("streams settled: full collection (%d unreachable) in %.0f ms, %d objects frozen",
                 collected, 1000 * (time.perf_counter() - started), gc.get_freeze_count())


class AsyncWorker(Worker):
    # Set by the master before the fork when operators have a listener of their own (`flagsvc.serving.roles`).
    flagsvc_role: str = EVERYTHING
    flagsvc_operator_port: int | None = None

    def run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        limits = ServingLimits.from_env()
        server = build_server(self.wsgi, limits)
        listeners = []
        if self.flagsvc_role == OPERATOR:
            log.info("worker %d serves the operator listener (port %s)", os.getpid(), self.flagsvc_operator_port)
        for listener in listeners_for(self.flagsvc_role, self.sockets, self.flagsvc_operator_port):
            sock = listener.sock if hasattr(listener, "sock") else listener
            sock.setblocking(False)
            listeners.append(await server.listen(socket.socket(fileno=os.dup(sock.fileno())), backlog=self.cfg.backlog))
        relay = asyncio.create_task(server.hub.relay()) if server.hub is not None else None
        collector = CollectorPolicy()
        collector.start()
        loop = asyncio.get_running_loop()
        try:
            while self.alive:
                self.notify()
                if server.hub is not None:
                    collector.tick(server.hub.attached)
                if self.ppid != os.getppid():
                    self.log.info("parent changed, shutting down: %s", self)
                    break
                asleep = loop.time()
                await asyncio.sleep(CHECK_SECONDS)
                metrics.LOOP_LAG.observe(max(loop.time() - asleep - CHECK_SECONDS, 0.0))
        finally:
            for listener in listeners:
                listener.close()
            await server.shut_down(grace=float(self.cfg.graceful_timeout))
            if relay is not None:
                relay.cancel()
            self.notify()

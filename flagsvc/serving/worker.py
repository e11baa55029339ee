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
import os
import socket
from typing import Any

from gunicorn.workers.base import Worker

from flagsvc import metrics
from flagsvc.api.auth import TokenRegistry
from flagsvc.api.fastpath import NotModifiedFastPath
from flagsvc.serving.collector import CollectorPolicy
from flagsvc.serving.http import HttpServer
from flagsvc.serving.limits import ServingLimits
from flagsvc.serving.streams import StreamHub

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


class AsyncWorker(Worker):
    def run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        limits = ServingLimits.from_env()
        server = build_server(self.wsgi, limits)
        listeners = []
        for listener in self.sockets:
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

"""Running the app under gunicorn from inside our own process (so the embedded Redis is ours to stop)."""

from __future__ import annotations

import os
import signal

from flask import Flask
from gunicorn.app.base import BaseApplication


class _Gunicorn(BaseApplication):
    def __init__(self, app: Flask, options: dict[str, object]) -> None:
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self._options.items():
            self.cfg.set(name, value)

    def load(self) -> Flask:
        return self._app


def _post_worker_init(worker) -> None:
    """In each forked worker: start the background work, and stop it first thing on SIGTERM so streams end and
    leadership is released while gunicorn lets in-flight requests finish."""
    background = worker.app.load().extensions["flagsvc.background"]
    background.start()
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        background.stop(timeout=1.0)
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, on_term)


def _worker_exit(server, worker) -> None:
    worker.app.load().extensions["flagsvc.background"].stop(timeout=1.0)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def run_gunicorn(app: Flask, *, host: str, port: int, workers: int, threads: int) -> None:
    """Blocks until gunicorn stops (SIGTERM/SIGINT: graceful, in-flight requests finish)."""
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "worker_connections": max(1000, threads + 64),  # gthread stops accepting past this many connections
        "graceful_timeout": 10,
        "timeout": 60,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "post_worker_init": _post_worker_init,
        "worker_exit": _worker_exit,
        "control_socket_disable": True,
    }
    try:
        _Gunicorn(app, options).run()
    except SystemExit as e:
        if e.code not in (0, None):
            raise

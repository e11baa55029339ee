"""Running the app under gunicorn from inside our own process (so the embedded Redis is ours to stop)."""

from __future__ import annotations

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


def run_gunicorn(app: Flask, *, host: str, port: int, workers: int, threads: int) -> None:
    """Blocks until gunicorn stops (SIGTERM/SIGINT: graceful, in-flight requests finish)."""
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "graceful_timeout": 10,
        "timeout": 60,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
    }
    try:
        _Gunicorn(app, options).run()
    except SystemExit as e:
        if e.code not in (0, None):
            raise

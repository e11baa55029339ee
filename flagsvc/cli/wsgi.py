"""Running the app under gunicorn from inside our own process (so the embedded Redis is ours to stop)."""

from __future__ import annotations

import os
import signal
import sys

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger

from flagsvc.serving.roles import EVERYTHING, role_for_new_worker, workers_to_retire


class _RoleAwareArbiter(Arbiter):
    """gunicorn's master, but when it has more workers than it wants (a reload, TTOU) it keeps the operator
    worker (`flagsvc.serving.roles.workers_to_retire`) rather than the youngest ones whatever their role."""

    def manage_workers(self) -> None:
        if len(self.WORKERS) < self.num_workers:
            self.spawn_workers()
        ages_and_roles = {pid: (worker.age, getattr(worker, "flagsvc_role", EVERYTHING))
                          for pid, worker in self.WORKERS.items()}
        for pid in workers_to_retire(ages_and_roles, self.num_workers):
            self.kill_worker(pid, signal.SIGTERM)


class _Gunicorn(BaseApplication):
    def __init__(self, app: Flask, options: dict[str, object], arbiter: type[Arbiter] = Arbiter) -> None:
        self._app = app
        self._options = options
        self._arbiter = arbiter
        super().__init__()

    def run(self) -> None:
        try:
            self._arbiter(self).run()
        except RuntimeError as e:  # as gunicorn's own run: a bind that failed, say
            print(f"\nError: {e}\n", file=sys.stderr)
            sys.exit(1)

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


def _child_exit(server, worker) -> None:
    """In the master, for every worker that ended, killed (OOM, timeout) or not: its live gauges (open streams,
    leadership) leave the scrape."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


class _JsonGunicornLogger(Logger):
    """gunicorn's own lines (booting, worker exits) as JSON too, so a JSON log pipeline sees nothing else. (Its
    `logconfig_dict` would do it, but also switches on an access log line per request.)"""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        from flagsvc.logs import JsonFormatter

        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())


def _role_assigner(operator_port: int):
    """gunicorn's pre_fork hook when operators have a listener of their own: the worker about to be forked
    learns which listener it serves (`flagsvc.serving.roles`)."""

    def pre_fork(server, worker) -> None:
        worker.flagsvc_role = role_for_new_worker(
            getattr(live, "flagsvc_role", EVERYTHING) for live in server.WORKERS.values())
        worker.flagsvc_operator_port = operator_port

    return pre_fork


def run_gunicorn(app: Flask, *, host: str, port: int, workers: int, json_logs: bool = False,
                 operator_host: str | None = None, operator_port: int | None = None) -> None:
    """Blocks until gunicorn stops (SIGTERM/SIGINT: graceful, in-flight requests finish). Each worker serves with
    flagsvc's asyncio worker (`flagsvc.serving`). With `operator_port`, operators get a listener of their own,
    served by one more worker than `workers`."""
    bind = [f"{host}:{port}"]
    if operator_port is not None:
        bind.append(f"{operator_host or host}:{operator_port}")
    options = {
        "bind": bind,
        "workers": workers + (operator_port is not None),
        "worker_class": "flagsvc.serving.worker.AsyncWorker",
        "backlog": 4096,
        "graceful_timeout": 10,
        "timeout": 60,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "post_worker_init": _post_worker_init,
        "worker_exit": _worker_exit,
        "child_exit": _child_exit,
        "control_socket_disable": True,
    }
    if operator_port is not None:
        options["pre_fork"] = _role_assigner(operator_port)
    if json_logs:
        options["logger_class"] = _JsonGunicornLogger
    try:
        _Gunicorn(app, options, _RoleAwareArbiter if operator_port is not None else Arbiter).run()
    except SystemExit as e:
        if e.code not in (0, None):
            raise

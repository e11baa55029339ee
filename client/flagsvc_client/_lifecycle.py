"""Daemon threads that loop over a step function, and the process hooks every live client is registered for:
a clean client in a forked worker, and a last flush at interpreter exit.

A gunicorn/uwsgi worker forked after the client was built inherits its memory but none of its threads, and maybe
locks held by threads that no longer exist. The child hook (`os.register_at_fork`) therefore gives every live
client fresh locks, empty outcome tallies (the parent sends its own; the child must not send them again) and no
threads; the client restarts them on its next use.

The daemon threads die with the interpreter, taking the outcomes of the last `flush_interval` with them, so an
`atexit` hook closes every live client (flush, then stop), each waiting at most its `exit_flush_timeout`, all of
them together at most the longest of those. It runs after the interpreter joined its non-daemon threads (the
requests a gunicorn gthread worker was finishing), and in a forked child it flushes the child's outcomes only.
Clients are held weakly: registering one never keeps it alive.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
import weakref
from collections.abc import Callable

from flagsvc_client._log import LogOnce

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class ForkAware(Protocol):
        def _after_fork_in_child(self) -> None: ...

        def _close_at_exit(self, started: float) -> None: ...


_clients: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def _reset_clients_in_child() -> None:
    for client in list(_clients):
        with contextlib.suppress(Exception):  # a fork must never fail because of us
            client._after_fork_in_child()


def _close_clients_at_exit() -> None:
    started = time.monotonic()
    for client in list(_clients):
        with contextlib.suppress(Exception):  # exit must never fail because of us
            client._close_at_exit(started)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_clients_in_child)
atexit.register(_close_clients_at_exit)


def watch_forks(client: ForkAware) -> None:
    """Register a live client (weakly) for the fork and exit hooks."""
    _clients.add(client)


def spawn_loop(
    name: str,
    step: Callable[[], float],
    stop: threading.Event,
    wake: threading.Event,
    log: LogOnce,
    delay_after_bug: float,
) -> threading.Thread:
    """Run `step` until `stop` is set, waiting the delay it returns (cut short by `wake`). A step that raises
    (a bug) is logged once and retried later: the thread never dies."""

    def run() -> None:
        while not stop.is_set():
            try:
                delay = step()
            except Exception:
                log.error(f"bug_{name}", "unexpected error in %s (retrying)", name)
                delay = delay_after_bug
            if stop.is_set():
                return
            wake.wait(max(0.0, delay))
            wake.clear()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread

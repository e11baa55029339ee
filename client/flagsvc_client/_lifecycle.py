"""Daemon threads that loop over a step function, and the fork hook that gives a forked worker a clean client.

A gunicorn/uwsgi worker forked after the client was built inherits its memory but none of its threads, and maybe
locks held by threads that no longer exist. The child hook (`os.register_at_fork`) therefore gives every live
client fresh locks, empty outcome tallies (the parent sends its own; the child must not send them again) and no
threads; the client restarts them on its next use.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable

from flagsvc_client._log import LogOnce

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class ForkAware(Protocol):
        def _after_fork_in_child(self) -> None: ...


_clients: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def _reset_clients_in_child() -> None:
    for client in list(_clients):
        with contextlib.suppress(Exception):  # a fork must never fail because of us
            client._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_clients_in_child)


def watch_forks(client: ForkAware) -> None:
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

"""Which listener each worker serves, when operators have a listener of their own.

`flagsvc serve --operator-port P` binds a second listener for operators (admin API, console, health, readiness,
metrics) and forks one worker more than asked for: that worker serves the operator listener alone, and every
other worker the SDK listener alone. A flood on the SDK side (streams, outcome batches, slow clients) then meets
processes that an operator's request never queues behind: the operator's worker is idle most of the time, so
the kernel runs it as soon as a request wakes it, however busy the SDK workers keep the cores.

gunicorn assigns the role just before it forks (its `pre_fork` hook), from the workers alive at that moment:
the first worker forked without a live operator worker becomes it, so a replacement for a dead operator worker
is an operator worker again. When gunicorn stops workers it has too many of (a reload forks the new ones first;
TTOU lowers the count), `workers_to_retire` keeps the youngest operator worker.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

OPERATOR = "operator"
SDK = "sdk"
EVERYTHING = "all"  # no operator listener: every worker serves every listener


def role_for_new_worker(live_roles: Iterable[str]) -> str:
    """The role of a worker about to be forked, given the roles of the workers alive now."""
    return SDK if OPERATOR in set(live_roles) else OPERATOR


def listener_port(listener: Any) -> int | None:
    """The TCP port a gunicorn listener (or a plain socket) is bound to; None for a UNIX socket."""
    sock = listener.sock if hasattr(listener, "sock") else listener
    try:
        address = sock.getsockname()
    except OSError:
        return None
    return address[1] if sock.family in (socket.AF_INET, socket.AF_INET6) else None


def listeners_for(role: str, listeners: Sequence[Any], operator_port: int | None) -> list[Any]:
    """The listeners a worker of `role` serves: the operator listener for the operator worker, the others for
    SDK workers, all of them when there is no operator listener."""
    if role == EVERYTHING or operator_port is None:
        return list(listeners)
    operators = [listener for listener in listeners if listener_port(listener) == operator_port]
    return operators if role == OPERATOR else [listener for listener in listeners if listener not in operators]


def workers_to_retire(workers: Mapping[int, tuple[int, str]], wanted: int) -> list[int]:
    """Which workers to stop when more are alive than `wanted` (`workers`: pid -> (age, role), a higher age
    forked later): the youngest operator worker and the youngest others are kept, so a reload (which forks the
    new workers before stopping the old) or a smaller count never leaves the operator listener unserved.
    gunicorn's own rule, the oldest go first, would stop the operator worker it had forked first."""
    if len(workers) <= wanted:
        return []
    youngest_first = sorted(workers, key=lambda pid: workers[pid][0], reverse=True)
    operator = next((pid for pid in youngest_first if workers[pid][1] == OPERATOR), None)
    kept = [] if operator is None else [operator]
    kept += [pid for pid in youngest_first if pid != operator][: max(wanted - len(kept), 0)]
    return [pid for pid in youngest_first if pid not in kept]

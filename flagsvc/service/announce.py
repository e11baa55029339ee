"""Announcing a stored change to every process, for operators and the controller alike.

A change is announced after it is stored: the config version goes up (which SDKs and streams watch, and which
other processes hear of through the store's pub/sub), and this process's change feed rebuilds its snapshot so it
reads its own write at once. The change itself is already stored, so a failed announcement must not turn into
"nothing was changed": it is logged, and the snapshots' digest check picks the change up within their maximum
age (a second) anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flagsvc.store.roles import ChangeBus

log = logging.getLogger("flagsvc.changes")


class ChangeAnnouncer:
    def __init__(self, bus: ChangeBus, on_local_change: Callable[[], None] | None = None) -> None:
        self._bus = bus
        self._on_local_change = on_local_change or (lambda: None)

    def announce(self) -> None:
        try:
            self._bus.bump_config_version()
        except Exception as e:
            log.warning("a change was stored but not announced (%s); SDKs get it within a second", e)
        self._on_local_change()

"""Operator commands on flags: read, apply a domain transition, compare-and-set, announce.

Operators act on the flag as it is when their request lands, so a lost compare-and-set (another operator or the
controller got there first) is retried on the fresh flag a bounded number of times. Every applied change bumps
the config version, which is what SDKs and streams watch.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from flagsvc.domain import flag as flags
from flagsvc.domain.errors import FlagNotFound, RevisionConflict
from flagsvc.domain.flag import Flag, HistoryEntry
from flagsvc.store.base import Store

log = logging.getLogger("flagsvc.flags")
Transition = Callable[[Flag], tuple[Flag, HistoryEntry]]
MAX_ATTEMPTS = 64
TRANSITIONS = ("start", "pause", "resume", "promote", "rollback")


class FlagOperations:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time,
                 on_change: Callable[[], None] | None = None) -> None:
        self.store = store
        self.clock = clock
        self.on_change = on_change or (lambda: None)

    def _announce(self) -> None:
        """Tell every process the config changed. The change itself is already stored, so a failure here must
        not answer "nothing was changed": it is logged, and the snapshots' digest check picks the change up
        within their max age (1 s) anyway."""
        try:
            self.store.bump_config_version()
        except Exception as e:
            log.warning("a change was stored but not announced (%s); SDKs get it within a second", e)
        self.on_change()

    def get(self, key: str) -> Flag:
        found = self.store.get(key)
        if found is None:
            raise FlagNotFound(key)
        return found

    def create(self, key: str, settings: Mapping[str, Any], *, actor: str) -> Flag:
        flag, entry = flags.new_flag(key, settings, now=self.clock(), actor=actor)
        self.store.create(flag, entry)
        self._announce()
        return flag

    def delete(self, key: str) -> None:
        if not self.store.delete(key):
            raise FlagNotFound(key)
        self._announce()

    def update(self, key: str, settings: Mapping[str, Any], *, actor: str) -> Flag:
        return self._apply(key, lambda f: flags.update(f, settings, now=self.clock(), actor=actor))

    def start(self, key: str, *, actor: str, reason: str = "") -> Flag:
        return self._apply(key, lambda f: flags.start(f, now=self.clock(), actor=actor, reason=reason))

    def pause(self, key: str, *, actor: str, reason: str = "") -> Flag:
        return self._apply(key, lambda f: flags.pause(f, now=self.clock(), actor=actor, reason=reason))

    def resume(self, key: str, *, actor: str, reason: str = "") -> Flag:
        return self._apply(key, lambda f: flags.resume(f, now=self.clock(), actor=actor, reason=reason))

    def promote(self, key: str, *, actor: str, reason: str = "") -> Flag:
        return self._apply(
            key, lambda f: flags.promote(f, now=self.clock(), actor=actor, reason=reason or "promoted by operator")
        )

    def rollback(self, key: str, *, actor: str, reason: str = "") -> Flag:
        return self._apply(key, lambda f: flags.rollback(f, now=self.clock(), actor=actor, reason=reason))

    def set_percent(self, key: str, percent: float, *, actor: str, reason: str = "") -> Flag:
        return self._apply(key, lambda f: flags.set_percent(f, percent, now=self.clock(), actor=actor, reason=reason))

    def _apply(self, key: str, transition: Transition) -> Flag:
        for attempt in range(MAX_ATTEMPTS):
            current = self.get(key)
            after, entry = transition(current)
            try:
                self.store.replace(after, entry, expected_revision=current.revision)
            except RevisionConflict:
                # Back off a little so a burst of writers to one flag spreads out instead of colliding again.
                time.sleep(random.uniform(0, 0.001 * min(attempt + 1, 10)))
                continue
            self._announce()
            log.info("flag %s: %s by %s, %s at %s%% (revision %s)%s", key, entry.action.value, entry.actor,
                     after.state.value, after.percent, after.revision, f": {entry.reason}" if entry.reason else "",
                     extra={"flag": key, "action": entry.action.value, "actor": entry.actor,
                            "state": after.state.value, "percent": after.percent, "revision": after.revision,
                            "reason": entry.reason})
            return after
        raise RevisionConflict(f"flag {key!r} kept changing; {MAX_ATTEMPTS} attempts lost the race, try again")


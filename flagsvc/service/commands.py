"""Operator commands on flags: read, apply a domain transition, compare-and-set, announce.

Operators act on the flag as it is when their request lands, so a lost compare-and-set (another operator or the
controller got there first) is retried on the fresh flag a bounded number of times. Every applied change is
announced (`ChangeAnnouncer`), which is what SDKs and streams watch.
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
from flagsvc.service.announce import ChangeAnnouncer
from flagsvc.store.roles import FlagRepository

log = logging.getLogger("flagsvc.flags")
Transition = Callable[[Flag], tuple[Flag, HistoryEntry]]
MAX_ATTEMPTS = 64
TRANSITIONS = ("start", "pause", "resume", "promote", "rollback")
MAX_HISTORY = 1_000


class FlagCommands:
    def __init__(self, flags: FlagRepository, announcer: ChangeAnnouncer, clock: Callable[[], float] = time.time,
                 jitter: Callable[[float, float], float] = random.uniform,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._flags = flags
        self._announcer = announcer
        self._clock = clock
        self._jitter = jitter
        self._sleep = sleep

    def list_flags(self) -> list[Flag]:
        return self._flags.list_flags()

    def get(self, key: str) -> Flag:
        found = self._flags.get(key)
        if found is None:
            raise FlagNotFound(key)
        return found

    def history(self, key: str, limit: int = 100) -> list[HistoryEntry]:
        """Newest first; FlagNotFound for a flag that does not exist (its history went with it)."""
        self.get(key)
        return self._flags.history(key, min(max(limit, 1), MAX_HISTORY))

    def create(self, key: str, settings: Mapping[str, Any], *, actor: str) -> Flag:
        flag, entry = flags.new_flag(key, settings, now=self._clock(), actor=actor)
        self._flags.create(flag, entry)
        self._announcer.announce()
        return flag

    def delete(self, key: str) -> None:
        if not self._flags.delete(key):
            raise FlagNotFound(key)
        self._announcer.announce()

    def update(self, key: str, settings: Mapping[str, Any], *, actor: str) -> Flag:
        return self._apply(key, lambda f: flags.update(f, settings, now=self._clock(), actor=actor))

    def transition(self, key: str, action: str, *, actor: str, reason: str = "") -> Flag:
        """One of TRANSITIONS by name (the API's POST /flags/<key>/<action>); ValueError for another name."""
        if action == "start":
            return self.start(key, actor=actor, reason=reason)
        if action == "pause":
            return self.pause(key, actor=actor, reason=reason)
        if action == "resume":
            return self.resume(key, actor=actor, reason=reason)
        if action == "promote":
            return self.promote(key, actor=actor, reason=reason)
        if action == "rollback":
            return self.rollback(key, actor=actor, reason=reason)
        raise ValueError(f"no action {action!r}; one of {', '.join(TRANSITIONS)}")

    def start(self, key: str, *, actor: str, reason: str = "") -> Flag:
        return self._apply(key, lambda f: flags.start(f, now=self._clock(), actor=actor, reason=reason))

    def pause(self, key: str, *, actor: str, reason: str = "") -> Flag:
        return self._apply(key, lambda f: flags.pause(f, now=self._clock(), actor=actor, reason=reason))

    def resume(self, key: str, *, actor: str, reason: str = "") -> Flag:
        return self._apply(key, lambda f: flags.resume(f, now=self._clock(), actor=actor, reason=reason))

    def promote(self, key: str, *, actor: str, reason: str = "") -> Flag:
        return self._apply(
            key, lambda f: flags.promote(f, now=self._clock(), actor=actor, reason=reason or "promoted by operator")
        )

    def rollback(self, key: str, *, actor: str, reason: str = "") -> Flag:
        return self._apply(key, lambda f: flags.rollback(f, now=self._clock(), actor=actor, reason=reason))

    def set_percent(self, key: str, percent: float, *, actor: str, reason: str = "") -> Flag:
        return self._apply(
            key, lambda f: flags.set_percent(f, percent, now=self._clock(), actor=actor, reason=reason)
        )

    def _apply(self, key: str, transition: Transition) -> Flag:
        for attempt in range(MAX_ATTEMPTS):
            current = self.get(key)
            after, entry = transition(current)
            try:
                self._flags.replace(after, entry, expected_revision=current.revision)
            except RevisionConflict:
                # Back off a little so a burst of writers to one flag spreads out instead of colliding again.
                self._sleep(self._jitter(0, 0.001 * min(attempt + 1, 10)))
                continue
            self._announcer.announce()
            log.info("flag %s: %s by %s, %s at %s%% (revision %s)%s", key, entry.action.value, entry.actor,
                     after.state.value, after.percent, after.revision, f": {entry.reason}" if entry.reason else "",
                     extra={"flag": key, "action": entry.action.value, "actor": entry.actor,
                            "state": after.state.value, "percent": after.percent, "revision": after.revision,
                            "reason": entry.reason})
            return after
        raise RevisionConflict(f"flag {key!r} kept changing; {MAX_ATTEMPTS} attempts lost the race, try again")

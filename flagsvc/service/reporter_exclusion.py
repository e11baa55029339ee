"""Which reporters (SDK instances) a flag's analysis excludes, as outcome ingestion asks for every batch entry.

An operator excludes a reporter with an ordinary settings change (`analysis.excluded_reporters`, PATCH or
`flagctl exclude-reporter`), which makes a new revision: SDKs report the new revision from then on, its aggregates
start empty, and every entry of that revision from an excluded reporter is dropped before the store. What a
revision excludes never changes (a change is a new revision), so this process keeps the flags' lists in memory,
listed every `max_age` seconds, and a flag is read again at once when an entry names a revision newer than
the one kept (or a flag not kept). An entry for an older revision than the kept one is left to the store, which
counts it stale. (A flag deleted and created again under the same key restarts its revisions: until the next
listing, at most `max_age` later, its entries are let through.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from flagsvc.domain.flag import Flag
from flagsvc.store.roles import FlagRepository

NOTHING: frozenset[str] = frozenset()


class ExcludedReporters:
    def __init__(self, flags: FlagRepository, clock: Callable[[], float] = time.monotonic,
                 max_age: float = 2.0) -> None:
        self._flags = flags
        self._clock = clock
        self._max_age = max_age
        self._kept: dict[str, tuple[int, frozenset[str]]] = {}
        self._read_at = -float("inf")
        self._lock = threading.Lock()

    def of(self, key: str, revision: int) -> frozenset[str]:
        """The reporters flag `key` at `revision` excludes (none when the flag is not at that revision)."""
        if self._clock() - self._read_at >= self._max_age:
            self._refresh()
        kept = self._kept.get(key)
        if kept is None or kept[0] < revision:  # changed since the listing (an exclusion, say): read it now
            flag = self._flags.get(key)
            kept = None if flag is None else (flag.revision, _excluded(flag))
            if kept is not None:
                self._kept[key] = kept
        return kept[1] if kept is not None and kept[0] == revision else NOTHING

    def _refresh(self) -> None:
        with self._lock:
            read_at = self._clock()
            self._kept = {flag.key: (flag.revision, _excluded(flag)) for flag in self._flags.list_flags()}
            self._read_at = read_at


def _excluded(flag: Flag) -> frozenset[str]:
    return frozenset(flag.analysis.get("excluded_reporters") or ())

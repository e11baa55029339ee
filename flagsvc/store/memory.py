"""An in-process store: for tests and for running the API without Redis. Same contract as RedisStore."""

from __future__ import annotations

import threading
import uuid
from collections import deque

from flagsvc.domain.errors import FlagExists, FlagNotFound, RevisionConflict
from flagsvc.domain.flag import Flag, HistoryEntry
from flagsvc.store.base import HISTORY_CAP, ConfigVersion


class MemoryStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags: dict[str, Flag] = {}
        self._history: dict[str, deque[HistoryEntry]] = {}
        self._epoch = uuid.uuid4().hex[:12]
        self._version = 0

    def get(self, key: str) -> Flag | None:
        return self._flags.get(key)

    def list_flags(self) -> list[Flag]:
        with self._lock:
            return [self._flags[k] for k in sorted(self._flags)]

    def create(self, flag: Flag, entry: HistoryEntry) -> None:
        with self._lock:
            if flag.key in self._flags:
                raise FlagExists(flag.key)
            self._flags[flag.key] = flag
            self._history[flag.key] = deque([entry], maxlen=HISTORY_CAP)

    def replace(self, flag: Flag, entry: HistoryEntry, *, expected_revision: int) -> None:
        with self._lock:
            current = self._flags.get(flag.key)
            if current is None:
                raise FlagNotFound(flag.key)
            if current.revision != expected_revision:
                raise RevisionConflict(f"flag {flag.key!r} changed meanwhile (revision {current.revision})")
            self._flags[flag.key] = flag
            self._history[flag.key].appendleft(entry)

    def delete(self, key: str) -> bool:
        with self._lock:
            self._history.pop(key, None)
            return self._flags.pop(key, None) is not None

    def history(self, key: str, limit: int = 100) -> list[HistoryEntry]:
        with self._lock:
            return list(self._history.get(key, ()))[:limit]

    def config_version(self) -> ConfigVersion:
        return ConfigVersion(self._epoch, self._version)

    def bump_config_version(self) -> ConfigVersion:
        with self._lock:
            self._version += 1
            return ConfigVersion(self._epoch, self._version)

    def ping(self) -> bool:
        return True

"""The SDK config snapshot (docs/protocol.md): built from the store, cached per config version.

Serving `If-None-Match` must be cheap (one Redis round trip), so the serialized body is cached for as long as
the config version is unchanged. A writer bumps the version only *after* its change is stored, so a snapshot
built after reading version v holds every change up to v (maybe more). A writer that dies between its change
and the bump would leave the change unannounced; to heal that, the cache is rebuilt at least every `max_age`
seconds, and content that changed under an unchanged version gets a fresh version.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flagsvc.domain.flag import Flag
from flagsvc.store.base import ConfigVersion, Store


def sdk_view(flag: Flag) -> dict[str, object]:
    """What an SDK needs to evaluate a flag, and nothing more."""
    return {
        "key": flag.key,
        "state": flag.state.value,
        "percent": flag.percent,
        "revision": flag.revision,
        "salt": flag.salt,
        "allow": list(flag.allow),
        "deny": list(flag.deny),
    }


@dataclass(frozen=True)
class Snapshot:
    version: ConfigVersion
    body: bytes
    digest: str
    built_at: float

    @property
    def etag(self) -> str:
        return self.version.etag


class SnapshotSource:
    def __init__(self, store: Store, clock: Callable[[], float] = time.monotonic, max_age: float = 1.0) -> None:
        self.store = store
        self.clock = clock
        self.max_age = max_age
        self._cached: Snapshot | None = None
        self._rebuild_lock = threading.Lock()

    def current(self) -> Snapshot:
        version = self.store.config_version()
        cached = self._cached
        if cached and cached.version == version and self.clock() - cached.built_at < self.max_age:
            return cached
        with self._rebuild_lock:  # one rebuild at a time; the others take its result
            cached = self._cached
            if cached and cached.version == version and self.clock() - cached.built_at < self.max_age:
                return cached
            return self._rebuild(version, cached)

    def _rebuild(self, version: ConfigVersion, cached: Snapshot | None) -> Snapshot:
        flags = {f.key: sdk_view(f) for f in self.store.list_flags()}
        digest = hashlib.sha256(json.dumps(flags, sort_keys=True).encode()).hexdigest()
        if cached and cached.version == version and cached.digest != digest:
            version = self.store.bump_config_version()  # a change landed without its announcement
        body = json.dumps(
            {"epoch": version.epoch, "version": version.version, "flags": flags}, separators=(",", ":")
        ).encode()
        snapshot = Snapshot(version, body, digest, self.clock())
        self._cached = snapshot
        return snapshot

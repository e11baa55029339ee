"""The SDK config snapshot as served (docs/protocol.md): built from the flags, cached per config version.

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

from flagsvc_client.protocol.limits import FEATURE_BUCKET_BY, FEATURE_SEGMENTS
from flagsvc_client.protocol.shapes import SnapshotDoc, SnapshotFlag

from flagsvc.domain.flag import Flag
from flagsvc.store.roles import ChangeBus, ConfigVersion, FlagRepository
from flagsvc.store.segments import SegmentRepository


def sdk_view(flag: Flag) -> SnapshotFlag:
    """What an SDK needs to evaluate a flag, and nothing more. A flag that uses targeting says so in `requires`
    (docs/protocol.md, "Features"), so an SDK that cannot evaluate it answers its caller's default; a flag
    without targeting carries none of those fields, exactly as before; a stratified one names its `stratify_by`."""
    view: SnapshotFlag = {
        "key": flag.key,
        "state": flag.state.value,
        "percent": flag.percent,
        "revision": flag.revision,
        "salt": flag.salt,
        "allow": list(flag.allow),
        "deny": list(flag.deny),
    }
    requires = []
    if flag.excluded_segments or flag.eligible_segments:
        requires.append(FEATURE_SEGMENTS)
        view["excluded_segments"] = list(flag.excluded_segments)
        view["eligible_segments"] = list(flag.eligible_segments)
    if flag.bucket_by:
        requires.append(FEATURE_BUCKET_BY)
        view["bucket_by"] = flag.bucket_by
    if requires:
        view["requires"] = requires
    # Not a `requires` feature: stratifying changes what SDKs report, not their answers, so an SDK that does not
    # know it evaluates the flag and reports its outcomes unlabelled (docs/protocol.md, "Strata").
    stratify_by = flag.analysis.get("stratify_by")
    if stratify_by:
        view["stratify_by"] = list(stratify_by)
    return view


@dataclass(frozen=True)
class ServedSnapshot:
    """One snapshot, serialized once for every SDK that asks (the SDK's own parsed form is flagsvc_client's
    Snapshot)."""

    version: ConfigVersion
    body: bytes
    digest: str
    built_at: float

    @property
    def etag(self) -> str:
        return self.version.etag


class SnapshotSource:
    def __init__(self, flags: FlagRepository, versions: ChangeBus, clock: Callable[[], float] = time.monotonic,
                 max_age: float = 1.0, segments: SegmentRepository | None = None) -> None:
        self._flags = flags
        self._segments = segments
        self._versions = versions
        self.clock = clock
        self.max_age = max_age
        self._cached: ServedSnapshot | None = None
        self._rebuild_lock = threading.Lock()

    def current(self) -> ServedSnapshot:
        version = self._versions.config_version()
        cached = self._cached
        if cached and cached.version == version and self.clock() - cached.built_at < self.max_age:
            return cached
        with self._rebuild_lock:  # one rebuild at a time; the others take its result
            cached = self._cached
            if cached and cached.version == version and self.clock() - cached.built_at < self.max_age:
                return cached
            return self._rebuild(version, cached)

    def _rebuild(self, version: ConfigVersion, cached: ServedSnapshot | None) -> ServedSnapshot:
        flags = {f.key: sdk_view(f) for f in self._flags.list_flags()}
        segments = {s.name: s.sdk_view() for s in self._segments.list_segments()} if self._segments else {}
        content = {"flags": flags, "segments": segments} if segments else flags
        digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
        if cached and cached.version == version and cached.digest != digest:
            version = self._versions.bump_config_version()  # a change landed without its announcement
        document: SnapshotDoc = {"epoch": version.epoch, "version": version.version, "flags": flags}
        if segments:
            document["segments"] = segments
        body = json.dumps(document, separators=(",", ":")).encode()
        snapshot = ServedSnapshot(version, body, digest, self.clock())
        self._cached = snapshot
        return snapshot

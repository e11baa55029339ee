"""Timeline storage: the `TimelineRepository` role (each rollout revision's downsampled time series), its memory
and Redis implementations. The Redis keys are in keys.py (``timeline:*``); one script (lua/timeline_add.lua)
adds a point, on the flag's hash slot.

`timeline_for(store)` gives the repository that goes with a store: the Redis one on the same connection and
namespace, a memory one kept per memory store.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections.abc import Mapping
from importlib import resources
from typing import Any, Protocol, cast, runtime_checkable

from flagsvc.domain.timeline import TIMELINE_POINTS, TIMELINE_REVISIONS, RevisionSeries
from flagsvc.store.keys import TIMELINE_TTL, Keys
from flagsvc.store.roles import Clock


def incarnation(created_at: float) -> str:
    """Which life of a flag key a timeline belongs to: its creation time, to the microsecond."""
    return f"{created_at:.6f}"


@runtime_checkable
class TimelineRepository(Protocol):
    """Per flag incarnation and revision, the points of the controller's looks."""

    def add_timeline_point(self, key: str, created_at: float, revision: int, point: Mapping[str, Any], *,
                           keep: bool = False) -> None:
        """Count one look at the revision and keep its point as `RevisionSeries.add` says (`keep`: whatever
        the stride)."""

    def timeline(self, key: str, created_at: float, *, first: int = 1, last: int | None = None,
                 revisions: int = TIMELINE_REVISIONS) -> list[RevisionSeries]:
        """The newest `revisions` revisions from `first` to `last` (inclusive; None: no limit) that have points,
        oldest first."""


class MemoryTimeline:
    def __init__(self, clock: Clock = time.monotonic, cap: int = TIMELINE_POINTS) -> None:
        self._clock = clock
        self._cap = cap
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], dict[int, tuple[RevisionSeries, float]]] = {}

    def add_timeline_point(self, key: str, created_at: float, revision: int, point: Mapping[str, Any], *,
                           keep: bool = False) -> None:
        now = self._clock()
        with self._lock:
            life = self._series.setdefault((key, incarnation(created_at)), {})
            found = life.get(revision)
            series = found[0] if found and found[1] > now else RevisionSeries(revision)
            series.add(point, keep=keep, cap=self._cap)
            life[revision] = (series, now + TIMELINE_TTL)
            for old in sorted(life)[:-TIMELINE_REVISIONS]:
                del life[old]

    def timeline(self, key: str, created_at: float, *, first: int = 1, last: int | None = None,
                 revisions: int = TIMELINE_REVISIONS) -> list[RevisionSeries]:
        now = self._clock()
        with self._lock:
            life = self._series.get((key, incarnation(created_at)), {})
            chosen = [life[r][0] for r in sorted(life)
                      if life[r][1] > now and r >= first and (last is None or r <= last)][-revisions:]
            return [RevisionSeries(s.revision, [dict(p) for p in s.points], s.looks, s.stride) for s in chosen]


def _lua(name: str) -> str:
    return resources.files("flagsvc.store").joinpath("lua", name).read_text()


class RedisTimeline:
    """On a RedisStore's connection and namespace. Points are written without waiting for replicas: a look lost
    in a failover costs one point of a chart, not a decision."""

    def __init__(self, store: Any, cap: int = TIMELINE_POINTS) -> None:
        self._redis = store.redis
        self.keys: Keys = store.keys
        self._cap = cap
        self._add = self._redis.register_script(_lua("timeline_add.lua"))

    def add_timeline_point(self, key: str, created_at: float, revision: int, point: Mapping[str, Any], *,
                           keep: bool = False) -> None:
        life = incarnation(created_at)
        self._add(keys=[self.keys.timeline(key, life, revision), self.keys.timeline_meta(key, life, revision),
                        self.keys.timeline_revisions(key, life)],
                  args=[json.dumps(point, separators=(",", ":")), "1" if keep else "0", self._cap, revision,
                        TIMELINE_TTL * 1000, TIMELINE_REVISIONS])

    def timeline(self, key: str, created_at: float, *, first: int = 1, last: int | None = None,
                 revisions: int = TIMELINE_REVISIONS) -> list[RevisionSeries]:
        life = incarnation(created_at)
        found = cast(list[str], self._redis.zrevrangebyscore(self.keys.timeline_revisions(key, life),
                                                             "+inf" if last is None else last, first,
                                                             start=0, num=revisions))
        numbers = sorted(int(r) for r in found)
        if not numbers:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for revision in numbers:
            pipe.lrange(self.keys.timeline(key, life, revision), 0, -1)
            pipe.hgetall(self.keys.timeline_meta(key, life, revision))
        replies = pipe.execute()
        series = []
        for revision, points, meta in zip(numbers, replies[::2], replies[1::2], strict=True):
            if points:
                series.append(RevisionSeries(revision, [json.loads(p) for p in points], int(meta.get("looks", 0)),
                                             int(meta.get("stride", 1))))
        return series


_MEMORY: weakref.WeakKeyDictionary[object, MemoryTimeline] = weakref.WeakKeyDictionary()
_MEMORY_LOCK = threading.Lock()


def timeline_for(store: object) -> TimelineRepository:
    """The timeline repository that goes with `store` (one per store: the same object every time)."""
    if isinstance(store, TimelineRepository):
        return store
    if hasattr(store, "redis") and hasattr(store, "keys"):
        return RedisTimeline(store)
    with _MEMORY_LOCK:
        found = _MEMORY.get(store)
        if found is None:
            found = _MEMORY[store] = MemoryTimeline(getattr(store, "_clock", time.monotonic))
        return found

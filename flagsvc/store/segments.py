"""Segment storage: the `SegmentRepository` role, its memory and Redis implementations, and their keys.

Segments are few (tens, at most hundreds) and every SDK snapshot holds them all, so the Redis layout is one hash,
name -> segment JSON, read whole with one HGETALL. Each write is one script (lua/write_segment.lua) that compares
the segment's revision and remembers the request's Idempotency-Key in the same step. Every key carries the hash
tag of the hash's own name, so the script touches one slot on a Redis Cluster:

- ``<ns>segments{<ns>segments}`` (hash): name -> segment JSON (domain.segment.Segment); operators' API; never
  expires.
- ``<ns>idem{<ns>segments}:<Idempotency-Key>`` (hash): ``fingerprint`` and ``answer`` of a segment write with an
  Idempotency-Key, as for flags (store/keys.py); expires after IDEMPOTENCY_TTL.

`segments_for(store)` gives the repository that belongs with a store: the Redis one on the same connection,
namespace and replica acknowledgements; a memory one kept per memory store.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Protocol, cast, runtime_checkable

from flagsvc.domain.errors import RevisionConflict, SegmentExists, SegmentNotFound
from flagsvc.domain.segment import Segment
from flagsvc.store.keys import DEFAULT_NAMESPACE
from flagsvc.store.roles import IDEMPOTENCY_TTL, AlreadyApplied, Clock, Idempotency


@runtime_checkable
class SegmentRepository(Protocol):
    """Segments by name; each write compare-and-set on the segment's revision, idempotent with a key."""

    def get_segment(self, name: str) -> Segment | None:
        """The segment, or None."""

    def list_segments(self) -> list[Segment]:
        """Every segment, ordered by name."""

    def write_segment(self, name: str, segment: Segment | None, *, expected_revision: int | None,
                      idempotency: Idempotency | None = None) -> None:
        """Create (`expected_revision` None: SegmentExists when the name is taken), replace or delete (`segment`
        None) a segment: RevisionConflict unless it is at `expected_revision`, SegmentNotFound when it is not
        there. With `idempotency`, a key seen before raises AlreadyApplied instead of doing anything."""

    def segment_idempotent_answer(self, idempotency_key: str) -> AlreadyApplied | None:
        """What a segment write with this idempotency key did, if one did (within IDEMPOTENCY_TTL)."""


@dataclass(frozen=True)
class SegmentKeys:
    namespace: str = DEFAULT_NAMESPACE

    @property
    def segments(self) -> str:
        return f"{self.namespace}segments{{{self.namespace}segments}}"

    def idempotency(self, idempotency_key: str) -> str:
        return f"{self.namespace}idem{{{self.namespace}segments}}:{idempotency_key}"


def _dumps(segment: Segment) -> str:
    return json.dumps(segment.to_dict(), separators=(",", ":"), sort_keys=True)


class MemorySegments:
    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._segments: dict[str, Segment] = {}
        self._idempotency: dict[str, tuple[str, str, float]] = {}

    def get_segment(self, name: str) -> Segment | None:
        return self._segments.get(name)

    def list_segments(self) -> list[Segment]:
        with self._lock:
            return [self._segments[n] for n in sorted(self._segments)]

    def write_segment(self, name: str, segment: Segment | None, *, expected_revision: int | None,
                      idempotency: Idempotency | None = None) -> None:
        with self._lock:
            kept = self._idempotency.get(idempotency.key) if idempotency else None
            if kept and kept[2] > self._clock():
                raise AlreadyApplied(kept[0], kept[1])
            current = self._segments.get(name)
            if expected_revision is None and current is not None:
                raise SegmentExists(name)
            if expected_revision is not None:
                if current is None:
                    raise SegmentNotFound(name)
                if current.revision != expected_revision:
                    raise RevisionConflict(f"segment {name!r} changed meanwhile (revision {current.revision})")
            if segment is None:
                del self._segments[name]
            else:
                self._segments[name] = segment
            if idempotency:
                self._idempotency[idempotency.key] = (idempotency.fingerprint, idempotency.answer,
                                                      self._clock() + IDEMPOTENCY_TTL)

    def segment_idempotent_answer(self, idempotency_key: str) -> AlreadyApplied | None:
        with self._lock:
            kept = self._idempotency.get(idempotency_key)
            return AlreadyApplied(kept[0], kept[1]) if kept and kept[2] > self._clock() else None


class RedisSegments:
    """On a RedisStore's connection, namespace and write acknowledgements (its `_write`)."""

    def __init__(self, store: Any) -> None:
        from importlib import resources

        self._store = store
        self._redis = store.redis
        self.keys = SegmentKeys(store.keys.namespace)
        source = resources.files("flagsvc.store").joinpath("lua", "write_segment.lua").read_text()
        self._script = self._redis.register_script(source)

    def get_segment(self, name: str) -> Segment | None:
        doc = self._redis.hget(self.keys.segments, name)
        return Segment.from_dict(json.loads(doc)) if doc else None

    def list_segments(self) -> list[Segment]:
        docs = cast(dict[str, str], self._redis.hgetall(self.keys.segments))
        return [Segment.from_dict(json.loads(docs[name])) for name in sorted(docs)]

    def write_segment(self, name: str, segment: Segment | None, *, expected_revision: int | None,
                      idempotency: Idempotency | None = None) -> None:
        fingerprint, answer = (idempotency.fingerprint, idempotency.answer) if idempotency else ("", "")
        idem_key = self.keys.idempotency(idempotency.key if idempotency else "-")
        result = self._store._write(
            self._script, keys=[self.keys.segments, idem_key],
            args=[name, "" if expected_revision is None else expected_revision,
                  "" if segment is None else _dumps(segment), fingerprint, answer, IDEMPOTENCY_TTL],
        )
        if isinstance(result, list):
            raise AlreadyApplied(str(result[0]), str(result[1] or ""))
        if result == -2:
            raise SegmentExists(name)
        if result == -1:
            raise SegmentNotFound(name)
        if result == 0:
            raise RevisionConflict(f"segment {name!r} changed meanwhile")

    def segment_idempotent_answer(self, idempotency_key: str) -> AlreadyApplied | None:
        fingerprint, answer = cast(list[str | None], self._redis.hmget(self.keys.idempotency(idempotency_key),
                                                                       ["fingerprint", "answer"]))
        return None if fingerprint is None else AlreadyApplied(fingerprint, answer or "")


_MEMORY: weakref.WeakKeyDictionary[object, MemorySegments] = weakref.WeakKeyDictionary()
_MEMORY_LOCK = threading.Lock()


def segments_for(store: object) -> SegmentRepository:
    """The segment repository that goes with `store` (one per store: the same object every time)."""
    if isinstance(store, SegmentRepository):
        return store
    if hasattr(store, "redis") and hasattr(store, "_write"):
        return RedisSegments(store)
    with _MEMORY_LOCK:
        found = _MEMORY.get(store)
        if found is None:
            found = _MEMORY[store] = MemorySegments(getattr(store, "_clock", time.monotonic))
        return found

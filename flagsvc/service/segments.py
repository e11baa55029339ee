"""Operator commands on segments (docs/targeting.md): read, create, change, delete; announced like a flag change.

Writes follow the flags' conventions: `If-Match` names the revision a change expects (else 412), an
`Idempotency-Key` is remembered with the change, atomically, so a retry gets the first answer and changes
nothing. A segment that flags name cannot be deleted (409 naming them); the check and the delete are two steps,
and a flag edited in between to name the segment is answered by SDKs with the caller's default and reason
`error` (they never guess), until the segment is back or the flag no longer names it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from flagsvc.domain import segment as segments
from flagsvc.domain.errors import (
    IdempotencyKeyReused,
    InvalidFlag,
    PreconditionFailed,
    RevisionConflict,
    SegmentInUse,
    SegmentNotFound,
)
from flagsvc.domain.flag import Flag
from flagsvc.domain.segment import Segment
from flagsvc.service.announce import ChangeAnnouncer
from flagsvc.service.audit import AuditLog
from flagsvc.service.commands import ANY, WriteRequest
from flagsvc.store.roles import AlreadyApplied, FlagRepository, Idempotency
from flagsvc.store.segments import SegmentRepository


class SegmentCommands:
    def __init__(self, segments: SegmentRepository, flags: FlagRepository, announcer: ChangeAnnouncer,
                 clock: Callable[[], float] = time.time, audit: AuditLog | None = None) -> None:
        """`audit` records each applied change (service.audit)."""
        self._audit = audit
        self._segments = segments
        self._flags = flags
        self._announcer = announcer
        self._clock = clock

    def list_segments(self) -> list[Segment]:
        return self._segments.list_segments()

    def get(self, name: str) -> Segment:
        found = self._segments.get_segment(name)
        if found is None:
            raise SegmentNotFound(name)
        return found

    def used_by(self, name: str) -> list[str]:
        return [f.key for f in self._flags.list_flags() if name in f.segments]

    def create(self, name: str, settings: Mapping[str, Any], *, actor: str, request: WriteRequest = ANY) -> Segment:
        if (first := self._first_answer(request)) is not None:
            return _replayed(first, request)
        segment = segments.new_segment(name, settings, now=self._clock(), actor=actor)
        return self._write(segment.name, segment, None, request)

    def update(self, name: str, settings: Mapping[str, Any], *, actor: str, request: WriteRequest = ANY) -> Segment:
        if (first := self._first_answer(request)) is not None:
            return _replayed(first, request)
        current = self.get(name)
        if request.if_revision is not None and current.revision != request.if_revision:
            raise _precondition(name, request.if_revision, current.revision)
        after = segments.changed_segment(current, settings, now=self._clock(), actor=actor)
        return self._write(name, after, current.revision, request)

    def delete(self, name: str, *, request: WriteRequest = ANY) -> None:
        if (first := self._first_answer(request)) is not None:
            _check_same(first, request)
            return
        current = self.get(name)
        if request.if_revision is not None and current.revision != request.if_revision:
            raise _precondition(name, request.if_revision, current.revision)
        if users := self.used_by(name):
            raise SegmentInUse(name, users)
        self._write(name, None, current.revision, request)

    def check_flag(self, flag: Flag) -> None:
        """InvalidFlag naming the field when a flag names a segment that does not exist."""
        known = {s.name for s in self._segments.list_segments()} if flag.segments else set()
        problems = {}
        for field in ("excluded_segments", "eligible_segments"):
            missing = [n for n in getattr(flag, field) if n not in known]
            if missing:
                problems[field] = [f"no segment named {', '.join(missing)}"]
        if problems:
            raise InvalidFlag("the flag names segments that do not exist", problems)

    def _write(self, name: str, segment: Segment | None, expected: int | None, request: WriteRequest) -> Segment:
        answer = json.dumps(segment.to_dict(), separators=(",", ":")) if segment is not None else ""
        idempotency = Idempotency(request.idempotency_key, request.fingerprint, answer) \
            if request.idempotency_key else None
        try:
            self._segments.write_segment(name, segment, expected_revision=expected, idempotency=idempotency)
        except AlreadyApplied as racing:
            if segment is None:
                _check_same(racing, request)
                return Segment(name=name, conditions=())
            return _replayed(racing, request)
        except RevisionConflict:
            current = self._segments.get_segment(name)
            if request.if_revision is not None and current is not None:
                raise _precondition(name, request.if_revision, current.revision) from None
            raise
        self._announcer.announce()
        if self._audit is not None:
            action = "delete" if segment is None else "create" if expected is None else "update"
            self._audit.record(action, kind="segment", target=name,
                               detail=segment.to_dict() if segment is not None else None)
        return segment if segment is not None else Segment(name=name, conditions=())

    def _first_answer(self, request: WriteRequest) -> AlreadyApplied | None:
        if not request.idempotency_key:
            return None
        return self._segments.segment_idempotent_answer(request.idempotency_key)


def _precondition(name: str, expected: int, current: int) -> PreconditionFailed:
    error = PreconditionFailed(name, expected, current)
    error.message = f"segment {name!r} is at revision {current}, not {expected}: it changed since you read it"
    error.args = (error.message,)
    return error


def _check_same(first: AlreadyApplied, request: WriteRequest) -> None:
    if first.fingerprint != request.fingerprint:
        raise IdempotencyKeyReused()


def _replayed(first: AlreadyApplied, request: WriteRequest) -> Segment:
    _check_same(first, request)
    if not first.answer:
        raise IdempotencyKeyReused()
    return Segment.from_dict(json.loads(first.answer))

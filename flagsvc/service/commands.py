"""Operator commands on flags: read, apply a domain transition, compare-and-set, announce.

Operators act on the flag as it is when their request lands, so a lost compare-and-set (another operator or the
controller got there first) is retried on the fresh flag a bounded number of times, unless the request named
the revision it expects (If-Match): then the answer is PreconditionFailed. A request with an Idempotency-Key is
remembered with its change, atomically: sent again (say after a 503 that left it unclear whether the write was
applied) it gets its first answer back and changes nothing. Every applied change is announced
(`ChangeAnnouncer`), which is what SDKs and streams watch.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flagsvc.domain import flag as flags
from flagsvc.domain.errors import FlagNotFound, IdempotencyKeyReused, PreconditionFailed, RevisionConflict
from flagsvc.domain.flag import Flag, HistoryEntry
from flagsvc.service.announce import ChangeAnnouncer
from flagsvc.service.audit import AuditLog
from flagsvc.store.roles import AlreadyApplied, FlagRepository, Idempotency

log = logging.getLogger("flagsvc.flags")
Transition = Callable[[Flag], tuple[Flag, HistoryEntry]]
MAX_ATTEMPTS = 64
TRANSITIONS = ("start", "pause", "resume", "promote", "rollback")
MAX_HISTORY = 1_000


@dataclass(frozen=True)
class WriteRequest:
    """How an operator asked for a write: the revision it expects the flag at (If-Match), and its
    Idempotency-Key with what the request was (method, path and body, digested), so a key cannot be reused for
    another request."""

    if_revision: int | None = None
    idempotency_key: str | None = None
    fingerprint: str = ""


ANY = WriteRequest()


class FlagCommands:
    def __init__(self, flags: FlagRepository, announcer: ChangeAnnouncer, clock: Callable[[], float] = time.time,
                 jitter: Callable[[float, float], float] = random.uniform,
                 sleep: Callable[[float], None] = time.sleep,
                 check_segments: Callable[[Flag], None] = lambda flag: None, audit: AuditLog | None = None,
                 notify: Callable[[Flag, Flag, HistoryEntry], None] | None = None) -> None:
        """`check_segments(flag)` raises when a flag names segments that do not exist (SegmentCommands.check_flag);
        `audit` records every applied change (service.audit), after it is applied; `notify(before, after, entry)`
        is told of every applied transition (WebhookNotifier.operator_change: an operator's rollback or
        completion to the webhooks), and never raises."""
        self._audit = audit
        self._notify = notify
        self._flags = flags
        self._check_segments = check_segments
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

    def create(self, key: str, settings: Mapping[str, Any], *, actor: str, request: WriteRequest = ANY) -> Flag:
        first = self._first_answer(key, request)
        if first is not None:
            return _replayed_flag(first, request)
        flag, entry = flags.new_flag(key, settings, now=self._clock(), actor=actor)
        self._check_segments(flag)
        try:
            self._flags.create(flag, entry, idempotency=_idempotency(request, flag))
        except AlreadyApplied as racing:  # the same request, sent twice at once, got there first
            return _replayed_flag(racing, request)
        self._announcer.announce()
        if self._audit is not None:
            self._audit.flag_change(key, entry)
        return flag

    def delete(self, key: str, *, request: WriteRequest = ANY, actor: str | None = None) -> None:
        first = self._first_answer(key, request)
        if first is not None:
            _check_same_request(first, request)
            return
        try:
            deleted = self._flags.delete(key, expected_revision=request.if_revision,
                                         idempotency=_idempotency(request, None))
        except AlreadyApplied as racing:
            _check_same_request(racing, request)
            return
        except RevisionConflict:
            raise PreconditionFailed(key, request.if_revision or 0, self.get(key).revision) from None
        if not deleted:
            raise FlagNotFound(key)
        self._announcer.announce()
        if self._audit is not None:
            self._audit.record("delete", kind="flag", target=key, flag=key, actor=actor)

    def update(self, key: str, settings: Mapping[str, Any], *, actor: str, request: WriteRequest = ANY) -> Flag:
        def change(flag: Flag) -> tuple[Flag, HistoryEntry]:
            after, entry = flags.update(flag, settings, now=self._clock(), actor=actor)
            if "excluded_segments" in settings or "eligible_segments" in settings:
                self._check_segments(after)
            return after, entry

        return self._apply(key, change, request)

    def transition(self, key: str, action: str, *, actor: str, reason: str = "",
                   request: WriteRequest = ANY) -> Flag:
        """One of TRANSITIONS by name (the API's POST /flags/<key>/<action>); ValueError for another name."""
        if action == "start":
            return self.start(key, actor=actor, reason=reason, request=request)
        if action == "pause":
            return self.pause(key, actor=actor, reason=reason, request=request)
        if action == "resume":
            return self.resume(key, actor=actor, reason=reason, request=request)
        if action == "promote":
            return self.promote(key, actor=actor, reason=reason, request=request)
        if action == "rollback":
            return self.rollback(key, actor=actor, reason=reason, request=request)
        raise ValueError(f"no action {action!r}; one of {', '.join(TRANSITIONS)}")

    def start(self, key: str, *, actor: str, reason: str = "", request: WriteRequest = ANY) -> Flag:
        return self._apply(key, lambda f: flags.start(f, now=self._clock(), actor=actor, reason=reason), request)

    def pause(self, key: str, *, actor: str, reason: str = "", request: WriteRequest = ANY) -> Flag:
        return self._apply(key, lambda f: flags.pause(f, now=self._clock(), actor=actor, reason=reason), request)

    def resume(self, key: str, *, actor: str, reason: str = "", request: WriteRequest = ANY) -> Flag:
        return self._apply(key, lambda f: flags.resume(f, now=self._clock(), actor=actor, reason=reason), request)

    def promote(self, key: str, *, actor: str, reason: str = "", request: WriteRequest = ANY) -> Flag:
        return self._apply(
            key, lambda f: flags.promote(f, now=self._clock(), actor=actor, reason=reason or "promoted by operator"),
            request,
        )

    def rollback(self, key: str, *, actor: str, reason: str = "", request: WriteRequest = ANY) -> Flag:
        return self._apply(key, lambda f: flags.rollback(f, now=self._clock(), actor=actor, reason=reason), request)

    def set_percent(self, key: str, percent: float, *, actor: str, reason: str = "",
                    request: WriteRequest = ANY) -> Flag:
        return self._apply(
            key, lambda f: flags.set_percent(f, percent, now=self._clock(), actor=actor, reason=reason), request
        )

    def exclude_reporter(self, key: str, reporter: str, *, actor: str, reason: str = "",
                         request: WriteRequest = ANY) -> Flag:
        """Take one reporter (SDK instance) out of the flag's analysis: a settings change (a new revision, fresh
        aggregates) kept in the history with its reason. Excluding an excluded reporter changes nothing."""
        return self._reporters(key, reporter, True, actor=actor, reason=reason, request=request)

    def include_reporter(self, key: str, reporter: str, *, actor: str, reason: str = "",
                         request: WriteRequest = ANY) -> Flag:
        """Undo exclude_reporter; including a reporter that is not excluded changes nothing."""
        return self._reporters(key, reporter, False, actor=actor, reason=reason, request=request)

    def _reporters(self, key: str, reporter: str, exclude: bool, *, actor: str, reason: str,
                   request: WriteRequest) -> Flag:
        def change(flag: Flag) -> tuple[Flag, HistoryEntry]:
            listed = [r for r in flag.analysis.get("excluded_reporters") or () if r != reporter]
            listed += [reporter] if exclude else []
            why = reason or f"reporter {reporter} {'excluded from' if exclude else 'included again in'} the analysis"
            return flags.update(flag, {"analysis": {"excluded_reporters": listed}}, now=self._clock(), actor=actor,
                                reason=why)

        current = self.get(key)
        if (reporter in (current.analysis.get("excluded_reporters") or ())) == exclude \
                and self._first_answer(key, request) is None:
            if request.if_revision is not None and current.revision != request.if_revision:
                raise PreconditionFailed(key, request.if_revision, current.revision)
            return current
        return self._apply(key, change, request)

    def _first_answer(self, key: str, request: WriteRequest) -> AlreadyApplied | None:
        """What this request's Idempotency-Key did before, if it was applied before."""
        if not request.idempotency_key:
            return None
        return self._flags.idempotent_answer(key, request.idempotency_key)

    def _apply(self, key: str, transition: Transition, request: WriteRequest = ANY) -> Flag:
        first = self._first_answer(key, request)
        if first is not None:
            return _replayed_flag(first, request)
        for attempt in range(MAX_ATTEMPTS):
            current = self.get(key)
            if request.if_revision is not None and current.revision != request.if_revision:
                first = self._first_answer(key, request)  # moved on by this very request, sent twice at once?
                if first is not None:
                    return _replayed_flag(first, request)
                raise PreconditionFailed(key, request.if_revision, current.revision)
            after, entry = transition(current)
            try:
                self._flags.replace(after, entry, expected_revision=current.revision,
                                    idempotency=_idempotency(request, after))
            except AlreadyApplied as racing:  # the same request, sent twice at once, got there first
                return _replayed_flag(racing, request)
            except RevisionConflict:
                if request.if_revision is not None:  # changed between our read and our write
                    first = self._first_answer(key, request)
                    if first is not None:
                        return _replayed_flag(first, request)
                    raise PreconditionFailed(key, request.if_revision, self.get(key).revision) from None
                # Back off a little so a burst of writers to one flag spreads out instead of colliding again.
                self._sleep(self._jitter(0, 0.001 * min(attempt + 1, 10)))
                continue
            self._announcer.announce()
            if self._audit is not None:
                self._audit.flag_change(key, entry)
            if self._notify is not None:
                self._notify(current, after, entry)
            log.info("flag %s: %s by %s, %s at %s%% (revision %s)%s", key, entry.action.value, entry.actor,
                     after.state.value, after.percent, after.revision, f": {entry.reason}" if entry.reason else "",
                     extra={"flag": key, "action": entry.action.value, "actor": entry.actor,
                            "state": after.state.value, "percent": after.percent, "revision": after.revision,
                            "reason": entry.reason})
            return after
        raise RevisionConflict(f"flag {key!r} kept changing; {MAX_ATTEMPTS} attempts lost the race, try again")


def _idempotency(request: WriteRequest, answer: Flag | None) -> Idempotency | None:
    if not request.idempotency_key:
        return None
    body = json.dumps(answer.to_dict(), separators=(",", ":")) if answer is not None else ""
    return Idempotency(request.idempotency_key, request.fingerprint, body)


def _check_same_request(first: AlreadyApplied, request: WriteRequest) -> None:
    if first.fingerprint != request.fingerprint:
        raise IdempotencyKeyReused()


def _replayed_flag(first: AlreadyApplied, request: WriteRequest) -> Flag:
    """The flag the first answer carried, if this is the same request; IdempotencyKeyReused if not."""
    _check_same_request(first, request)
    if not first.answer:  # a delete's key, sent again with the same fingerprint to a write: cannot happen
        raise IdempotencyKeyReused()
    return Flag.from_dict(json.loads(first.answer))

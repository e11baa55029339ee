"""An in-process store: for tests and for running the API without Redis. Same roles and contract as RedisStore."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping

from flagsvc_client.protocol.limits import MAX_STRATA, STRATUM_OTHER

from flagsvc.domain.errors import FlagExists, FlagNotFound, LeadershipLost, RevisionConflict
from flagsvc.domain.flag import Flag, HistoryEntry
from flagsvc.domain.judge_record import JudgeRecord
from flagsvc.domain.outcomes import ArmTotals, totals_from_fields
from flagsvc.store.keys import BATCH_MARKER_TTL
from flagsvc.store.roles import (
    HISTORY_CAP,
    IDEMPOTENCY_TTL,
    MAX_NAMED_REPORTERS,
    OTHER_REPORTERS,
    AlreadyApplied,
    Clock,
    ConfigVersion,
    Idempotency,
    IngestResult,
    OutcomeEntry,
    ReporterTotals,
    new_epoch,
    reporter_totals_from_fields,
)


def _stratum_field(totals: dict[str, int], field: str) -> str:
    """As add_outcomes.lua: the first MAX_STRATA stratum labels of a revision are kept (marked in the totals as
    "|s|<label>", counted in "|strata"); a later label's counter ("<arm>:s:<label>:<kind>") goes to STRATUM_OTHER's."""
    arm, _, rest = field.partition(":s:")
    label, _, kind = rest.rpartition(":")
    if label == STRATUM_OTHER or f"|s|{label}" in totals:
        return field
    if totals.get("|strata", 0) >= MAX_STRATA:
        return f"{arm}:s:{STRATUM_OTHER}:{kind}"
    totals[f"|s|{label}"] = 1
    totals["|strata"] = totals.get("|strata", 0) + 1
    return field


class MemoryStore:
    outage_errors: tuple[type[Exception], ...] = ()  # memory always answers

    def __init__(self, clock: Clock = time.monotonic) -> None:
        """`clock` (seconds) times what expires: the controller lease and the batch markers."""
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._flags: dict[str, Flag] = {}
        self._history: dict[str, deque[HistoryEntry]] = {}
        self._epoch = uuid.uuid4().hex[:12]
        self._version = 0
        self._outcomes: dict[str, tuple[int, dict[str, int]]] = {}  # one revision's aggregates per flag
        self._epochs: dict[str, str] = {}  # the epoch of each flag's aggregates (new each time they start)
        self._by_reporter: dict[str, dict[str, int]] = {}  # the same revision's, "<reporter>|<arm>:count|errors"
        self._windows: dict[str, dict[str, float]] = {}  # per flag: each named reporter's latest window end
        self._batches: dict[tuple[str, str], float] = {}  # (flag, batch_id) -> remembered until (by the clock)
        self._idempotency: dict[tuple[str, str], tuple[str, str, float]] = {}  # -> fingerprint, answer, until
        self._ingest: dict[str, dict[str, int]] = {}
        self._unknown = 0
        self._fences: dict[str, int] = {}
        self._judgements: dict[str, JudgeRecord] = {}
        self._lease: tuple[str, int, float] | None = None  # owner, token, expires (by the clock)
        self._fence_counter = 0

    def get(self, key: str) -> Flag | None:
        return self._flags.get(key)

    def list_flags(self) -> list[Flag]:
        with self._lock:
            return [self._flags[k] for k in sorted(self._flags)]

    def create(self, flag: Flag, entry: HistoryEntry, *, idempotency: Idempotency | None = None) -> None:
        with self._lock:
            self._replay_if_applied(flag.key, idempotency)
            if flag.key in self._flags:
                raise FlagExists(flag.key)
            self._flags[flag.key] = flag
            self._history[flag.key] = deque([entry], maxlen=HISTORY_CAP)
            self._remember(flag.key, idempotency)

    def replace(self, flag: Flag, entry: HistoryEntry, *, expected_revision: int, fence: int | None = None,
                idempotency: Idempotency | None = None) -> None:
        with self._lock:
            self._replay_if_applied(flag.key, idempotency)
            current = self._flags.get(flag.key)
            if current is None:
                raise FlagNotFound(flag.key)
            if fence is not None and self._fences.get(flag.key, 0) > fence:
                raise LeadershipLost(f"a newer controller leader fenced flag {flag.key!r}")
            if current.revision != expected_revision:
                raise RevisionConflict(f"flag {flag.key!r} changed meanwhile (revision {current.revision})")
            self._flags[flag.key] = flag
            self._history[flag.key].appendleft(entry)
            if fence is not None:
                self._fences[flag.key] = fence
            self._remember(flag.key, idempotency)

    def idempotent_answer(self, key: str, idempotency_key: str) -> AlreadyApplied | None:
        with self._lock:
            kept = self._idempotency.get((key, idempotency_key))
            return AlreadyApplied(kept[0], kept[1]) if kept and kept[2] > self._clock() else None

    def _replay_if_applied(self, key: str, idempotency: Idempotency | None) -> None:
        kept = self._idempotency.get((key, idempotency.key)) if idempotency else None
        if kept and kept[2] > self._clock():
            raise AlreadyApplied(kept[0], kept[1])

    def _remember(self, key: str, idempotency: Idempotency | None) -> None:
        if idempotency:
            self._idempotency[(key, idempotency.key)] = (idempotency.fingerprint, idempotency.answer,
                                                          self._clock() + IDEMPOTENCY_TTL)

    def raise_fence(self, key: str, token: int) -> bool:
        with self._lock:
            if key not in self._flags or self._fences.get(key, 0) > token:
                return False
            self._fences[key] = token
            return True

    def acquire_lease(self, owner: str, ttl_seconds: float) -> int | None:
        with self._lock:
            now = self._clock()
            if self._lease and self._lease[2] > now and self._lease[0] != owner:
                return None
            if self._lease and self._lease[2] > now:
                token = self._lease[1]
            else:
                self._fence_counter += 1
                token = self._fence_counter
            self._lease = (owner, token, now + ttl_seconds)
            return token

    def release_lease(self, owner: str) -> None:
        with self._lock:
            if self._lease and self._lease[0] == owner:
                self._lease = None

    def save_judgement(self, key: str, record: JudgeRecord) -> None:
        with self._lock:
            self._judgements[key] = record

    def load_judgement(self, key: str) -> JudgeRecord | None:
        with self._lock:
            return self._judgements.get(key)

    def delete(self, key: str, *, expected_revision: int | None = None,
               idempotency: Idempotency | None = None) -> bool:
        with self._lock:
            self._replay_if_applied(key, idempotency)
            current = self._flags.get(key)
            if current is None:
                return False
            if expected_revision is not None and current.revision != expected_revision:
                raise RevisionConflict(f"flag {key!r} is not at revision {expected_revision}")
            self._remember(key, idempotency)
            self._history.pop(key, None)
            self._ingest.pop(key, None)
            self._outcomes.pop(key, None)
            self._epochs.pop(key, None)
            self._by_reporter.pop(key, None)
            self._windows.pop(key, None)
            self._fences.pop(key, None)
            self._judgements.pop(key, None)
            self._batches = {b: until for b, until in self._batches.items() if b[0] != key}
            return self._flags.pop(key, None) is not None

    def history(self, key: str, limit: int = 100) -> list[HistoryEntry]:
        with self._lock:
            return list(self._history.get(key, ()))[:limit]

    def restart_epoch(self, expected: str) -> ConfigVersion:
        with self._lock:
            if self._epoch == expected:
                self._epoch = uuid.uuid4().hex[:12]
        return self.bump_config_version()

    def config_version(self) -> ConfigVersion:
        return ConfigVersion(self._epoch, self._version)

    def bump_config_version(self) -> ConfigVersion:
        with self._lock:
            self._version += 1
            version = ConfigVersion(self._epoch, self._version)
        with self._changed:
            self._changed.notify_all()
        return version

    def add_outcomes(self, batch_id: str, entries: Mapping[str, OutcomeEntry]) -> dict[str, IngestResult]:
        return {key: self._add_outcomes(key, entry.revision, batch_id, entry.increments, entry.reporter,
                                        entry.window)
                for key, entry in entries.items()}

    def _add_outcomes(self, key: str, revision: int, batch_id: str, increments: dict[str, int],
                      reporter: str, window: tuple[float, float]) -> IngestResult:
        with self._lock:
            flag = self._flags.get(key)
            if flag is None:
                return "unknown"
            counters = self._ingest.setdefault(key, {"accepted": 0, "duplicate": 0, "stale": 0, "overlapping": 0})
            result: IngestResult
            if flag.revision != revision:
                result = "stale"
            elif self._batches.get((key, batch_id), -math.inf) > self._clock():
                result = "duplicate"
            elif (self._outcomes.get(key, (None, {}))[0] == revision and reporter in self._windows.get(key, {})
                  and window[0] < self._windows[key][reporter] - 0.5):
                result = "overlapping"  # the same moments from the same reporter again (see roles)
            else:
                self._remember_batch(key, batch_id)
                kept_revision, totals = self._outcomes.get(key, (None, {}))
                if kept_revision != revision:
                    totals = {}
                    self._by_reporter[key] = {}
                    self._windows[key] = {}
                    self._epochs[key] = new_epoch()
                self._outcomes[key] = (revision, totals)
                windows = self._windows.setdefault(key, {})
                if reporter and reporter not in windows:
                    reporter = reporter if len(windows) < MAX_NAMED_REPORTERS else OTHER_REPORTERS
                if reporter and reporter != OTHER_REPORTERS:
                    windows[reporter] = max(windows.get(reporter, 0.0), window[1])
                by_reporter = self._by_reporter.setdefault(key, {})
                for name, n in increments.items():
                    if ":s:" in name:
                        name = _stratum_field(totals, name)
                    totals[name] = totals.get(name, 0) + n
                    if reporter and name.endswith((":count", ":errors")):
                        field = f"{reporter}|{name}"
                        by_reporter[field] = by_reporter.get(field, 0) + n
                result = "accepted"
            counters[result] += 1
            return result

    def _remember_batch(self, key: str, batch_id: str) -> None:
        """Markers expire like Redis's (BATCH_MARKER_TTL by the store's clock), so their memory is bounded."""
        now = self._clock()
        if len(self._batches) >= 10_000:
            self._batches = {marker: until for marker, until in self._batches.items() if until > now}
        self._batches[(key, batch_id)] = now + BATCH_MARKER_TTL

    def reporter_totals(self, key: str, revision: int) -> dict[str, dict[str, ReporterTotals]]:
        with self._lock:
            kept_revision, _ = self._outcomes.get(key, (None, {}))
            fields = dict(self._by_reporter.get(key, {})) if kept_revision == revision else {}
        return reporter_totals_from_fields(fields)

    def outcome_totals(self, key: str, revision: int) -> dict[str, ArmTotals]:
        with self._lock:
            kept_revision, totals = self._outcomes.get(key, (revision, {}))
            if kept_revision != revision or key not in self._outcomes:
                return totals_from_fields({})
            return totals_from_fields({**totals, "epoch": self._epochs.get(key, "")})

    def ingest_counts(self, key: str) -> dict[str, int]:
        with self._lock:
            counts = self._ingest.get(key, {})
            return {name: counts.get(name, 0) for name in ("accepted", "duplicate", "stale")}

    def count_unknown(self, n: int) -> None:
        with self._lock:
            self._unknown += n

    def listen_changes(self, on_change: Callable[[], None], stop: threading.Event) -> None:
        seen = self._version
        on_change()  # like a fresh subscription: whatever happened before it counts as a change
        while not stop.is_set():
            def moved(seen: int = seen) -> bool:
                return self._version != seen or stop.is_set()

            with self._changed:
                self._changed.wait_for(moved, timeout=1.0)
            if self._version != seen:
                seen = self._version
                on_change()

    def ping(self) -> bool:
        return True

    _dataset_notice: str | None = None  # the instance's own once kept (added after __init__'s attributes)

    def dataset_notice(self) -> str | None:
        return self._dataset_notice

    def keep_dataset_notice(self, notice: str | None, *, only_if_absent: bool = False) -> bool:
        with self._lock:
            kept = self._dataset_notice
            if only_if_absent and kept is not None:
                return False
            self._dataset_notice = notice
            return notice is not None or kept is not None

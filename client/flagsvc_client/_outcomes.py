"""Outcome tallies per (flag, revision, arm): written by `FlagClient.record`, cut into batches by the flusher.

Why no lock on the common path: `record` must cost at most 3x the bare hash, and on CPython a lock round trip
alone is most of that budget. So a writer only appends one int to its tally's `events` list (its latency's
sketch bucket, see NO_LATENCY and ERROR below). `list.append` is atomic (the Python FAQ's list of
thread-safe operations; free-threaded builds lock lists internally), so concurrent writers never lose an event.
Events are folded into the tally's histogram under the window's lock, in C (`Counter`), by whoever takes them:
the writer that makes the list reach DRAIN_AT, or the flusher at a cut. Taking is `chunk = events[:n];
del events[:n]`, two atomic operations that leave any event appended meanwhile in place: nothing is taken twice.

Tallies are long-lived, so the compiled config can point straight at them (no key building, no lookup). A tally
evicted at a cut (idle for a whole window) or one that never got a slot is `retired`, its `events` None: a writer
still holding it fails on the append before changing anything, or, if it fetched the list just before the
eviction, notices that the list is no longer the tally's and hands what it appended to the live tally. Every
outcome is counted exactly once.

Memory is bounded whatever the traffic: at most `max_arms` live tallies (outcomes beyond are dropped and counted),
each holding < DRAIN_AT pending events (plus one per concurrent writer), a histogram over the sketch's fixed
range (sketch.py) and a bounded set of erroring users. A bound reached asks for an early flush (`on_full`).

Strata (a flag whose analysis names `stratify_by`, docs/protocol.md): the outcome rule adds the stratum's code
(STRATUM_LABELS: one small id per label, interned for the process) to the event, so folding counts requests and
errors per stratum with no extra work on the record path; which stratum an erroring user was in, `note_error`
reads from LAST_STRATUM, which the rule set on the same thread just before.
"""

from __future__ import annotations

import threading
from collections import Counter

from flagsvc_client.protocol.limits import MAX_STRATUM_LABEL_LENGTH, STRATUM_OTHER, UNIT_BUCKETS
from flagsvc_client.protocol.sketch import MAX_INDEX, MIN_INDEX, bucket_index

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

ArmKey = tuple[str, int, str]  # (flag, revision, "stable" | "canary")

# An event is the outcome's code (its user bucket, `unit << UNIT_SHIFT`, plus CANARY on the canary: what
# `record`'s compiled closure answers) plus the raw sketch bucket index, ceil(log(ms) / log(GAMMA)) as in
# sketch.bucket_index but not yet clamped to MIN_INDEX..MAX_INDEX (folding clamps it, which is exactly
# bucket_index for every ms > 0), or NO_LATENCY when there was no latency; plus ERROR when the outcome failed.
# A finite float's index is within +-40,000: with OFFSET added, every part has bits of its own.
OFFSET = 1 << 17
NO_LATENCY = 1 << 20
ERROR = 1 << 22
UNIT_SHIFT = 23
UNIT_MASK = (UNIT_BUCKETS - 1) << UNIT_SHIFT
# the stratum's id (0: no label): 12 bits, so a process interns up to STRATUM_IDS - 1 labels (STRATUM_LABELS)
STRATUM_SHIFT = 29
STRATUM_IDS = 1 << 12
STRATUM_MASK = (STRATUM_IDS - 1) << STRATUM_SHIFT
CANARY = 1 << 41  # above every other part, so `code >= CANARY` says the arm; folding ignores it (the tally knows)
# every code, precomputed (a table lookup allocates nothing, where shifting the 32-bit hash would)
STABLE_CODES = tuple(unit << UNIT_SHIFT for unit in range(UNIT_BUCKETS))
CANARY_CODES = tuple(code + CANARY for code in STABLE_CODES)
SKETCH_SIZE = MAX_INDEX - MIN_INDEX + 1  # histogram slots 0..SKETCH_SIZE-1 are buckets, SKETCH_SIZE no latency
DRAIN_AT = 256
# Erroring users remembered across all tallies of a window (the per-arm cap alone would allow max_arms times it).
MAX_ERROR_USERS_PER_WINDOW = 20_000


class StratumLabels:
    """Stratum labels interned as codes (`id << STRATUM_SHIFT`), append-only, so an event's code means the same
    label whenever it is folded, whichever compiled config produced it. Bounded: past `capacity` labels (or for a
    label longer than the protocol allows), the code of STRATUM_OTHER. One table per process (STRATUM_LABELS):
    codes are only ever turned back into the same labels, so clients sharing it cannot disturb each other."""

    def __init__(self, capacity: int = STRATUM_IDS - 1) -> None:
        self._lock = threading.Lock()
        self._capacity = capacity
        self.labels: list[str] = ["", STRATUM_OTHER]  # by id; id 0 is "no label"
        self._codes: dict[str, int] = {STRATUM_OTHER: 1 << STRATUM_SHIFT}
        self.other = 1 << STRATUM_SHIFT

    def code(self, label: str) -> int:
        found = self._codes.get(label)
        if found is not None:
            return found
        if len(label) > MAX_STRATUM_LABEL_LENGTH:
            return self.other
        with self._lock:
            found = self._codes.get(label)
            if found is None:
                if len(self.labels) > self._capacity:
                    return self.other
                found = self._codes[label] = len(self.labels) << STRATUM_SHIFT
                self.labels.append(label)
            return found

    def label(self, code: int) -> str:
        """The label of a stratum code (its bits of an event)."""
        return self.labels[code >> STRATUM_SHIFT]


STRATUM_LABELS = StratumLabels()
# On each thread, (flag, stratum code) of the last stratified outcome rule run: `record` calls `note_error` right
# after the rule, on the same thread, so an erroring user is remembered in the stratum the outcome was counted in.
LAST_STRATUM = threading.local()


def event_of(ok: bool, latency_ms: float | None, code: int = 0) -> int:
    """The event of one outcome, for any latency (bucket_index takes care of 0, negatives, NaN, infinities)."""
    event = code + (NO_LATENCY if latency_ms is None else bucket_index(latency_ms))
    return event if ok else event + ERROR


class ArmTally:
    __slots__ = (
        "counts", "error_users", "errors", "events", "key", "retired", "slow_mark", "strata", "strata_unremembered",
        "strata_users", "unit_counts", "unremembered",
    )  # fmt: skip

    def __init__(self, key: ArmKey, retired: bool = False) -> None:
        self.key = key
        self.retired = retired
        self.events: list[int] | None = None if retired else []  # appended to without a lock (see above)
        self.counts: list[int] | None = None  # by bucket (index - MIN_INDEX), no latency last; when needed
        # by user bucket: requests at [unit], errors at [UNIT_BUCKETS + unit], slow requests (latency bucket
        # above `slow_mark`) at [2 * UNIT_BUCKETS + unit]; with `counts`
        self.unit_counts: list[int] | None = None
        # The bucket of this arm's p95 in the last window with enough latencies (None before): this window's
        # requests above it are "slow" in the user buckets, for the judge to see whether slowness clusters in users
        self.slow_mark: int | None = None
        self.errors = 0
        self.error_users: set[object] | None = None
        self.unremembered = 0  # errors from users we could not remember: each counted as a new user
        # per stratum code: [requests, errors]; the erroring users remembered in it, and how many errors came
        # from users that could not be remembered (each counted as a new user); None while the tally has none
        self.strata: dict[int, list[int]] | None = None
        self.strata_users: dict[int, set[object]] | None = None
        self.strata_unremembered: dict[int, int] | None = None

    @property
    def count(self) -> int:
        return sum(self.counts) if self.counts else 0


def placeholders(flag: str, revision: int) -> tuple[ArmTally, ArmTally]:
    """(stable, canary) stand-ins for a compiled config: retired, so the first record swaps in the live ones."""
    return ArmTally((flag, revision, "stable"), retired=True), ArmTally((flag, revision, "canary"), retired=True)


class OutcomeWindow:
    def __init__(self, max_arms: int, max_error_users: int, on_full: Callable[[], None]) -> None:
        self.lock = threading.Lock()
        self._live: dict[ArmKey, ArmTally] = {}
        self._max_arms = max_arms
        self._max_error_users = max_error_users
        self._remembered = 0
        self._on_full = on_full
        self._sink = ArmTally(("", 0, ""), retired=True)  # what `revive` answers when there is no room
        self.discarding = False  # offline or closed: outcomes go nowhere
        self.dropped = 0  # outcomes lost to the max_arms bound (lifetime)

    # -- writers ---------------------------------------------------------------------------------------------

    def settle(self, tally: ArmTally, events: list[int]) -> None:
        """After an append that filled `events`, or went into a list the tally no longer owns: fold it.
        Never raises (the outcome is already in `events`: the caller must not count it again)."""
        with self.lock:
            try:
                if tally.events is events:
                    self._drain(tally)
                else:  # retired under the writer: move what landed in the orphaned list to the live tally
                    chunk = _take(events)
                    if chunk:
                        self._fold(self.revive(tally), chunk)
            except Exception:
                pass

    def note_error(self, tally: ArmTally, user_id: object, stratum: int | None = None) -> None:
        """Remember who failed (the failure itself travels in the event), and in which stratum: `stratum`'s
        code, or when not given, what the outcome rule just noted on this thread (LAST_STRATUM). Never raises."""
        with self.lock:
            try:
                if stratum is None:
                    last = getattr(LAST_STRATUM, "seen", None)
                    stratum = last[1] if last is not None and last[0] == tally.key[0] else 0
                if stratum:
                    self._note_stratum_error(tally, stratum, user_id)
                users = tally.error_users
                if users is None:
                    users = tally.error_users = set()
                if user_id in users:
                    return
                if len(users) < self._max_error_users and self._remembered < MAX_ERROR_USERS_PER_WINDOW:
                    users.add(user_id)
                    self._remembered += 1
                    return
            except Exception:
                pass
            tally.unremembered += 1  # an upper bound on distinct users (batches clamp it to `errors`)
            self._on_full()

    def add(self, tally: ArmTally, user_id: object, ok: bool, latency_ms: float | None, code: int = 0) -> ArmTally:
        """One outcome the careful way (the record path's fallback): input checked before anything changes,
        a retired tally revived. `code` is the outcome rule's answer (the user's bucket). Returns the tally
        counted in (the sink, when dropped)."""
        event = event_of(ok, latency_ms, code)
        with self.lock:
            if tally.retired:
                tally = self.revive(tally)
            self._fold(tally, [event])
            if tally is self._sink:
                return tally
        if not ok:
            self.note_error(tally, user_id, code & STRATUM_MASK)
        return tally

    # -- with the lock held ----------------------------------------------------------------------------------

    def _note_stratum_error(self, tally: ArmTally, code: int, user_id: object) -> None:
        by_stratum = tally.strata_users
        if by_stratum is None:
            by_stratum = tally.strata_users = {}
        users = by_stratum.get(code)
        if users is None:
            users = by_stratum[code] = set()
        if user_id in users:
            return
        if len(users) < self._max_error_users and self._remembered < MAX_ERROR_USERS_PER_WINDOW:
            users.add(user_id)
            self._remembered += 1
        else:
            if tally.strata_unremembered is None:
                tally.strata_unremembered = {}
            tally.strata_unremembered[code] = tally.strata_unremembered.get(code, 0) + 1

    def revive(self, tally: ArmTally) -> ArmTally:
        """The live tally for a retired one's key: found, created, or the sink when there is no room (or when
        discarding): whatever is folded into the sink is dropped."""
        live = self._live.get(tally.key)
        if live is None:
            if self.discarding:
                return self._sink
            if len(self._live) >= self._max_arms:
                self._on_full()
                return self._sink
            live = self._live[tally.key] = ArmTally(tally.key)
        return live

    def _drain(self, tally: ArmTally) -> None:
        if tally.events:
            self._fold(tally, _take(tally.events))

    def _fold(self, tally: ArmTally, chunk: list[int]) -> None:
        if tally is self._sink:
            if not self.discarding:
                self.dropped += len(chunk)
            return
        counts, units = tally.counts, tally.unit_counts
        if counts is None or units is None:
            counts, units = tally.counts, tally.unit_counts = [0] * (SKETCH_SIZE + 1), [0] * (3 * UNIT_BUCKETS)
        slow_above = MAX_INDEX if tally.slow_mark is None else tally.slow_mark
        for event, n in Counter(chunk).items():  # C counts the chunk; this loop sees distinct events only
            event += OFFSET
            unit = (event & UNIT_MASK) >> UNIT_SHIFT
            units[unit] += n
            stratum = event & STRATUM_MASK
            if stratum:
                strata = tally.strata
                if strata is None:
                    strata = tally.strata = {}
                row = strata.get(stratum)
                if row is None:
                    row = strata[stratum] = [0, 0]
                row[0] += n
                if event & ERROR:
                    row[1] += n
            if event & ERROR:
                tally.errors += n
                units[UNIT_BUCKETS + unit] += n
            latency = event & (ERROR - 1)  # CANARY, above, is ignored
            if latency >= NO_LATENCY:
                counts[SKETCH_SIZE] += n
                continue
            index = min(max(latency - OFFSET, MIN_INDEX), MAX_INDEX)
            counts[index - MIN_INDEX] += n
            if index > slow_above:
                units[2 * UNIT_BUCKETS + unit] += n

    # -- the flusher -----------------------------------------------------------------------------------------

    def cut(self) -> list[ArmTally]:
        """Take every tally's outcomes since the last cut (as detached tallies) and zero them; evict the ones
        idle since the last cut. O(live tallies + pending events) under the lock."""
        taken = []
        with self.lock:
            for key, tally in list(self._live.items()):
                self._drain(tally)
                if tally.counts is not None:
                    out = ArmTally(key, retired=True)
                    out.counts, out.unit_counts, out.errors = tally.counts, tally.unit_counts, tally.errors
                    out.error_users, out.unremembered = tally.error_users, tally.unremembered
                    out.slow_mark = tally.slow_mark  # what this window's slow counts were counted against
                    out.strata, out.strata_users = tally.strata, tally.strata_users
                    out.strata_unremembered = tally.strata_unremembered
                    tally.slow_mark = _p95_index(tally.counts, tally.slow_mark)
                    tally.counts, tally.unit_counts, tally.error_users = None, None, None
                    tally.strata, tally.strata_users, tally.strata_unremembered = None, None, None
                    tally.errors = tally.unremembered = 0
                    taken.append(out)
                else:
                    events, tally.retired, tally.events = tally.events, True, None
                    del self._live[key]
                    # a writer may have appended after the drain above and checked before `retired`: take it
                    straggler = _take(events) if events else None
                    if straggler:
                        self._fold(self.revive(tally), straggler)
            self._remembered = 0
        return taken

    def discard(self) -> None:
        """From now on outcomes go nowhere (offline, or closed)."""
        with self.lock:
            self.discarding = True
            for tally in self._live.values():
                tally.retired, tally.events = True, None
            self._live.clear()

    def __len__(self) -> int:
        return len(self._live)


# latencies a window needs before its p95 becomes the next window's slow mark
MIN_TIMED_FOR_MARK = 50


def _p95_index(counts: list[int], previous: int | None) -> int | None:
    """The sketch bucket of the window's p95 (nearest rank, as LatencySketch.quantile), or the previous mark
    when the window had fewer than MIN_TIMED_FOR_MARK latencies."""
    timed = sum(counts[:SKETCH_SIZE])
    if timed < MIN_TIMED_FOR_MARK:
        return previous
    rank, seen = timed - timed // 20, 0  # the ceil(0.95 * timed)-th smallest
    for position, n in enumerate(counts[:SKETCH_SIZE]):
        seen += n
        if seen >= rank:
            return MIN_INDEX + position
    return previous


def _take(events: list[int]) -> list[int]:
    """Everything appended so far, leaving whatever is appended meanwhile (two atomic list operations)."""
    n = len(events)
    chunk = events[:n]
    del events[:n]
    return chunk

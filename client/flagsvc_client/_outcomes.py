"""Outcome aggregation: per (flag, revision, arm) tallies for the current window, cut into wire batches.

Memory is bounded whatever the traffic: at most `max_arms` tallies a window (outcomes beyond are dropped and
counted), each with a latency sketch clamped to a fixed bucket range (sketch.py) and a bounded set of erroring
users. When a bound is reached the window asks to be flushed early (`on_full`).

`add` runs on the application's threads under one short lock; everything else (grouping, collapsing, JSON) runs
when a window is cut, on the flushing thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from flagsvc_client._rules import ArmKey
from flagsvc_client.sketch import bucket_index

# Remembered erroring users across all tallies of a window (the per-arm cap alone would allow max_arms times it).
MAX_ERROR_USERS_PER_WINDOW = 20_000
MAX_BATCH_BYTES = 900_000  # under the server's 1 MiB body limit, with room for the envelope


class ArmTally:
    __slots__ = ("count", "error_users", "errors", "latency", "unremembered")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.error_users: set[object] = set()
        self.unremembered = 0  # errors from users we could not remember: each counted as a new user
        self.latency: dict[int, int] = {}


class OutcomeWindow:
    def __init__(self, max_arms: int, max_error_users: int, on_full: Callable[[], None]) -> None:
        self.lock = threading.Lock()
        self._arms: dict[ArmKey, ArmTally] = {}
        self._max_arms = max_arms
        self._max_error_users = max_error_users
        self._remembered = 0
        self._on_full = on_full
        self.dropped = 0  # outcomes lost to the max_arms bound (lifetime)

    def add(self, key: ArmKey, user_id: object, ok: bool, latency_ms: float | None) -> None:
        index = None if latency_ms is None else bucket_index(latency_ms)  # may raise: before any change
        with self.lock:
            tally = self._arms.get(key)
            if tally is None:
                tally = self._open(key)
                if tally is None:
                    return
            tally.count += 1
            if index is not None:
                latency = tally.latency
                latency[index] = latency.get(index, 0) + 1
            if not ok:
                self._fail(tally, user_id)

    def _open(self, key: ArmKey) -> ArmTally | None:
        if len(self._arms) >= self._max_arms:
            self.dropped += 1
            self._on_full()
            return None
        tally = self._arms[key] = ArmTally()
        if len(self._arms) >= self._max_arms:
            self._on_full()
        return tally

    def _fail(self, tally: ArmTally, user_id: object) -> None:
        tally.errors += 1
        users = tally.error_users
        if user_id in users:
            return
        if len(users) < self._max_error_users and self._remembered < MAX_ERROR_USERS_PER_WINDOW:
            users.add(user_id)
            self._remembered += 1
        else:
            tally.unremembered += 1  # an upper bound on distinct users: never more than `errors`
            self._on_full()

    def cut(self) -> dict[ArmKey, ArmTally]:
        """Take the window's tallies and start an empty window (O(1) under the lock)."""
        with self.lock:
            arms, self._arms, self._remembered = self._arms, {}, 0
        return arms

    def __len__(self) -> int:
        return len(self._arms)


def _collapse(latency: dict[int, int], max_buckets: int) -> dict[int, int]:
    """Fold the lowest buckets into the lowest kept one (DDSketch's collapsing) to meet the wire limit:
    the fastest requests then read a little slower, and every upper quantile the judge uses stays exact."""
    if len(latency) <= max_buckets:
        return latency
    indices = sorted(latency)
    kept = {i: latency[i] for i in indices[-max_buckets:]}
    floor = indices[-max_buckets]
    kept[floor] += sum(latency[i] for i in indices[:-max_buckets])
    return kept


def _arm_wire(tally: ArmTally | None, max_buckets: int) -> dict[str, object]:
    if tally is None:
        return {"count": 0, "errors": 0, "error_users": 0, "latency": {}}
    latency = _collapse(tally.latency, max_buckets)
    return {
        "count": tally.count,
        "errors": tally.errors,
        "error_users": min(tally.errors, len(tally.error_users) + tally.unremembered),
        "latency": {str(i): n for i, n in latency.items()},
    }


def build_batches(arms: dict[ArmKey, ArmTally], max_flags: int, max_buckets: int) -> list[dict[str, object]]:
    """Wire `flags` maps (no batch_id yet), each within the server's limits.

    A batch carries one revision per flag; a window that saw a flag change revision yields a second batch for
    the other revision (the server counts outcomes of a superseded revision as stale).
    """
    import json  # off the import path: only the flushing side needs it

    by_flag: dict[str, dict[int, dict[str, ArmTally]]] = {}
    for (flag, revision, arm), tally in arms.items():
        by_flag.setdefault(flag, {}).setdefault(revision, {})[arm] = tally
    layers: list[list[tuple[str, dict[str, object]]]] = []
    for flag, revisions in by_flag.items():
        for depth, revision in enumerate(sorted(revisions, reverse=True)):
            tallies = revisions[revision]
            entry = {
                "revision": revision,
                "arms": {arm: _arm_wire(tallies.get(arm), max_buckets) for arm in ("stable", "canary")},
            }
            if depth == len(layers):
                layers.append([])
            layers[depth].append((flag, entry))
    batches: list[dict[str, object]] = []
    for layer in layers:
        current: dict[str, object] = {}
        size = 0
        for flag, entry in layer:
            entry_size = len(json.dumps({flag: entry}))
            if current and (len(current) >= max_flags or size + entry_size > MAX_BATCH_BYTES):
                batches.append(current)
                current, size = {}, 0
            current[flag] = entry
            size += entry_size
        if current:
            batches.append(current)
    return batches

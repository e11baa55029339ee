"""Ingesting SDK outcome batches into the store, and reading a flag's live stats.

A batch is validated whole before anything is written (the API's schema); then each flag's entry is added
atomically and once (the store). Entries for unknown flags or for a revision that is no longer current are
dropped and counted: they describe a rollout step that is over.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from flagsvc import metrics
from flagsvc.domain.errors import FlagNotFound
from flagsvc.domain.flag import KEY_PATTERN
from flagsvc.domain.outcomes import counter_fields
from flagsvc.store.base import OutcomeEntry, Store


class OutcomeIngest:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add_batch(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        results: Counter[str] = Counter()
        entries: dict[str, OutcomeEntry] = {}
        for key, entry in batch["flags"].items():
            if not KEY_PATTERN.match(key):
                results["unknown"] += 1
                continue
            increments = counter_fields(entry["arms"])
            if not increments:
                results["empty"] += 1
                continue
            entries[key] = OutcomeEntry(entry["revision"], increments)
        for key, result in (self.store.add_outcomes(batch["batch_id"], entries).items() if entries else ()):
            results[result] += 1
            metrics.OUTCOME_BATCHES.labels(result).inc()
            if result == "accepted":
                for arm, totals in batch["flags"][key]["arms"].items():
                    metrics.OUTCOMES.labels(key, arm, "requests").inc(totals["count"])
                    metrics.OUTCOMES.labels(key, arm, "errors").inc(totals["errors"])
        if results["unknown"]:
            self.store.count_unknown(results["unknown"])
        return {
            "batch_id": batch["batch_id"],
            "accepted": results["accepted"],
            "stale": results["stale"],
            "unknown": results["unknown"],
            "duplicate": results["duplicate"] > 0 and not results["accepted"],
        }

    def stats(self, key: str) -> dict[str, Any]:
        flag = self.store.get(key)
        if flag is None:
            raise FlagNotFound(key)
        totals = self.store.outcome_totals(key, flag.revision)
        return {
            "key": key,
            "revision": flag.revision,
            "state": flag.state.value,
            "percent": flag.percent,
            "arms": {arm: t.summary() for arm, t in totals.items()},
            "ingest": self.store.ingest_counts(key),
            "verdict": (self.store.load_judgement(key) or {}).get("verdict"),
        }

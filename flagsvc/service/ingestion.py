"""Outcome ingestion: SDK outcome batches into the aggregates, and a flag's live stats out of them.

A batch is validated whole before anything is written (the API's schema); then each flag's entry is added
atomically and once (the store). Entries for unknown flags or for a revision that is no longer current are
dropped and counted: they describe a rollout step that is over.
"""

from __future__ import annotations

from collections import Counter

from flagsvc_client.protocol.shapes import FlagStats, OutcomeBatch, OutcomeReceipt

from flagsvc import metrics
from flagsvc.domain.errors import FlagNotFound
from flagsvc.domain.flag import KEY_PATTERN
from flagsvc.domain.outcomes import counter_fields
from flagsvc.store.roles import FlagRepository, JudgeRecords, OutcomeEntry, OutcomeRepository


class OutcomeIngestion:
    def __init__(self, outcomes: OutcomeRepository, flags: FlagRepository, judge_records: JudgeRecords) -> None:
        self._outcomes = outcomes
        self._flags = flags
        self._judge_records = judge_records

    def add_batch(self, batch: OutcomeBatch) -> OutcomeReceipt:
        """A batch the API's schema validated whole."""
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
        for key, result in (self._outcomes.add_outcomes(batch["batch_id"], entries).items() if entries else ()):
            results[result] += 1
            metrics.OUTCOME_BATCHES.labels(result).inc()
            if result == "accepted":
                for arm, totals in batch["flags"][key]["arms"].items():
                    metrics.OUTCOMES.labels(key, arm, "requests").inc(totals["count"])
                    metrics.OUTCOMES.labels(key, arm, "errors").inc(totals["errors"])
        if results["unknown"]:
            self._outcomes.count_unknown(results["unknown"])
        return {
            "batch_id": batch["batch_id"],
            "accepted": results["accepted"],
            "stale": results["stale"],
            "unknown": results["unknown"],
            "duplicate": results["duplicate"] > 0 and not results["accepted"],
        }

    def stats(self, key: str) -> FlagStats:
        flag = self._flags.get(key)
        if flag is None:
            raise FlagNotFound(key)
        totals = self._outcomes.outcome_totals(key, flag.revision)
        record = self._judge_records.load_judgement(key)
        return {
            "key": key,
            "revision": flag.revision,
            "state": flag.state.value,
            "percent": flag.percent,
            "arms": {arm: t.summary() for arm, t in totals.items()},
            "ingest": self._outcomes.ingest_counts(key),
            "verdict": None if record is None or record.verdict is None else dict(record.verdict),
        }

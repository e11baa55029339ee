"""Outcome ingestion: SDK outcome batches into the aggregates, and a flag's live stats out of them.

A batch is validated whole before anything is written: its types by the API's schema, its plausibility here
(`domain.plausibility`: counts its reporter could have served in its window), and each SDK key's rate of batches
(`RateLimiter`). Then each flag's entry is added atomically and once (the store), with the reporter that sent it.
Entries for unknown flags or for a revision that is no longer current are dropped and counted: they describe a
rollout step that is over. So are entries from a reporter the flag's analysis excludes (`reporter_exclusion`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from flagsvc_client.protocol.shapes import FlagStats, OutcomeBatch, OutcomeReceipt, StratumArmStats, StratumStats

from flagsvc import metrics
from flagsvc.domain.errors import FlagNotFound, ImplausibleBatch, RateLimited
from flagsvc.domain.flag import KEY_PATTERN
from flagsvc.domain.outcomes import ArmTotals, counter_fields
from flagsvc.domain.plausibility import PlausibilityLimits, batch_problems
from flagsvc.domain.reporter_influence import influence
from flagsvc.service.rate_limit import RateLimiter
from flagsvc.service.reporter_exclusion import ExcludedReporters
from flagsvc.store.roles import FlagRepository, JudgeRecords, OutcomeEntry, OutcomeRepository


class OutcomeIngestion:
    def __init__(self, outcomes: OutcomeRepository, flags: FlagRepository, judge_records: JudgeRecords, *,
                 limits: PlausibilityLimits | None = None, limiter: RateLimiter | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._outcomes = outcomes
        self._flags = flags
        self._judge_records = judge_records
        self._limits = limits or PlausibilityLimits()
        self._limiter = limiter or RateLimiter(rate=0, burst=1)  # rate 0: unlimited
        self._clock = clock
        self._excluded = ExcludedReporters(flags)

    def add_batch(self, batch: OutcomeBatch, sender: str = "") -> OutcomeReceipt:
        """A batch the API's schema validated whole, from the SDK key named `sender`: RateLimited past the key's
        rate, ImplausibleBatch (nothing counted) when no SDK instance could have sent it."""
        wait = self._limiter.take(sender)
        if wait > 0:
            metrics.OUTCOME_BATCHES.labels("rate_limited").inc()
            raise RateLimited(f"too many outcome batches from {sender!r}; retry in {wait:.2f} s", retry_after=wait)
        problems = batch_problems(batch, self._clock(), self._limits)
        if problems:
            metrics.OUTCOME_BATCHES.labels("implausible").inc()
            raise ImplausibleBatch("the batch is not plausible, nothing was counted", problems)
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
            if batch["reporter"] in self._excluded.of(key, entry["revision"]):
                results["excluded"] += 1  # an operator took this SDK instance out of the flag's analysis
                metrics.OUTCOME_BATCHES.labels("excluded").inc()
                for arm, totals in entry["arms"].items():
                    metrics.EXCLUDED_OUTCOMES.labels(key, arm).inc(totals["count"])
                continue
            entries[key] = OutcomeEntry(entry["revision"], increments, batch["reporter"],
                                        (batch["window"]["start"], batch["window"]["end"]))
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
            "excluded": results["excluded"],
            "overlapping": results["overlapping"],
        }

    def verdict(self, key: str) -> dict[str, Any] | None:
        """The judge's last verdict on the flag (as `stats(key)["verdict"]`), read alone: one read of the judge's
        record, none of the arms' totals or the reporters' (the console asks for every listed flag's, often)."""
        record = self._judge_records.load_judgement(key)
        return None if record is None or record.verdict is None else dict(record.verdict)

    def stats(self, key: str) -> FlagStats:
        flag = self._flags.get(key)
        if flag is None:
            raise FlagNotFound(key)
        totals = self._outcomes.outcome_totals(key, flag.revision)
        record = self._judge_records.load_judgement(key)
        reporters = influence(self._outcomes.reporter_totals(key, flag.revision)).summary()
        stats: FlagStats = {
            "key": key,
            "revision": flag.revision,
            "state": flag.state.value,
            "percent": flag.percent,
            "arms": {arm: t.summary() for arm, t in totals.items()},
            "ingest": self._outcomes.ingest_counts(key),
            "verdict": None if record is None or record.verdict is None else dict(record.verdict),
            "reporters": {**reporters,  # type: ignore[typeddict-item]  # summary() builds exactly ReportersDoc
                          "excluded": list(flag.analysis.get("excluded_reporters") or ())},
            "strata": [],
        }
        if flag.analysis.get("stratify_by") or any(t.strata for t in totals.values()):
            current = record is not None and record.revision == flag.revision and record.verdict is not None
            evidence = record.verdict.get("evidence") if current else None  # type: ignore[union-attr]
            stats["strata"] = stratum_stats(totals, evidence)
        return stats


def stratum_stats(totals: dict[str, ArmTotals], evidence: object) -> list[StratumStats]:
    """Each stratum's rates per arm (the requests under no label as ""), with the stratum's sample-ratio check
    from the judge's last look at this revision (its evidence's `strata` rows), if any."""
    splits: dict[str, object] = {}
    if isinstance(evidence, dict):
        for row in evidence.get("strata") or ():
            if isinstance(row, dict):
                splits[str(row.get("stratum"))] = row.get("split")
    stable, canary = totals["stable"], totals["canary"]
    labels = sorted(set(stable.strata) | set(canary.strata))

    def arm(t: ArmTotals, label: str | None) -> StratumArmStats:
        if label is None:  # the rest: requests under no label
            n = max(t.count - sum(r[0] for r in t.strata.values()), 0)
            e = min(max(t.errors - sum(r[1] for r in t.strata.values()), 0), n)
        else:
            n, e, _ = t.strata.get(label, (0, 0, 0))
        return {"requests": n, "errors": e, "error_rate": round(e / n, 6) if n else None}

    rows: list[StratumStats] = [
        {"stratum": label, "stable": arm(stable, label), "canary": arm(canary, label),
         "split": splits.get(label)}  # type: ignore[typeddict-item]
        for label in labels
    ]
    rest = {"stratum": "", "stable": arm(stable, None), "canary": arm(canary, None), "split": splits.get("")}
    if rest["stable"]["requests"] or rest["canary"]["requests"]:  # type: ignore[index]
        rows.append(rest)  # type: ignore[arg-type]
    return rows

"""Prometheus metrics.

Process-local metrics (HTTP requests, outcome batches, controller decisions, streams) use prometheus-client's
multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set (`flagsvc serve` sets it for its gunicorn workers), so a
scrape of any worker sees the whole server. Per-flag rollout gauges are read from the store at scrape time, so
they follow the flag whichever process or replica changed it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from flagsvc.domain.flag import Flag, State
from flagsvc.domain.judge_record import JudgeRecord
from flagsvc.store.roles import FlagRepository, JudgeRecords

HTTP_REQUESTS = Counter("flagsvc_http_requests_total", "HTTP requests answered", ["endpoint", "method", "status"])
HTTP_LATENCY = Histogram(
    "flagsvc_http_request_duration_seconds", "Time to answer an HTTP request (streams excluded)", ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
OUTCOMES = Counter("flagsvc_outcomes_ingested_total", "Outcomes added to rollout aggregates", ["flag", "arm", "kind"])
OUTCOME_BATCHES = Counter("flagsvc_outcome_batch_entries_total", "Outcome batch entries by result", ["result"])
EXCLUDED_OUTCOMES = Counter("flagsvc_outcomes_excluded_total",
                            "Outcomes (requests) dropped because the flag's analysis excludes their reporter",
                            ["flag", "arm"])
DECISIONS = Counter("flagsvc_controller_decisions_total", "Judge verdicts reached by the controller",
                    ["decision", "applied"])
LEADER = Gauge("flagsvc_controller_leader", "1 while this process's controller holds the lease",
               multiprocess_mode="livemax")
STREAMS = Gauge("flagsvc_sse_clients", "SDK streams open", multiprocess_mode="livesum")
LOOP_LAG = Histogram(
    "flagsvc_event_loop_lag_seconds", "How late a worker's event loop ran a timer (a busy or stalled loop delays "
    "every request and stream of that worker)", buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
REDIS_ERRORS = Counter("flagsvc_redis_errors_total", "Requests that failed because Redis did not answer")


class FlagStateCollector(Collector):
    """Per-flag rollout gauges, read from the store when scraped."""

    def __init__(self, flags: FlagRepository) -> None:
        self.flags = flags

    def collect(self) -> Iterator[GaugeMetricFamily]:
        percent = GaugeMetricFamily("flagsvc_flag_percent", "Current rollout percentage", labels=["flag"])
        stage = GaugeMetricFamily("flagsvc_flag_stage_index", "Current rollout stage (0-based)", labels=["flag"])
        revision = GaugeMetricFamily("flagsvc_flag_revision", "Current revision", labels=["flag"])
        state = GaugeMetricFamily("flagsvc_flag_state", "1 for the flag's current state", labels=["flag", "state"])
        readable = GaugeMetricFamily("flagsvc_flag_state_readable",
                                     "1 when this scrape could read the flags from Redis (their gauges are missing "
                                     "while 0)")
        try:
            found = self.flags.list_flags()
        except Exception:  # Redis is down: the process metrics (errors, streams) matter most now
            REDIS_ERRORS.inc()
            readable.add_metric([], 0.0)
            yield readable
            return
        readable.add_metric([], 1.0)
        yield readable
        for flag in found:
            percent.add_metric([flag.key], flag.percent)
            stage.add_metric([flag.key], flag.stage_index)
            revision.add_metric([flag.key], flag.revision)
            for name in State:
                state.add_metric([flag.key, name.value], 1.0 if flag.state == name else 0.0)
        yield from (percent, stage, revision, state)


def render(flags: FlagRepository) -> bytes:
    """The scrape body: this server's process metrics (all workers) and the flags' gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
    else:
        from prometheus_client import REGISTRY as processes
    gauges = CollectorRegistry()
    gauges.register(FlagStateCollector(flags))
    if isinstance(flags, JudgedFlags):
        gauges.register(BlindArmCollector(flags))
        gauges.register(HeldRolloutCollector(flags))
    return generate_latest(processes) + generate_latest(gauges)

# Dataset resets (flagsvc/service/dataset.py): counted once per reset by the server that noticed it first.
DATASET_RESETS = Counter("flagsvc_dataset_resets_total", "Resets of the flag dataset that made flags vanish")
DATASET_FLAGS_MISSING = Gauge("flagsvc_dataset_flags_missing",
                              "Flags that vanished at the last dataset reset and do not exist again yet",
                              multiprocess_mode="livemax")


# Blind arms: a rolling flag whose last verdict is "blind" (one arm's outcomes missing) holds until someone fixes
# the application's instrumentation. Read at scrape time from the controller's judge record, like the gauges above.
@runtime_checkable
class JudgedFlags(FlagRepository, JudgeRecords, Protocol):
    """Flags and the controller's judge records (the store has both roles)."""


class BlindArmCollector(Collector):
    """`flagsvc_flag_blind{flag,arm}`: 1 for the arm the judge cannot see while a rolling flag's last verdict (on
    its current revision) is blind, 0 for the other arms of rolling flags. One judge-record read per rolling flag."""

    def __init__(self, store: JudgedFlags) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        blind = GaugeMetricFamily("flagsvc_flag_blind", "1 while the judge's last verdict on a rolling flag is "
                                  "'blind': no (or far too few) outcomes from this arm", labels=["flag", "arm"])
        try:
            for flag in self.store.list_flags():
                if flag.state == State.ROLLING:
                    arm = _blind_arm(flag, self.store.load_judgement(flag.key))
                    for name in ("stable", "canary"):
                        blind.add_metric([flag.key, name], 1.0 if arm == name else 0.0)
        except Exception:  # Redis is down: flagsvc_flag_state_readable says so; no blind gauges this scrape
            return
        yield blind


def _blind_arm(flag: Flag, record: JudgeRecord | None) -> object:
    """The arm a blind verdict on the flag's current revision names (None: not blind, or about another flag of the
    same key, or an older revision)."""
    verdict = record.verdict if record is not None and record.created_at == flag.created_at else None
    if verdict is None or verdict.get("decision") != "blind" or verdict.get("revision") != flag.revision:
        return None
    found = verdict.get("evidence", {}).get("blind")
    return found.get("arm") if isinstance(found, dict) else None


# Holds the controller chose over the judge's verdict (flagsvc/service/reporter_check.py, stage_deadline.py): one
# reporter drives an advance or a rollback, or a stage outlived max_stage_seconds undecided. Read at scrape time
# from the judge record, like the blind gauge.
class HeldRolloutCollector(Collector):
    """`flagsvc_flag_reporter_driven{flag}` and `flagsvc_flag_stage_overdue{flag}`: 1 while the last verdict on a
    rolling flag's current revision says so, 0 for the other rolling flags."""

    def __init__(self, store: JudgedFlags) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        driven = GaugeMetricFamily("flagsvc_flag_reporter_driven", "1 while the controller holds a rolling flag "
                                   "because one reporter (SDK instance) drives the judge's verdict", labels=["flag"])
        overdue = GaugeMetricFamily("flagsvc_flag_stage_overdue", "1 while a rolling flag's stage has lasted longer "
                                    "than its max_stage_seconds without a decision", labels=["flag"])
        try:
            for flag in self.store.list_flags():
                if flag.state == State.ROLLING:
                    evidence = _current_evidence(flag, self.store.load_judgement(flag.key))
                    reporters, late = evidence.get("reporters"), evidence.get("overdue")
                    held = isinstance(reporters, dict) and bool(reporters.get("driven_by"))
                    driven.add_metric([flag.key], 1.0 if held else 0.0)
                    overdue.add_metric([flag.key], 1.0 if isinstance(late, dict) and not late.get("acted") else 0.0)
        except Exception:  # Redis is down: flagsvc_flag_state_readable says so
            return
        yield from (driven, overdue)


def _current_evidence(flag: Flag, record: JudgeRecord | None) -> dict[str, object]:
    verdict = record.verdict if record is not None and record.created_at == flag.created_at else None
    if verdict is None or verdict.get("revision") != flag.revision or verdict.get("decision") not in ("hold", "blind"):
        return {}
    evidence = verdict.get("evidence")
    return evidence if isinstance(evidence, dict) else {}

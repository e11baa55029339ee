"""Prometheus metrics.

Process-local metrics (HTTP requests, outcome batches, controller decisions, streams) use prometheus-client's
multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set (`flagsvc serve` sets it for its gunicorn workers), so a
scrape of any worker sees the whole server. Per-flag rollout gauges are read from the store at scrape time, so
they follow the flag whichever process or replica changed it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from flagsvc.domain.flag import State
from flagsvc.store.roles import FlagRepository

HTTP_REQUESTS = Counter("flagsvc_http_requests_total", "HTTP requests answered", ["endpoint", "method", "status"])
HTTP_LATENCY = Histogram(
    "flagsvc_http_request_duration_seconds", "Time to answer an HTTP request (streams excluded)", ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
OUTCOMES = Counter("flagsvc_outcomes_ingested_total", "Outcomes added to rollout aggregates", ["flag", "arm", "kind"])
OUTCOME_BATCHES = Counter("flagsvc_outcome_batch_entries_total", "Outcome batch entries by result", ["result"])
DECISIONS = Counter("flagsvc_controller_decisions_total", "Judge verdicts reached by the controller",
                    ["decision", "applied"])
LEADER = Gauge("flagsvc_controller_leader", "1 while this process's controller holds the lease",
               multiprocess_mode="livemax")
STREAMS = Gauge("flagsvc_sse_clients", "SDK streams open", multiprocess_mode="livesum")
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
    return generate_latest(processes) + generate_latest(gauges)

# Dataset resets (flagsvc/service/dataset.py): counted once per reset by the server that noticed it first.
DATASET_RESETS = Counter("flagsvc_dataset_resets_total", "Resets of the flag dataset that made flags vanish")
DATASET_FLAGS_MISSING = Gauge("flagsvc_dataset_flags_missing",
                              "Flags that vanished at the last dataset reset and do not exist again yet",
                              multiprocess_mode="livemax")

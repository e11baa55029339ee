"""Prometheus metrics for a FlagClient, in the application's own registry.

    from flagsvc_client.prometheus import instrument
    instrument(client)                     # prometheus_client.REGISTRY, or registry=...

Optional: needs `prometheus-client` (`pip install flagsvc-client[prometheus]`), which the SDK itself never
imports. Every figure is read from the client when scraped (`client.stats`, `client.evaluation_counts()`), so
nothing is added to the hot path but the evaluation count, which `instrument` turns on (pass
`evaluations=False` to leave it off). One client per registry: a second one's metric names would collide.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from flagsvc_client.client import FlagClient
from flagsvc_client.result import Status

PREFIX = "flagsvc_client"


class ClientCollector(Collector):
    def __init__(self, client: FlagClient, prefix: str = PREFIX) -> None:
        self.client = client
        self.prefix = prefix

    def describe(self) -> list[Any]:
        return list(self.collect())  # so that registering a second client's names fails at once

    def collect(self) -> Iterator[Any]:
        p = self.prefix
        stats = self.client.stats
        status = GaugeMetricFamily(f"{p}_config_status", "1 for the client's config status", labels=["status"])
        for name in (Status.READY, Status.STALE, Status.NOT_READY):
            status.add_metric([str(name)], 1.0 if stats.get("status") == name else 0.0)
        yield status
        snapshots = CounterMetricFamily(f"{p}_snapshots", "Config snapshots received, by result", labels=["result"])
        snapshots.add_metric(["applied"], stats.get("snapshots_applied", 0))
        snapshots.add_metric(["rejected"], stats.get("snapshots_rejected", 0))
        yield snapshots
        batches = CounterMetricFamily(f"{p}_outcome_batches", "Outcome batches, by what happened to them",
                                      labels=["result"])
        for result in ("sent", "acknowledged", "retried", "expired", "rejected"):
            batches.add_metric([result], stats.get(f"batches_{result}", 0))
        yield batches
        failures = CounterMetricFamily(
            f"{p}_flush_failures", "Outcome batch sends that failed (each is retried until acknowledged or expired)")
        failures.add_metric([], stats.get("batches_retried", 0))
        yield failures
        outcomes = CounterMetricFamily(f"{p}_outcomes", "Outcomes, by what happened to them", labels=["result"])
        for result in ("acknowledged", "expired", "rejected"):
            outcomes.add_metric([result], stats.get(f"outcomes_{result}", 0))
        outcomes.add_metric(["dropped_arm_limit"], stats.get("outcomes_dropped_arm_limit", 0))
        yield outcomes
        pending = GaugeMetricFamily(f"{p}_outcome_batches_pending", "Outcome batches waiting to be acknowledged")
        pending.add_metric([], stats.get("batches_pending", 0))
        yield pending
        evaluations = CounterMetricFamily(f"{p}_evaluations", "Flag evaluations answered, by flag and arm "
                                          "(counted once instrumented)", labels=["flag", "arm"])
        for (flag, arm), n in sorted(self.client.evaluation_counts().items()):
            evaluations.add_metric([flag, arm], n)
        yield evaluations


def instrument(client: FlagClient, registry: CollectorRegistry | None = None, *, evaluations: bool = True,
               prefix: str = PREFIX) -> ClientCollector:
    """Register the client's metrics in `registry` (default: prometheus_client's global one)."""
    if evaluations:
        client.count_evaluations()
    collector = ClientCollector(client, prefix)
    (REGISTRY if registry is None else registry).register(collector)
    return collector

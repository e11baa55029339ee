"""How the server stands, for its health endpoints: whether the store answers, and the Prometheus scrape."""

from __future__ import annotations

from flagsvc import metrics
from flagsvc.store.roles import FlagRepository, StoreHealth


class ServerStatus:
    def __init__(self, health: StoreHealth, flags: FlagRepository) -> None:
        self._health = health
        self._flags = flags

    @property
    def outage_errors(self) -> tuple[type[Exception], ...]:
        """What the store raises when it does not answer."""
        return self._health.outage_errors

    def store_reachable(self) -> bool:
        return self._health.ping()

    def metrics(self) -> bytes:
        """The scrape body: this server's process metrics (all workers) and the flags' gauges."""
        return metrics.render(self._flags)

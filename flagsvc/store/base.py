"""The one storage interface every store implements, and the shared value types.

Each store keeps a flag and its history together, and changes a flag only by compare-and-set on its revision:
`replace` applies the new flag and its history entry atomically, or not at all. The contract tests in
`tests/contract/` run every implementation through the same behaviour.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol, runtime_checkable

from flagsvc.domain.flag import Flag, HistoryEntry
from flagsvc.domain.outcomes import ArmTotals

HISTORY_CAP = 1_000
IngestResult = Literal["accepted", "duplicate", "stale", "unknown"]


class OutcomeEntry(NamedTuple):
    """One flag's part of an outcome batch: the revision the SDK measured, and its counters (see
    domain.outcomes.counter_fields)."""

    revision: int
    increments: dict[str, int]


@dataclass(frozen=True)
class ConfigVersion:
    """Where the whole configuration stands: `version` grows on every change within one `epoch` (dataset)."""

    epoch: str
    version: int

    @property
    def etag(self) -> str:
        return f'"{self.epoch}-{self.version}"'


@runtime_checkable
class Store(Protocol):
    def get(self, key: str) -> Flag | None:
        """The flag, or None."""

    def list_flags(self) -> list[Flag]:
        """Every flag, ordered by key."""

    def create(self, flag: Flag, entry: HistoryEntry) -> None:
        """Store a new flag with its first history entry; FlagExists when the key is taken."""

    def replace(self, flag: Flag, entry: HistoryEntry, *, expected_revision: int, fence: int | None = None) -> None:
        """Compare-and-set: RevisionConflict unless the stored revision is `expected_revision`,
        FlagNotFound when there is no such flag. A controller passes its fencing token as `fence`:
        LeadershipLost when a newer leader fenced the flag."""

    def raise_fence(self, key: str, token: int) -> bool:
        """Mark the flag as acted on by the leader with `token`; False when a newer token is there."""

    def acquire_lease(self, owner: str, ttl_seconds: float) -> int | None:
        """Take or renew the controller lease: the fencing token while `owner` leads, else None."""

    def release_lease(self, owner: str) -> None:
        """Give the lease up at once (a clean shutdown), if `owner` holds it."""

    def save_judgement(self, key: str, data: dict) -> None:
        """Keep the judge's state and last verdict for the flag (data carries its revision)."""

    def load_judgement(self, key: str) -> dict | None:
        """What save_judgement kept, or None."""

    def delete(self, key: str) -> bool:
        """Remove a flag and its history; False when there was none."""

    def history(self, key: str, limit: int = 100) -> list[HistoryEntry]:
        """Newest first, at most `limit` (the store keeps the last HISTORY_CAP)."""

    def config_version(self) -> ConfigVersion:
        """The current version of the whole configuration."""

    def bump_config_version(self) -> ConfigVersion:
        """Announce a change: +1 on the version, and tell subscribers."""

    def add_outcomes(self, batch_id: str, entries: Mapping[str, OutcomeEntry]) -> dict[str, IngestResult]:
        """Add one batch's counters to each flag's aggregates: per flag atomically and once per (flag, batch_id),
        and only when the entry's revision is the flag's current one. Flags are independent of each other (a
        retried batch adds only what was not added yet), so a store may send them all in one round trip."""

    def outcome_totals(self, key: str, revision: int) -> dict[str, ArmTotals]:
        """The aggregates of one revision, per arm."""

    def ingest_counts(self, key: str) -> dict[str, int]:
        """How many batches were accepted, duplicate or stale for this flag."""

    def count_unknown(self, n: int) -> None:
        """Count batch entries for flags that do not exist."""

    def listen_changes(self, on_change: Callable[[], None], stop: threading.Event) -> None:
        """Block, calling `on_change` once subscribed and after every announced config change (from any
        process), until `stop`."""

    def ping(self) -> bool:
        """True when the backing storage answers."""

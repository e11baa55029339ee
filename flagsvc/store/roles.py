"""What storage does for flagsvc, as small roles, and the value types they trade in.

Each consumer asks for the role it uses and nothing more: operator commands a `FlagRepository`, outcome ingestion
an `OutcomeRepository`, the controller the roles of a rollout (`RolloutStore`), the change feed a `ChangeBus`.
Every store (memory, Redis) implements them all; `Store` names that whole. `tests/contract/` holds one suite per
role and runs each against every store.

Each store keeps a flag and its history together, and changes a flag only by compare-and-set on its revision:
`replace` applies the new flag and its history entry atomically, or not at all. Stores take a clock for what
expires (the controller lease), so tests move time instead of waiting for it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol, runtime_checkable

from flagsvc.domain.flag import Flag, HistoryEntry
from flagsvc.domain.judge_record import JudgeRecord
from flagsvc.domain.outcomes import ArmTotals

HISTORY_CAP = 1_000


def new_epoch() -> str:
    """A fresh epoch for a revision's aggregates: random, so a restarted store never repeats the last one."""
    return str(uuid.uuid4().int >> 64)
IngestResult = Literal["accepted", "duplicate", "stale", "unknown", "overlapping"]
MAX_NAMED_REPORTERS = 1_000  # reporters a flag's revision keeps by name; the rest add up as OTHER_REPORTERS
OTHER_REPORTERS = "~others"
Clock = Callable[[], float]


class OutcomeEntry(NamedTuple):
    """One flag's part of an outcome batch: the revision the SDK measured, its counters (see
    domain.outcomes.counter_fields), and the SDK instance that reported them."""

    revision: int
    increments: dict[str, int]
    reporter: str = ""
    window: tuple[float, float] = (0.0, 0.0)  # when the reporter recorded them (Unix seconds)


IDEMPOTENCY_TTL = 24 * 3600  # how long a write's Idempotency-Key is remembered


class Idempotency(NamedTuple):
    """A write's Idempotency-Key, stored atomically with the change it made: a retry of the same request then
    gets the first answer and changes nothing, even when the first answer was lost (an ambiguous 503)."""

    key: str
    fingerprint: str  # what the request was: the same key sent with another request is refused
    answer: str = ""  # the first answer's body (the flag as JSON; "" for a delete)


class AlreadyApplied(Exception):
    """Raised by a write whose idempotency key was used before: nothing was done this time."""

    def __init__(self, fingerprint: str, answer: str) -> None:
        super().__init__("this idempotency key was used before")
        self.fingerprint = fingerprint
        self.answer = answer


class ReporterTotals(NamedTuple):
    """What one reporter (SDK instance) sent for one arm of one revision."""

    requests: int = 0
    errors: int = 0


def reporter_totals_from_fields(fields: Mapping[str, str | int]) -> dict[str, dict[str, ReporterTotals]]:
    """Flat `<reporter>|<arm>:count|errors` counters -> {reporter: {arm: ReporterTotals}}."""
    raw: dict[str, dict[str, dict[str, int]]] = {}
    for name, value in fields.items():
        reporter, _, rest = name.rpartition("|")
        arm, _, counter = rest.partition(":")
        if reporter and counter in ("count", "errors"):
            raw.setdefault(reporter, {}).setdefault(arm, {})[counter] = int(value)
    return {reporter: {arm: ReporterTotals(c.get("count", 0), c.get("errors", 0)) for arm, c in arms.items()}
            for reporter, arms in raw.items()}


@dataclass(frozen=True)
class ConfigVersion:
    """Where the whole configuration stands: `version` grows on every change within one `epoch` (dataset)."""

    epoch: str
    version: int

    @property
    def etag(self) -> str:
        return f'"{self.epoch}-{self.version}"'


@runtime_checkable
class FlagRepository(Protocol):
    """Flags and their history."""

    def get(self, key: str) -> Flag | None:
        """The flag, or None."""

    def list_flags(self) -> list[Flag]:
        """Every flag, ordered by key."""

    def create(self, flag: Flag, entry: HistoryEntry, *, idempotency: Idempotency | None = None) -> None:
        """Store a new flag with its first history entry; FlagExists when the key is taken. With `idempotency`,
        the key is remembered with the change (IDEMPOTENCY_TTL), and a key seen before raises AlreadyApplied
        instead of doing anything (the same for every write below)."""

    def replace(self, flag: Flag, entry: HistoryEntry, *, expected_revision: int, fence: int | None = None,
                idempotency: Idempotency | None = None) -> None:
        """Compare-and-set: RevisionConflict unless the stored revision is `expected_revision`,
        FlagNotFound when there is no such flag. A controller passes its fencing token as `fence`:
        LeadershipLost when a newer leader fenced the flag (see `Leadership.raise_fence`)."""

    def delete(self, key: str, *, expected_revision: int | None = None,
               idempotency: Idempotency | None = None) -> bool:
        """Remove a flag with its history, outcomes and judge record; False when there was none;
        RevisionConflict (nothing removed) when `expected_revision` is given and the flag is at another."""

    def idempotent_answer(self, key: str, idempotency_key: str) -> AlreadyApplied | None:
        """What a write to flag `key` with this idempotency key did, if one did (within IDEMPOTENCY_TTL)."""

    def history(self, key: str, limit: int = 100) -> list[HistoryEntry]:
        """Newest first, at most `limit` (the store keeps the last HISTORY_CAP)."""


@runtime_checkable
class OutcomeRepository(Protocol):
    """The per-revision outcome aggregates SDKs report."""

    def add_outcomes(self, batch_id: str, entries: Mapping[str, OutcomeEntry]) -> dict[str, IngestResult]:
        """Add one batch's counters to each flag's aggregates: per flag atomically and once per (flag, batch_id),
        and only when the entry's revision is the flag's current one, and its window does not reach back into
        one its reporter already sent for the revision ('overlapping': the same moments counted twice). The
        first MAX_NAMED_REPORTERS reporters of a revision are kept by name, the rest as OTHER_REPORTERS. Flags
        are independent of each other (a retried batch adds only what was not added yet), so a store may send
        them all in one round trip."""

    def outcome_totals(self, key: str, revision: int) -> dict[str, ArmTotals]:
        """The aggregates of one revision, per arm, each carrying the aggregates' `epoch`: a random id set when
        the first batch starts them, so a reset in between two reads shows even when no total went down."""

    def reporter_totals(self, key: str, revision: int) -> dict[str, dict[str, ReporterTotals]]:
        """Per reporter, per arm, what the accepted batches of one revision added (the judge weighs reporters
        against each other with it)."""

    def ingest_counts(self, key: str) -> dict[str, int]:
        """How many batches were accepted, duplicate or stale for this flag."""

    def count_unknown(self, n: int) -> None:
        """Count batch entries for flags that do not exist."""


@runtime_checkable
class Leadership(Protocol):
    """One controller leader among every process and replica, with fencing tokens."""

    def acquire_lease(self, owner: str, ttl_seconds: float) -> int | None:
        """Take or renew the controller lease: the fencing token while `owner` leads, else None."""

    def release_lease(self, owner: str) -> None:
        """Give the lease up at once (a clean shutdown), if `owner` holds it."""

    def raise_fence(self, key: str, token: int) -> bool:
        """Mark the flag as acted on by the leader with `token`; False when a newer token is there."""


@runtime_checkable
class JudgeRecords(Protocol):
    """What the judge keeps between looks at a flag, and its last verdict."""

    def save_judgement(self, key: str, record: JudgeRecord) -> None:
        """Keep the record for the flag (it carries the revision it belongs to)."""

    def load_judgement(self, key: str) -> JudgeRecord | None:
        """What save_judgement kept, or None (also when what is kept cannot be read)."""


@runtime_checkable
class ChangeBus(Protocol):
    """The configuration's version, and the announcement of every change to every process."""

    def config_version(self) -> ConfigVersion:
        """The current version of the whole configuration."""

    def bump_config_version(self) -> ConfigVersion:
        """Announce a change: +1 on the version, and tell subscribers."""

    def restart_epoch(self, expected: str) -> ConfigVersion:
        """Name the dataset anew (a fresh epoch), if it is still `expected`, and announce it: SDKs then take the
        current config whatever version they hold (for a version that went backwards, a restored old copy)."""

    def listen_changes(self, on_change: Callable[[], None], stop: threading.Event) -> None:
        """Block, calling `on_change` once subscribed and after every announced config change (from any
        process), until `stop`."""


@runtime_checkable
class StoreHealth(Protocol):
    # The exceptions that mean "the storage did not answer": the API turns them into a 503, nothing changed.
    outage_errors: tuple[type[Exception], ...]

    def ping(self) -> bool:
        """True when the backing storage answers."""

    def dataset_notice(self) -> str | None:
        """The open notice that this dataset was reset and flags vanished (a document the application tier
        writes, flagsvc.service.dataset), or None."""

    def keep_dataset_notice(self, notice: str | None, *, only_if_absent: bool = False) -> bool:
        """Keep `notice` for every process to read (None: remove it); with `only_if_absent`, only when no notice
        is kept. True when something was written or removed."""


@runtime_checkable
class RolloutStore(FlagRepository, OutcomeRepository, Leadership, JudgeRecords, Protocol):
    """What the rollout controller reads and writes."""


@runtime_checkable
class Store(RolloutStore, ChangeBus, StoreHealth, Protocol):
    """Every role: what a storage implementation provides, and what the application is assembled from."""

"""The JSON documents SDKs and the server exchange (docs/protocol.md), as typed definitions.

These are the one statement of each shape: the SDK builds and reads them, the server validates and serves them,
and the server's OpenAPI document is generated from them. Their limits are in `limits`.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

Arm = Literal["stable", "canary"]


class SnapshotFlag(TypedDict):
    """What an SDK needs to evaluate one flag, and nothing more. SDKs must accept states they do not know.
    `requires` lists the features (limits.KNOWN_FEATURES) evaluating the flag takes: an SDK that lacks one answers
    the caller's default (docs/protocol.md); the targeting fields come with their feature (docs/targeting.md)."""

    key: str
    state: str
    percent: float
    revision: int
    salt: str
    allow: list[str]
    deny: list[str]
    requires: NotRequired[list[str]]
    excluded_segments: NotRequired[list[str]]
    eligible_segments: NotRequired[list[str]]
    bucket_by: NotRequired[str]
    # the context attributes (1 or 2) whose values label the strata outcomes are counted in (docs/protocol.md,
    # "Strata"); reporting only, so not a `requires` feature
    stratify_by: NotRequired[list[str]]


class SnapshotCondition(TypedDict):
    """One condition of a segment (protocol.targeting): the attribute, the operator, its values."""

    attribute: str
    op: str
    values: list[Any]


class SnapshotSegment(TypedDict):
    """A segment: a context is in it when all of its conditions hold."""

    conditions: list[SnapshotCondition]


class SnapshotDoc(TypedDict):
    """The whole SDK configuration (GET /sdk/v1/flags, and each event of /sdk/v1/stream). `epoch` names the
    dataset; `version` grows on every change within it; the ETag is "<epoch>-<version>". `segments`, when any
    exist, by name."""

    epoch: str
    version: int
    flags: dict[str, SnapshotFlag]
    segments: NotRequired[dict[str, SnapshotSegment]]


class ArmOutcome(TypedDict):
    """One arm's outcomes in one batch: requests, errors, users who saw an error, and a latency sketch
    (`{"<bucket index>": count}`, see `protocol.sketch`)."""

    count: int
    errors: int
    error_users: NotRequired[int]
    latency: NotRequired[dict[str, int]]
    # per user bucket (0 .. limits.UNIT_BUCKETS-1): [requests, errors] or [requests, errors, slow requests];
    # optional (older SDKs leave it out)
    units: NotRequired[dict[str, list[int]]]
    # per stratum label of the flag's `stratify_by` (at most limits.MAX_STRATA labels, and limits.STRATUM_OTHER):
    # [requests, errors, erroring users]; outcomes under no label are not listed (the arm's totals minus these)
    strata: NotRequired[dict[str, list[int]]]


class FlagOutcome(TypedDict):
    """One flag's part of a batch, for the revision the SDK evaluated."""

    revision: int
    arms: dict[str, ArmOutcome]


class BatchWindow(TypedDict):
    """The wall-clock span (Unix seconds) in which a batch's outcomes were recorded."""

    start: float
    end: float


class OutcomeBatch(TypedDict):
    """POST /sdk/v1/outcomes. `batch_id` stays the same across retries, so a batch is counted once. `reporter`
    names the SDK instance (a random id, new in every process), `window` when its outcomes were recorded: the
    server refuses counts that no instance could have served in that time."""

    batch_id: str
    reporter: str
    window: BatchWindow
    flags: dict[str, FlagOutcome]
    sent_at: NotRequired[float]
    sdk: NotRequired[str]


class OutcomeReceipt(TypedDict):
    """The answer to a batch: how many flag entries were accepted, stale (an older revision), unknown; and
    whether the whole batch had been applied before; how many were dropped because their flag excludes this
    reporter."""

    batch_id: str
    accepted: int
    stale: int
    unknown: int
    duplicate: bool
    excluded: int  # entries dropped: the flag's analysis excludes this reporter (an operator's decision)
    overlapping: int  # entries dropped: their reporter already sent a window overlapping this one


class ArmStats(TypedDict):
    """One arm's live totals for the flag's current revision."""

    count: int
    errors: int
    error_users: int
    error_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class ReporterShareDoc(TypedDict):
    """One reporter (SDK instance) of the current revision: its totals, and its largest share of the four counters
    (`share_of`: "canary errors", say)."""

    reporter: str
    share: float
    share_of: str
    stable_requests: int
    stable_errors: int
    canary_requests: int
    canary_errors: int


class OtherReportersDoc(TypedDict):
    """The reporters past the top ones, together."""

    reporters: int
    requests: int
    share_of_requests: float


class ReportersDoc(TypedDict):
    """The current revision's reporters: how many, the most influential (at most 5), the others together, and the
    reporters the flag's analysis excludes."""

    reporters: int
    top: list[ReporterShareDoc]
    others: OtherReportersDoc
    excluded: list[str]


class StratumArmStats(TypedDict):
    """One arm's requests and errors in one stratum (as in the verdict's evidence)."""

    requests: int
    errors: int
    error_rate: float | None


class StratumStats(TypedDict):
    """One stratum of a stratified flag's current revision ("" is the requests under no label): each arm's
    rates, and the sample-ratio check of this stratum at the judge's last look (None before any)."""

    stratum: str
    stable: StratumArmStats
    canary: StratumArmStats
    split: dict[str, Any] | None


class FlagStats(TypedDict):
    """GET /api/v1/flags/<key>/stats: the current revision's totals per arm, batch counts, the judge's last
    verdict, the reporters."""

    key: str
    revision: int
    state: str
    percent: float
    arms: dict[str, ArmStats]
    ingest: dict[str, int]
    verdict: dict[str, Any] | None
    reporters: ReportersDoc
    # per stratum, for a flag whose analysis names `stratify_by` or whose outcomes carry strata (else empty)
    strata: list[StratumStats]

"""What the canary judge keeps between looks (docs/judge.md, "State"): per-arm totals seen, the stage tests and
the rollout-wide test, as frozen values with a versioned JSON form. The controller stores it next to the flag's
revision and hands it back; a later revision of the same rollout carries the rollout test on (`carry_to`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from flagsvc_client.protocol.sketch import MAX_MS

STATE_VERSION = 2
READABLE_VERSIONS = frozenset({1, 2})  # version 1 had no epoch: read as "" (the first look adopts the current one)
MAX_COUNT = 10**15  # counts above this are not traffic but corruption: no flag sees 10^15 requests in a stage
# A log-likelihood ratio above this is far past any threshold (ln(1/alpha) < 30); far below zero it is a long
# healthy run on a busy flag, so the floor is loose.
MAX_STATISTIC, MIN_STATISTIC = 1e6, -1e12


@dataclass(frozen=True)
class Seen:
    """One arm's cumulative totals at the last look, so the next look takes only what arrived since."""

    requests: int = 0
    errors: int = 0
    error_users: int = 0
    timed: int = 0  # latency samples, counted once the slow threshold is fixed
    slow: int = 0  # latency samples above the slow threshold


@dataclass(frozen=True)
class StageTest:
    """One metric's test for this stage alone, at the stage's ratio: decides acceptance, and (after the first
    stage) rollback for regressions that begin late."""

    llr: float = 0.0  # this revision's, untempered
    canary_events: int = 0
    stable_events: int = 0
    canary_exposure: int = 0
    stable_exposure: int = 0
    banked: float = 0.0  # earlier revisions' evidence of this stage (a paused and resumed stage), tempered

    def add(self, llr: float, x_c: int, x_s: int, n_c: int, n_s: int) -> StageTest:
        return replace(
            self, llr=self.llr + llr, canary_events=self.canary_events + x_c,
            stable_events=self.stable_events + x_s, canary_exposure=self.canary_exposure + max(n_c, 0),
            stable_exposure=self.stable_exposure + max(n_s, 0),
        )

    def statistic(self, dispersion: float = 1.0) -> float:
        """The test's log-likelihood ratio, this revision's tempered by its design effect (docs/judge.md)."""
        return self.banked + self.llr / dispersion

    def banked_at(self, dispersion: float) -> StageTest:
        return replace(self, llr=0.0, banked=self.statistic(dispersion))


@dataclass(frozen=True)
class SplitTest:
    """The stage's request split, for the sample-ratio check: canary and all requests counted at this stage
    (across the revisions of a paused and resumed stage), the per-look sum of canary^2 / all that measures how
    much more the split varies from look to look than independent requests would (bursts of one user's requests
    all land in one arm), and this revision's totals already taken."""

    canary: int = 0
    total: int = 0
    sq: float = 0.0
    looks: int = 0  # looks that brought requests
    seen_canary: int = 0
    seen_total: int = 0


@dataclass(frozen=True)
class RolloutTest:
    """The tests that run from the first stage to the last, carried from stage to stage (see docs/judge.md)."""

    errors: float = 0.0  # at error_ratio, this revision's, untempered
    errors_big: float = 0.0  # at big_ratio(error_ratio), this revision's, untempered
    latency: float = 0.0  # at the slow-count ratio equivalent to latency_ratio
    errors_banked: float = 0.0  # earlier revisions' errors evidence, each tempered by its design effect
    errors_big_banked: float = 0.0
    latency_banked: float = 0.0  # earlier revisions' latency evidence, each tempered by its design effect

    def errors_pair(self, dispersion: float = 1.0) -> tuple[float, float]:
        return self.errors_banked + self.errors / dispersion, self.errors_big_banked + self.errors_big / dispersion

    def latency_statistic(self, dispersion: float = 1.0) -> float:
        return self.latency_banked + self.latency / dispersion

    def banked_at(self, dispersion: float, latency_dispersion: float = 1.0) -> RolloutTest:
        errors, big = self.errors_pair(dispersion)
        return RolloutTest(0.0, 0.0, 0.0, errors, big, self.latency_statistic(latency_dispersion))


@dataclass(frozen=True)
class JudgeState:
    stage_index: int = 0
    stable: Seen = field(default_factory=Seen)
    canary: Seen = field(default_factory=Seen)
    slow_ms: float | None = None
    slow_ratio: float | None = None
    errors: StageTest = field(default_factory=StageTest)
    latency: StageTest = field(default_factory=StageTest)
    rollout: RolloutTest | None = None
    looks: int = 0
    split: SplitTest = field(default_factory=SplitTest)
    dispersion: float = 1.0  # the design effect of the error contrast at the last look (users as the unit)
    latency_dispersion: float = 1.0  # the same for the slow-count contrast
    # The aggregates' epoch the `Seen` totals belong to: the store gives a revision's aggregates a new epoch each
    # time they are created, so a reset that refilled between two looks is seen even when no total went down.
    epoch: str = ""
    # Per stratum, the cumulative totals seen at the last look: (stable requests, errors, error users, canary
    # requests, errors, error users); empty for a flag judged without strata (docs/judge.md, "Strata").
    strata: Mapping[str, tuple[int, int, int, int, int, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["version"] = STATE_VERSION
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JudgeState:
        """Raise ValueError on anything that is not a state this version wrote: unknown versions, missing keys,
        non-finite or out-of-range statistics ("nan" included), negative or absurd counts. A state that passes
        is one the judge could have written, so nothing downstream meets a NaN."""
        try:
            if data.get("version") not in READABLE_VERSIONS:
                raise ValueError(f"judge state version {data.get('version')!r}, expected {STATE_VERSION}")
            rollout = data.get("rollout")
            slow_ms, slow_ratio = data.get("slow_ms"), data.get("slow_ratio")
            epoch = data.get("epoch", "")
            if not isinstance(epoch, str) or len(epoch) > 64:
                raise ValueError(f"epoch {epoch!r} is not an epoch")
            return cls(
                stage_index=_count(data["stage_index"]),
                stable=Seen(**{k: _count(v) for k, v in data["stable"].items()}),
                canary=Seen(**{k: _count(v) for k, v in data["canary"].items()}),
                # a latency in ms, up to the sketch's ceiling (an hour), not a statistic
                slow_ms=None if slow_ms is None else _finite(slow_ms, low=0.0, high=2 * MAX_MS),
                slow_ratio=None if slow_ratio is None else _finite(slow_ratio, low=1.0),
                errors=_stage_test(data["errors"]),
                latency=_stage_test(data["latency"]),
                rollout=None if rollout is None else RolloutTest(**{k: _finite(v) for k, v in rollout.items()}),
                looks=_count(data.get("looks", 0)),
                split=_split_test(data.get("split") or {}),
                dispersion=_finite(data.get("dispersion", 1.0), low=1.0, high=MAX_STATISTIC),
                latency_dispersion=_finite(data.get("latency_dispersion", 1.0), low=1.0, high=MAX_STATISTIC),
                epoch=epoch,
                strata=_strata_seen(data.get("strata") or {}),
            )
        except (KeyError, TypeError, AttributeError, OverflowError) as e:
            raise ValueError(f"not a judge state: {e}") from e

    @classmethod
    def start(cls, stage_index: int) -> JudgeState:
        """A stage's first look without carried state. The rollout test starts only with the rollout (stage 0):
        starting it again later would spend its share of alpha twice."""
        return cls(stage_index=stage_index, rollout=RolloutTest() if stage_index == 0 else None)

    def next_stage(self) -> JudgeState:
        """What to keep with the next stage's revision after an advance (docs/judge.md, "State")."""
        return self.carry_to(self.stage_index + 1)

    def carry_to(self, stage_index: int) -> JudgeState:
        """What a later revision of the same rollout keeps: fresh counts and stage tests (that revision's
        aggregates start from nothing), the rollout test carried. Ville's bound holds for a test continued on
        new data, so nothing is spent twice; restarting it instead would spend alpha again.

        The slow threshold is carried too: it was fixed from earlier data (stable's code does not change between
        stages), so it is independent of the data it now judges, and the new revision's latencies are all
        counted against it from the first look on; were it fixed afresh, the data of the look that fixes it
        would never be tested, and a stage whose data all arrived in that look would pass latency untested.

        At the same stage (a pause and a resume) the stage's own tests are carried as well: a fresh stage test
        would spend the stage's share of alpha once more at every resume, and a rollout paused and resumed every
        ten minutes would see its false-rollback rate grow with time."""
        # The evidence so far is banked, tempered by the design effects its revision's user buckets showed:
        # the new revision's buckets start empty and cannot speak for the old data.
        rollout = None if self.rollout is None else self.rollout.banked_at(self.dispersion, self.latency_dispersion)
        fresh = JudgeState(stage_index=stage_index, rollout=rollout, slow_ms=self.slow_ms,
                           slow_ratio=self.slow_ratio)
        if stage_index != self.stage_index:
            return fresh
        split = replace(self.split, seen_canary=0, seen_total=0)  # the new revision's totals start at 0
        return replace(
            fresh, errors=self.errors.banked_at(self.dispersion),
            latency=self.latency.banked_at(self.latency_dispersion), split=split,
        )


def _finite(value: Any, *, low: float = MIN_STATISTIC, high: float = MAX_STATISTIC) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise ValueError(f"{value!r} is not a finite number in [{low:g}, {high:g}]")
    return number


def _count(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(f"{value!r} is not a count")
    number = int(value)
    if not 0 <= number <= MAX_COUNT:
        raise ValueError(f"{value!r} is not a count in [0, {MAX_COUNT}]")
    return number


MAX_STRATA_SEEN = 64  # well above the strata a flag may have (MAX_STRATA, and "other" and the unlabelled rest)


def _strata_seen(data: Mapping[str, Any]) -> dict[str, tuple[int, int, int, int, int, int]]:
    if not isinstance(data, Mapping) or len(data) > MAX_STRATA_SEEN:
        raise ValueError("strata: not a bounded map of stratum totals")
    seen: dict[str, tuple[int, int, int, int, int, int]] = {}
    for label, counts in data.items():
        if not isinstance(label, str) or len(label) > 200 or len(counts) != 6:
            raise ValueError(f"strata: {label!r} is not a stratum's totals")
        n_s, e_s, u_s, n_c, e_c, u_c = (_count(v) for v in counts)
        seen[label] = (n_s, e_s, u_s, n_c, e_c, u_c)
    return seen


def _split_test(data: Mapping[str, Any]) -> SplitTest:
    counts = {k: _count(v) for k, v in data.items() if k != "sq"}
    split = SplitTest(sq=_finite(data.get("sq", 0.0), low=0.0, high=float(MAX_COUNT)), **counts)
    if split.canary > split.total or split.seen_canary > split.seen_total:
        raise ValueError("split counts: more canary requests than requests")
    return split


def _stage_test(data: Mapping[str, Any]) -> StageTest:
    floats = ("llr", "banked")
    return StageTest(llr=_finite(data["llr"]), banked=_finite(data.get("banked", 0.0)),
                     **{k: _count(v) for k, v in data.items() if k not in floats})

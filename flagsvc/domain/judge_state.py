"""What the canary judge keeps between looks (docs/judge.md, "State"): per-arm totals seen, the stage tests and
the rollout-wide test, as frozen values with a versioned JSON form. The controller stores it next to the flag's
revision and hands it back; a later revision of the same rollout carries the rollout test on (`carry_to`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

STATE_VERSION = 1


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

    llr: float = 0.0
    canary_events: int = 0
    stable_events: int = 0
    canary_exposure: int = 0
    stable_exposure: int = 0

    def add(self, llr: float, x_c: int, x_s: int, n_c: int, n_s: int) -> StageTest:
        return StageTest(
            self.llr + llr, self.canary_events + x_c, self.stable_events + x_s,
            self.canary_exposure + max(n_c, 0), self.stable_exposure + max(n_s, 0),
        )


@dataclass(frozen=True)
class RolloutTest:
    """The tests that run from the first stage to the last, carried from stage to stage (see docs/judge.md)."""

    errors: float = 0.0  # at error_ratio
    errors_big: float = 0.0  # at big_ratio(error_ratio)
    latency: float = 0.0  # at the slow-count ratio equivalent to latency_ratio


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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["version"] = STATE_VERSION
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JudgeState:
        """Raise ValueError on anything that is not a state this version wrote."""
        try:
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"judge state version {data.get('version')!r}, expected {STATE_VERSION}")
            rollout = data.get("rollout")
            return cls(
                stage_index=int(data["stage_index"]),
                stable=Seen(**{k: int(v) for k, v in data["stable"].items()}),
                canary=Seen(**{k: int(v) for k, v in data["canary"].items()}),
                slow_ms=None if data.get("slow_ms") is None else float(data["slow_ms"]),
                slow_ratio=None if data.get("slow_ratio") is None else float(data["slow_ratio"]),
                errors=_stage_test(data["errors"]),
                latency=_stage_test(data["latency"]),
                rollout=None if rollout is None else RolloutTest(**{k: float(v) for k, v in rollout.items()}),
                looks=int(data.get("looks", 0)),
            )
        except (KeyError, TypeError, AttributeError) as e:
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
        new data, so nothing is spent twice; restarting it instead would spend alpha again."""
        return JudgeState(stage_index=stage_index, rollout=self.rollout)


def _stage_test(data: Mapping[str, Any]) -> StageTest:
    return StageTest(llr=float(data["llr"]), **{k: int(v) for k, v in data.items() if k != "llr"})

"""Outcome aggregates: what SDKs report per flag, revision and arm (stable or canary), and how batches add up.

Aggregates are plain counters plus a latency sketch, so batches merge exactly in any order; the store adds them
atomically per flag and revision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flagsvc_client.protocol.limits import ARMS, UNIT_BUCKETS
from flagsvc_client.protocol.shapes import ArmStats
from flagsvc_client.protocol.sketch import LatencySketch


@dataclass(frozen=True)
class ArmTotals:
    """Cumulative outcomes of one arm for one revision of a flag."""

    count: int = 0
    errors: int = 0
    error_users: int = 0
    latency: LatencySketch = field(default_factory=LatencySketch)
    # Which incarnation of the revision's aggregates these are: the store picks a new one each time it starts
    # them, so the judge sees a reset that refilled between two looks ("" from a store that keeps none).
    epoch: str = ""
    # Requests and errors per user bucket (0 .. UNIT_BUCKETS-1): {bucket: (requests, errors)}; empty when the
    # SDKs do not report buckets. The judge reads between-bucket variation from it (docs/judge.md, "Users").
    units: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    # Slow requests per user bucket (above the reporting SDK's recent p95 of the arm); empty when not reported.
    slow_units: Mapping[int, int] = field(default_factory=dict)
    # Requests, errors and erroring users per stratum of a flag's `stratify_by` attributes: {label: (requests,
    # errors, error_users)}; empty when the flag is not stratified. The judge compares the arms within strata
    # (docs/judge.md, "Strata"); requests outside every label (an SDK that sends none) form one more stratum.
    strata: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)

    def slow_by_unit(self) -> dict[int, tuple[int, int]]:
        """{bucket: (requests, slow requests)} for the buckets with slow counts: what the latency test's design
        effect is read from ({} when no SDK reported slow counts)."""
        if not self.slow_units:
            return {}
        return {j: (n, min(self.slow_units.get(j, 0), n)) for j, (n, _) in self.units.items()}

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.count if self.count else None

    def summary(self) -> ArmStats:
        def q(p: float) -> float | None:
            value = self.latency.quantile(p)
            return round(value, 3) if value is not None else None

        return {
            "count": self.count,
            "errors": self.errors,
            "error_users": self.error_users,
            "error_rate": self.error_rate,
            "p50_ms": q(0.50),
            "p95_ms": q(0.95),
            "p99_ms": q(0.99),
        }


STRATUM_KINDS = "neu"  # a stratum's counters: requests, errors, erroring users


def counter_fields(arms: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """A validated batch entry's arms -> the increments the store applies, one flat name per counter."""
    increments: dict[str, int] = {}
    for arm, totals in arms.items():
        for name in ("count", "errors", "error_users"):
            if totals.get(name):
                increments[f"{arm}:{name}"] = int(totals[name])
        for index, n in (totals.get("latency") or {}).items():
            if n:
                increments[f"{arm}:lat:{int(index)}"] = int(n)
        for index, pair in (totals.get("units") or {}).items():
            for kind, n in zip("nes", pair, strict=False):
                if n:
                    increments[f"{arm}:u:{int(index)}:{kind}"] = int(n)
        for label, row in (totals.get("strata") or {}).items():
            for kind, n in zip("neu", row, strict=False):  # requests, errors, erroring users
                if n:
                    increments[f"{arm}:s:{label}:{kind}"] = int(n)
    return increments


def totals_from_fields(fields: Mapping[str, str | int]) -> dict[str, ArmTotals]:
    """The store's flat counters -> ArmTotals per arm (arms with no data are empty totals)."""
    raw: dict[str, dict[str, Any]] = {arm: {"latency": {}, "units": {}, "slow_units": {}, "strata": {}}
                                      for arm in ARMS}
    epoch = str(fields.get("epoch", ""))
    for name, value in fields.items():
        arm, _, rest = name.partition(":")
        if arm not in raw:
            continue
        if rest.startswith("lat:"):
            raw[arm]["latency"][int(rest[4:])] = int(value)
        elif rest.startswith("s:"):  # "s:<label>:<n|e|u>", the label may hold colons
            label, _, kind = rest[2:].rpartition(":")
            if kind in STRATUM_KINDS:
                row = raw[arm]["strata"].setdefault(label, [0, 0, 0])
                row[STRATUM_KINDS.index(kind)] += int(value)
        elif rest.startswith("u:"):
            index, _, kind = rest[2:].partition(":")
            if kind == "s" and 0 <= int(index) < UNIT_BUCKETS:
                raw[arm]["slow_units"][int(index)] = int(value)
            elif kind in ("n", "e") and 0 <= int(index) < UNIT_BUCKETS:
                n, e = raw[arm]["units"].get(int(index), (0, 0))
                raw[arm]["units"][int(index)] = (n + int(value), e) if kind == "n" else (n, e + int(value))
        else:
            raw[arm][rest] = int(value)
    return {
        arm: ArmTotals(
            count=values.get("count", 0), errors=values.get("errors", 0),
            error_users=values.get("error_users", 0), latency=LatencySketch(values["latency"]), epoch=epoch,
            units=values["units"], slow_units=values["slow_units"],
            strata={label: (n, e, u) for label, (n, e, u) in values["strata"].items()},
        )
        for arm, values in raw.items()
    }

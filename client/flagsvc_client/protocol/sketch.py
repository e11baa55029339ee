"""The latency sketch shared by the SDK (which fills it) and the server (which merges and reads it).

Relative-error log buckets, the DDSketch idea: a latency `x` ms falls in bucket ceil(log(x) / log(GAMMA)), and
any quantile read back is within RELATIVE_ACCURACY of the true one. Sketches add bucket by bucket, so batches
merge exactly. The bucket range is clamped at both ends (MIN_MS, MAX_MS), which bounds a sketch to
MAX_INDEX - MIN_INDEX + 1 buckets whatever the traffic.

The wire form is `{"<index>": count}` with only non-empty buckets. Changing GAMMA changes the wire format:
every SDK and server must agree, so it never changes within protocol v1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

GAMMA = 1.02
RELATIVE_ACCURACY = (GAMMA - 1) / (GAMMA + 1)
MIN_MS = 0.001
MAX_MS = 3_600_000.0  # one hour; anything slower is "one hour" for the judge's purposes
# ceil(log2(x) * _INV_LOG2_GAMMA) is the bucket everywhere (log2: a third of math.log's cost on the SDK's path)
_INV_LOG2_GAMMA = 1.0 / math.log2(GAMMA)
MIN_INDEX = math.ceil(math.log2(MIN_MS) * _INV_LOG2_GAMMA)
MAX_INDEX = math.ceil(math.log2(MAX_MS) * _INV_LOG2_GAMMA)


def bucket_index(ms: float) -> int:
    """The bucket of a latency in milliseconds (values at or below MIN_MS, NaN included, share the floor)."""
    if not ms > MIN_MS:
        return MIN_INDEX
    if ms >= MAX_MS:
        return MAX_INDEX
    return math.ceil(math.log2(ms) * _INV_LOG2_GAMMA)


def bucket_value(index: int) -> float:
    """The representative latency of a bucket: the point with equal relative error to both edges."""
    return 2.0 * GAMMA**index / (GAMMA + 1.0)


class LatencySketch:
    """A mergeable latency histogram with ~1 % relative accuracy. Not thread-safe; callers lock."""

    __slots__ = ("buckets", "count")

    def __init__(self, buckets: Mapping[int, int] | None = None) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        if buckets:
            self.merge(buckets)

    def add(self, ms: float, n: int = 1) -> None:
        index = bucket_index(ms)
        self.buckets[index] = self.buckets.get(index, 0) + n
        self.count += n

    def merge(self, other: LatencySketch | Mapping[int, int]) -> None:
        items = other.buckets.items() if isinstance(other, LatencySketch) else other.items()
        for index, n in items:
            self.buckets[index] = self.buckets.get(index, 0) + n
            self.count += n

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0 <= q <= 1) in ms by nearest rank (conservative for tail quantiles: the p99 of
        [12, 80] is 80), or None for an empty sketch."""
        if self.count <= 0:
            return None
        rank = max(math.ceil(q * self.count) - 1, 0)
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen > rank:
                return bucket_value(index)
        return bucket_value(max(self.buckets))

    def count_above(self, ms: float) -> int:
        """How many recorded latencies fall in buckets strictly above the bucket of `ms`."""
        edge = bucket_index(ms)
        return sum(n for index, n in self.buckets.items() if index > edge)

    def to_wire(self) -> dict[str, int]:
        return {str(index): n for index, n in self.buckets.items() if n}

    @classmethod
    def from_wire(cls, data: Mapping[str, int] | Iterable[tuple[str, int]]) -> LatencySketch:
        """Parse a wire sketch; raises ValueError on a bad index or count (callers validate untrusted input)."""
        pairs = data.items() if isinstance(data, Mapping) else data
        buckets: dict[int, int] = {}
        for key, n in pairs:
            index = int(key)
            if not MIN_INDEX <= index <= MAX_INDEX:
                raise ValueError(f"bucket index {index} outside {MIN_INDEX}..{MAX_INDEX}")
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"bucket {index}: count must be a non-negative integer")
            buckets[index] = buckets.get(index, 0) + n
        return cls(buckets)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LatencySketch) and self.to_wire() == other.to_wire()

    def __repr__(self) -> str:
        return f"LatencySketch(count={self.count}, buckets={len(self.buckets)})"

"""Is an outcome batch one that a real SDK instance could have sent? Checked before anything is counted.

Every batch names its reporter (one SDK instance) and the wall-clock window its outcomes were recorded in. No
instance serves more than `max_reporter_rate` requests a second, so a batch claiming more outcomes than its
window allows at that rate is refused whole, as is a window in the future, one too old to be a retry the server
still remembers, and counts that contradict each other (more errors than requests, more erroring users than
errors, more latencies than requests, strata that add up to more than their arm). Within these bounds a
reporter can still lie; weighing reporters against each other is the judge's job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MIN_WINDOW_SECONDS = 1.0  # a window shorter than this is judged as this long: clocks and cuts are coarse
MAX_WINDOW_SECONDS = 3600.0  # longer windows (an SDK that could not send for an hour) count as this long


@dataclass(frozen=True)
class PlausibilityLimits:
    max_reporter_rate: float = 100_000.0  # outcomes a second that one SDK instance can have recorded
    max_clock_skew: float = 300.0  # how far ahead of the server's clock a window may end
    max_batch_age: float = 3000.0  # how long ago a window may have ended (under the dedupe memory's hour)


def batch_problems(batch: Mapping[str, Any], now: float, limits: PlausibilityLimits) -> dict[str, list[str]]:
    """The implausible parts of a batch whose types the API's schema checked, by field; empty when plausible."""
    problems: dict[str, list[str]] = {}
    start, end = float(batch["window"]["start"]), float(batch["window"]["end"])
    if end < start:
        problems["window.end"] = ["must not be before window.start"]
    elif end > now + limits.max_clock_skew:
        problems["window.end"] = [f"is {end - now:,.0f} s in the future (the server allows "
                                  f"{limits.max_clock_skew:g} s of clock skew)"]
    elif end < now - limits.max_batch_age:
        problems["window.end"] = [f"ended {now - end:,.0f} s ago; batches older than {limits.max_batch_age:g} s "
                                  "are not accepted"]
    total = 0
    for key, entry in batch["flags"].items():
        for arm, counts in entry["arms"].items():
            where = f"flags.{key}.arms.{arm}"
            count, errors, users = counts["count"], counts["errors"], counts.get("error_users", 0)
            timed = sum((counts.get("latency") or {}).values())
            if errors > count:
                problems[f"{where}.errors"] = [f"{errors:,} errors in {count:,} requests"]
            if users > errors:
                problems[f"{where}.error_users"] = [f"{users:,} erroring users for {errors:,} errors"]
            if timed > count:
                problems[f"{where}.latency"] = [f"{timed:,} latencies for {count:,} requests"]
            problems.update(_strata_problems(where, counts))
            total += count
    seconds = min(max(end - start, MIN_WINDOW_SECONDS), MAX_WINDOW_SECONDS) if math.isfinite(end - start) else 0
    allowed = math.floor(limits.max_reporter_rate * seconds)
    if total > allowed and "window.end" not in problems:
        problems["flags"] = [f"{total:,} outcomes in a window of {end - start:,.1f} s: more than one SDK instance "
                             f"serves (at most {allowed:,}, at {limits.max_reporter_rate:,g} a second)"]
    return problems


def _strata_problems(where: str, counts: Mapping[str, Any]) -> dict[str, list[str]]:
    """A stratum is a part of its arm: its errors within its requests, its erroring users within its errors, and
    the strata together within the arm's requests, errors and erroring users."""
    strata = counts.get("strata") or {}
    problems: dict[str, list[str]] = {}
    for label, (n, e, u) in strata.items():
        if e > n or u > e:
            problems[f"{where}.strata.{label}"] = [f"{e:,} errors and {u:,} erroring users in {n:,} requests: "
                                                   "errors at most requests, erroring users at most errors"]
    sums = [sum(row[i] for row in strata.values()) for i in range(3)]
    whole = (counts["count"], counts["errors"], counts.get("error_users", counts["errors"]))
    for name, total, limit in zip(("requests", "errors", "erroring users"), sums, whole, strict=True):
        if total > limit:
            problems[f"{where}.strata"] = [f"the strata hold {total:,} {name}, more than the arm's {limit:,}"]
            break
    return problems

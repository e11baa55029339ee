"""How much each reporter (one SDK instance) weighs in a revision's outcomes, and the outcomes without one of them.

The store keeps each revision's requests and errors per reporter and arm. From them: every reporter's share of
each of the four counters the judge rests on (stable and canary requests, stable and canary errors), its
*influence* (the largest of the four: a reporter can dominate by volume, or by holding most of an arm's errors
with a handful of requests), a bounded summary (the top reporters and "others"), and the arm totals with one
reporter left out (`without`), which the controller hands to a shadow judge (docs/judge.md, "No single reporter
decides").

Latency is not kept per reporter, so `without` removes the reporter's share of an arm's requests from that arm's
latency sketch proportionally, bucket by bucket: the shape stays, the volume goes. `at_least` keeps a shadow's
inputs from going backwards between looks (the proportional parts can shrink when a share grows).

Plain Python, no store import: reporter totals arrive as any mapping whose values have `requests` and `errors`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from flagsvc_client.protocol.sketch import LatencySketch

from flagsvc.domain.outcomes import ArmTotals

TOP_REPORTERS = 5  # reporters named in a summary; the rest are "others"
# In the order a tie is named: volume first.
COUNTERS = (("canary", "requests"), ("stable", "requests"), ("canary", "errors"), ("stable", "errors"))


class Counts(Protocol):
    """One reporter's totals for one arm (the store's ReporterTotals)."""

    @property
    def requests(self) -> int: ...

    @property
    def errors(self) -> int: ...


ByReporter = Mapping[str, Mapping[str, Counts]]


@dataclass(frozen=True)
class ReporterShare:
    """One reporter's totals and shares of the revision's outcomes."""

    reporter: str
    stable_requests: int
    stable_errors: int
    canary_requests: int
    canary_errors: int
    influence: float  # its largest share of the four counters, 0..1
    of: str  # which counter that is, in words: "canary errors"

    def to_dict(self) -> dict[str, Any]:
        return {"reporter": self.reporter, "share": round(self.influence, 4), "share_of": self.of,
                "stable_requests": self.stable_requests, "stable_errors": self.stable_errors,
                "canary_requests": self.canary_requests, "canary_errors": self.canary_errors}

    def words(self) -> str:
        return f"reporter {self.reporter} ({self.influence:.0%} of {self.of})"


@dataclass(frozen=True)
class Influence:
    """Every reporter of a revision, most influential first."""

    ranked: tuple[ReporterShare, ...]

    @property
    def reporters(self) -> int:
        return len(self.ranked)

    def top(self, n: int = TOP_REPORTERS) -> tuple[ReporterShare, ...]:
        return self.ranked[:n]

    def summary(self, n: int = TOP_REPORTERS) -> dict[str, Any]:
        """Bounded: the n most influential reporters, and the rest as one "others" line (their count, and their
        share of all requests)."""
        rest = self.ranked[n:]
        total = sum(r.stable_requests + r.canary_requests for r in self.ranked)
        others = sum(r.stable_requests + r.canary_requests for r in rest)
        return {"reporters": self.reporters, "top": [r.to_dict() for r in self.top(n)],
                "others": {"reporters": len(rest), "requests": others,
                           "share_of_requests": round(others / total, 4) if total else 0.0}}


@dataclass(frozen=True)
class Tally:
    """The four counters the judge rests on, for one reporter or for everyone: what a rollout's earlier revisions
    added up to, kept while the rollout goes on."""

    stable_requests: int = 0
    stable_errors: int = 0
    canary_requests: int = 0
    canary_errors: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.stable_requests + other.stable_requests, self.stable_errors + other.stable_errors,
                     self.canary_requests + other.canary_requests, self.canary_errors + other.canary_errors)

    @property
    def requests(self) -> int:
        return self.stable_requests + self.canary_requests

    def get(self, arm: str, counter: str) -> int:
        value: int = getattr(self, f"{arm}_{counter}")
        return value

    @classmethod
    def of_arms(cls, arms: Mapping[str, Counts]) -> Tally:
        return cls(*(_count(arms, arm, counter) for arm, counter in
                     (("stable", "requests"), ("stable", "errors"), ("canary", "requests"), ("canary", "errors"))))

    @classmethod
    def of_totals(cls, stable: ArmTotals, canary: ArmTotals) -> Tally:
        return cls(max(stable.count, 0), max(stable.errors, 0), max(canary.count, 0), max(canary.errors, 0))

    @classmethod
    def of_share(cls, share: ReporterShare) -> Tally:
        return cls(share.stable_requests, share.stable_errors, share.canary_requests, share.canary_errors)

    def as_totals(self) -> tuple[ArmTotals, ArmTotals]:
        """(stable, canary) with these counts and nothing else: what `disagreement` compares."""
        return (ArmTotals(self.stable_requests, self.stable_errors),
                ArmTotals(self.canary_requests, self.canary_errors))


def _count(arms: Mapping[str, Counts], arm: str, counter: str) -> int:
    totals = arms.get(arm)
    return max(int(getattr(totals, counter)), 0) if totals is not None else 0


def influence(by_reporter: ByReporter, earlier: Mapping[str, Tally] | None = None,
              earlier_total: Tally | None = None) -> Influence:
    """Each reporter's shares of the four counters, ranked by the largest (ties: more requests first, then id).

    With `earlier` (some reporters' outcomes in the rollout's earlier revisions) and `earlier_total` (everyone's),
    the shares are of the whole rollout so far: a reporter silent in this revision keeps the weight it had."""
    earlier = earlier or {}
    tallies = {reporter: Tally.of_arms(arms) for reporter, arms in by_reporter.items()}
    for reporter, past in earlier.items():
        tallies[reporter] = tallies.get(reporter, Tally()) + past
    now = Tally()
    for arms in by_reporter.values():
        now = now + Tally.of_arms(arms)
    sums = now + (earlier_total or Tally())
    shares = []
    for reporter, tally in tallies.items():
        best, of = 0.0, "requests"
        for arm, counter in COUNTERS:
            total = sums.get(arm, counter)
            share = tally.get(arm, counter) / total if total else 0.0
            if share > best:
                best, of = share, f"{arm} {counter}"
        shares.append(ReporterShare(reporter, tally.stable_requests, tally.stable_errors, tally.canary_requests,
                                    tally.canary_errors, best, of))
    shares.sort(key=lambda r: (-r.influence, -(r.stable_requests + r.canary_requests), r.reporter))
    return Influence(tuple(shares))


def _scaled(sketch: LatencySketch, keep: float) -> LatencySketch:
    return LatencySketch({index: round(n * keep) for index, n in sketch.buckets.items() if round(n * keep) > 0})


def _arm_without(totals: ArmTotals, requests: int, errors: int) -> ArmTotals:
    count = max(totals.count - requests, 0)
    left_errors = max(totals.errors - errors, 0)
    # Erroring users are not kept per reporter: the reporter's share of the arm's errors goes with it.
    users = round(totals.error_users * left_errors / totals.errors) if totals.errors else 0
    keep = count / totals.count if totals.count else 1.0
    keep_errors = left_errors / totals.errors if totals.errors else 1.0
    # Strata are not kept per reporter either: each shrinks in proportion, so the stratified test sees the
    # reporter's share gone too (kept whole, the strata would still hold what the check means to take away).
    strata = {}
    for label, (n, e, u) in totals.strata.items():
        n_left = round(n * keep)
        e_left = min(round(e * keep_errors), n_left)
        strata[label] = (n_left, e_left, min(round(u * keep_errors), e_left))
    return replace(totals, count=count, errors=left_errors, error_users=min(users, left_errors),
                   latency=_scaled(totals.latency, keep), strata=strata)


def without(stable: ArmTotals, canary: ArmTotals, share: ReporterShare) -> tuple[ArmTotals, ArmTotals]:
    """(stable, canary) as if `share`'s reporter had sent nothing: its requests and errors subtracted, erroring
    users, latencies and strata reduced in proportion (they are not kept per reporter)."""
    return (_arm_without(stable, share.stable_requests, share.stable_errors),
            _arm_without(canary, share.canary_requests, share.canary_errors))


def at_least(previous: ArmTotals | None, current: ArmTotals) -> ArmTotals:
    """`current`, raised to `previous` wherever it fell below it: cumulative inputs never go backwards (unless the
    store started the aggregates afresh in between: another `epoch`, when the store keeps one)."""
    if previous is None or getattr(previous, "epoch", "") != getattr(current, "epoch", ""):
        return current
    buckets = dict(current.latency.buckets)
    for index, n in previous.latency.buckets.items():
        buckets[index] = max(buckets.get(index, 0), n)
    errors = max(previous.errors, current.errors)
    return replace(current, count=max(previous.count, current.count), errors=errors,
                   error_users=min(max(previous.error_users, current.error_users), errors),
                   latency=LatencySketch(buckets))


# --- does a reporter's data disagree with everyone else's? ------------------------------------------------------

# A G-test statistic at or above this (chi-square, 1 degree of freedom) has a p-value below 1e-6.
DISAGREE_AT = 23.93


@dataclass(frozen=True)
class Disagreement:
    """A reporter's rate of something, against the same rate in everyone else's outcomes, too far apart to be
    chance (G-test, p < 1e-6)."""

    what: str  # "canary error rate", "stable error rate", "canary share of requests"
    reporter_rate: float
    others_rate: float
    statistic: float

    def words(self) -> str:
        return (f"its {self.what} {self.reporter_rate:.2%} vs {self.others_rate:.2%} from the others "
                f"(G {self.statistic:.1f} >= {DISAGREE_AT})")

    def to_dict(self) -> dict[str, Any]:
        return {"what": self.what, "reporter_rate": round(self.reporter_rate, 6),
                "others_rate": round(self.others_rate, 6), "statistic": round(self.statistic, 2),
                "threshold": DISAGREE_AT}


def _g_statistic(x1: int, n1: int, x2: int, n2: int) -> float:
    """Twice the log-likelihood ratio of "two rates" against "one rate" for x1 of n1 and x2 of n2."""
    if n1 <= 0 or n2 <= 0:
        return 0.0
    pooled = (x1 + x2) / (n1 + n2)
    if pooled <= 0.0 or pooled >= 1.0:
        return 0.0

    def term(observed: int, expected: float) -> float:
        return observed * math.log(observed / expected) if observed > 0 else 0.0

    return 2 * (term(x1, n1 * pooled) + term(n1 - x1, n1 * (1 - pooled)) + term(x2, n2 * pooled)
                + term(n2 - x2, n2 * (1 - pooled)))


ERROR_RATES = frozenset({"canary error rate", "stable error rate"})
SPLIT = frozenset({"canary share of requests"})


def disagreement(share: ReporterShare, stable: ArmTotals, canary: ArmTotals,
                 measures: frozenset[str] = ERROR_RATES | SPLIT) -> Disagreement | None:
    """The clearest way `share`'s reporter differs from the rest of the outcomes (`stable`, `canary`: everyone's,
    `share`'s included), if it does beyond chance: its canary or stable error rate, or the canary's share of its
    requests (which a reporter that sends one arm only, or arms at another split, changes), those of `measures`.
    Latency is not kept per reporter, so it is not compared."""
    rest_c, rest_ce = max(canary.count - share.canary_requests, 0), max(canary.errors - share.canary_errors, 0)
    rest_s, rest_se = max(stable.count - share.stable_requests, 0), max(stable.errors - share.stable_errors, 0)
    mine_n, rest_n = share.canary_requests + share.stable_requests, rest_c + rest_s
    found = [
        ("canary error rate", share.canary_errors, share.canary_requests, rest_ce, rest_c),
        ("stable error rate", share.stable_errors, share.stable_requests, rest_se, rest_s),
        ("canary share of requests", share.canary_requests, mine_n, rest_c, rest_n),
    ]
    best: Disagreement | None = None
    for what, x1, n1, x2, n2 in found:
        if what not in measures:
            continue
        g = _g_statistic(min(x1, n1), n1, min(x2, n2), n2)
        if g >= DISAGREE_AT and (best is None or g > best.statistic):
            best = Disagreement(what, x1 / n1, x2 / n2, g)
    return best

"""Evaluation counts per (flag, arm), for metrics; off unless asked for (`FlagClient.count_evaluations`).

Counting wraps each compiled rule in one more closure that bumps an `itertools.count`: `next()` on it is a single
C call, so with the GIL concurrent threads never lose an increment, and nothing takes a lock (none to renew after
a fork either; a free-threaded build may lose a few). Counters outlive snapshots, so a count never goes backwards
when the config changes. A forked child starts from its parent's counts.
"""

from __future__ import annotations

import itertools

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    Rule = Callable[..., bool]


def _value(counter: itertools.count[int]) -> int:
    """How many times `next` was called: an itertools.count's repr is `count(N)`, N being the next value."""
    return int(repr(counter)[6:-1])


class EvaluationCounts:
    def __init__(self) -> None:
        self._counters: dict[tuple[str, str], itertools.count[int]] = {}

    def counter(self, flag: str, arm: str) -> itertools.count[int]:
        found = self._counters.get((flag, arm))
        if found is None:  # setdefault: of two threads creating it at once, both get the one that was kept
            found = self._counters.setdefault((flag, arm), itertools.count())
        return found

    def add(self, flag: str, arm: str) -> None:
        next(self.counter(flag, arm))

    def wrap(self, rules: Mapping[str, Rule]) -> dict[str, Rule]:
        return {flag: self._counted(rule, self.counter(flag, "canary"), self.counter(flag, "stable"))
                for flag, rule in rules.items()}

    @staticmethod
    def _counted(rule: Rule, canary: itertools.count[int], stable: itertools.count[int]) -> Rule:
        def counted(user_id: object, context: object = None) -> bool:
            if rule(user_id, context):  # a rule that raises counts nothing: the caller answers its default
                next(canary)
                return True
            next(stable)
            return False

        return counted

    def totals(self) -> dict[tuple[str, str], int]:
        return {key: _value(counter) for key, counter in list(self._counters.items())}

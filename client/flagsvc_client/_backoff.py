"""Exponential backoff with full jitter: after a server restart, thousands of SDKs must not reconnect in step."""

from __future__ import annotations

from collections.abc import Callable


class Backoff:
    """delay(n) = random() * min(maximum, initial * 2**n); `random` is injected so tests are exact."""

    __slots__ = ("_attempt", "_initial", "_maximum", "_random")

    def __init__(self, initial: float, maximum: float, random: Callable[[], float]) -> None:
        self._initial = initial
        self._maximum = maximum
        self._random = random
        self._attempt = 0

    @property
    def attempt(self) -> int:
        return self._attempt

    def next(self) -> float:
        ceiling: float = min(self._maximum, self._initial * 2 ** min(self._attempt, 62))  # int ** int is typed Any
        self._attempt += 1
        return self._random() * ceiling

    def reset(self) -> None:
        self._attempt = 0

"""One-armed outcomes: an application that records outcomes on one branch only (say `client.track` around the
canary path alone) leaves the server's judge blind, and its rollout holds for ever. The SDK can tell first: it
knows which arm every recorded outcome went to, and the flag's percent.

`ArmWatch` looks at the tallies the flusher cuts (never at the hot path): per flag and revision, outcomes counted
per arm since the revision arrived. When only one arm ever got any although the config answers both (0 < percent
< 100, not killed), and so many that the other arm's absence is overwhelming ((1 - its share)^n < 1e-6, were each
outcome a fresh user's), it warns once per flag through the client's LogOnce.
"""

from __future__ import annotations

from math import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from flagsvc_client._log import LogOnce
    from flagsvc_client._outcomes import ArmTally, OutcomeWindow
    from flagsvc_client.snapshot import Snapshot

LOG_CHANCE = log(1e-6)  # how unlikely the missing arm's absence must be before we say so
MAX_FLAGS = 10_000  # flags followed at once (each is three ints); beyond, new flags are not followed


class ArmWatch:
    """Outcomes per arm of each flag's current revision, over every cut so far; a warning once per flag."""

    def __init__(self, log_once: LogOnce, snapshot: Callable[[], Snapshot | None]) -> None:
        self._log = log_once
        self._snapshot = snapshot
        self._counts: dict[str, list[int]] = {}  # flag -> [revision, stable outcomes, canary outcomes]
        self._warned: set[str] = set()

    def observe(self, tallies: list[ArmTally]) -> None:
        """Count a cut's tallies in, then check the flags they touched. Never raises."""
        try:
            touched = set()
            for tally in tallies:
                flag, revision, arm = tally.key
                if flag in self._warned:
                    continue
                counts = self._counts.get(flag)
                if counts is None or counts[0] < revision:
                    if counts is None and len(self._counts) >= MAX_FLAGS:
                        continue
                    counts = self._counts[flag] = [revision, 0, 0]
                elif counts[0] > revision:  # outcomes of a revision already superseded
                    continue
                counts[1 if arm == "stable" else 2] += tally.count
                touched.add(flag)
            if touched:
                self._check(touched)
        except Exception:
            pass

    def _check(self, flags: set[str]) -> None:
        snapshot = self._snapshot()
        if snapshot is None:
            return
        for flag in flags:
            revision, stable, canary = self._counts[flag]
            config = snapshot.flags.get(flag)
            if config is None or config.revision != revision or config.killed or not 0 < config.percent < 100:
                continue
            if stable and canary:
                continue
            missing, seen, n = ("stable", "canary", canary) if canary else ("canary", "stable", stable)
            share = config.percent / 100 if missing == "canary" else 1 - config.percent / 100
            if n * log(1 - share) < LOG_CHANCE:
                self._warned.add(flag)
                del self._counts[flag]
                self._log.warning(
                    ("one_arm_only", flag),
                    "flag %r: %d outcomes recorded, all from %s users, none from %s users although the flag is at "
                    "%g %%: record outcomes on both branches (client.track/record), or the server's judge stays "
                    "blind and the rollout holds",
                    flag, n, seen, missing, config.percent,
                )


def watch_arms(window: OutcomeWindow, log_once: LogOnce, snapshot: Callable[[], Snapshot | None]) -> ArmWatch:
    """Have `window.cut` (the flusher's, off the hot path) show its tallies to a new ArmWatch."""
    watch = ArmWatch(log_once, snapshot)
    cut = window.cut

    def cut_and_watch() -> list[ArmTally]:
        tallies = cut()
        watch.observe(tallies)
        return tallies

    window.cut = cut_and_watch  # type: ignore[method-assign]
    return watch

"""Rollout time series: what the controller records at each look, and what operators read back.

Recording never fails the controller nor holds it up beyond one store call: a point that cannot be written is
logged and dropped (the chart misses a look; the rollout goes on).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flagsvc.domain.errors import FlagNotFound
from flagsvc.domain.flag import Flag
from flagsvc.domain.outcomes import ArmTotals
from flagsvc.domain.timeline import TIMELINE_REVISIONS, FlagTimelineDoc, timeline_doc, timeline_point
from flagsvc.store.roles import FlagRepository
from flagsvc.store.timeline import TimelineRepository

log = logging.getLogger("flagsvc.timeline")
MOVES = frozenset({"advance", "rollback"})


class TimelineRecorder:
    def __init__(self, timeline: TimelineRepository) -> None:
        self._timeline = timeline

    def record(self, flag: Flag, *, decision: str, applied: bool, totals: Mapping[str, ArmTotals],
               evidence: Mapping[str, Any], at: float) -> bool:
        """Keep one look's point for the flag's revision; False (logged) when the store refused it."""
        try:
            point = timeline_point(
                at=at, revision=flag.revision, state=flag.state.value, percent=flag.percent,
                stage_index=flag.stage_index, decision=decision, applied=applied,
                stable=totals["stable"].summary(), canary=totals["canary"].summary(), evidence=evidence)
            self._timeline.add_timeline_point(flag.key, flag.created_at, flag.revision, point,
                                              keep=decision in MOVES)
            return True
        except Exception as e:  # a chart's point is never worth a controller's look
            log.warning("flag %s: timeline point of revision %s not kept: %s", flag.key, flag.revision, e)
            return False


class TimelineQueries:
    def __init__(self, flags: FlagRepository, timeline: TimelineRepository) -> None:
        self._flags = flags
        self._timeline = timeline

    def timeline(self, key: str, *, first: int = 1, last: int | None = None,
                 revisions: int = TIMELINE_REVISIONS) -> FlagTimelineDoc:
        """The flag's points from revision `first` to `last`, its newest `revisions` revisions with points;
        FlagNotFound when there is no such flag."""
        flag = self._flags.get(key)
        if flag is None:
            raise FlagNotFound(key)
        series = self._timeline.timeline(key, flag.created_at, first=first, last=last, revisions=revisions)
        return timeline_doc(key, flag.created_at, series)

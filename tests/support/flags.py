"""Flags for tests that work on stores directly."""

from __future__ import annotations

from typing import Any

from flagsvc.domain import flag as flags
from flagsvc.domain.flag import Flag, HistoryEntry


def new(key: str = "new_checkout", **settings: Any) -> tuple[Flag, HistoryEntry]:
    """A new flag (state off) and its first history entry, made at t=1 by "ops"."""
    return flags.new_flag(key, settings, now=1.0, actor="ops")

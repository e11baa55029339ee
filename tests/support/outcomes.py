"""Outcome batches as an SDK sends them: the envelope (batch id, reporter, window) around a `flags` map."""

from __future__ import annotations

import time
from typing import Any

REPORTER = "test-reporter-0001"
_last_end: dict[str, float] = {}  # per reporter: where its next window starts, as a real SDK's do


def envelope(flags: dict[str, Any], batch_id: str = "b-00000001", *, reporter: str = REPORTER,
             window: tuple[float, float] | None = None) -> dict[str, Any]:
    """A batch whose window follows the reporter's previous one (the first: the last 5 s), unless given."""
    if window is None:
        now = time.time()
        start = _last_end.get(reporter, now - 5.0)
        window = (start, max(now, start + 0.001))
        _last_end[reporter] = window[1]
    return {"batch_id": batch_id, "reporter": reporter, "window": {"start": window[0], "end": window[1]},
            "flags": flags}

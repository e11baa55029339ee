"""Outcome batches as an SDK sends them: the envelope (batch id, reporter, window) around a `flags` map."""

from __future__ import annotations

import time
from typing import Any

REPORTER = "test-reporter-0001"


def envelope(flags: dict[str, Any], batch_id: str = "b-00000001", *, reporter: str = REPORTER,
             window: tuple[float, float] | None = None) -> dict[str, Any]:
    """A batch whose window is the last 5 s of this machine's clock unless given."""
    if window is None:
        now = time.time()
        window = (now - 5.0, now)
    return {"batch_id": batch_id, "reporter": reporter, "window": {"start": window[0], "end": window[1]},
            "flags": flags}

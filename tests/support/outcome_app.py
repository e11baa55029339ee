"""A tiny WSGI application that uses the SDK exactly as the READMEs show, for the tests of outcomes at exit.

The client is built at import (in each gunicorn worker, or once in the master with `--preload`) and nothing else:
no flush, no close, no server hook. Each request evaluates `OUTCOME_APP_FLAG` for the user in the query string,
records exactly one outcome (a failure for user ids ending in 7) and answers `canary` or `stable`. Each process
counts what it recorded and, at exit, writes `{"pid", "recorded", "errors"}` to `<OUTCOME_APP_COUNTS>/<pid>.json`.

Environment: OUTCOME_APP_URL, OUTCOME_APP_SDK_KEY, OUTCOME_APP_FLAG, OUTCOME_APP_COUNTS (a directory), and
OUTCOME_APP_SETTINGS (optional: a JSON object of more ClientSettings, e.g. a short flush_interval),
OUTCOME_APP_WORK_MS (optional: how long each request works, so that requests are in flight at a signal).
"""

from __future__ import annotations

import atexit
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flagsvc_client import FlagClient

FLAG = os.environ["OUTCOME_APP_FLAG"]
COUNTS = Path(os.environ["OUTCOME_APP_COUNTS"])

settings = json.loads(os.environ.get("OUTCOME_APP_SETTINGS", "{}"))
WORK_SECONDS = float(os.environ.get("OUTCOME_APP_WORK_MS", "0")) / 1000
client = FlagClient(os.environ["OUTCOME_APP_URL"], sdk_key=os.environ["OUTCOME_APP_SDK_KEY"], **settings)
client.wait_until_ready(timeout=5)

# one item per outcome recorded (list.append is atomic across threads); a forked worker starts from the master's
# (empty) lists
_recorded: list[bool] = []


def _write_counts() -> None:
    counts = {"pid": os.getpid(), "recorded": len(_recorded), "errors": _recorded.count(False)}
    (COUNTS / f"{os.getpid()}.json").write_text(json.dumps(counts))


atexit.register(_write_counts)


def app(environ: dict[str, Any], start_response: Callable[..., object]) -> Iterable[bytes]:
    user = environ.get("QUERY_STRING", "") or "anonymous"
    started = time.perf_counter()
    canary = client.is_enabled(FLAG, user)
    if WORK_SECONDS:
        time.sleep(WORK_SECONDS)  # the request's work (simulated), not synchronisation
    ok = not user.endswith("7")
    client.record(FLAG, user, ok=ok, latency_ms=(time.perf_counter() - started) * 1000 + 1)
    _recorded.append(ok)
    body = b"canary" if canary else b"stable"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

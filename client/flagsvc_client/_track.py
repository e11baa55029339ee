"""`with client.track(flag, user_id) as canary:` serves an arm, times the block and records its outcome."""

from __future__ import annotations

import time

from flagsvc_client._outcomes import CANARY

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from flagsvc_client._outcomes import ArmTally
    from flagsvc_client.client import FlagClient


class Track:
    """An Exception in the block is an error (and is re-raised). The outcome goes to the arm and revision the block
    was served with, even if the config changes meanwhile; it never raises into the application."""

    __slots__ = ("_client", "_code", "_context", "_flag", "_start", "_tally", "_user_id")

    _tally: ArmTally | None  # the arm served, when the fast path served it

    def __init__(self, client: FlagClient, flag: str, user_id: str | int,
                 context: Mapping[str, object] | None = None) -> None:
        self._client, self._flag, self._user_id, self._start, self._tally = client, flag, user_id, 0.0, None
        self._context = context
        self._code = 0

    def __enter__(self) -> bool:
        client = self._client
        try:
            rule, stable, canary = client._entries[self._flag]
            code = rule(self._user_id, self._context)
            served = bool(code >= CANARY)
            self._tally, self._code = canary if served else stable, code
        except Exception:  # not ready, unknown flag, bad id or context, outside the rollout, forked: the public
            served = client.is_enabled(self._flag, self._user_id, False, self._context)  # path answers and logs
        self._start = time.perf_counter()
        return served

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> None:
        elapsed_ms = (time.perf_counter() - self._start) * 1000.0
        if exc_type is not None and not issubclass(exc_type, Exception):
            return  # KeyboardInterrupt, SystemExit & co. are not outcomes of the code under test
        ok = exc_type is None
        try:
            if self._tally is None:
                self._client.record(self._flag, self._user_id, ok=ok, latency_ms=elapsed_ms, context=self._context)
            else:
                self._client._window.add(self._tally, self._user_id, ok, elapsed_ms, self._code)
        except Exception:
            pass

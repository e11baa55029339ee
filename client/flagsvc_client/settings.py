"""Every knob of the client, in one frozen settings object checked once at construction.

It reads like a frozen dataclass and behaves like one (keyword construction with defaults, immutable, `replace`,
equality, repr), but is not built with `dataclasses`: that module imports `inspect`, ~10 ms of the SDK's 50 ms
import budget. The constructor is the only place the SDK raises (ValueError / TypeError here, at start-up, for a
programming error); every later call answers or does nothing instead.
"""

from __future__ import annotations

import math

TYPE_CHECKING = False  # `typing` costs ~3 ms to import; type checkers treat this name as True
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


class ClientSettings:
    url: str | None = None
    """Base URL of the flagsvc server, e.g. http://127.0.0.1:8080 (not needed offline)."""
    sdk_key: str = ""

    # config
    stream: bool = True
    """Hold the SSE stream; False polls `/sdk/v1/flags` every `poll_interval` instead."""
    poll_interval: float = 30.0
    stale_after: float = 90.0
    """Status turns `stale` when the server has not confirmed the config (event, heartbeat, poll) for this long."""
    stream_read_timeout: float = 40.0
    """Must exceed the server's heartbeat interval (15 s), so that only a dead connection times out."""
    stream_fallback_after: int = 3
    """Consecutive stream failures (404/405/501, not an event stream, refused) before polling instead."""
    stream_retry_interval: float = 300.0
    """While polling because the stream endpoint answered 404/405/501: try the stream again this often."""

    # HTTP
    connect_timeout: float = 5.0
    request_timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    auth_backoff: float = 300.0
    """After 401/403: keep the config, retry about this rarely (never give up: the key may be fixed)."""

    # outcomes
    flush_interval: float = 5.0
    max_batch_age: float = 600.0
    """An unacknowledged batch older than this is dropped (its revision has likely moved on) and counted."""
    max_pending_bytes: int = 8 * 1024 * 1024
    """Bound on queued, unacknowledged batches; while full, outcomes keep aggregating in the window."""
    max_arms: int = 2000
    """Distinct (flag, revision, arm) tallies in one window; outcomes for more are dropped and counted."""
    max_error_users: int = 1000
    """Distinct erroring users remembered per arm and window; reaching it flushes early."""
    max_flags_per_batch: int = 1000
    max_buckets_per_arm: int = 1000
    exit_flush_timeout: float = 3.0
    """At interpreter exit, each live client is closed: its outcomes flushed, waiting at most this long for the
    server (all clients together wait at most the longest of theirs). 0: no flush at exit."""

    # start-up
    bootstrap: Mapping[str, Any] | str | None = None
    """A snapshot (dict) or the path of a JSON file holding one, evaluated from before the server answers."""
    cache_file: str | None = None
    """Where the last good snapshot is kept (written atomically), so a restart while the server is down works."""
    offline: bool = False
    """No network at all: evaluate from bootstrap / cache_file, discard outcomes."""
    background: bool = True
    """Run the daemon threads. False: nothing happens unless you call the client (tests, manual driving)."""

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - set(FIELDS))
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(unknown)}")
        for name, value in values.items():
            object.__setattr__(self, name, value)
        self._check()

    def replace(self, **changes: Any) -> ClientSettings:
        return ClientSettings(**{**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FIELDS}

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("ClientSettings is frozen: use replace()")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("ClientSettings is frozen")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClientSettings) and self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash(tuple(repr(v) for v in self.as_dict().values()))

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{k}={'***' if k == 'sdk_key' and v else v!r}" for k, v in self.as_dict().items() if v != _DEFAULTS[k]
        )
        return f"ClientSettings({shown})"

    def _check(self) -> None:
        for name, kind in FIELDS.items():
            value = getattr(self, name)
            if kind == "bool" and not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, not {value!r}")
            if kind == "int" and type(value) is not int:  # a count: 2.5 or 1e3 would break slicing later
                raise ValueError(f"{name} must be a whole number, not {value!r}")
            if kind in ("float", "int"):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{name} must be a finite number, not {value!r}")
                # the comparisons also refuse NaN, and ints too large for a float without raising
                if name in _ZERO_ALLOWED:
                    if not 0 <= value < math.inf:
                        raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
                elif not 0 < value < math.inf:
                    raise ValueError(f"{name} must be a finite number > 0, not {value!r}")
        if self.url is not None and not (isinstance(self.url, str) and self.url.startswith(("http://", "https://"))):
            raise ValueError(f"url must start with http:// or https://, not {self.url!r}")
        if not self.offline and not self.url:
            raise ValueError("url is required unless offline=True")
        if not isinstance(self.sdk_key, str):
            raise TypeError("sdk_key must be a string")
        if self.stale_after <= self.poll_interval:
            raise ValueError("stale_after must be longer than poll_interval")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must be at least backoff_initial")


_ZERO_ALLOWED = frozenset({"exit_flush_timeout"})  # 0 turns it off
FIELDS: dict[str, str] = dict(ClientSettings.__annotations__)  # name -> type, in declaration order
_DEFAULTS: dict[str, object] = {name: getattr(ClientSettings, name) for name in FIELDS}

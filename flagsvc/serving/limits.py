"""What one server process allows its clients: timeouts, stream caps and pool sizes, from the environment."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from flagsvc.config import ConfigError


@dataclass(frozen=True)
class ServingLimits:
    """Per server process (a worker of `flagsvc serve`). The defaults let a fleet of tens of thousands of SDK
    instances sharing one SDK key connect to a few processes, and cut slow or idle clients loose."""

    # The request line and headers must arrive within this many seconds (slowloris), a whole body within
    # body_timeout, and a keep-alive connection may sit idle between requests for idle_timeout.
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 75.0
    # An SSE stream that cannot take a write for this long (a reader that stopped reading) is dropped.
    write_timeout: float = 30.0
    # After an error answer, what the client still sends is read and dropped (lingering close) until it closes,
    # is quiet for linger_idle_timeout, or for linger_timeout in all; past max_lingering such connections in a
    # process, one second at most.
    linger_timeout: float = 30.0
    linger_idle_timeout: float = 5.0
    max_lingering: int = 4096
    # Open SDK streams per process, in all and per SDK key (a fleet usually shares one key per environment).
    max_streams: int = 20_000
    max_streams_per_key: int = 20_000
    # Connections from one client address that have not yet shown a known token (reading headers, or idle
    # before their first request): past this many, new ones from that address are answered 429 and closed.
    # A fleet behind one proxy address reconnecting at once must fit: its SDKs show their key within
    # milliseconds, so this counts only the ones whose headers are still on their way.
    max_unauthenticated_per_address: int = 1024
    # Threads that run the Flask app: operators' requests (admin API, health, metrics) get a pool of their own,
    # so SDK traffic cannot queue them.
    operator_threads: int = 8
    sdk_threads: int = 32
    max_header_bytes: int = 16 * 1024  # request line and headers together (431 past it)
    max_target_bytes: int = 8 * 1024  # the request target alone (414 past it)
    heartbeat: float = 15.0  # an SSE comment when a stream has been quiet this long

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServingLimits:
        env = os.environ if environ is None else environ
        values: dict[str, float | int] = {}
        for f in fields(cls):
            name = f"FLAGSVC_{f.name.upper()}"
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            default = getattr(cls, f.name)
            try:
                value: float | int = int(raw) if isinstance(default, int) else float(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a number, not {raw!r}") from None
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be a positive number, not {raw!r}")
            values[f.name] = value
        return cls(**values)  # type: ignore[arg-type]

"""AsyncFlagClient: the SDK in an asyncio application (FastAPI, Starlette, aiohttp, plain ASGI).

    client = AsyncFlagClient("http://127.0.0.1:8080", sdk_key="fss_...")
    await client.wait_until_ready(timeout=5)
    async with client.track("new_checkout", user_id) as canary:   # times the awaited code, records the outcome
        await (new_checkout() if canary else old_checkout())
    await client.aclose()

Why on FlagClient's threads rather than asyncio-native I/O: the loop must never wait on the network, and the work
that could make it wait is already off it. The config stream, polling and outcome delivery run on FlagClient's two
daemon threads; a new config is compiled there and swapped in as one reference. What the loop runs is the hot path:
`is_enabled` reads that reference and hashes (no lock, no await), `record` appends one int to a list. Waiting
(`wait_until_ready`) polls a flag with `asyncio.sleep`, and `flush` / `aclose`, which wait for the server, run on a
worker thread. docs/asyncio.md has the measured event-loop lag.
"""

from __future__ import annotations

import asyncio
import time

from flagsvc_client._track import Track
from flagsvc_client.client import FlagClient

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType
    from typing import Any

    from flagsvc_client.result import Evaluation
    from flagsvc_client.snapshot import Snapshot

__all__ = ["AsyncFlagClient", "AsyncTrack"]

_READY_POLL = 0.005  # seconds between looks while waiting for the first config


class AsyncFlagClient:
    """`AsyncFlagClient(url, sdk_key=..., **settings)` (ClientSettings' fields, as FlagClient), or
    `AsyncFlagClient(client=a_flag_client)` to share one FlagClient between sync and async code. Building it does
    no I/O; it may be built outside the event loop (at import) or inside it (an ASGI lifespan)."""

    def __init__(self, url: str | None = None, *, sdk_key: str = "", client: FlagClient | None = None,
                 **settings: Any) -> None:
        self.sync = client if client is not None else FlagClient(url, sdk_key=sdk_key, **settings)

    # -- the hot path: synchronous, lock-free, the same answers as FlagClient ----------------------------------

    def is_enabled(self, flag: str, user_id: str | int, default: bool = False,
                   context: Mapping[str, object] | None = None) -> bool:
        """Is this user on the canary path of `flag`? Never awaits, never raises."""
        return self.sync.is_enabled(flag, user_id, default, context)

    def evaluate(self, flag: str, user_id: str | int, default: bool = False,
                 context: Mapping[str, object] | None = None) -> Evaluation:
        return self.sync.evaluate(flag, user_id, default, context)

    def variant(self, flag: str, user_id: str | int, context: Mapping[str, object] | None = None) -> str:
        return self.sync.variant(flag, user_id, context)

    def record(self, flag: str, user_id: str | int, ok: bool = True, latency_ms: float | None = None,
               context: Mapping[str, object] | None = None) -> None:
        """Count one outcome (FlagClient.record): an append, no I/O."""
        self.sync.record(flag, user_id, ok, latency_ms, context)

    def track(self, flag: str, user_id: str | int, context: Mapping[str, object] | None = None) -> AsyncTrack:
        """`async with client.track(flag, user_id) as canary:` times the block, awaits included, and records its
        outcome: an Exception is an error (re-raised); a cancellation is not an outcome and records nothing."""
        return AsyncTrack(Track(self.sync, flag, user_id, context))

    # -- state ---------------------------------------------------------------------------------------------

    @property
    def status(self) -> str:
        return self.sync.status

    @property
    def stats(self) -> dict[str, Any]:
        return self.sync.stats

    @property
    def snapshot(self) -> Snapshot | None:
        return self.sync.snapshot

    async def wait_until_ready(self, timeout: float | None = None) -> bool:
        """Until a config from the server (offline: any config) is loaded; False on timeout. Cancellable."""
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
        except TypeError:
            deadline = time.monotonic()  # a timeout that is no number: one look, as FlagClient would fail fast
        while not self.sync.wait_until_ready(0):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_READY_POLL)
        return True

    # -- flush and close: they wait for the server, so on a worker thread ------------------------------------

    async def flush(self, timeout: float = 5.0) -> bool:
        """Send every outcome recorded so far; True once the server acknowledged them."""
        try:
            return await asyncio.to_thread(self.sync.flush, timeout)
        except Exception:  # no worker thread to be had (the loop's executor shut down): the loop must not wait
            return False

    async def aclose(self, timeout: float = 5.0) -> None:
        """Flush (waiting at most `timeout`) and stop the background threads; evaluation keeps answering."""
        try:
            await asyncio.to_thread(self.sync.close, timeout)
        except Exception:
            self.sync.close(0)

    async def __aenter__(self) -> AsyncFlagClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncTrack:
    """The async face of Track (_track.py): same arm, same timing, same rules, across awaits."""

    __slots__ = ("_track",)

    def __init__(self, track: Track) -> None:
        self._track = track

    async def __aenter__(self) -> bool:
        return self._track.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._track.__exit__(exc_type, exc, tb)

"""Keeping the config current: the SSE stream, or `ETag` polling when the stream is unavailable.

`step()` does one unit of work (one stream connection read until it ends, or one poll) and returns how long to
wait before the next; the daemon thread only loops over it, and tests call it by hand with a fake transport.

Mode changes: N consecutive stream failures of the "not here" kind (404/405/501, not an event stream, connection
refused) switch to polling. After a refusal, the first successful poll means the server is back: the stream is
tried again at once. After a 404-like answer (a proxy that blocks SSE, an old server) it is tried again every
`stream_retry_interval`. 401/403 keeps the config and retries every ~`auth_backoff`, never giving up.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from flagsvc_client._backoff import Backoff
from flagsvc_client._log import LOGGER_NAME, LogOnce
from flagsvc_client._stream import HEARTBEAT, parse_events
from flagsvc_client._transport import TransportError, auth_headers
from flagsvc_client.snapshot import Snapshot, SnapshotError, loads_snapshot

TYPE_CHECKING = False
if TYPE_CHECKING:
    from flagsvc_client._transport import EventStream, Transport
    from flagsvc_client.settings import ClientSettings

STREAM_PATH = "/sdk/v1/stream"
FLAGS_PATH = "/sdk/v1/flags"
_NOT_HERE = frozenset({404, 405, 501})


class ConfigSync:
    def __init__(
        self,
        settings: ClientSettings,
        transport: Transport,
        clock: Callable[[], float],
        random: Callable[[], float],
        log: LogOnce,
        apply: Callable[[Snapshot], None],
        confirm: Callable[[], None],
        current_etag: Callable[[], str | None],
    ) -> None:
        self._s = settings
        self._transport = transport
        self._clock = clock
        self._random = random
        self._log = log
        self._apply = apply
        self._confirm = confirm
        self._current_etag = current_etag
        self._backoff = Backoff(settings.backoff_initial, settings.backoff_max, random)
        self._auth = auth_headers(settings.sdk_key)
        self.mode = "stream" if settings.stream else "poll"
        self._stream_failures = 0
        self._retry_stream_at: float | None = None  # None: retry after the next successful poll
        self._active: EventStream | None = None
        self._closing = False

    # -- the loop body -------------------------------------------------------------------------------------

    def step(self) -> float:
        return self._stream_once() if self.mode == "stream" else self._poll_once()

    def interrupt(self) -> None:
        """Stop: close the open stream (from another thread) so the reader returns."""
        self._closing = True
        active = self._active
        if active is not None:
            with contextlib.suppress(Exception):
                active.close()

    # -- stream --------------------------------------------------------------------------------------------

    def _stream_once(self) -> float:
        headers = {**self._auth, "Accept": "text/event-stream", "Cache-Control": "no-cache"}
        try:
            stream = self._transport.open_stream(STREAM_PATH, headers, self._s.stream_read_timeout)
        except TransportError as exc:
            return self._stream_unavailable(str(exc), refused=exc.refused)
        self._active = stream
        try:
            if self._closing:
                return 0.0
            if stream.status in (401, 403):
                return self._unauthorized(stream.status)
            if stream.status in _NOT_HERE:
                return self._stream_unavailable(f"stream answered {stream.status}", refused=False)
            if stream.status != 200:
                return self._server_error(f"stream answered {stream.status}")
            if not stream.headers.get("content-type", "").startswith("text/event-stream"):
                return self._stream_unavailable("stream answered something other than an event stream", False)
            self._stream_failures = 0
            for kind in ("stream_unavailable", "server_unreachable", "server_error", "unauthorized"):
                self._log.clear(kind)
            self._read(stream)
        except TransportError as exc:
            if not self._closing:
                self._log.warning("stream_interrupted", "config stream interrupted, reconnecting: %s", exc)
        finally:
            self._active = None
            with contextlib.suppress(Exception):
                stream.close()
        return self._backoff.next()

    def _read(self, stream: EventStream) -> None:
        for event in parse_events(stream.lines()):
            if self._closing:
                return
            if event.event == HEARTBEAT:
                self._confirm()
            elif event.event == "snapshot" and self._offer(event.data):
                self._backoff.reset()
                self._log.clear("stream_interrupted")

    def _stream_unavailable(self, reason: str, refused: bool) -> float:
        self._stream_failures += 1
        if self._stream_failures >= self._s.stream_fallback_after:
            self._log.warning("stream_unavailable", "config stream unavailable (%s); polling instead", reason)
            self.mode = "poll"
            self._retry_stream_at = None if refused else self._clock() + self._s.stream_retry_interval
            self._backoff.reset()
            return 0.0 if not refused else self._backoff.next()
        if refused:
            self._log.warning("server_unreachable", "flagsvc server unreachable: %s", reason)
        return self._backoff.next()

    # -- polling -------------------------------------------------------------------------------------------

    def _poll_once(self) -> float:
        headers = dict(self._auth)
        etag = self._current_etag()
        if etag:
            headers["If-None-Match"] = etag
        try:
            response = self._transport.request("GET", FLAGS_PATH, headers, None, self._s.request_timeout)
        except TransportError as exc:
            self._log.warning("server_unreachable", "flagsvc server unreachable: %s", exc)
            return self._backoff.next()
        if response.status in (401, 403):
            return self._unauthorized(response.status)
        if response.status == 304:
            self._confirm()
        elif response.status == 200:
            if not self._offer(response.body):
                return self._backoff.next()
        else:
            return self._server_error(f"GET {FLAGS_PATH} answered {response.status}")
        self._backoff.reset()
        for kind in ("server_unreachable", "server_error", "unauthorized"):
            self._log.clear(kind)
        if self._s.stream and (self._retry_stream_at is None or self._clock() >= self._retry_stream_at):
            self.mode = "stream"
            self._stream_failures = self._s.stream_fallback_after - 1  # one more failure: straight back
            return 0.0
        return self._s.poll_interval

    # -- shared --------------------------------------------------------------------------------------------

    def _offer(self, data: str | bytes) -> bool:
        try:
            snapshot = loads_snapshot(data)
        except SnapshotError as exc:
            self._log.warning(exc.kind, "ignored a malformed config snapshot: %s", exc)
            return False
        self._apply(snapshot)
        self._confirm()
        return True

    def _unauthorized(self, status: int) -> float:
        self._log.warning(
            "unauthorized", "the server refused the SDK key (%s); keeping the last config, retrying", status
        )
        return self._s.auth_backoff * (0.5 + 0.5 * self._random())

    def _server_error(self, reason: str) -> float:
        self._log.warning("server_error", "config request failed: %s", reason)
        return self._backoff.next()


class Carryover:
    """Flags kept from the previous epoch's last snapshot while the server's new epoch lacks them.

    A new epoch means the server's dataset was reset (docs/protocol.md). If it came back without flags this
    client was evaluating, answering the default for everyone would flip every canary user back at once: the
    client keeps answering those flags from the last snapshot it held, until the new epoch has them again (a
    flag the new epoch has is always taken from it). `merge` runs when a snapshot is applied, never on the hot
    path: `is_enabled` sees one compiled config as before.
    """

    __slots__ = ("_logged", "flags")

    def __init__(self) -> None:
        self.flags: frozenset[str] = frozenset()  # the keys answered from a previous epoch
        self._logged: set[str] = set()  # epochs already reported: once each, however many snapshots follow

    def merge(self, held: Snapshot | None, incoming: Snapshot) -> Snapshot:
        """`incoming`, plus the flags of `held` to carry over (the merged snapshot keeps incoming's epoch,
        version and raw document: the cache file stores what the server sent)."""
        if held is None:
            self.flags = frozenset()
            return incoming
        if incoming.epoch == held.epoch:
            keep = frozenset(k for k in self.flags if k not in incoming.flags)
        else:
            keep = frozenset(k for k in held.flags if k not in incoming.flags)
            if keep and incoming.epoch not in self._logged:
                self._logged.add(incoming.epoch)
                _log_error(
                    "flagsvc: the server's config was reset (epoch %s -> %s) and lacks %d flag(s) this client was "
                    "evaluating: %s. Answering them from the last snapshot until the server has them again "
                    "(status 'carried_over'; see docs/recovery.md)",
                    held.epoch, incoming.epoch, len(keep), ", ".join(sorted(keep)),
                )
        if self.flags and not keep:
            _log_error("flagsvc: the server has every flag again; nothing is carried over from the reset (%s)",
                       ", ".join(sorted(self.flags)), level=20)
        self.flags = keep
        if not keep:
            return incoming
        flags = {key: held.flags[key] for key in keep}
        flags.update(incoming.flags)
        segments = {**held.segments, **incoming.segments}  # a carried flag keeps the segments it was evaluated with
        return Snapshot(epoch=incoming.epoch, version=incoming.version, flags=flags, raw=incoming.raw,
                        segments=segments)


def _log_error(message: str, *args: object, level: int = 40) -> None:
    """Loudly (ERROR), and not through LogOnce: its `error` attaches a traceback there is none of here."""
    try:
        import logging

        logging.getLogger(LOGGER_NAME).log(level, message, *args)
    except Exception:  # a broken handler must not break applying a snapshot
        pass

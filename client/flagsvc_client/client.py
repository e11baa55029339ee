"""FlagClient: evaluates flags locally from the last applied snapshot, and reports outcomes in batches.

The application's threads only read one reference (the compiled config, swapped whole when a snapshot is applied)
and add to the outcome window under one short lock. Everything slow happens on two daemon threads, each looping
over a step function that tests drive by hand: `_config_step` (stream or poll, `_config.py`) and `_outcomes_step`
(cut, send, retry, `_reporter.py`). No public method raises: failures answer the caller's default, are logged
once per kind, and show in `status` and `stats`.
"""

from __future__ import annotations

import threading
import time
from math import ceil, log2

from flagsvc_client import _cache
from flagsvc_client._arm_watch import watch_arms
from flagsvc_client._config import Carryover, ConfigSync
from flagsvc_client._evaluations import EvaluationCounts
from flagsvc_client._lifecycle import spawn_loop, watch_forks
from flagsvc_client._log import LogOnce
from flagsvc_client._outcomes import CANARY, DRAIN_AT, ERROR, NO_LATENCY, OutcomeWindow
from flagsvc_client._reporter import OutcomeReporter
from flagsvc_client._rules import CompiledConfig, OutsideRollout, Unanswerable, explain
from flagsvc_client._track import Track
from flagsvc_client._transport import HttpTransport
from flagsvc_client.protocol.sketch import _INV_LOG2_GAMMA as INV_LOG2_GAMMA
from flagsvc_client.protocol.targeting import InvalidContext
from flagsvc_client.result import Evaluation, Reason, Status
from flagsvc_client.settings import ClientSettings

TYPE_CHECKING = False  # `typing` costs ~3 ms to import; type checkers treat this name as True
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, TypeAlias

    # An evaluation context (docs/targeting.md): attribute names to str, int, float, bool or a list of str. Only
    # the attributes a flag's segments or bucket_by read are looked at; an OpenFeature context's attributes fit.
    Context: TypeAlias = Mapping[str, object]

    from flagsvc_client._transport import Transport
    from flagsvc_client.snapshot import Snapshot


class FlagClient:
    """`FlagClient(url, sdk_key=..., **settings)`, settings being ClientSettings' fields (docs/sdk.md).
    `transport`, `clock` (monotonic seconds) and `random` (0..1, for jitter) are injectable for tests."""

    def __init__(
        self,
        url: str | None = None,
        *,
        sdk_key: str = "",
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] | None = None,
        **settings: Any,
    ) -> None:
        self.settings = s = ClientSettings(url=url, sdk_key=sdk_key, **settings)
        if random is None:
            import random as _random

            random = _random.random
        self._clock, self._random = clock, random
        self._transport = None if s.offline else transport or HttpTransport(s.url or "", s.connect_timeout)
        self._log = LogOnce()
        self._carryover = Carryover()
        self._evaluations: EvaluationCounts | None = None
        self._config_listeners: list[Callable[[Snapshot | None, Snapshot], None]] = []
        self._install(CompiledConfig(None))
        self._confirmed_at: float | None = None
        self._closed = False
        self._restart_needed = False
        self._threads: list[threading.Thread] = []
        self._snapshot_stats = {"snapshots_applied": 0, "snapshots_rejected": 0}
        self._fresh_state()
        self._load_initial()
        watch_forks(self)
        self._start_threads()

    def _fresh_state(self) -> None:
        """Locks, events, outcome tallies and queue, config sync: new at construction and in a forked child."""
        self._apply_lock = threading.Lock()
        self._restart_lock = threading.Lock()
        self._stop, self._wake_config = threading.Event(), threading.Event()
        self._ready = threading.Event()
        self._reporter: OutcomeReporter | None = None
        self._sync: ConfigSync | None = None
        if self._transport is None:  # offline: outcomes have nowhere to go
            self._window = OutcomeWindow(1, 1, lambda: None)
            self._window.discard()
        else:
            args = (self.settings, self._transport, self._clock, self._random, self._log)
            self._reporter = OutcomeReporter(*args)
            self._window = self._reporter.window
            watch_arms(self._window, self._log, lambda: self._config.snapshot)  # one-armed outcomes warn, at cuts
            self._sync = ConfigSync(
                *args, apply=self._apply_from_server, confirm=self._confirm, current_etag=self._current_etag
            )
        self._lock = self._window.lock

    # -- the hot path ---------------------------------------------------------------------------------------

    def is_enabled(self, flag: str, user_id: str | int, default: bool = False, context: Context | None = None) -> bool:
        """Is this user on the canary path of `flag`? `context`: the attributes targeting reads (docs/targeting.md).
        Never raises; `default` when it cannot tell."""
        try:
            return self._rules[flag](user_id, context)
        except Exception:
            return self._is_enabled_slow(flag, user_id, default, context)

    def _is_enabled_slow(self, flag: str, user_id: str | int, default: bool, context: Context | None) -> bool:
        """No rule answered: not ready, an unknown flag (cheap: it may come on every request), or an error."""
        try:
            snapshot = self._config.snapshot
            if snapshot is not None and flag not in snapshot.flags and not self._restart_needed:
                self._log.warning(("flag_not_found", flag), "unknown flag %r: answering the default", flag)
                return default
        except Exception:
            pass
        return self.evaluate(flag, user_id, default, context).value

    def record(self, flag: str, user_id: str | int, ok: bool = True, latency_ms: float | None = None,
               context: Context | None = None) -> None:
        """Count one request's outcome in the arm this user is in (recomputed: cheaper than remembering),
        under the flag's current revision; the latency goes into the sketch (sketch.py). Pass the `context` the
        answer was asked with: a user outside a targeted flag's eligible population is counted in neither arm."""
        try:
            rule, stable, canary = self._entries[flag]
            code = rule(user_id, context)  # the user's bucket, plus CANARY on the canary (_outcomes.py)
            tally = canary if code >= CANARY else stable
            # the sketch bucket (sketch.bucket_index, clamped when folded; log2 raises on 0, < 0, NaN, inf)
            event = code + NO_LATENCY if latency_ms is None else code + ceil(log2(latency_ms) * INV_LOG2_GAMMA)
            # None for a retired tally; the append below failing on it is the hot path's only check, on purpose
            events: list[int] = tally.events  # type: ignore[assignment]
            # one int per outcome, appended without a lock: _outcomes.py explains why that is exact
            if ok:
                events.append(event)  # a retired tally has no list: AttributeError, nothing counted
            else:
                events.append(event + ERROR)
                self._window.note_error(tally, user_id)  # never raises
        except Exception:
            self._record_failed(flag, user_id, ok, latency_ms, context)  # nothing was counted: the careful way
            return
        if len(events) >= DRAIN_AT or tally.events is not events:
            self._window.settle(tally, events)

    # -- evaluation, explained -----------------------------------------------------------------------------

    def evaluate(self, flag: str, user_id: str | int, default: bool = False,
                 context: Context | None = None) -> Evaluation:
        """The answer with its reason and the flag's revision. Never raises."""
        try:
            self._restart_if_forked()
            snapshot = self._config.snapshot
            if snapshot is None:
                return Evaluation(value=default, arm=None, reason=Reason.NOT_READY, revision=None)
            config = snapshot.flags.get(flag)
            if config is None:
                self._log.warning(("flag_not_found", flag), "unknown flag %r: answering the default", flag)
                return Evaluation(value=default, arm=None, reason=Reason.FLAG_NOT_FOUND, revision=None)
            try:
                value, reason = explain(config, user_id, context, snapshot.segments)
            except Unanswerable as exc:
                reason = config.unusable[0] if config.unusable else Reason.ERROR
                self._log.warning(("unanswerable", flag), "flag %r answers the default (%s): %s", flag, reason, exc)
                return Evaluation(value=default, arm=None, reason=reason, revision=config.revision)
            except InvalidContext as exc:
                self._log.warning(("invalid_context", flag), "bad context for flag %r (default answered): %s",
                                  flag, exc)
                return Evaluation(value=default, arm=None, reason=Reason.INVALID_CONTEXT, revision=config.revision)
            arm = "canary" if value else "stable"
            if self._evaluations is not None:
                self._evaluations.add(flag, arm)
            return Evaluation(value=value, arm=arm, reason=reason, revision=config.revision)
        except Exception as exc:
            self._log.warning(("evaluate", type(exc)), "evaluation failed (default answered): %r", exc)
            return Evaluation(value=default, arm=None, reason=Reason.ERROR, revision=None)

    def variant(self, flag: str, user_id: str | int, context: Context | None = None) -> str:
        """Either "canary" or "stable" ("stable" whenever the client cannot tell)."""
        try:
            return "canary" if self.is_enabled(flag, user_id, False, context) is True else "stable"
        except Exception:
            return "stable"

    def track(self, flag: str, user_id: str | int, context: Context | None = None) -> Track:
        """`with client.track(flag, user_id) as canary:` times the block and records its outcome (_track.py)."""
        return Track(self, flag, user_id, context)

    def _record_failed(self, flag: str, user_id: str | int, ok: bool, latency_ms: float | None,
                       context: Context | None = None) -> None:
        """The fast path raised before counting anything: a retired tally (first outcome of a flag in a while),
        a fork to restart from, or bad input. Redo it the careful way."""
        try:
            self._restart_if_forked()
            config = self._config
            entry = config.entries.get(flag)
            if entry is None:
                self._log.warning(("record_unknown", flag), "outcome for unknown flag %r dropped", flag)
                return
            rule, stable, canary = entry
            code = rule(user_id, context)
            tally = self._window.add(canary if code >= CANARY else stable, user_id, bool(ok), latency_ms, code)
            if not tally.retired:  # keep the live tally in the config, so the fast path finds it next time
                with self._lock:
                    rule, stable, canary = config.entries[flag]
                    live = (rule, tally, canary) if tally.key[2] == "stable" else (rule, stable, tally)
                    config.entries[flag] = live
        except OutsideRollout:
            return  # outside the flag's eligible population: counted in neither arm, on purpose
        except Unanswerable as exc:
            self._log.warning(("record_unanswerable", flag), "outcome for flag %r dropped: %s", flag, exc)
        except InvalidContext as exc:
            self._log.warning(("record_context", flag), "outcome for flag %r dropped: bad context: %s", flag, exc)
        except Exception:
            self._log.warning("record_invalid", "outcome dropped: bad user id or latency (%r)", latency_ms)

    # -- status --------------------------------------------------------------------------------------------

    @property
    def status(self) -> str:
        """`not_ready` (no config), `ready` (confirmed by the server lately, or offline), `stale` (not lately)."""
        try:
            self._restart_if_forked()
            if self._config.snapshot is None:
                return Status.NOT_READY
            if self.settings.offline:
                return Status.READY
            confirmed = self._confirmed_at
            fresh = confirmed is not None and self._clock() - confirmed <= self.settings.stale_after
            if fresh and self._carryover.flags:
                return Status.CARRIED_OVER
            return Status.READY if fresh else Status.STALE
        except Exception:
            return Status.NOT_READY

    def wait_until_ready(self, timeout: float | None = None) -> bool:
        """Block until a snapshot from the server (offline: any snapshot) is loaded; False on timeout."""
        try:
            self._restart_if_forked()
            return self._ready.wait(timeout)
        except Exception:
            return False

    @property
    def stats(self) -> dict[str, Any]:
        """Counters for monitoring: config applied or rejected; outcomes sent, retried, dropped and why."""
        try:
            snapshot = self._config.snapshot
            return {
                "status": self.status,
                "config_mode": self._sync.mode if self._sync else "offline",
                "config_version": None if snapshot is None else f"{snapshot.epoch}-{snapshot.version}",
                "carried_over": sorted(self._carryover.flags),
                **self._snapshot_stats,
                **(self._reporter.stats if self._reporter else {}),
            }
        except Exception:
            return {}

    # -- applying snapshots --------------------------------------------------------------------------------

    def _install(self, config: CompiledConfig) -> None:
        """Swap the compiled config in. The hot paths read `_rules` / `_entries` (one attribute load each);
        each call reads one of them once, so it sees one config whole."""
        counts = self._evaluations
        rules = config.rules if counts is None else counts.wrap(config.rules)
        self._config, self._rules, self._entries = config, rules, config.entries

    def count_evaluations(self) -> None:
        """From now on, count answers per flag and arm (`evaluation_counts`; the Prometheus collector in
        `flagsvc_client.prometheus` turns this on). Costs one more call per `is_enabled`, so it is off by
        default."""
        with self._apply_lock:
            if self._evaluations is None:
                self._evaluations = EvaluationCounts()
                self._install(self._config)

    def evaluation_counts(self) -> dict[tuple[str, str], int]:
        """{(flag, arm): answers given} since `count_evaluations` (empty while not counting)."""
        try:
            return self._evaluations.totals() if self._evaluations is not None else {}
        except Exception:
            return {}

    def _apply(self, snapshot: Snapshot) -> bool:
        """Install a snapshot if it is newer (docs/protocol.md); returns whether it was installed."""
        with self._apply_lock:
            previous = self._config.snapshot
            if not snapshot.replaces(previous):
                return False
            config = CompiledConfig(self._carryover.merge(previous, snapshot))
            self._install(config)
            self._snapshot_stats["snapshots_applied"] += 1
        if config.snapshot is not None:
            for listener in tuple(self._config_listeners):
                try:
                    listener(previous, config.snapshot)
                except Exception as exc:
                    self._log.warning(("config_listener", type(exc)), "a config listener failed: %r", exc)
        return True

    def add_config_listener(self, listener: Callable[[Snapshot | None, Snapshot], None]) -> None:
        """Call `listener(previous, current)` after each new snapshot is installed, on the thread that installed
        it (the config thread): for adapters such as the OpenFeature provider. Keep it short; if it raises, the
        error is logged and the config stays applied."""
        self._config_listeners.append(listener)

    @property
    def snapshot(self) -> Snapshot | None:
        """The config evaluations answer from (None before any): flags with their percent, state, revision."""
        return self._config.snapshot

    def _apply_from_server(self, snapshot: Snapshot) -> None:
        if self._apply(snapshot) and self.settings.cache_file:
            try:
                _cache.write_snapshot_file(self.settings.cache_file, snapshot)
                self._log.clear("cache_write")
            except Exception as exc:
                self._log.warning("cache_write", "cannot write the snapshot cache file: %r", exc)

    def _confirm(self) -> None:
        if self._config.snapshot is not None:
            self._confirmed_at = self._clock()
            self._ready.set()

    def _current_etag(self) -> str | None:
        snapshot = self._config.snapshot
        return None if snapshot is None else snapshot.etag

    def _load_initial(self) -> None:
        snapshots, problems = _cache.initial_snapshots(self.settings.bootstrap, self.settings.cache_file)
        for _, snapshot in snapshots:
            self._apply(snapshot)
        for kind, message in problems:
            self._snapshot_stats["snapshots_rejected"] += kind.endswith("_invalid")
            self._log.warning(kind, "%s", message)
        if self.settings.offline and self._config.snapshot is not None:
            self._ready.set()

    # -- background threads --------------------------------------------------------------------------------

    def _config_step(self) -> float:
        return self._sync.step() if self._sync else self.settings.poll_interval

    def _outcomes_step(self) -> float:
        return self._reporter.step() if self._reporter else self.settings.flush_interval

    def _start_threads(self) -> None:
        if not self.settings.background or self._reporter is None or self._closed:
            return
        self._threads = [
            spawn_loop("flagsvc-config", self._config_step, self._stop, self._wake_config, self._log, 5.0),
            spawn_loop("flagsvc-outcomes", self._outcomes_step, self._stop, self._reporter.wake, self._log, 5.0),
        ]

    # -- flush and close -----------------------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Send every outcome recorded so far; True once the server acknowledged all of them."""
        try:
            self._restart_if_forked()
            return True if self._reporter is None else self._reporter.flush(timeout)
        except Exception as exc:
            self._log.warning(("flush", type(exc)), "flush failed: %r", exc)
            return False

    def close(self, timeout: float = 5.0) -> None:
        """Flush what was recorded, waiting at most `timeout` seconds for the server (0: not at all), then stop
        the threads. Evaluation keeps answering from the last config; `record` does nothing. Twice is harmless.
        The SDK calls it at interpreter exit itself, with `exit_flush_timeout` (_lifecycle.py)."""
        if self._closed:
            return
        try:
            self._closed = True
            deadline = time.monotonic() + max(0.0, timeout)
            self._stop.set()
            self._wake_config.set()
            if self._reporter is not None:
                self._reporter.wake.set()
            if self._sync is not None:
                self._sync.interrupt()
            if timeout > 0 and self._reporter is not None:
                self._flush_within(timeout)
            if self._reporter is not None and (left := self._reporter.delivery.pending_outcomes()):
                self._log.warning("close_undelivered", "closing with %d outcome(s) the server has not acknowledged "
                                  "(unreachable or rate-limiting): they are lost", left)
            self._window.discard()  # later outcomes have nowhere to go
            for thread in self._threads:
                thread.join(max(0.0, min(0.5, deadline - time.monotonic())))
        except Exception as exc:
            self._log.warning("close", "close failed: %r", exc)

    def _flush_within(self, timeout: float) -> None:
        """flush(timeout), with the caller back within `timeout` even when one request outlasts it (a server
        that accepts connections and never answers holds one for request_timeout): the flush runs on a daemon
        thread, which the interpreter drops at exit if it is still waiting then."""
        flusher = threading.Thread(target=self.flush, args=(timeout,), name="flagsvc-close", daemon=True)
        try:
            flusher.start()
        except RuntimeError:  # no new threads at this point of interpreter shutdown (some Pythons): flush here
            self.flush(timeout)
            return
        flusher.join(timeout)

    def _close_at_exit(self, started: float) -> None:
        """The exit hook (_lifecycle.py): close within `exit_flush_timeout` of `started`, so that all clients
        together wait no longer than the longest timeout among them."""
        timeout = self.settings.exit_flush_timeout
        if timeout > 0 and not self._closed:
            self.close(max(0.0, started + timeout - time.monotonic()))

    def __enter__(self) -> FlagClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- fork (see _lifecycle.py) ---------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        ready = self._ready.is_set()
        if not self._restart_needed:  # (a fork of a fork before any use keeps the config parked already)
            self._parked = CompiledConfig(self._config.snapshot)  # not the parent's tallies
        self._install(CompiledConfig(None))  # every call now misses, and its slow path restarts us first
        self._fresh_state()
        if ready:
            self._ready.set()
        if self._closed:
            self._window.discard()
        self._threads = []
        self._restart_needed = True

    def _restart_if_forked(self) -> bool:
        if not self._restart_needed:
            return False
        with self._restart_lock:
            if not self._restart_needed:
                return False
            self._install(self._parked)
            self._restart_needed = False
            self._start_threads()
            return True

"""FlagsvcProvider: flagsvc behind the OpenFeature API (`pip install "flagsvc-client[openfeature]"`).

    from openfeature import api
    from flagsvc_client import FlagClient
    from flagsvc_client.openfeature import FlagsvcProvider

    api.set_provider(FlagsvcProvider(FlagClient(url, sdk_key="fss_...")))
    flags = api.get_client()
    flags.get_boolean_value("new_checkout", False, EvaluationContext("user-42", {"country": "NZ"}))

Evaluation is the wrapped FlagClient's, from its local snapshot: the targeting key is the user id and the other
attributes are the flagsvc evaluation context. The variant is the arm ("canary" or "stable"); flags are boolean, so
any other type answers the default with TYPE_MISMATCH. Status follows the client's (ready, stale), read by a small
watcher thread, and each new snapshot that changes flags is a PROVIDER_CONFIGURATION_CHANGED event naming them.
`track(flag, context, TrackingEventDetails(value=latency_ms, attributes={"ok": False}))` records an outcome in the
arm the user is in. Nothing here raises into the application. docs/openfeature.md has the behaviour table.

Only this module imports `openfeature`: the base SDK does not depend on it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from openfeature.event import ProviderEvent, ProviderEventDetails
from openfeature.exception import ErrorCode, ProviderNotReadyError
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType
from openfeature.flag_evaluation import Reason as OFReason
from openfeature.provider import AbstractProvider, Metadata

from flagsvc_client._log import LogOnce
from flagsvc_client.client import FlagClient
from flagsvc_client.result import Reason, Status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.track import TrackingEventDetails

    from flagsvc_client.snapshot import Snapshot

__all__ = ["FlagsvcProvider"]

# flagsvc's reasons for an answer a rule gave, as OpenFeature reasons (spec 2.2.5)
_REASONS: Mapping[str, str] = {
    Reason.ROLLOUT: OFReason.SPLIT,  # the user's hash bucket against the rollout percent
    Reason.ALLOW_LIST: OFReason.TARGETING_MATCH,
    Reason.DENY_LIST: OFReason.TARGETING_MATCH,
    Reason.EXCLUDED_SEGMENT: OFReason.TARGETING_MATCH,
    Reason.KILLED: OFReason.DISABLED,  # off or rolled back: stable for everyone
    Reason.NOT_ELIGIBLE: OFReason.DEFAULT,  # outside the eligible population: the flag's own default, stable
    Reason.NO_BUCKET_ATTRIBUTE: OFReason.DEFAULT,
}
# flagsvc's reasons for answering the caller's default, as OpenFeature error codes (spec 2.2.7)
_ERRORS: Mapping[str, ErrorCode] = {
    Reason.NOT_READY: ErrorCode.PROVIDER_NOT_READY,
    Reason.FLAG_NOT_FOUND: ErrorCode.FLAG_NOT_FOUND,
    Reason.INVALID_CONTEXT: ErrorCode.INVALID_CONTEXT,
    Reason.UNSUPPORTED: ErrorCode.PARSE_ERROR,  # a flag config this SDK cannot read
}
_STATUS_EVENTS: Mapping[str, ProviderEvent] = {
    Status.READY: ProviderEvent.PROVIDER_READY,
    Status.CARRIED_OVER: ProviderEvent.PROVIDER_READY,  # confirmed by the server; some flags from the last epoch
    Status.STALE: ProviderEvent.PROVIDER_STALE,
    Status.NOT_READY: ProviderEvent.PROVIDER_ERROR,  # after initialize: no config to answer from
}


class FlagsvcProvider(AbstractProvider):
    """An OpenFeature provider on a FlagClient. `init_timeout`: how long `initialize` waits for the server's
    config (past it with no config at all, initialize fails: status ERROR until a config arrives, then READY).
    `status_interval`: seconds between looks at the client's status (STALE is the absence of news, so it is
    looked for). `close_client`: close the FlagClient (flushing its outcomes) at shutdown."""

    def __init__(self, client: FlagClient, *, init_timeout: float = 10.0, status_interval: float = 0.5,
                 close_client: bool = False) -> None:
        super().__init__()
        self.client = client
        self._init_timeout = init_timeout
        self._interval = status_interval
        self._close_client = close_client
        self._log = LogOnce()
        self._lock = threading.Lock()  # one status transition at a time, from the watcher or the config thread
        self._reported: ProviderEvent | None = None  # None: not initialized (nothing is emitted)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        client.add_config_listener(self._config_changed)

    def get_metadata(self) -> Metadata:
        return Metadata(name="flagsvc")

    # -- lifecycle (spec 2.4, 2.5, 2.8) ------------------------------------------------------------------------

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Wait for the server's config; with none at all by `init_timeout`, fail (the SDK then emits ERROR)."""
        self._stop = threading.Event()
        ready = self.client.wait_until_ready(self._init_timeout)
        have_config = ready or self.client.snapshot is not None
        with self._lock:
            # what the SDK makes of initialize's end: READY, or ERROR when it raises; the watcher goes on from there
            self._reported = ProviderEvent.PROVIDER_READY if have_config else ProviderEvent.PROVIDER_ERROR
        self._watcher = threading.Thread(target=self._watch, args=(self._stop,), name="flagsvc-openfeature",
                                         daemon=True)
        self._watcher.start()
        if not have_config:
            raise ProviderNotReadyError(f"no flag config from the server within {self._init_timeout} s")

    def shutdown(self) -> None:
        """Stop watching, back to uninitialized; twice is harmless. The client is closed if `close_client`."""
        with self._lock:
            self._reported = None
        self._stop.set()
        if self._close_client:
            self.client.close()

    # -- status and events (spec 5.1, 1.7) ---------------------------------------------------------------------

    def _watch(self, stop: threading.Event) -> None:
        while not stop.wait(self._interval):
            self._check_status()

    def _check_status(self, details: ProviderEventDetails | None = None) -> None:
        """Emit the event of a status change (READY, STALE, ERROR) once, when the client's status moved."""
        try:
            event = _STATUS_EVENTS.get(self.client.status, ProviderEvent.PROVIDER_ERROR)
            with self._lock:
                if self._reported is None or event == self._reported:
                    return
                self._reported = event
                if details is None:
                    details = ProviderEventDetails(message=f"flagsvc client status: {self.client.status}")
                if event == ProviderEvent.PROVIDER_ERROR:
                    details.error_code = ErrorCode.PROVIDER_NOT_READY
                self.emit(event, details)
        except Exception as exc:
            self._log.warning(("openfeature_status", type(exc)), "provider status check failed: %r", exc)

    def _config_changed(self, previous: Snapshot | None, current: Snapshot) -> None:
        """The client installed a new snapshot (its config thread): READY if it was not, and which flags changed."""
        if self._reported is None:
            return
        self._check_status()
        if previous is None:
            return
        changed = _changed_flags(previous, current)
        if changed:
            with self._lock:
                if self._reported is None:
                    return
                self.emit(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, ProviderEventDetails(
                    flags_changed=changed, metadata={"version": current.version, "epoch": current.epoch}))

    # -- evaluation (spec 2.2) ---------------------------------------------------------------------------------

    def resolve_boolean_details(self, flag_key: str, default_value: bool,
                                evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[bool]:
        try:
            user_id, context = _user_and_context(evaluation_context)
            if user_id is None:
                return _error(default_value, ErrorCode.TARGETING_KEY_MISSING,
                              "flagsvc buckets users by the targeting key: none given")
            answer = self.client.evaluate(flag_key, user_id, default_value, context)
            if answer.arm is None:  # no rule answered: the caller's default
                code = _ERRORS.get(answer.reason)
                if code is None:  # a flag this SDK knows but cannot evaluate, or a bad key or a bug
                    code = ErrorCode.PARSE_ERROR if answer.revision is not None else ErrorCode.GENERAL
                return _error(default_value, code, f"flagsvc answered the default: {answer.reason}",
                              self._metadata(flag_key, answer.reason))
            return FlagResolutionDetails(value=answer.value, variant=answer.arm,
                                         reason=_REASONS.get(answer.reason, OFReason.UNKNOWN),
                                         flag_metadata=self._metadata(flag_key, answer.reason))
        except Exception as exc:
            self._log.warning(("openfeature_evaluate", type(exc)), "evaluation failed (default answered): %r", exc)
            return _error(default_value, ErrorCode.GENERAL, repr(exc))

    def _metadata(self, flag_key: str, reason: str) -> dict[str, bool | int | float | str]:
        snapshot = self.client.snapshot  # (only called with a key evaluate() has looked up: hashable)
        config = None if snapshot is None else snapshot.flags.get(flag_key)
        if config is None:
            return {}
        return {"revision": config.revision, "percent": config.percent, "state": config.state,
                "flagsvcReason": reason}

    def _not_boolean(self, flag_key: str, default_value: Any) -> FlagResolutionDetails[Any]:
        try:
            snapshot = self.client.snapshot
            if snapshot is None:
                return _error(default_value, ErrorCode.PROVIDER_NOT_READY, "no flag config yet")
            if flag_key not in snapshot.flags:
                return _error(default_value, ErrorCode.FLAG_NOT_FOUND, f"no flag {flag_key!r}")
            return _error(default_value, ErrorCode.TYPE_MISMATCH, "flagsvc flags are boolean")
        except Exception as exc:  # an unhashable key, say
            return _error(default_value, ErrorCode.GENERAL, repr(exc))

    def resolve_string_details(self, flag_key: str, default_value: str,
                               evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[str]:
        return self._not_boolean(flag_key, default_value)

    def resolve_integer_details(self, flag_key: str, default_value: int,
                                evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[int]:
        return self._not_boolean(flag_key, default_value)

    def resolve_float_details(self, flag_key: str, default_value: float,
                              evaluation_context: EvaluationContext | None = None) -> FlagResolutionDetails[float]:
        return self._not_boolean(flag_key, default_value)

    def resolve_object_details(
        self, flag_key: str, default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._not_boolean(flag_key, default_value)

    # -- tracking (spec 2.7, 6) --------------------------------------------------------------------------------

    def track(self, tracking_event_name: str, evaluation_context: EvaluationContext | None = None,
              tracking_event_details: TrackingEventDetails | None = None) -> None:
        """One outcome of `flag` (the event name, or a "flag" attribute) for the context's user, in the arm that
        user is in: the details' `value` is the latency in ms, attribute "ok" (default True) or "error" says how it
        went. Without a targeting key nothing is recorded (logged once)."""
        try:
            user_id, context = _user_and_context(evaluation_context)
            attributes: Mapping[str, Any] = tracking_event_details.attributes if tracking_event_details else {}
            flag = attributes.get("flag")
            flag = flag if isinstance(flag, str) else tracking_event_name
            if user_id is None:
                self._log.warning("openfeature_track_no_key", "track(%r) without a targeting key: not recorded", flag)
                return
            ok = bool(attributes.get("ok", True)) and not attributes.get("error", False)
            latency = tracking_event_details.value if tracking_event_details else None
            self.client.record(flag, user_id, ok=ok, latency_ms=latency, context=context)
        except Exception as exc:
            self._log.warning(("openfeature_track", type(exc)), "track failed (not recorded): %r", exc)


def _user_and_context(evaluation_context: EvaluationContext | None) -> tuple[str | None, dict[str, Any] | None]:
    if evaluation_context is None:
        return None, None
    key = evaluation_context.targeting_key
    attributes = dict(evaluation_context.attributes) if evaluation_context.attributes else None
    return (key if key else None), attributes


def _error(default_value: Any, code: ErrorCode, message: str,
           metadata: Mapping[str, bool | int | float | str] | None = None) -> FlagResolutionDetails[Any]:
    return FlagResolutionDetails(value=default_value, reason=OFReason.ERROR, error_code=code, error_message=message,
                                 flag_metadata=metadata or {})


def _changed_flags(previous: Snapshot, current: Snapshot) -> list[str]:
    """Flags added, removed or changed, a change to a segment a flag reads included."""
    before, after = _segment_docs(previous), _segment_docs(current)  # compiled segments do not compare: their docs
    segments = {name for name in {*before, *after} if before.get(name) != after.get(name)}
    changed = []
    for key in sorted({*previous.flags, *current.flags}):
        old, new = previous.flags.get(key), current.flags.get(key)
        if old != new or (new is not None and segments.intersection((*new.excluded, *new.eligible))):
            changed.append(key)
    return changed


def _segment_docs(snapshot: Snapshot) -> Mapping[str, Any]:
    docs = snapshot.raw.get("segments") if isinstance(snapshot.raw, Mapping) else None
    return docs if isinstance(docs, Mapping) else {}

"""OpenFeature Remote Evaluation Protocol (OFREP) answers, computed from the snapshot the SDKs are served.

A user must get the same arm whether it asks the Python SDK or an OFREP provider in any language, so nothing is
re-implemented here: the served snapshot is parsed with the SDK's own parser and each flag evaluated with the
SDK's own rule (`flagsvc_client._rules.explain`, the function `FlagClient.evaluate` calls) and outcome rule (which
arm and user bucket `record` would count). That is the one place the server imports SDK internals, on purpose:
two copies of the targeting order would drift. The parsed snapshot is kept per served snapshot, so a request
costs the evaluation, not a parse.

The request's `context.targetingKey` is the user id (a string, or an integer as the SDK takes it); every other
attribute of `context` is the evaluation context `FlagClient.is_enabled(..., context=...)` takes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flagsvc_client._outcomes import CANARY, UNIT_MASK, UNIT_SHIFT
from flagsvc_client._rules import OutcomeRule, OutsideRollout, Unanswerable, compile_outcome_rule, explain
from flagsvc_client.protocol.bucketing import InvalidUserId
from flagsvc_client.protocol.targeting import InvalidContext
from flagsvc_client.result import Reason
from flagsvc_client.snapshot import Snapshot, loads_snapshot

from flagsvc.service.snapshots import ServedSnapshot

log = logging.getLogger("flagsvc.ofrep")

TARGETING_KEY = "targetingKey"
# flagsvc's reason -> OFREP's (the spec's success reasons: STATIC, TARGETING_MATCH, SPLIT, DISABLED, UNKNOWN)
OFREP_REASONS = {
    Reason.ROLLOUT: "SPLIT",
    Reason.KILLED: "DISABLED",
    Reason.ALLOW_LIST: "TARGETING_MATCH",
    Reason.DENY_LIST: "TARGETING_MATCH",
    Reason.EXCLUDED_SEGMENT: "TARGETING_MATCH",
    Reason.NOT_ELIGIBLE: "TARGETING_MATCH",
    Reason.NO_BUCKET_ATTRIBUTE: "TARGETING_MATCH",
}


class OfrepRequestError(Exception):
    """The request as a whole cannot be evaluated: `code` is OFREP's errorCode (PARSE_ERROR,
    TARGETING_KEY_MISSING, INVALID_CONTEXT), always a 400."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


@dataclass(frozen=True)
class EvaluationRequest:
    """A request's context split the SDK's way: the user id, and the other attributes."""

    user_id: str | int
    attributes: dict[str, Any]
    canonical: str  # the context as canonical JSON: with the config version, what the bulk ETag names


@dataclass(frozen=True)
class FlagAnswer:
    """One flag evaluated: `error_code` is None on success, else OFREP's code and `details` why."""

    key: str
    value: bool = False
    variant: str = ""
    reason: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    details: str = ""


def parse_request(body: object) -> EvaluationRequest:
    """The decoded JSON body of an evaluation request, checked; OfrepRequestError naming what is wrong."""
    if not isinstance(body, dict):
        raise OfrepRequestError("PARSE_ERROR", f"the body must be a JSON object, not {type(body).__name__}")
    context = body.get("context")
    if context is None:
        raise OfrepRequestError("TARGETING_KEY_MISSING", "context is missing: context.targetingKey is the user id")
    if not isinstance(context, dict):
        raise OfrepRequestError("INVALID_CONTEXT", f"context must be an object, not {type(context).__name__}")
    user_id = context.get(TARGETING_KEY)
    if user_id is None:
        raise OfrepRequestError("TARGETING_KEY_MISSING", "context.targetingKey (the user id) is missing")
    if type(user_id) is not str and type(user_id) is not int:
        raise OfrepRequestError("INVALID_CONTEXT", "context.targetingKey must be a string (or an integer)")
    if type(user_id) is str:
        try:
            user_id.encode()  # a lone surrogate (legal as a JSON escape) is no user id
        except UnicodeEncodeError:
            raise OfrepRequestError("INVALID_CONTEXT", "context.targetingKey is not valid Unicode text") from None
    try:
        canonical = json.dumps(context, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    except (ValueError, RecursionError):
        raise OfrepRequestError("INVALID_CONTEXT", "context is nested too deeply") from None
    attributes = {name: value for name, value in context.items() if name != TARGETING_KEY}
    return EvaluationRequest(user_id, attributes, canonical)


class CompiledSnapshot:
    """One served snapshot, parsed by the SDK's parser, with each flag's outcome rule compiled on first use."""

    def __init__(self, served: ServedSnapshot) -> None:
        self.served = served
        self.snapshot: Snapshot = loads_snapshot(served.body)
        self._outcome_rules: dict[str, OutcomeRule] = {}

    @property
    def etag(self) -> str:
        return self.served.etag

    def outcome_rule(self, key: str) -> OutcomeRule:
        rule = self._outcome_rules.get(key)
        if rule is None:
            rule = compile_outcome_rule(self.snapshot.flags[key], self.snapshot.segments)
            self._outcome_rules[key] = rule  # a race compiles it twice, harmlessly
        return rule

    def evaluate(self, key: str, request: EvaluationRequest) -> FlagAnswer | None:
        """The flag for this user and context, as FlagClient.evaluate answers it; None for an unknown flag."""
        flag = self.snapshot.flags.get(key)
        if flag is None:
            return None
        try:
            value, reason = explain(flag, request.user_id, request.attributes, self.snapshot.segments)
        except Unanswerable as exc:
            return FlagAnswer(key, error_code="GENERAL", details=str(exc))
        except (InvalidContext, InvalidUserId, UnicodeEncodeError) as exc:
            return FlagAnswer(key, error_code="INVALID_CONTEXT", details=str(exc))
        except Exception as exc:  # a bug: the SDK answers its default here, OFREP says GENERAL
            log.warning("OFREP evaluation of %r failed: %r", key, exc)
            return FlagAnswer(key, error_code="GENERAL", details="the flag could not be evaluated")
        metadata: dict[str, Any] = {"revision": flag.revision, "percent": flag.percent, "state": flag.state,
                                    "flagsvcReason": reason}
        unit = self._unit(key, request, value)
        if unit is not None:
            metadata["unit"] = unit
        return FlagAnswer(key, value=value, variant="canary" if value else "stable",
                          reason=OFREP_REASONS.get(reason, "UNKNOWN"), metadata=metadata)

    def _unit(self, key: str, request: EvaluationRequest, value: bool) -> int | None:
        """The user bucket an outcome of this user is counted in (docs/protocol.md, `units`), or None when the
        SDK would count it in neither arm (outside a targeted flag's eligible population)."""
        try:
            code = self.outcome_rule(key)(request.user_id, request.attributes)
        except OutsideRollout:
            return None
        except Exception as exc:
            log.warning("OFREP: no user bucket for %r: %r", key, exc)
            return None
        if (code >= CANARY) != value:  # the two rules disagree: never report a bucket for the wrong arm
            log.warning("OFREP: the outcome rule of %r put a user in the other arm", key)
            return None
        return (code & UNIT_MASK) >> UNIT_SHIFT

    def evaluate_all(self, request: EvaluationRequest) -> list[FlagAnswer]:
        return [answer for key in sorted(self.snapshot.flags)
                if (answer := self.evaluate(key, request)) is not None]

    def bulk_etag(self, request: EvaluationRequest) -> str:
        """The bulk answer's ETag: the config version and the context, so a changed flag or another context is a
        new tag (the answer is a function of both)."""
        digest = hashlib.sha256(request.canonical.encode()).hexdigest()[:20]
        return f'"{self.etag.strip(chr(34))}-{digest}"'


class OfrepEvaluator:
    """OFREP evaluation on the current served snapshot (`latest`: the change feed's, which SDKs are sent). While
    the store is unreachable, the last snapshot this process compiled answers, as SDKs keep evaluating from the
    last one they received (and SDK streams stay open on it); with none yet, the store's error goes up (a 503)."""

    def __init__(self, latest: Callable[[], ServedSnapshot]) -> None:
        self._latest = latest
        self._compiled: CompiledSnapshot | None = None
        self._stale = False  # answering from the last snapshot: logged once per outage

    def current(self) -> CompiledSnapshot:
        try:
            served = self._latest()
        except Exception as exc:
            if self._compiled is None:
                raise
            if not self._stale:
                self._stale = True
                log.warning("OFREP answers from the last snapshot (%s) until the store is back: %s",
                            self._compiled.etag, exc)
            return self._compiled
        self._stale = False
        compiled = self._compiled
        if compiled is None or compiled.served is not served:
            if compiled is not None and compiled.served.body == served.body and compiled.etag == served.etag:
                return compiled  # the same snapshot rebuilt (max age): keep what was compiled
            compiled = CompiledSnapshot(served)
            self._compiled = compiled
        return compiled


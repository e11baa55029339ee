"""A flag, its rollout states, and the transitions between them.

Plain Python: no Flask, no Redis. Every transition is a pure function from a flag to a new flag plus the
history entry describing the change; storing the pair atomically (compare-and-set on `revision`) is the
store's job, deciding *when* to advance is the controller's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Any, TypedDict, cast

from flagsvc_client.protocol.targeting import ATTRIBUTE_NAME, SEGMENT_NAME

from flagsvc.domain.analysis import AnalysisSettings, validate_analysis
from flagsvc.domain.errors import IllegalTransition, InvalidFlag

KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}\Z")
DEFAULT_STAGES: tuple[float, ...] = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0)
DEFAULT_BAKE_SECONDS = 300
MAX_BAKE_SECONDS = 7 * 24 * 3600
MAX_STAGES = 20
MAX_LIST_IDS = 10_000
MAX_ID_LENGTH = 256
MAX_DESCRIPTION = 1_000
MAX_SALT = 128
MAX_FLAG_SEGMENTS = 20  # in each of excluded_segments and eligible_segments


class State(StrEnum):
    OFF = "off"
    ROLLING = "rolling"
    PAUSED = "paused"
    MANUAL = "manual"
    COMPLETE = "complete"
    ROLLED_BACK = "rolled_back"


# States in which nobody is canary, allow list included: the kill switch kills for everyone.
KILLED_STATES = frozenset({State.OFF, State.ROLLED_BACK})


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    ADVANCE = "advance"  # the controller's promotion
    COMPLETE = "complete"
    ROLLBACK = "rollback"
    SET_PERCENT = "set_percent"
    DELETE = "delete"
    IMPORT = "import"  # restored from an export (flagsvc.service.backup)


class FlagDoc(TypedDict):
    """A flag as the API shows it: its settings, and where its rollout stands."""

    key: str
    description: str
    salt: str
    stages: list[float]
    bake_seconds: int
    analysis: dict[str, Any]
    allow: list[str]
    deny: list[str]
    excluded_segments: list[str]
    eligible_segments: list[str]
    bucket_by: str | None
    state: Annotated[str, State]
    percent: float
    stage_index: int
    revision: int
    created_at: float
    updated_at: float
    stage_started_at: float
    reason: str


class HistoryEntryDoc(TypedDict):
    """One change of a flag: who, when, why, from what to what, and the judge's evidence for its own moves."""

    at: float
    actor: str
    action: Annotated[str, Action]
    revision: int
    from_state: Annotated[str, State] | None
    to_state: Annotated[str, State] | None
    from_percent: float | None
    to_percent: float | None
    reason: str
    evidence: dict[str, Any] | None


@dataclass(frozen=True)
class Flag:
    key: str
    description: str = ""
    salt: str = ""
    stages: tuple[float, ...] = DEFAULT_STAGES
    bake_seconds: int = DEFAULT_BAKE_SECONDS
    analysis: Mapping[str, Any] = field(default_factory=dict)
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    # targeting (docs/targeting.md): users in an excluded segment, or in none of the eligible ones (when any are
    # named), are outside the rollout; bucket_by names the context attribute hashed instead of the user id
    excluded_segments: tuple[str, ...] = ()
    eligible_segments: tuple[str, ...] = ()
    bucket_by: str | None = None
    state: State = State.OFF
    percent: float = 0.0
    stage_index: int = 0
    revision: int = 1
    created_at: float = 0.0
    updated_at: float = 0.0
    stage_started_at: float = 0.0
    reason: str = ""

    def to_dict(self) -> FlagDoc:
        data = asdict(self)
        data["state"] = self.state.value
        data["stages"] = list(self.stages)
        data["allow"] = list(self.allow)
        data["deny"] = list(self.deny)
        data["excluded_segments"] = list(self.excluded_segments)
        data["eligible_segments"] = list(self.eligible_segments)
        data["analysis"] = dict(self.analysis)
        return cast(FlagDoc, data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Flag:
        return cls(
            key=data["key"],
            description=data.get("description", ""),
            salt=data.get("salt") or data["key"],
            stages=tuple(float(s) for s in data.get("stages", DEFAULT_STAGES)),
            bake_seconds=int(data.get("bake_seconds", DEFAULT_BAKE_SECONDS)),
            analysis=dict(data.get("analysis") or {}),
            allow=tuple(data.get("allow", ())),
            deny=tuple(data.get("deny", ())),
            excluded_segments=tuple(data.get("excluded_segments", ())),
            eligible_segments=tuple(data.get("eligible_segments", ())),
            bucket_by=data.get("bucket_by") or None,
            state=State(data.get("state", State.OFF)),
            percent=float(data.get("percent", 0.0)),
            stage_index=int(data.get("stage_index", 0)),
            revision=int(data.get("revision", 1)),
            created_at=float(data.get("created_at", 0.0)),
            updated_at=float(data.get("updated_at", 0.0)),
            stage_started_at=float(data.get("stage_started_at", 0.0)),
            reason=data.get("reason", ""),
        )

    @property
    def segments(self) -> tuple[str, ...]:
        """Every segment the flag names."""
        return (*self.excluded_segments, *self.eligible_segments)

    @property
    def is_last_stage(self) -> bool:
        return self.stage_index >= len(self.stages) - 1


@dataclass(frozen=True)
class HistoryEntry:
    at: float
    actor: str
    action: Action
    revision: int
    from_state: State | None
    to_state: State | None
    from_percent: float | None
    to_percent: float | None
    reason: str = ""
    evidence: Mapping[str, Any] | None = None

    def to_dict(self) -> HistoryEntryDoc:
        data = asdict(self)
        data["action"] = self.action.value
        data["from_state"] = self.from_state.value if self.from_state else None
        data["to_state"] = self.to_state.value if self.to_state else None
        data["evidence"] = dict(self.evidence) if self.evidence is not None else None
        return cast(HistoryEntryDoc, data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HistoryEntry:
        return cls(
            at=float(data["at"]),
            actor=data["actor"],
            action=Action(data["action"]),
            revision=int(data["revision"]),
            from_state=State(data["from_state"]) if data.get("from_state") else None,
            to_state=State(data["to_state"]) if data.get("to_state") else None,
            from_percent=data.get("from_percent"),
            to_percent=data.get("to_percent"),
            reason=data.get("reason", ""),
            evidence=data.get("evidence"),
        )


# --- validation -------------------------------------------------------------------------------------------


def has_two_decimals_at_most(value: float) -> bool:
    """Exactly a number of hundredths as JSON writes it: 12.5 and 33.33 are, 1e-9 and 0.30000000000000004 are
    not (a stage of 1e-9 % would put nobody on the canary and hold the rollout for ever)."""
    return math.isfinite(value) and round(value, 2) == value


def stage_problems(stages: Sequence[float]) -> list[str]:
    if not 1 <= len(stages) <= MAX_STAGES:
        return [f"must hold 1 to {MAX_STAGES} percentages"]
    problems = []
    if any(not 0 < s <= 100 for s in stages):
        problems.append("every stage must be above 0 and at most 100")
    if any(not has_two_decimals_at_most(s) for s in stages):
        problems.append("stages have at most two decimals")
    if any(b <= a for a, b in pairwise(stages)):
        problems.append("stages must be strictly ascending")
    if stages[-1] != 100:
        problems.append("the last stage must be 100")
    return problems


def encodable(text: str) -> bool:
    """JSON can carry lone surrogates ("\\ud800") that are not UTF-8; SDKs hash UTF-8 bytes and must refuse a
    snapshot holding one, so such a value would freeze every SDK's config. It never gets in."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def id_list_problems(ids: Sequence[str]) -> list[str]:
    if len(ids) > MAX_LIST_IDS:
        return [f"at most {MAX_LIST_IDS} user ids"]
    if any(not 0 < len(i) <= MAX_ID_LENGTH for i in ids):
        return [f"user ids are 1 to {MAX_ID_LENGTH} characters"]
    if not all(encodable(i) for i in ids):
        return ["user ids must be valid Unicode text (no lone surrogates)"]
    return []


def validate(flag: Flag) -> Flag:
    """Raise InvalidFlag naming every field that is wrong; return the flag otherwise."""
    problems: dict[str, list[str]] = {}
    if not KEY_PATTERN.match(flag.key):
        problems["key"] = ["must match ^[a-z0-9][a-z0-9_.-]{0,127}$"]
    if len(flag.description) > MAX_DESCRIPTION:
        problems["description"] = [f"at most {MAX_DESCRIPTION} characters"]
    if not 0 < len(flag.salt) <= MAX_SALT:
        problems["salt"] = [f"must be 1 to {MAX_SALT} characters"]
    elif not encodable(flag.salt):
        problems["salt"] = ["must be valid Unicode text (no lone surrogates)"]
    if not encodable(flag.description):
        problems["description"] = ["must be valid Unicode text (no lone surrogates)"]
    if p := stage_problems(flag.stages):
        problems["stages"] = p
    if not 0 <= flag.bake_seconds <= MAX_BAKE_SECONDS:
        problems["bake_seconds"] = [f"must be between 0 and {MAX_BAKE_SECONDS}"]
    for name in ("allow", "deny"):
        if p := id_list_problems(getattr(flag, name)):
            problems[name] = p
    for name, p in validate_analysis(flag.analysis).items():
        problems[f"analysis.{name}" if name != "_schema" else "analysis"] = p
    if overlap := set(flag.allow) & set(flag.deny):
        problems.setdefault("deny", []).append(f"{len(overlap)} user id(s) are in both allow and deny")
    for name in ("excluded_segments", "eligible_segments"):
        names = getattr(flag, name)
        if len(names) > MAX_FLAG_SEGMENTS:
            problems[name] = [f"at most {MAX_FLAG_SEGMENTS} segments"]
        elif not all(isinstance(n, str) and SEGMENT_NAME.match(n) for n in names):
            problems[name] = ["segment names match ^[a-z0-9][a-z0-9_.-]{0,63}$"]
        elif len(set(names)) != len(names):
            problems[name] = ["names a segment twice"]
    if both := set(flag.excluded_segments) & set(flag.eligible_segments):
        problems.setdefault("eligible_segments", []).append(
            f"segment(s) both excluded and eligible: {', '.join(sorted(both))}")
    if flag.bucket_by is not None and not (isinstance(flag.bucket_by, str) and ATTRIBUTE_NAME.match(flag.bucket_by)):
        problems["bucket_by"] = ["an attribute name: ^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$"]
    if problems:
        raise InvalidFlag("the flag is not valid", problems)
    return flag


# --- transitions ------------------------------------------------------------------------------------------

EDITABLE_FIELDS = frozenset({"description", "salt", "stages", "bake_seconds", "analysis", "allow", "deny",
                             "excluded_segments", "eligible_segments", "bucket_by"})
LIST_FIELDS = ("stages", "allow", "deny", "excluded_segments", "eligible_segments")


def new_flag(key: str, settings: Mapping[str, Any], *, now: float, actor: str) -> tuple[Flag, HistoryEntry]:
    values = {name: settings[name] for name in EDITABLE_FIELDS if name in settings}
    values.setdefault("salt", key)
    if "bucket_by" in values:
        values["bucket_by"] = values["bucket_by"] or None  # "" or null: the user id
    for name in LIST_FIELDS:
        if name in values:
            values[name] = tuple(values[name])
    values["analysis"] = values.get("analysis") or {}
    flag = validate(Flag(key=key, created_at=now, updated_at=now, **values))
    flag = replace(flag, analysis=_effective_analysis(flag.analysis))
    entry = HistoryEntry(now, actor, Action.CREATE, flag.revision, None, flag.state, None, flag.percent)
    return flag, entry


def _effective_analysis(analysis: Mapping[str, Any]) -> dict[str, Any]:
    """Every analysis setting spelled out, defaults included, so what a flag is judged by is visible."""
    return AnalysisSettings.from_dict(analysis).to_dict()


def _changed(
    flag: Flag, action: Action, *, now: float, actor: str, reason: str = "",
    evidence: Mapping[str, Any] | None = None, **changes: Any,
) -> tuple[Flag, HistoryEntry]:
    if not encodable(reason):
        raise InvalidFlag("the reason is not valid", {"reason": ["must be valid Unicode text (no lone surrogates)"]})
    if "stage_index" in changes or "state" in changes:
        changes.setdefault("stage_started_at", now)
    if "state" in changes:
        changes.setdefault("reason", reason)
    after = replace(flag, revision=flag.revision + 1, updated_at=now, **changes)
    entry = HistoryEntry(
        now, actor, action, after.revision, flag.state, after.state, flag.percent, after.percent,
        reason, evidence,
    )
    return after, entry


def update(flag: Flag, settings: Mapping[str, Any], *, now: float, actor: str,
           reason: str = "") -> tuple[Flag, HistoryEntry]:
    unknown = set(settings) - EDITABLE_FIELDS
    if unknown:
        raise InvalidFlag("only settings can be edited", {name: ["cannot be changed"] for name in unknown})
    values = dict(settings)
    if "bucket_by" in values:
        values["bucket_by"] = values["bucket_by"] or None
    for name in LIST_FIELDS:
        if name in values:
            values[name] = tuple(values[name])
    if "stages" in values and values["stages"] != flag.stages and flag.state in (State.ROLLING, State.PAUSED):
        raise IllegalTransition(
            f"stages cannot change while the flag is {flag.state}: roll back or let it complete first",
            {"stages": ["cannot change during a rollout"]},
        )
    if "analysis" in values:
        # A partial change: the settings not named keep their values.
        values["analysis"] = {**flag.analysis, **(values["analysis"] or {})}
    validate(replace(flag, **values))
    if "analysis" in values:
        values["analysis"] = _effective_analysis(values["analysis"])
    after, entry = _changed(flag, Action.UPDATE, now=now, actor=actor, reason=reason, **values)
    return after, entry


def _refuse(flag: Flag, action: str, allowed: str) -> IllegalTransition:
    return IllegalTransition(f"cannot {action} a flag that is {flag.state} (only {allowed})")


def start(flag: Flag, *, now: float, actor: str, reason: str = "") -> tuple[Flag, HistoryEntry]:
    """Begin a rollout. From `manual`, pick up at the first stage not below the current percent so nobody who
    is canary now flips back to stable; from `off` or `rolled_back`, start again at the first stage."""
    if flag.state not in (State.OFF, State.ROLLED_BACK, State.MANUAL):
        raise _refuse(flag, "start", "off, rolled_back or manual flags can start")
    index = 0
    if flag.state == State.MANUAL:
        index = next((i for i, s in enumerate(flag.stages) if s >= flag.percent), len(flag.stages) - 1)
    return _changed(
        flag, Action.START, now=now, actor=actor, state=State.ROLLING, stage_index=index,
        percent=flag.stages[index], reason=reason or "rollout started",
    )


def pause(flag: Flag, *, now: float, actor: str, reason: str = "") -> tuple[Flag, HistoryEntry]:
    if flag.state != State.ROLLING:
        raise _refuse(flag, "pause", "rolling flags can pause")
    return _changed(flag, Action.PAUSE, now=now, actor=actor, state=State.PAUSED, reason=reason or "paused")


def resume(flag: Flag, *, now: float, actor: str, reason: str = "") -> tuple[Flag, HistoryEntry]:
    if flag.state != State.PAUSED:
        raise _refuse(flag, "resume", "paused flags can resume")
    # The bake time restarts: what happened while paused was not judged.
    return _changed(flag, Action.RESUME, now=now, actor=actor, state=State.ROLLING,
                    reason=reason or "resumed")


def promote(
    flag: Flag, *, now: float, actor: str, reason: str = "", evidence: Mapping[str, Any] | None = None,
    action: Action = Action.PROMOTE,
) -> tuple[Flag, HistoryEntry]:
    """Move to the next stage; at the last stage the rollout is complete. Operators may promote a paused flag
    (it stays paused); the controller only ever promotes rolling ones (see `advance`)."""
    if flag.state not in (State.ROLLING, State.PAUSED):
        raise _refuse(flag, "promote", "rolling or paused flags can be promoted")
    index = min(flag.stage_index + 1, len(flag.stages) - 1)
    percent = flag.stages[index]
    if percent >= 100:
        return _changed(
            flag, Action.COMPLETE if action == Action.ADVANCE else action, now=now, actor=actor,
            state=State.COMPLETE, stage_index=index, percent=100.0, reason=reason or "rollout complete",
            evidence=evidence,
        )
    return _changed(
        flag, action, now=now, actor=actor, stage_index=index, percent=percent, reason=reason,
        evidence=evidence,
    )


def advance(
    flag: Flag, *, now: float, actor: str, reason: str, evidence: Mapping[str, Any] | None = None,
) -> tuple[Flag, HistoryEntry]:
    if flag.state != State.ROLLING:
        raise _refuse(flag, "advance", "rolling flags advance")
    return promote(flag, now=now, actor=actor, reason=reason, evidence=evidence, action=Action.ADVANCE)


def rollback(
    flag: Flag, *, now: float, actor: str, reason: str = "", evidence: Mapping[str, Any] | None = None,
) -> tuple[Flag, HistoryEntry]:
    """The kill switch: from any state, to 0 % for everyone."""
    return _changed(
        flag, Action.ROLLBACK, now=now, actor=actor, state=State.ROLLED_BACK, percent=0.0, stage_index=0,
        reason=reason or "rolled back by operator", evidence=evidence,
    )


def set_percent(
    flag: Flag, percent: float, *, now: float, actor: str, reason: str = "",
) -> tuple[Flag, HistoryEntry]:
    if not 0 <= percent <= 100 or not has_two_decimals_at_most(percent):
        raise InvalidFlag("percent is not valid", {"percent": ["must be 0 to 100 with at most two decimals"]})
    return _changed(
        flag, Action.SET_PERCENT, now=now, actor=actor, state=State.MANUAL, percent=float(percent) + 0.0,  # no -0
        reason=reason or f"set to {percent:g} % by hand",
    )

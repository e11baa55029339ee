"""The config snapshot (docs/protocol.md): parsed and validated whole, or rejected whole.

A snapshot that is only partly valid is rejected rather than partly applied: evaluating some flags from a new
config and others from an old one would put users in arms no config ever described. The server builds the same
format, so its tests can check what it serves with `parse_snapshot`.
"""

from __future__ import annotations

import math
import time

from flagsvc_client._frozen import Frozen
from flagsvc_client.protocol.bucketing import threshold
from flagsvc_client.protocol.limits import KILLED_STATES, KNOWN_FEATURES, MAX_STRATIFY_BY
from flagsvc_client.protocol.targeting import ATTRIBUTE_NAME, OPERATORS, compile_segment, segment_problems

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, TypeGuard

    from flagsvc_client.protocol.targeting import Test


class SnapshotError(ValueError):
    """The snapshot is malformed; `kind` names the problem for log-once purposes."""

    def __init__(self, message: str, kind: str = "malformed_snapshot") -> None:
        super().__init__(message)
        self.kind = kind


class FlagConfig(Frozen):
    """What an SDK needs to evaluate one flag; `threshold` is precomputed from `percent`. Targeting (docs/targeting.md):
    `excluded` and `eligible` name segments of the snapshot, `bucket_by` the context attribute hashed instead of the
    user id. `unusable` is "" for a flag this SDK can evaluate, else (reason, why): a flag that needs a feature this
    SDK lacks, or a segment it cannot evaluate, answers the caller's default with that reason."""

    __slots__ = (  # noqa: RUF023
        "key", "state", "percent", "revision", "salt", "allow", "deny", "threshold",
        "excluded", "eligible", "bucket_by", "unusable", "stratify_by",
    )

    key: str
    state: str
    percent: float
    revision: int
    salt: str
    allow: frozenset[str]
    deny: frozenset[str]
    threshold: int
    excluded: tuple[str, ...]
    eligible: tuple[str, ...]
    bucket_by: str | None
    unusable: tuple[str, str] | None
    stratify_by: tuple[str, ...]  # the attributes labelling outcome strata (docs/protocol.md, "Strata")

    if TYPE_CHECKING:  # what Frozen.__init__ accepts for this class, spelled out for the type checker

        def __init__(
            self,
            *,
            key: str,
            state: str,
            percent: float,
            revision: int,
            salt: str,
            allow: frozenset[str],
            deny: frozenset[str],
            threshold: int,
            excluded: tuple[str, ...] = (),
            eligible: tuple[str, ...] = (),
            bucket_by: str | None = None,
            unusable: tuple[str, str] | None = None,
            stratify_by: tuple[str, ...] = (),
        ) -> None: ...

    else:

        def __init__(self, **values: object) -> None:
            values.setdefault("excluded", ())
            values.setdefault("eligible", ())
            values.setdefault("bucket_by", None)
            values.setdefault("unusable", None)
            values.setdefault("stratify_by", ())
            super().__init__(**values)

    @property
    def killed(self) -> bool:
        return self.state in KILLED_STATES

    @property
    def targeted(self) -> bool:
        """Does evaluating this flag read the context (segments, bucket_by)?"""
        return bool(self.excluded or self.eligible or self.bucket_by)


class Snapshot(Frozen):
    """One whole config: `epoch` names the dataset, `version` orders snapshots within it. `segments` holds each
    segment compiled (protocol.targeting), or why this SDK cannot evaluate it."""

    __slots__ = ("epoch", "version", "flags", "raw", "segments")  # noqa: RUF023

    epoch: str
    version: int
    flags: Mapping[str, FlagConfig]
    segments: Mapping[str, Test | tuple[str, str]]
    # The document as received. Not typed as protocol.shapes.SnapshotDoc: a flag may omit key, salt, allow and
    # deny, and list int user ids (parse_flag accepts both), which that shape does not allow.
    raw: Mapping[str, Any]

    if TYPE_CHECKING:  # what Frozen.__init__ accepts for this class, spelled out for the type checker

        def __init__(
            self, *, epoch: str, version: int, flags: Mapping[str, FlagConfig], raw: Mapping[str, Any],
            segments: Mapping[str, Test | tuple[str, str]] = ...,
        ) -> None: ...

    else:

        def __init__(self, **values: object) -> None:
            values.setdefault("segments", {})
            super().__init__(**values)

    @property
    def etag(self) -> str:
        return f'"{self.epoch}-{self.version}"'

    def replaces(self, current: Snapshot | None) -> bool:
        """The protocol's rule: apply when the epoch differs or the version grew; never go back in time."""
        return current is None or self.epoch != current.epoch or self.version > current.version


def _is_int(value: object) -> TypeGuard[int]:
    return type(value) is int  # bool is not a count


def _is_number(value: object) -> TypeGuard[float]:
    return type(value) in (int, float)  # bool is not a percentage


def _is_text(value: object) -> TypeGuard[str]:
    if type(value) is not str:
        return False
    try:
        value.encode()  # lone surrogates (legal in JSON escapes) are not UTF-8, and would crash mmh3
    except UnicodeEncodeError:
        return False
    return True


def _id_set(key: str, name: str, value: object) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        raise SnapshotError(f"flag {key!r}: {name} must be a list")
    ids = set()
    for item in value:
        if _is_int(item):
            ids.add(str(item))
        elif _is_text(item):
            ids.add(item)
        else:
            raise SnapshotError(f"flag {key!r}: {name} holds a {type(item).__name__}, not a user id")
    return frozenset(ids)


def _names(key: str, name: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(_is_text(item) for item in value):
        raise SnapshotError(f"flag {key!r}: {name} must be a list of segment names")
    return tuple(dict.fromkeys(value))


def _unsupported(key: str, data: dict[str, Any], missing: list[str]) -> FlagConfig:
    """A flag that needs features this SDK lacks: only what the answer needs (its revision) is read, the rest may
    follow rules this SDK does not know."""
    revision = data.get("revision")
    return FlagConfig(
        key=key, state="off", percent=0.0, revision=revision if _is_int(revision) else 0, salt=key,
        allow=frozenset(), deny=frozenset(), threshold=0,
        unusable=("unsupported", f"flag {key!r} needs {', '.join(missing)}, which this SDK does not support"),
    )


def parse_flag(key: object, data: object) -> FlagConfig:
    if not _is_text(key) or not key:
        raise SnapshotError("flag keys must be non-empty strings")
    if not isinstance(data, dict):
        raise SnapshotError(f"flag {key!r} must be an object")
    if data.get("key", key) != key:
        raise SnapshotError(f"flag {key!r} carries the key {data.get('key')!r}")
    requires = data.get("requires", [])
    if not isinstance(requires, list) or not all(_is_text(item) for item in requires):
        raise SnapshotError(f"flag {key!r}: requires must be a list of feature names")
    if missing := sorted(set(requires) - KNOWN_FEATURES):
        return _unsupported(key, data, missing)
    state, percent, revision = data.get("state"), data.get("percent"), data.get("revision")
    salt = data.get("salt", key)
    if not _is_text(state):
        raise SnapshotError(f"flag {key!r}: state must be a string")
    if not _is_number(percent) or not 0 <= percent <= 100 or not math.isfinite(percent):
        raise SnapshotError(f"flag {key!r}: percent must be a number from 0 to 100")
    if not _is_int(revision) or revision < 0:
        raise SnapshotError(f"flag {key!r}: revision must be a non-negative integer")
    if not _is_text(salt):
        raise SnapshotError(f"flag {key!r}: salt must be a string")
    bucket_by = data.get("bucket_by")
    if bucket_by is not None and not (_is_text(bucket_by) and ATTRIBUTE_NAME.match(bucket_by)):
        raise SnapshotError(f"flag {key!r}: bucket_by must be an attribute name")
    return FlagConfig(
        key=key,
        state=state,
        percent=float(percent),
        revision=revision,
        salt=salt,
        allow=_id_set(key, "allow", data.get("allow")),
        deny=_id_set(key, "deny", data.get("deny")),
        threshold=threshold(percent),
        excluded=_names(key, "excluded_segments", data.get("excluded_segments")),
        eligible=_names(key, "eligible_segments", data.get("eligible_segments")),
        bucket_by=bucket_by,
        stratify_by=_stratify_by(data.get("stratify_by")),
    )


def _stratify_by(value: object) -> tuple[str, ...]:
    """The attributes labelling outcome strata; reporting only, so a malformed value is ignored (the outcomes go
    unlabelled) rather than failing the flag."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_STRATIFY_BY or len(set(value)) != len(value):
        return ()
    if not all(_is_text(name) and ATTRIBUTE_NAME.match(name) for name in value):
        return ()
    return tuple(value)


def parse_segment(name: str, data: object) -> Test | tuple[str, str]:
    """The segment compiled, or why this SDK cannot evaluate it (an operator it does not know, or conditions it
    finds malformed): flags that use it then answer the caller's default, the rest of the snapshot stands."""
    conditions = data.get("conditions") if isinstance(data, dict) else None
    if isinstance(conditions, list):
        unknown = sorted({str(c.get("op")) for c in conditions if isinstance(c, dict)} - set(OPERATORS))
        if unknown:
            why = f"segment {name!r} uses operator(s) {', '.join(unknown)}, which this SDK does not know"
            return "unsupported", why
    problems = segment_problems(conditions)
    if problems:
        field, found = next(iter(problems.items()))
        return "error", f"segment {name!r} cannot be evaluated: {field}: {found[0]}"
    return compile_segment(conditions)  # type: ignore[arg-type]


def _with_segments(flag: FlagConfig, segments: Mapping[str, Test | tuple[str, str]]) -> FlagConfig:
    """The flag, marked unusable when one of its segments is missing or cannot be evaluated."""
    for name in (*flag.excluded, *flag.eligible):
        segment = segments.get(name)
        if segment is None or isinstance(segment, tuple):
            unusable = segment or ("error", f"flag {flag.key!r} names segment {name!r}, which the snapshot lacks")
            values = {slot: getattr(flag, slot) for slot in FlagConfig.__slots__}
            return FlagConfig(**{**values, "unusable": unusable})
    return flag


def parse_snapshot(data: object) -> Snapshot:
    """Validate a decoded snapshot; raises SnapshotError naming the first problem."""
    if not isinstance(data, dict):
        raise SnapshotError("a snapshot must be a JSON object")
    epoch, version, flags = data.get("epoch"), data.get("version"), data.get("flags")
    if not _is_text(epoch) or not epoch:
        raise SnapshotError("snapshot epoch must be a non-empty string")
    if not _is_int(version) or version < 0:
        raise SnapshotError("snapshot version must be a non-negative integer")
    if not isinstance(flags, dict):
        raise SnapshotError("snapshot flags must be an object")
    raw_segments = data.get("segments", {})
    if not isinstance(raw_segments, dict) or not all(_is_text(name) for name in raw_segments):
        raise SnapshotError("snapshot segments must be an object keyed by segment name")
    segments = {name: parse_segment(name, value) for name, value in raw_segments.items()}
    parsed = {}
    for key, value in flags.items():
        parsed[key] = _with_segments(parse_flag(key, value), segments)
        give_way()
    return Snapshot(epoch=epoch, version=version, flags=parsed, raw=data, segments=segments)


def give_way() -> None:
    """Let other threads run between two flags of a long piece of work done in the background (parsing and
    compiling a config, building outcome batches): a thread that keeps the interpreter lock for CPython's whole
    switch interval (5 ms) makes an asyncio app's event loop wait that long. `sleep(0)` releases the lock, and
    costs about a microsecond when no other thread wants it."""
    time.sleep(0)


def loads_snapshot(text: str | bytes) -> Snapshot:
    """Decode JSON text (a response body, an SSE data line, a file) and validate it."""
    import json  # ~2 ms, paid on first use rather than by `import flagsvc_client`

    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise SnapshotError(f"snapshot is not valid JSON: {exc}", kind="snapshot_not_json") from None
    return parse_snapshot(data)


def dumps_snapshot(snapshot: Snapshot) -> bytes:
    import json

    return json.dumps(snapshot.raw, separators=(",", ":")).encode()  # ASCII: safe whatever the strings

"""The config snapshot (docs/protocol.md): parsed and validated whole, or rejected whole.

A snapshot that is only partly valid is rejected rather than partly applied: evaluating some flags from a new
config and others from an old one would put users in arms no config ever described. The server builds the same
format, so its tests can check what it serves with `parse_snapshot`.
"""

from __future__ import annotations

import math

from flagsvc_client._frozen import Frozen
from flagsvc_client.protocol.bucketing import threshold
from flagsvc_client.protocol.limits import KILLED_STATES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, TypeGuard


class SnapshotError(ValueError):
    """The snapshot is malformed; `kind` names the problem for log-once purposes."""

    def __init__(self, message: str, kind: str = "malformed_snapshot") -> None:
        super().__init__(message)
        self.kind = kind


class FlagConfig(Frozen):
    """What an SDK needs to evaluate one flag; `threshold` is precomputed from `percent`."""

    __slots__ = ("key", "state", "percent", "revision", "salt", "allow", "deny", "threshold")  # noqa: RUF023

    key: str
    state: str
    percent: float
    revision: int
    salt: str
    allow: frozenset[str]
    deny: frozenset[str]
    threshold: int

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
        ) -> None: ...

    @property
    def killed(self) -> bool:
        return self.state in KILLED_STATES


class Snapshot(Frozen):
    """One whole config: `epoch` names the dataset, `version` orders snapshots within it."""

    __slots__ = ("epoch", "version", "flags", "raw")  # noqa: RUF023

    epoch: str
    version: int
    flags: Mapping[str, FlagConfig]
    # The document as received. Not typed as protocol.shapes.SnapshotDoc: a flag may omit key, salt, allow and
    # deny, and list int user ids (parse_flag accepts both), which that shape does not allow.
    raw: Mapping[str, Any]

    if TYPE_CHECKING:  # what Frozen.__init__ accepts for this class, spelled out for the type checker

        def __init__(
            self, *, epoch: str, version: int, flags: Mapping[str, FlagConfig], raw: Mapping[str, Any]
        ) -> None: ...

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


def parse_flag(key: object, data: object) -> FlagConfig:
    if not _is_text(key) or not key:
        raise SnapshotError("flag keys must be non-empty strings")
    if not isinstance(data, dict):
        raise SnapshotError(f"flag {key!r} must be an object")
    if data.get("key", key) != key:
        raise SnapshotError(f"flag {key!r} carries the key {data.get('key')!r}")
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
    return FlagConfig(
        key=key,
        state=state,
        percent=float(percent),
        revision=revision,
        salt=salt,
        allow=_id_set(key, "allow", data.get("allow")),
        deny=_id_set(key, "deny", data.get("deny")),
        threshold=threshold(percent),
    )


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
    parsed = {key: parse_flag(key, value) for key, value in flags.items()}
    return Snapshot(epoch=epoch, version=version, flags=parsed, raw=data)


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

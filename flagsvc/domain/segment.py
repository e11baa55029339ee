"""A segment: a named, reusable set of conditions on an evaluation context (docs/targeting.md).

Plain Python. The conditions' meaning and validation are the wire protocol's (`flagsvc_client.protocol.targeting`),
so the server refuses exactly what an SDK could not evaluate. A segment changes by compare-and-set on its
`revision`, like a flag; flags name segments in `excluded_segments` and `eligible_segments`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, TypedDict

from flagsvc_client.protocol.shapes import SnapshotSegment
from flagsvc_client.protocol.targeting import SEGMENT_NAME, segment_problems

from flagsvc.domain.errors import InvalidFlag

MAX_SEGMENT_DESCRIPTION = 1_000
EDITABLE = frozenset({"description", "conditions"})


class ConditionDoc(TypedDict):
    """One condition: the attribute it reads, the operator, and its values (docs/targeting.md)."""

    attribute: str
    op: str
    values: list[Any]


class SegmentDoc(TypedDict):
    """A segment as the API shows it: all of its conditions must hold for a context to be in it."""

    name: str
    description: str
    conditions: list[ConditionDoc]
    revision: int
    created_at: float
    updated_at: float
    updated_by: str


@dataclass(frozen=True)
class Segment:
    name: str
    conditions: tuple[Mapping[str, Any], ...]
    description: str = ""
    revision: int = 1
    created_at: float = 0.0
    updated_at: float = 0.0
    updated_by: str = ""

    def to_dict(self) -> SegmentDoc:
        return {"name": self.name, "description": self.description,
                "conditions": [dict(c) for c in self.conditions],  # type: ignore[misc]
                "revision": self.revision, "created_at": self.created_at, "updated_at": self.updated_at,
                "updated_by": self.updated_by}

    def sdk_view(self) -> SnapshotSegment:
        """What an SDK needs: the conditions."""
        return {"conditions": [dict(c) for c in self.conditions]}  # type: ignore[misc]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Segment:
        return cls(name=data["name"], conditions=tuple(data.get("conditions", ())),
                   description=data.get("description", ""), revision=int(data.get("revision", 1)),
                   created_at=float(data.get("created_at", 0.0)), updated_at=float(data.get("updated_at", 0.0)),
                   updated_by=data.get("updated_by", ""))


def validate_segment(segment: Segment) -> Segment:
    """Raise InvalidFlag (a validation_error) naming every field that is wrong."""
    problems: dict[str, list[str]] = {}
    if not SEGMENT_NAME.match(segment.name):
        problems["name"] = [f"must match {SEGMENT_NAME.pattern.replace(chr(92) + 'Z', '$')}"]
    if len(segment.description) > MAX_SEGMENT_DESCRIPTION:
        problems["description"] = [f"at most {MAX_SEGMENT_DESCRIPTION} characters"]
    problems.update(segment_problems([dict(c) if isinstance(c, Mapping) else c for c in segment.conditions]))
    if problems:
        raise InvalidFlag("the segment is not valid", problems)
    return segment


def new_segment(name: str, settings: Mapping[str, Any], *, now: float, actor: str) -> Segment:
    return validate_segment(Segment(name=name, conditions=tuple(settings.get("conditions") or ()),
                                    description=settings.get("description", ""), created_at=now, updated_at=now,
                                    updated_by=actor))


def changed_segment(segment: Segment, settings: Mapping[str, Any], *, now: float, actor: str) -> Segment:
    unknown = set(settings) - EDITABLE
    if unknown:
        raise InvalidFlag("only a segment's description and conditions can change",
                          {name: ["cannot be changed"] for name in sorted(unknown)})
    values: dict[str, Any] = {}
    if "conditions" in settings:
        values["conditions"] = tuple(settings["conditions"] or ())
    if "description" in settings:
        values["description"] = settings["description"]
    return validate_segment(replace(segment, **values, revision=segment.revision + 1, updated_at=now,
                                    updated_by=actor))

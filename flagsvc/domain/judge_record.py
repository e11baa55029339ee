"""What the controller keeps per flag between the judge's looks: the judge's state for one revision and its
last verdict, with the flag's creation time so that a record left by a deleted flag of the same key is never
taken for the new flag's."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, cast


class VerdictDoc(TypedDict):
    """The judge's last verdict on a flag, as kept and as shown by the stats endpoint."""

    decision: str
    reason: str
    evidence: dict[str, Any]
    at: float
    revision: int


@dataclass(frozen=True)
class JudgeRecord:
    revision: int
    created_at: float
    verdict: VerdictDoc | None = None
    state: Mapping[str, Any] | None = None  # the judge's own JSON form of its state (JudgeState.to_dict)

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "created_at": self.created_at,
                "verdict": None if self.verdict is None else dict(self.verdict),
                "state": None if self.state is None else dict(self.state)}

    @classmethod
    def from_dict(cls, data: object) -> JudgeRecord:
        """Raise ValueError on anything this version did not write."""
        if not isinstance(data, Mapping):
            raise ValueError("a judge record must be an object")
        revision, created_at = data.get("revision"), data.get("created_at")
        if type(revision) is not int:
            raise ValueError("judge record: revision must be an integer")
        if isinstance(created_at, bool) or not isinstance(created_at, int | float) or not math.isfinite(created_at):
            raise ValueError("judge record: created_at must be a finite number")
        verdict, state = data.get("verdict"), data.get("state")
        if verdict is not None and not isinstance(verdict, Mapping):
            raise ValueError("judge record: verdict must be an object")
        if state is not None and not isinstance(state, Mapping):
            raise ValueError("judge record: state must be an object")
        return cls(revision, float(created_at), None if verdict is None else cast(VerdictDoc, dict(verdict)),
                   None if state is None else dict(state))

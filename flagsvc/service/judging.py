"""What the application tier needs of a judge's verdict, whoever made it (the canary judge, a shadow judge that
leaves a reporter out, or the controller revising a verdict): a decision, a reason, the evidence, and the judge
state to keep."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

State_co = TypeVar("State_co", covariant=True)


class JudgeVerdict(Protocol[State_co]):
    @property
    def decision(self) -> str: ...

    @property
    def reason(self) -> str: ...

    @property
    def evidence(self) -> Mapping[str, Any]: ...

    @property
    def state(self) -> State_co: ...

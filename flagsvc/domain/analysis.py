"""A flag's canary-analysis settings: what the judge tests for and how much risk it may take.

Plain Python, no Flask or marshmallow: `validate_analysis` checks untrusted input (the API's PATCH body), and
`AnalysisSettings.from_dict` turns stored or validated input into the frozen value the judge is built with.
docs/judge.md explains each setting and the defaults.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from flagsvc_client.protocol.limits import MAX_STRATIFY_BY, REPORTER_PATTERN
from flagsvc_client.protocol.targeting import ATTRIBUTE_NAME

from flagsvc.domain.errors import InvalidFlag

MAX_RATIO = 100.0
MAX_MIN_REQUESTS = 10**9
MAX_P99_MS = 3_600_000.0  # the latency sketch's ceiling: nothing slower can be told apart


@dataclass(frozen=True)
class AnalysisSettings:
    # The chance that a canary exactly as good as stable is rolled back, for the whole rollout: the judge splits
    # it across stages and metrics and never spends more, however often it looks.
    alpha: float = 0.01
    # The chance that a stage advances although the canary is worse by the stage's tested ratio. 0.05 is the
    # usual power of 95 %; a larger beta shortens healthy stages (acceptance needs ln(1/beta) of evidence) at the
    # price of letting a borderline regression reach the next stage more often, where it is tested again.
    beta: float = 0.05
    error_ratio: float = 2.0  # the error-rate regression (canary / stable) the rollout must catch
    latency_ratio: float = 1.25  # the p95 regression (canary p95 / stable p95) the rollout must catch
    # Canary requests per stage before it may advance, whatever the tests say: below ~100 the p95 rests on a
    # handful of requests and a stage could pass on a few seconds of luck.
    min_requests: int = 100
    max_error_rate: float | None = None  # absolute guardrail on the canary's error rate, 0..1
    max_p99_ms: float | None = None  # absolute guardrail on the canary's p99 latency
    # Reporters (SDK instance ids) whose outcomes ingestion drops for this flag: a broken or hostile instance an
    # operator took out of the analysis (flagctl exclude-reporter). Bounded, so a flag's document stays small.
    excluded_reporters: tuple[str, ...] = ()
    # A stage that lasts longer than this without the judge deciding (thin traffic) is overdue: the controller then
    # holds and says so (on_max_stage "hold"), or advances and writes why into the history ("advance").
    max_stage_seconds: float | None = None
    on_max_stage: str = "hold"
    # The context attributes (one or two) whose values split the outcomes into strata: SDKs count each arm per
    # stratum and the judge compares the arms within strata (docs/judge.md, "Strata"); () compares them pooled.
    stratify_by: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["excluded_reporters"] = list(self.excluded_reporters)
        data["stratify_by"] = list(self.stratify_by)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> AnalysisSettings:
        """Defaults for missing keys; raise InvalidFlag (fields named `analysis.<name>`) if anything is wrong."""
        data = {} if data is None else data
        problems = validate_analysis(data)
        if problems:
            raise InvalidFlag(
                "the analysis settings are not valid", {f"analysis.{name}": p for name, p in problems.items()}
            )
        return cls(**{name: _CONVERT.get(name, _as_float)(value) for name, value in data.items()})


FIELD_NAMES = tuple(f.name for f in fields(AnalysisSettings))


def _as_float(value: Any) -> Any:
    return float(value) if value is not None else None


def _as_is(value: Any) -> Any:
    return value


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "min_requests": _as_is, "on_max_stage": _as_is, "excluded_reporters": tuple, "stratify_by": tuple,
}


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer past the float range
        return False


def _range(value: Any, low: float, high: float, *, low_open: bool, high_open: bool, text: str) -> list[str]:
    if not _is_number(value):
        return ["must be a number"]
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    return [text] if too_low or too_high else []


def validate_analysis(data: Any) -> dict[str, list[str]]:
    """Field name -> problems, `{}` when valid. Unknown keys and wrong types (a bool is not a number) are errors;
    missing keys are fine (they take the defaults). Input that is not an object is reported under `_schema`."""
    if not isinstance(data, Mapping):
        return {"_schema": ["must be an object of analysis settings"]}
    problems: dict[str, list[str]] = {}
    for name in data:
        if name not in FIELD_NAMES:
            problems[str(name)] = [f"unknown setting (known: {', '.join(FIELD_NAMES)})"]
    checks: dict[str, Callable[[Any], list[str]]] = {
        "alpha": lambda v: _range(v, 0, 0.2, low_open=True, high_open=False, text="must be above 0 and at most 0.2"),
        "beta": lambda v: _range(v, 0, 0.5, low_open=True, high_open=False, text="must be above 0 and at most 0.5"),
        "error_ratio": lambda v: _range(
            v, 1, MAX_RATIO, low_open=True, high_open=False, text=f"must be above 1 and at most {MAX_RATIO:g}"
        ),
        "latency_ratio": lambda v: _range(
            v, 1, MAX_RATIO, low_open=True, high_open=False, text=f"must be above 1 and at most {MAX_RATIO:g}"
        ),
        "min_requests": _min_requests_problems,
        "max_error_rate": lambda v: [] if v is None else _range(
            v, 0, 1, low_open=True, high_open=True, text="must be above 0 and below 1 (a fraction, not a percent)"
        ),
        "max_p99_ms": lambda v: [] if v is None else _range(
            v, 0, MAX_P99_MS, low_open=True, high_open=False, text=f"must be above 0 and at most {MAX_P99_MS:g}"
        ),
    }
    checks.update(_late_checks())
    for name, check in checks.items():
        if name in data and (p := check(data[name])):
            problems[name] = p
    return problems


def _min_requests_problems(value: Any) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, int):
        return ["must be an integer"]
    if not 1 <= value <= MAX_MIN_REQUESTS:
        return [f"must be between 1 and {MAX_MIN_REQUESTS}"]
    return []


# --- reporters excluded from the analysis, and the policy for stages that do not decide (thin traffic) --------

MAX_EXCLUDED_REPORTERS = 100
REPORTER_ID = re.compile(REPORTER_PATTERN)
MAX_STAGE_SECONDS = 30 * 24 * 3600.0
ON_MAX_STAGE = ("hold", "advance")


def _late_checks() -> dict[str, Callable[[Any], list[str]]]:
    return {
        "excluded_reporters": _excluded_reporters_problems,
        "max_stage_seconds": lambda v: [] if v is None else _range(
            v, 0, MAX_STAGE_SECONDS, low_open=True, high_open=False,
            text=f"must be above 0 and at most {MAX_STAGE_SECONDS:.0f} seconds (or null: no limit)"
        ),
        "on_max_stage": lambda v: [] if v in ON_MAX_STAGE else [f"must be one of {', '.join(ON_MAX_STAGE)}"],
        "stratify_by": _stratify_by_problems,
    }


def _stratify_by_problems(value: Any) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(name, str) for name in value):
        return ["must be a list of context attribute names"]
    if len(value) > MAX_STRATIFY_BY:
        return [f"at most {MAX_STRATIFY_BY} attributes"]
    if not all(ATTRIBUTE_NAME.match(name) for name in value):
        return ["attribute names match ^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$"]
    if len(set(value)) != len(value):
        return ["each attribute at most once"]
    return []


def _excluded_reporters_problems(value: Any) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(r, str) for r in value):
        return ["must be a list of reporter ids"]
    if len(value) > MAX_EXCLUDED_REPORTERS:
        return [f"at most {MAX_EXCLUDED_REPORTERS} reporter ids"]
    if not all(REPORTER_ID.match(r) for r in value):
        return ["reporter ids are 8 to 64 of A-Z a-z 0-9 _ - (as SDKs send them)"]
    if len(set(value)) != len(value):
        return ["each reporter id at most once"]
    return []

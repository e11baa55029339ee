"""What the console's pages show, read from the services as the API views read them: a row per flag (state,
percent, stage, the judge's verdict, the last decision, the percent's recent history for a sparkline), a flag's
decision log with readable evidence, and the series its charts draw. Plain JSON-ready dicts: the templates render
them (autoescaped) and the event stream sends them (console.js writes them with textContent)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flagsvc.console.evidence import readable
from flagsvc.domain.errors import FlagNotFound
from flagsvc.domain.flag import Flag, HistoryEntry, State
from flagsvc.domain.timeline import FlagTimelineDoc
from flagsvc.service import Services

SPARK_ENTRIES = 20  # history entries a sparkline draws
# The judge looks at rolling flags only; its last verdict on a paused one is what the resume starts from. Other
# states are not judged, and their rows skip the verdict's read (one read of the judge's record), so a list of many
# finished flags stays cheap to refresh every second.
JUDGED = frozenset({State.ROLLING, State.PAUSED})
LOG_ENTRIES = 200  # decision log entries on a flag's page
CHART_REVISIONS = 12  # a rollout's recent revisions charted (each stage is a revision)
CHART_POINTS = 120  # points a revision's lines keep at most: a chart is 640 units wide, and the page refetches
# its data after every look while it is open


def _stage(flag: Flag) -> str:
    return f"{flag.stage_index + 1} of {len(flag.stages)}" if flag.stages else "-"


def decision(entry: HistoryEntry) -> dict[str, Any]:
    return {"at": entry.at, "actor": entry.actor, "action": entry.action.value, "revision": entry.revision,
            "from_percent": entry.from_percent, "to_percent": entry.to_percent, "reason": entry.reason,
            "to_state": entry.to_state.value if entry.to_state else None,
            "evidence": [{"label": label, "text": text} for label, text in readable(entry.evidence)]}


def spark(history: list[HistoryEntry], flag: Flag) -> list[list[float]]:
    """[at, percent] oldest first: each change's new percent, and the flag's percent now."""
    points = [[e.at, float(e.to_percent)] for e in reversed(history) if e.to_percent is not None]
    return [*points, [flag.updated_at, flag.percent]]


def row(services: Services, flag: Flag, *, any_state: bool = False) -> dict[str, Any]:
    """The flag's row; the verdict read for judged states only, unless `any_state` (one flag's page)."""
    return with_verdict(base_row(services, flag), verdict(services, flag.key, flag.state, any_state=any_state))


def base_row(services: Services, flag: Flag) -> dict[str, Any]:
    """The row without the judge's verdict: what changes only with the flag (its revision, its history)."""
    history = services.commands.history(flag.key, SPARK_ENTRIES)
    last = decision(history[0]) if history else None
    if last is not None:
        del last["evidence"]
    return {
        "key": flag.key, "description": flag.description, "state": flag.state.value, "percent": flag.percent,
        "stage": _stage(flag), "revision": flag.revision, "judged": flag.state in JUDGED, "verdict": None,
        "last": last, "spark": spark(history, flag),
    }


def verdict(services: Services, key: str, state: State, *, any_state: bool = False) -> dict[str, Any] | None:
    """The judge's last verdict on the flag (judged states only, unless `any_state`): it changes at each of the
    controller's looks, which change neither the flag nor its history."""
    if not any_state and state not in JUDGED:
        return None
    found = services.ingestion.verdict(key)  # a flag deleted since it was listed has none
    return None if found is None else {"decision": found["decision"], "reason": found["reason"]}


def with_verdict(base: dict[str, Any], found: dict[str, Any] | None) -> dict[str, Any]:
    return {**base, "verdict": found}


def rows(services: Services, query: str = "", state: str = "") -> list[dict[str, Any]]:
    """Every flag matching `query` (in its key or description, any case) and `state` (empty: any)."""
    return with_verdicts(services, base_rows(services, query, state))


def base_rows(services: Services, query: str = "", state: str = "") -> list[dict[str, Any]]:
    """rows() without the verdicts (with_verdicts adds them)."""
    needle = query.strip().lower()
    return [base_row(services, f) for f in services.commands.list_flags()
            if (not state or f.state.value == state)
            and (not needle or needle in f.key.lower() or needle in f.description.lower())]


def with_verdicts(services: Services, bases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [with_verdict(b, verdict(services, b["key"], State(b["state"]))) if b["judged"] else b for b in bases]


def flag_page(services: Services, key: str) -> dict[str, Any]:
    """A flag's page: the flag, its row, its decision log (newest first) and its timeline (FlagNotFound)."""
    flag = services.commands.get(key)
    return {
        "flag": flag.to_dict(),
        "row": row(services, flag, any_state=True),
        "log": [decision(e) for e in services.commands.history(key, LOG_ENTRIES)],
        "timeline": thinned(services.timeline.timeline(key, revisions=CHART_REVISIONS)),
    }


def thinned(timeline: FlagTimelineDoc, most: int = CHART_POINTS) -> FlagTimelineDoc:
    """Each revision's points evenly thinned to `most`, its first and last kept."""
    for revision in timeline["revisions"]:
        points = revision["points"]
        if len(points) > most:
            step = (len(points) - 1) / (most - 1)
            revision["points"] = [points[round(i * step)] for i in range(most)]
    return timeline


def flag_summary(services: Services, key: str) -> dict[str, Any] | None:
    """What tells a flag page that it is out of date: the row, and how many looks its timeline has."""
    try:
        flag = services.commands.get(key)
        looks = sum(r["looks"] for r in services.timeline.timeline(key, revisions=CHART_REVISIONS)["revisions"])
    except FlagNotFound:
        return None
    return {"row": row(services, flag, any_state=True), "looks": looks}


def digest(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:32]

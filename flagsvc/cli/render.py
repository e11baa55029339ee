"""Human output for flagctl: aligned tables and short summaries (machine output is --json)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def when(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:g}%"


def stages(flag: dict[str, Any]) -> str:
    marks = []
    for i, stage in enumerate(flag["stages"]):
        text = f"{stage:g}"
        marks.append(f"[{text}]" if i == flag["stage_index"] and flag["state"] in ("rolling", "paused") else text)
    return " ".join(marks)


def progress_bar(value: float, width: int = 30) -> str:
    filled = round(width * max(0.0, min(value, 100.0)) / 100)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def flag_details(flag: dict[str, Any]) -> str:
    rows = [
        ("key", flag["key"]),
        ("description", flag["description"] or "-"),
        ("state", flag["state"]),
        ("percent", percent(flag["percent"])),
        ("stages", stages(flag)),
        ("bake", f"{flag['bake_seconds']}s"),
        ("revision", flag["revision"]),
        ("updated", when(flag["updated_at"])),
        ("reason", flag.get("reason") or "-"),
        ("allow / deny", f"{len(flag['allow'])} / {len(flag['deny'])} user ids"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def rate(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms"


def stats_table(stats: dict[str, Any]) -> str:
    rows = []
    for arm in ("stable", "canary"):
        a = stats["arms"][arm]
        rows.append((arm, a["count"], a["errors"], rate(a["error_rate"]), ms(a["p50_ms"]), ms(a["p95_ms"]),
                     ms(a["p99_ms"])))
    return table(("arm", "requests", "errors", "error rate", "p50", "p95", "p99"), rows)


def strata_table(strata: list[dict[str, Any]]) -> str:
    """A stratified flag's rates per stratum and arm, and each stratum's split at the judge's last look."""
    rows = []
    for row in strata:
        s, c, split = row["stable"], row["canary"], row.get("split")
        shown = "-"
        if split and split.get("observed_share") is not None:
            shown = (f"{100 * split['observed_share']:.1f}% canary, expected {100 * split['expected_share']:g}%"
                     + (": off" if split.get("mismatch") else ""))
        rows.append((row["stratum"] or "(unlabelled)", s["requests"], rate(s["error_rate"]), c["requests"],
                     rate(c["error_rate"]), shown))
    return table(("stratum", "stable req", "stable err", "canary req", "canary err", "split"), rows)


def reporters_table(reporters: dict[str, Any]) -> str:
    """The top reporters (SDK instances) of the revision, their requests, errors and largest share."""
    rows = [(r["reporter"], r["canary_requests"], r["canary_errors"], r["stable_requests"], r["stable_errors"],
             f"{100 * r['share']:.0f}% of {r['share_of']}") for r in reporters["top"]]
    others = reporters["others"]
    if others["reporters"]:
        rows.append((f"{others['reporters']} others", "", "", "", "",
                     f"{100 * others['share_of_requests']:.0f}% of requests"))
    head = f"reporters: {reporters['reporters']}"
    if reporters.get("excluded"):
        head += f"; excluded: {', '.join(reporters['excluded'])}"
    if not rows:
        return head
    return head + "\n" + table(("reporter", "canary req", "canary err", "stable req", "stable err", "largest share"),
                               rows)

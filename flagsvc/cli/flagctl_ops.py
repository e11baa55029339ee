"""flagctl's operations commands: `timeline` (a rollout's time series) and `audit` (who changed what), registered
on flagctl's group by `register(main)`."""

from __future__ import annotations

import urllib.parse
from typing import Any

import click

from flagsvc.cli import render
from flagsvc.cli.api_client import ApiClient
from flagsvc.cli.flagctl import _emit, _flag_path, _handle_errors, json_option


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _statistic(test: dict[str, Any]) -> str:
    if test["statistic"] is None:
        return "-"
    bounds = [f"{name} {test[key]:g}" for name, key in (("accept", "accept_at"), ("reject", "reject_at"))
              if test[key] is not None]
    return f"{test['statistic']:g}" + (f" ({', '.join(bounds)})" if bounds else "")


def _timeline_view(data: dict[str, Any]) -> str:
    rows = []
    for revision in data["revisions"]:
        for p in revision["points"]:
            rows.append((render.when(p["at"]), p["revision"], p["state"], render.percent(p["percent"]),
                         p["decision"] + ("" if p["applied"] else " (not applied)"),
                         p["stable"]["requests"], _rate(p["stable"]["error_rate"]), _ms(p["stable"]["p95_ms"]),
                         p["canary"]["requests"], _rate(p["canary"]["error_rate"]), _ms(p["canary"]["p95_ms"]),
                         _statistic(p["errors"]), _statistic(p["latency"])))
    if not rows:
        return "no looks recorded yet"
    return render.table(("WHEN (UTC)", "REV", "STATE", "PERCENT", "DECISION", "STABLE N", "ERR", "P95 MS",
                         "CANARY N", "ERR", "P95 MS", "ERRORS TEST", "LATENCY TEST"), rows)


@click.command()
@click.argument("key")
@click.option("--from-revision", type=click.IntRange(1), help="The first revision (default: the first).")
@click.option("--to-revision", type=click.IntRange(1), help="The last revision (default: the newest).")
@click.option("--revisions", type=click.IntRange(1, 100), help="At most this many revisions, the newest.")
@json_option
@click.pass_obj
@_handle_errors
def timeline(api: ApiClient, key: str, from_revision: int | None, to_revision: int | None,
             revisions: int | None, as_json: bool) -> None:
    """A rollout's looks, per revision: each arm's requests, error rate and p95, the judge's statistics."""
    query = {name: value for name, value in (("from_revision", from_revision), ("to_revision", to_revision),
                                             ("revisions", revisions)) if value is not None}
    suffix = f"?{urllib.parse.urlencode(query)}" if query else ""
    _emit(api.get(_flag_path(key, "timeline") + suffix), as_json, _timeline_view)


def _audit_view(data: dict[str, Any]) -> str:
    rows = [(render.when(e["at"]), e["actor"], e["action"], f"{e['kind']} {e['target']}",
             "" if e["revision"] is None else e["revision"], e["reason"]) for e in data["entries"]]
    table = render.table(("WHEN (UTC)", "ACTOR", "ACTION", "ON", "REV", "REASON"), rows)
    return table + (f"\nolder entries: --cursor {data['next_cursor']}" if data["next_cursor"] else "")


@click.command()
@click.option("--flag", help="Only entries about this flag (deleted flags too).")
@click.option("--actor", help="Only entries by this token's name (or controller).")
@click.option("--action", help="Only this action (create, update, delete, start, rollback, advance, ...).")
@click.option("--since", type=click.FloatRange(0), help="Only entries at or after this time (Unix seconds).")
@click.option("--until", type=click.FloatRange(0), help="Only entries at or before this time (Unix seconds).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--cursor", help="Go on from an earlier answer's next cursor (older entries).")
@json_option
@click.pass_obj
@_handle_errors
def audit(api: ApiClient, flag: str | None, actor: str | None, action: str | None, since: float | None,
          until: float | None, limit: int, cursor: str | None, as_json: bool) -> None:
    """Every change, by whom, newest first: flags (also deleted ones), segments, webhooks, the controller."""
    query = {name: value for name, value in (("flag", flag), ("actor", actor), ("action", action),
                                             ("since", since), ("until", until), ("limit", limit),
                                             ("cursor", cursor)) if value is not None}
    _emit(api.get(f"/api/v1/audit?{urllib.parse.urlencode(query)}"), as_json, _audit_view)


def register(main: click.Group) -> None:
    main.add_command(timeline)
    main.add_command(audit)

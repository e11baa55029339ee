"""flagctl's operations commands: `timeline` (a rollout's time series), `audit` (who changed what) and `webhook`
(notifications: add, list, remove, deliveries), registered on flagctl's group by `register(main)`."""

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


EVENTS = ("rollback", "complete", "hold", "blind", "reporter_anomaly")


@click.group()
def webhook() -> None:
    """Webhooks: a signed JSON POST (with a Slack-compatible `text`) when the controller rolls back, completes,
    holds long, is blind, or one reporter drives a verdict. Destinations must be in the server's
    FLAGSVC_WEBHOOK_ALLOW. See docs/notifications.md."""


def _webhooks_view(data: dict[str, Any]) -> str:
    rows = [(w["id"], w["flag"] or "(every flag)", ",".join(w["events"]), f"{w['hold_seconds']:g}", w["url"],
             w["description"]) for w in data["webhooks"]]
    if not rows:
        return "no webhooks"
    return render.table(("ID", "FLAG", "EVENTS", "HOLD S", "URL", "DESCRIPTION"), rows)


def _created_view(data: dict[str, Any]) -> str:
    return (f"webhook {data['id']} created: {', '.join(data['events'])} of {data['flag'] or 'every flag'} to "
            f"{data['url']}\nsigning secret (shown once, keep it): {data['secret']}")


@webhook.command("add")
@click.argument("url")
@click.option("--event", "events", multiple=True, required=True, type=click.Choice(EVENTS),
              help="An event to send (repeat for several): rollback, complete, hold (held longer than "
                   "--hold-seconds), blind, reporter_anomaly.")
@click.option("--flag", help="Only this flag's events (default: every flag).")
@click.option("--hold-seconds", type=click.FloatRange(1, 30 * 86400), default=3600, show_default=True,
              help="For `hold`: how long a rollout must have held at one revision.")
@click.option("--description", default="", help="What it is for (shown in `webhook list`).")
@json_option
@click.pass_obj
@_handle_errors
def webhook_add(api: ApiClient, url: str, events: tuple[str, ...], flag: str | None, hold_seconds: float,
                description: str, as_json: bool) -> None:
    """Send events to URL; prints the signing secret, shown this once."""
    body = {"url": url, "events": list(events), "flag": flag, "hold_seconds": hold_seconds,
            "description": description}
    _emit(api.post("/api/v1/webhooks", body), as_json, _created_view)


@webhook.command("list")
@json_option
@click.pass_obj
@_handle_errors
def webhook_list(api: ApiClient, as_json: bool) -> None:
    """Every webhook: its flag (or every flag), events, hold time and URL."""
    _emit(api.get("/api/v1/webhooks"), as_json, _webhooks_view)


@webhook.command("remove")
@click.argument("webhook_id")
@json_option
@click.pass_obj
@_handle_errors
def webhook_remove(api: ApiClient, webhook_id: str, as_json: bool) -> None:
    """Delete a webhook (by the id `webhook list` shows); its pending deliveries are dropped."""
    api.request("DELETE", f"/api/v1/webhooks/{urllib.parse.quote(webhook_id, safe='')}")
    _emit({"removed": webhook_id}, as_json, lambda data: f"webhook {data['removed']} removed")


@webhook.command("edit")
@click.argument("webhook_id")
@click.option("--url", help="A new destination (its host must be allowed).")
@click.option("--event", "events", multiple=True, type=click.Choice(EVENTS),
              help="The events to send, replacing the current ones (repeat for several).")
@click.option("--flag", help="Only this flag's events.")
@click.option("--every-flag", is_flag=True, help="Every flag's events.")
@click.option("--hold-seconds", type=click.FloatRange(1, 30 * 86400), help="For `hold`: how long a rollout must "
              "have held at one revision.")
@click.option("--description", help="What it is for.")
@json_option
@click.pass_obj
@_handle_errors
def webhook_edit(api: ApiClient, webhook_id: str, url: str | None, events: tuple[str, ...], flag: str | None,
                 every_flag: bool, hold_seconds: float | None, description: str | None, as_json: bool) -> None:
    """Change a webhook's settings; those not given are kept."""
    if flag is not None and every_flag:
        raise click.UsageError("--flag and --every-flag: say one")
    body: dict[str, Any] = {name: value for name, value in (
        ("url", url), ("events", list(events) or None), ("flag", flag), ("hold_seconds", hold_seconds),
        ("description", description)) if value is not None}
    if every_flag:
        body["flag"] = None
    if not body:
        raise click.UsageError("nothing to change: give --url, --event, --flag/--every-flag, --hold-seconds or "
                               "--description")
    changed = api.request("PATCH", f"/api/v1/webhooks/{urllib.parse.quote(webhook_id, safe='')}", body)
    _emit(changed, as_json, lambda data: _webhooks_view({"webhooks": [data]}))


@webhook.command("rotate-secret")
@click.argument("webhook_id")
@click.option("--keep-previous", "keep_previous", type=click.FloatRange(0, 30 * 86400), default=86400,
              show_default=True, help="Seconds during which deliveries are signed with the old secret too, while "
                                      "the receiver switches over (0: not at all).")
@json_option
@click.pass_obj
@_handle_errors
def webhook_rotate_secret(api: ApiClient, webhook_id: str, keep_previous: float, as_json: bool) -> None:
    """A new signing secret for a webhook, printed this once."""
    path = f"/api/v1/webhooks/{urllib.parse.quote(webhook_id, safe='')}/rotate-secret"
    rotated = api.post(path, {"keep_previous_seconds": keep_previous})

    def view(data: dict[str, Any]) -> str:
        until = data["previous_secret_until"]
        overlap = f"the old one also signs until {render.when(until)} UTC" if until else "the old one no longer signs"
        return f"webhook {data['id']}: new signing secret (shown once, keep it): {data['secret']}\n{overlap}"

    _emit(rotated, as_json, view)


def _deliveries_view(data: dict[str, Any]) -> str:
    rows = [(render.when(d["created_at"]), d["event"], d["flag"], d["status"], d["attempts"],
             "" if d["response_code"] is None else d["response_code"],
             "" if d["next_attempt_at"] is None else render.when(d["next_attempt_at"]), d["last_error"])
            for d in data["deliveries"]]
    if not rows:
        return "no deliveries yet"
    return render.table(("WHEN (UTC)", "EVENT", "FLAG", "STATUS", "ATTEMPTS", "CODE", "NEXT TRY", "LAST ERROR"),
                        rows)


@webhook.command("deliveries")
@click.argument("webhook_id")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100))
@json_option
@click.pass_obj
@_handle_errors
def webhook_deliveries(api: ApiClient, webhook_id: str, limit: int, as_json: bool) -> None:
    """The webhook's delivery log, newest first: status, attempts, response code, last error."""
    path = f"/api/v1/webhooks/{urllib.parse.quote(webhook_id, safe='')}/deliveries?limit={limit}"
    _emit(api.get(path), as_json, _deliveries_view)


def register(main: click.Group) -> None:
    main.add_command(timeline)
    main.add_command(audit)
    main.add_command(webhook)

"""`flagctl`: drive rollouts from a terminal or a script.

Errors are one line on stderr and a non-zero exit: 1 the server refused (bad value, unknown flag, illegal
move), 2 bad usage, 3 server unreachable, 4 bad or missing token. `watch` exits 0 when the rollout completes,
10 when it is rolled back, 11 when it stops otherwise (an operator set it by hand, turned it off, deleted it),
12 when its percent and state have not changed for --stall-timeout seconds.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from flagsvc.cli import render
from flagsvc.cli.api_client import ApiClient, CliError

EXIT_ROLLED_BACK = 10
EXIT_STOPPED = 11
EXIT_STALLED = 12


def _flag_path(key: str, *rest: str) -> str:
    return "/api/v1/flags/" + "/".join([quote(key, safe=""), *rest])


def _emit(data: Any, as_json: bool, human: Callable[[Any], str]) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else human(data))


def _handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CliError as e:
            click.echo(f"flagctl: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            sys.exit(130)

    return wrapper


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
if_revision_option = click.option(
    "--if-revision", type=click.IntRange(1), metavar="N",
    help="Apply only if the flag is still at revision N (`flagctl show` prints it); else nothing changes (exit 1).")


class FiniteFloat(click.ParamType):
    """A number; `nan` and `inf`, which Python's float() accepts and JSON cannot carry, are refused."""

    name = "number"

    def __init__(self, low: float | None = None, high: float | None = None) -> None:
        self.low, self.high = low, high

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
            self.fail(f"{value!r} is not in the range {self.low} to {self.high}", param, ctx)
        return number


FINITE = FiniteFloat()


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--url", envvar="FLAGSVC_URL", default="http://127.0.0.1:8080", show_default=True,
              help="flagsvc server URL (env FLAGSVC_URL).")
@click.option("--token", envvar="FLAGSVC_ADMIN_TOKEN", help="Admin token (env FLAGSVC_ADMIN_TOKEN).")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for each request.")
@click.pass_context
def main(ctx: click.Context, url: str, token: str | None, timeout: float) -> None:
    """Operate flagsvc feature-flag rollouts.

    \b
    Examples:
      export FLAGSVC_URL=http://127.0.0.1:8080 FLAGSVC_ADMIN_TOKEN=fsa_...
      flagctl create new_checkout --stages 1,5,25,100 --bake-seconds 300 -d "New checkout"
      flagctl start new_checkout && flagctl watch new_checkout   # exit 0 once complete
      flagctl rollback new_checkout --reason "checkout errors"
      flagctl list --json | jq '.[].key'
    """
    ctx.obj = ApiClient(url, token, timeout)


def _settings(stages: str | None, bake_seconds: int | None, description: str | None, salt: str | None,
              analysis: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if stages is not None:
        try:
            body["stages"] = [FINITE.convert(s, None, None) for s in stages.split(",") if s.strip()]
        except click.BadParameter as e:
            raise click.BadParameter(f"comma-separated percentages, e.g. 1,5,25,100 ({e.message})",
                                     param_hint="--stages") from None
    if bake_seconds is not None:
        body["bake_seconds"] = bake_seconds
    if description is not None:
        body["description"] = description
    if salt is not None:
        body["salt"] = salt
    chosen = {name: value for name, value in analysis.items() if value is not None}
    if chosen:
        body["analysis"] = chosen
    return body


def _analysis_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--alpha", type=FINITE, help="False-rollback budget of the canary analysis (default 0.01)."),
        click.option("--error-ratio", type=FINITE, help="Canary/stable error-rate ratio to detect (e.g. 2)."),
        click.option("--latency-ratio", type=FINITE, help="Canary/stable p95 ratio to detect (e.g. 1.25)."),
        click.option("--min-requests", type=int, help="Canary requests per stage before any promotion."),
        click.option("--max-error-rate", type=FINITE, help="Absolute guardrail: roll back above this rate (0-1)."),
        click.option("--max-p99-ms", type=FINITE, help="Absolute guardrail: roll back above this p99 (ms)."),
        click.option("--max-stage-seconds", type=FINITE,
                     help="A stage lasting longer without a decision (thin traffic) is overdue (default: no limit)."),
        click.option("--on-max-stage", type=click.Choice(["hold", "advance"]),
                     help="When a stage is overdue: hold and alert (default), or advance with the reason in history."),
        click.option("--stratify-by", metavar="ATTR[,ATTR]",
                     help="Compare the arms within strata of one or two context attributes, e.g. plan or "
                          "plan,region (docs/judge.md, \"Strata\"); \"\" compares them pooled again."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _pop_analysis(kwargs: dict[str, Any]) -> dict[str, Any]:
    analysis = {name: kwargs.pop(name) for name in
                ("alpha", "error_ratio", "latency_ratio", "min_requests", "max_error_rate", "max_p99_ms",
                 "max_stage_seconds", "on_max_stage")}
    stratify_by = kwargs.pop("stratify_by")
    if stratify_by is not None:  # the server validates the names (a 400 naming analysis.stratify_by)
        analysis["stratify_by"] = [name.strip() for name in stratify_by.split(",") if name.strip()]
    return analysis


def _list_view(flags: list[dict[str, Any]]) -> str:
    if not flags:
        return "no flags yet: flagctl create KEY"
    rows = [(f["key"], f["state"], render.percent(f["percent"]), render.stages(f), f["revision"],
             render.when(f["updated_at"])) for f in flags]
    return render.table(("KEY", "STATE", "PERCENT", "STAGES", "REV", "UPDATED (UTC)"), rows)


@main.command("list")
@json_option
@click.pass_obj
@_handle_errors
def list_flags(api: ApiClient, as_json: bool) -> None:
    """List every flag with its state and percent."""
    flags = api.get("/api/v1/flags")["flags"]
    _emit(flags, as_json, _list_view)


@main.command()
@click.argument("key")
@click.option("--stages", help="Comma-separated ascending percentages ending at 100 (default 1,5,10,25,50,100).")
@click.option("--bake-seconds", type=int, help="Minimum time at each stage (default 300).")
@click.option("-d", "--description", help="What the flag is for.")
@click.option("--salt", help="Bucketing salt (default: the key). Changing it reshuffles users.")
@_analysis_options
@json_option
@click.pass_obj
@_handle_errors
def create(api: ApiClient, key: str, stages: str | None, bake_seconds: int | None, description: str | None,
           salt: str | None, as_json: bool, **analysis: Any) -> None:
    """Create a flag (state off, 0 %).

    \b
    Example:
      flagctl create new_checkout --stages 1,5,25,100 --bake-seconds 120 --error-ratio 2
    """
    body = {"key": key, **_settings(stages, bake_seconds, description, salt, _pop_analysis(analysis))}
    _emit(api.post("/api/v1/flags", body), as_json, render.flag_details)


@main.command()
@click.argument("key")
@json_option
@click.pass_obj
@_handle_errors
def show(api: ApiClient, key: str, as_json: bool) -> None:
    """Show one flag."""
    _emit(api.get(_flag_path(key)), as_json, render.flag_details)


@main.command()
@click.argument("key")
@click.option("--stages", help="Comma-separated ascending percentages ending at 100 (not during a rollout).")
@click.option("--bake-seconds", type=int, help="Minimum time at each stage.")
@click.option("-d", "--description", help="What the flag is for.")
@click.option("--salt", help="Bucketing salt. Changing it reshuffles users.")
@click.option("--allow", help="Comma-separated user ids always on the canary path (replaces the list).")
@click.option("--deny", help="Comma-separated user ids never on the canary path (replaces the list).")
@click.option("--eligible-segment", "eligible", multiple=True, metavar="NAME",
              help="Roll out only to contexts in one of these segments (repeat; replaces the list; '' clears it).")
@click.option("--exclude-segment", "excluded", multiple=True, metavar="NAME",
              help="Never roll out to contexts in these segments (repeat; replaces the list; '' clears it).")
@click.option("--bucket-by", metavar="ATTRIBUTE",
              help="Context attribute hashed instead of the user id, e.g. org: an org flips as one ('' unsets).")
@_analysis_options
@if_revision_option
@json_option
@click.pass_obj
@_handle_errors
def edit(api: ApiClient, key: str, stages: str | None, bake_seconds: int | None, description: str | None,
         salt: str | None, allow: str | None, deny: str | None, eligible: tuple[str, ...], excluded: tuple[str, ...],
         bucket_by: str | None, if_revision: int | None, as_json: bool, **analysis: Any) -> None:
    """Change a flag's settings (targeting: docs/targeting.md).

    \b
    Examples:
      flagctl edit new_checkout --allow qa-1,qa-2 --bake-seconds 600
      flagctl edit new_checkout --eligible-segment nz-free --exclude-segment staff --bucket-by org
    """
    body = _settings(stages, bake_seconds, description, salt, _pop_analysis(analysis))
    for name, names in (("eligible_segments", eligible), ("excluded_segments", excluded)):
        if names:
            body[name] = [n for n in names if n]
    if bucket_by is not None:
        body["bucket_by"] = bucket_by or None
    for name, value in (("allow", allow), ("deny", deny)):
        if value is not None:
            body[name] = [v.strip() for v in value.split(",") if v.strip()]
    if not body:
        raise click.UsageError("nothing to change: give at least one option (see flagctl edit --help)")
    _emit(api.request("PATCH", _flag_path(key), body, if_revision=if_revision), as_json, render.flag_details)


@main.command()
@click.argument("key")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@if_revision_option
@click.pass_obj
@_handle_errors
def delete(api: ApiClient, key: str, yes: bool, if_revision: int | None) -> None:
    """Delete a flag and its history (SDKs then answer the caller's default)."""
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("refusing to delete without --yes when not interactive")
        click.confirm(f"Delete flag {key!r} and its history?", abort=True)
    api.request("DELETE", _flag_path(key), if_revision=if_revision)
    click.echo(f"deleted {key}")


def _transition(action: str, doc: str) -> None:
    @main.command(name=action, help=doc)
    @click.argument("key")
    @click.option("--reason", help="Why; kept in the flag's history.")
    @if_revision_option
    @json_option
    @click.pass_obj
    @_handle_errors
    def command(api: ApiClient, key: str, reason: str | None, if_revision: int | None, as_json: bool) -> None:
        body = {"reason": reason} if reason else {}
        flag = api.request("POST", _flag_path(key, action), body, if_revision=if_revision)
        _emit(flag, as_json, lambda f: f"{f['key']}: {f['state']} at {render.percent(f['percent'])} "
                                       f"(revision {f['revision']})")


_transition("start", "Start the rollout at its first stage; the controller advances it while the canary is healthy.")
_transition("pause", "Hold the rollout where it is; the judge stops acting until resume.")
_transition("resume", "Resume a paused rollout (the stage's bake time starts again).")
_transition("promote", "Move to the next stage now, without waiting for the judge.")
_transition("rollback", "Kill switch: 0 % for everyone, from any state. Give --reason.")


@main.command(name="set")
@click.argument("key")
@click.argument("percent", type=FiniteFloat(0, 100))
@click.option("--reason", help="Why; kept in the flag's history.")
@if_revision_option
@json_option
@click.pass_obj
@_handle_errors
def set_percent(api: ApiClient, key: str, percent: float, reason: str | None, if_revision: int | None,
                as_json: bool) -> None:
    """Set the canary percentage by hand (state manual: held, not judged).

    \b
    Example:
      flagctl set new_checkout 12.5 --reason "hold for the sale"
    """
    body: dict[str, Any] = {"percent": percent}
    if reason:
        body["reason"] = reason
    flag = api.request("PUT", _flag_path(key, "percent"), body, if_revision=if_revision)
    _emit(flag, as_json, lambda f: f"{f['key']}: {f['state']} at {render.percent(f['percent'])}")


def _history_view(data: dict[str, Any]) -> str:
    rows = [(render.when(e["at"]), e["actor"], e["action"], e["from_state"] or "-", e["to_state"] or "-",
             f"{render.percent(e['from_percent'])} -> {render.percent(e['to_percent'])}", e["revision"],
             e["reason"] or "") for e in data["history"]]
    return render.table(("WHEN (UTC)", "ACTOR", "ACTION", "FROM", "TO", "PERCENT", "REV", "REASON"), rows)


@main.command()
@click.argument("key")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@json_option
@click.pass_obj
@_handle_errors
def history(api: ApiClient, key: str, limit: int, as_json: bool) -> None:
    """Every change of a flag, newest first: who, what, why."""
    _emit(api.get(_flag_path(key, "history") + f"?limit={limit}"), as_json, _history_view)


def _stats_view(stats: dict[str, Any]) -> str:
    lines = [f"{stats['key']}: {stats['state']} at {render.percent(stats['percent'])}, revision {stats['revision']}",
             render.stats_table(stats)]
    if stats.get("strata"):
        lines.append(render.strata_table(stats["strata"]))
    if stats.get("reporters"):
        lines.append(render.reporters_table(stats["reporters"]))
    verdict = stats.get("verdict")
    if verdict:
        lines.append(f"judge: {_judged(verdict)}")
    return "\n".join(lines)


@main.command()
@click.argument("key")
@json_option
@click.pass_obj
@_handle_errors
def stats(api: ApiClient, key: str, as_json: bool) -> None:
    """Live outcomes of the current rollout step per arm (and per stratum, for a stratified flag), and the
    judge's last verdict."""
    _emit(api.get(_flag_path(key, "stats")), as_json, _stats_view)


def _reporter_change(name: str, action: str, doc: str) -> None:
    @main.command(name=name, help=doc)
    @click.argument("key")
    @click.argument("reporter")
    @click.option("--reason", help="Why; kept in the flag's history.")
    @json_option
    @click.pass_obj
    @_handle_errors
    def command(api: ApiClient, key: str, reporter: str, reason: str | None, as_json: bool) -> None:
        body = {"reporter": reporter, **({"reason": reason} if reason else {})}
        flag = api.post(_flag_path(key, "reporters", action), body)
        excluded = flag["analysis"].get("excluded_reporters") or []
        _emit(flag, as_json, lambda f: f"{f['key']}: revision {f['revision']}; excluded reporters: "
                                       f"{', '.join(excluded) or 'none'}")


_reporter_change("exclude-reporter", "exclude",
                 "Drop one reporter's (SDK instance's) outcomes from the flag's analysis, e.g. one `flagctl stats` "
                 "names as driving the judge's verdict. A settings change: a new revision, fresh aggregates.")
_reporter_change("include-reporter", "include", "Put an excluded reporter back into the flag's analysis.")


@main.command()
@click.argument("key")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(0.1, 60),
              help="Seconds between looks.")
@click.option("--timeout", "give_up", type=FINITE, help="Give up (exit 11) after this many seconds.")
@click.option("--stall-timeout", "stall_after", type=FiniteFloat(low=0),
              help="Exit 12 when the rollout's percent and state have not changed for this many seconds, "
                   "whatever the reason (blind, thin data, a sample-ratio mismatch, paused).")
@json_option
@click.pass_obj
@_handle_errors
def watch(api: ApiClient, key: str, interval: float, give_up: float | None, stall_after: float | None,
          as_json: bool) -> None:
    """Follow a rollout live until it completes (exit 0) or is rolled back (exit 10).

    Exits 11 when it stops otherwise (set by hand, turned off, deleted, --timeout) and 12 when it stalls
    (--stall-timeout). A blind verdict (the judge gets outcomes from one arm only: the application records
    outcomes on one branch) is called out on its own line. With --json, prints one JSON object per look (JSON
    lines). In CI:

    \b
      flagctl start new_checkout && flagctl watch new_checkout --timeout 3600 --stall-timeout 900 || alert
    """
    started = time.monotonic()
    last_line = None
    looked = False
    progress, progressed_at, blind_said, overdue_said = None, started, False, False
    while True:
        try:
            flag = api.get(_flag_path(key))
            current = api.get(_flag_path(key, "stats"))
        except CliError as e:
            if e.status != 404 or not looked:  # never there at all: a mistake (exit 1), not a stopped rollout
                raise
            click.echo(f"flagctl: {key} was deleted while watched", err=True)
            sys.exit(EXIT_STOPPED)
        looked = True
        verdict = current.get("verdict") or {}
        blind = verdict.get("decision") == "blind"
        overdue = verdict.get("reason", "").startswith("stage overdue")
        if as_json:
            click.echo(json.dumps({"flag": flag, "stats": current}, sort_keys=True))
        else:
            line = _watch_line(flag, current)
            if line != last_line:
                click.echo(line)
                last_line = line
            if blind and not blind_said:
                click.echo(_blind_line(key, verdict), err=True)
            if overdue and not overdue_said:
                click.echo(f"OVERDUE: {key}: {verdict['reason']}", err=True)
        blind_said, overdue_said = blind, overdue
        state = flag["state"]
        if state == "complete":
            return
        if state == "rolled_back":
            if not as_json:
                click.echo(f"rolled back: {flag.get('reason') or 'no reason given'}", err=True)
            sys.exit(EXIT_ROLLED_BACK)
        if state in ("off", "manual"):
            click.echo(f"flagctl: {key} is {state}: no rollout to watch", err=True)
            sys.exit(EXIT_STOPPED)
        if give_up is not None and time.monotonic() - started > give_up:
            click.echo(f"flagctl: gave up after {give_up:g}s; {key} is {state} at {flag['percent']:g}%", err=True)
            sys.exit(EXIT_STOPPED)
        if (state, flag["percent"]) != progress:
            progress, progressed_at = (state, flag["percent"]), time.monotonic()
        elif stall_after is not None and time.monotonic() - progressed_at > stall_after:
            why = f"; judge: {_judged(verdict)}" if verdict else ""
            click.echo(f"flagctl: stalled: {key} has been {state} at {flag['percent']:g}% for over "
                       f"{stall_after:g}s{why}", err=True)
            sys.exit(EXIT_STALLED)
        time.sleep(interval)


def _judged(verdict: dict[str, Any]) -> str:
    """The verdict in words: "hold: insufficient evidence ..."; a blind one's reason already starts "blind: "."""
    decision, reason = verdict["decision"], verdict["reason"]
    return reason if reason.startswith(f"{decision}: ") else f"{decision}: {reason}"


def _blind_line(key: str, verdict: dict[str, Any]) -> str:
    arm = ((verdict.get("evidence") or {}).get("blind") or {}).get("arm") or "one"
    return (f"BLIND: {key}: the judge gets no (or far too few) outcomes from the {arm} arm and holds until it does; "
            f"{verdict['reason']}")


def _watch_line(flag: dict[str, Any], stats: dict[str, Any]) -> str:
    stage = f"stage {flag['stage_index'] + 1}/{len(flag['stages'])}"
    canary, stable = stats["arms"]["canary"], stats["arms"]["stable"]
    verdict = stats.get("verdict") or {}
    judged = f" | judge: {_judged(verdict)}" if verdict else ""
    arms = " | ".join(
        f"{name} {arm['count']} req, {render.rate(arm['error_rate'])} err, p95 {render.ms(arm['p95_ms'])}"
        for name, arm in (("canary", canary), ("stable", stable))
    )
    bar = render.progress_bar(flag["percent"])
    return f"{bar} {render.percent(flag['percent']):>6} {flag['state']:<8} {stage} | {arms}{judged}"


# --- backup and recovery (docs/recovery.md) ------------------------------------------------------------------


@main.command("export")
@click.argument("file", required=False, type=click.Path(dir_okay=False, writable=True))
@click.option("--history", default=0, show_default=True, type=click.IntRange(0, 1000),
              help="Also export each flag's newest history entries.")
@click.pass_obj
@_handle_errors
def export_flags(api: ApiClient, file: str | None, history: int) -> None:
    """Export every flag with its rollout state to FILE (default: standard output), for `flagctl import`."""
    document = api.get(f"/api/v1/export?history={history}")
    text = json.dumps(document, indent=1) + "\n"
    if file is None or file == "-":
        click.echo(text, nl=False)
        return
    tmp = f"{file}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, file)
    click.echo(f"exported {len(document['flags'])} flag(s) (epoch {document['epoch']}, version "
               f"{document['version']}) to {file}", err=True)


@main.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--replace", is_flag=True, help="Overwrite flags that exist (by default they are left alone).")
@json_option
@click.pass_obj
@_handle_errors
def import_flags(api: ApiClient, file: str, replace: bool, as_json: bool) -> None:
    """Restore the flags of an export (FILE, or - for standard input): missing flags are created as exported,
    with their state and percent, so their rollouts go on. The whole file is checked first; nothing is applied
    if any flag is invalid.

    \b
    After a wipe of Redis:  flagctl import .flagsvc/backups/flags-latest.json
    """
    try:
        raw = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
        document = json.loads(raw)
    except (OSError, ValueError) as e:
        raise click.UsageError(f"cannot read an export from {file}: {e}") from None
    if not isinstance(document, dict):
        raise click.UsageError(f"{file} is not an export (a JSON object)")
    # An import of thousands of flags takes longer than one request's usual timeout; a retry after a timeout
    # would find the first import's flags and leave them alone (or, with --replace, apply it again).
    result = api.request("POST", f"/api/v1/import?replace={'true' if replace else 'false'}", document,
                         timeout=max(api.timeout, 300.0))
    labels = (("created", "created"), ("replaced", "replaced"), ("unchanged", "left alone"))
    _emit(result, as_json, lambda r: "\n".join(
        [f"segments {label}: {', '.join(r['segments'][name]) or 'none'}" for name, label in labels
         if r.get("segments", {}).get(name)]
        + [f"{label}: {', '.join(r[name]) or 'none'}" for name, label in labels]))


@main.command("dataset")
@click.option("--ack", is_flag=True, help="Accept the flags a dataset reset lost: /readyz answers 200 again.")
@json_option
@click.pass_obj
@_handle_errors
def dataset(api: ApiClient, ack: bool, as_json: bool) -> None:
    """Whether the flag dataset was reset and which flags are still missing (exit 1 while a reset is open,
    unless --ack closes it)."""
    result = api.post("/api/v1/dataset/acknowledge") if ack else api.get("/api/v1/dataset")
    _emit(result, as_json, lambda r: str(r["message"]))
    if not ack and result["status"] != "ok":
        sys.exit(1)


# --- segments (docs/targeting.md) ---------------------------------------------------------------------------

CONDITION_HELP = ('A condition "ATTRIBUTE OP VALUE[,VALUE...]", e.g. "country in NZ,AU", "seats gte 100", '
                  '"app_version semver_gte 2.0.0" (repeat: all must hold). Numbers and true/false are read as such '
                  'for equals, in, not_in and the numeric operators.')


def _condition(text: str) -> dict[str, Any]:
    parts = text.strip().split(None, 2)
    if len(parts) != 3:
        raise click.BadParameter(f"{text!r}: expected ATTRIBUTE OP VALUE[,VALUE...]")
    attribute, op, raw = parts
    values: list[Any] = [raw] if op == "matches" else [v.strip() for v in raw.split(",")]
    if op in ("equals", "in", "not_in", "lt", "lte", "gt", "gte"):
        values = [_scalar(v) for v in values]
    return {"attribute": attribute, "op": op, "values": values}


def _scalar(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def _segment_view(segment: dict[str, Any]) -> str:
    lines = [f"{segment['name']}  (revision {segment['revision']})  {segment.get('description', '')}".rstrip()]
    lines += [f"  {c['attribute']} {c['op']} {', '.join(map(str, c['values']))}" for c in segment["conditions"]]
    return "\n".join(lines)


@main.group()
def segment() -> None:
    """Targeting segments: named sets of conditions on the evaluation context (docs/targeting.md)."""


@segment.command("list")
@json_option
@click.pass_obj
@_handle_errors
def list_segments(api: ApiClient, as_json: bool) -> None:
    """Every segment with its conditions."""
    segments = api.get("/api/v1/segments")["segments"]
    _emit(segments, as_json, lambda found: "\n".join(_segment_view(s) for s in found) or "no segments")


@segment.command("show")
@click.argument("name")
@json_option
@click.pass_obj
@_handle_errors
def show_segment(api: ApiClient, name: str, as_json: bool) -> None:
    """One segment."""
    _emit(api.get(f"/api/v1/segments/{urllib.parse.quote(name, safe='')}"), as_json, _segment_view)


@segment.command("create")
@click.argument("name")
@click.option("--when", "conditions", multiple=True, required=True, help=CONDITION_HELP)
@click.option("-d", "--description", help="What the segment is.")
@json_option
@click.pass_obj
@_handle_errors
def create_segment(api: ApiClient, name: str, conditions: tuple[str, ...], description: str | None,
                   as_json: bool) -> None:
    """Create a segment.

    \b
    Example:
      flagctl segment create nz-free --when "country in NZ" --when "plan equals free"
    """
    body: dict[str, Any] = {"name": name, "conditions": [_condition(c) for c in conditions]}
    if description is not None:
        body["description"] = description
    _emit(api.post("/api/v1/segments", body), as_json, _segment_view)


@segment.command("edit")
@click.argument("name")
@click.option("--when", "conditions", multiple=True, help=CONDITION_HELP + " Replaces every condition.")
@click.option("-d", "--description", help="What the segment is.")
@click.option("--if-revision", type=click.IntRange(1), metavar="N",
              help="Apply only if the segment is still at revision N; else nothing changes (exit 1).")
@json_option
@click.pass_obj
@_handle_errors
def edit_segment(api: ApiClient, name: str, conditions: tuple[str, ...], description: str | None,
                 if_revision: int | None, as_json: bool) -> None:
    """Change a segment's conditions or description; SDKs get it like any change."""
    body: dict[str, Any] = {}
    if conditions:
        body["conditions"] = [_condition(c) for c in conditions]
    if description is not None:
        body["description"] = description
    if not body:
        raise click.UsageError("nothing to change: give --when or --description")
    path = f"/api/v1/segments/{urllib.parse.quote(name, safe='')}"
    _emit(api.request("PATCH", path, body, if_revision=if_revision), as_json, _segment_view)


@segment.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
@_handle_errors
def delete_segment(api: ApiClient, name: str, yes: bool) -> None:
    """Delete a segment (refused while a flag names it)."""
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("refusing to delete without --yes when not interactive")
        click.confirm(f"Delete segment {name!r}?", abort=True)
    api.request("DELETE", f"/api/v1/segments/{urllib.parse.quote(name, safe='')}")
    click.echo(f"deleted segment {name}")


from flagsvc.cli import flagctl_ops  # noqa: E402  (its commands use the helpers above)

flagctl_ops.register(main)

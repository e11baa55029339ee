"""The `flagsvc` command: `flagsvc serve` runs the server (on an embedded Redis unless FLAGSVC_REDIS_URL)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path

import click

from flagsvc.config import ConfigError, Settings, check_distinct_secrets


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flagsvc")
def main() -> None:
    """flagsvc: feature flags whose canary rollouts advance by themselves.

    \b
    Examples:
      flagsvc serve                      # embedded Redis under ./.flagsvc, tokens generated and printed
      FLAGSVC_REDIS_URL=redis://db:6379/0 FLAGSVC_ADMIN_TOKENS=ops=... FLAGSVC_SDK_KEYS=web=... flagsvc serve
    """


def default_workers() -> int:
    """One worker per core: a worker is one Python interpreter, so one core's worth of requests at most. Past 4,
    more processes mostly add Redis connections and memory; say --workers for more."""
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 4))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="TCP port.")
@click.option("--workers", type=click.IntRange(1, 64), envvar="FLAGSVC_WORKERS",
              help="Worker processes [default: one per CPU core, at most 4; env FLAGSVC_WORKERS].")
@click.option("--threads", type=click.IntRange(1, 4096), envvar="FLAGSVC_SDK_THREADS",
              help="Threads per worker that run SDK requests [default: 32; env FLAGSVC_SDK_THREADS]. SDK streams "
                   "hold none; operators' requests have FLAGSVC_OPERATOR_THREADS (8) of their own.")
@click.option("--operator-port", type=click.IntRange(1, 65535), envvar="FLAGSVC_OPERATOR_PORT",
              help="A listener of operators' own (admin API, console, health, metrics), served by a worker of its "
                   "own, so that no SDK flood slows it [env FLAGSVC_OPERATOR_PORT; default: none, one listener].")
@click.option("--operator-host", envvar="FLAGSVC_OPERATOR_HOST",
              help="Interface of the operator listener [default: --host; env FLAGSVC_OPERATOR_HOST].")
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn (debugging only).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="One line per event, as text or JSON.")
def serve(host: str, port: int, workers: int | None, threads: int | None, operator_port: int | None,
          operator_host: str | None, dev: bool, log_format: str) -> None:
    """Serve the REST API, the SDK endpoints and the rollout controller.

    \b
    Environment:
      FLAGSVC_REDIS_URL      Redis to use; unset: start an embedded redis-server (AOF, fsync always)
      FLAGSVC_DATA_DIR       embedded Redis data and generated tokens (default ./.flagsvc)
      FLAGSVC_ADMIN_TOKENS   name=secret,... for operators (required with FLAGSVC_REDIS_URL)
      FLAGSVC_SDK_KEYS       name=secret,... for SDKs (required with FLAGSVC_REDIS_URL)
    """
    from flagsvc.logs import configure

    configure(log_format)
    if operator_port is not None and operator_port == port:
        raise click.UsageError(f"--operator-port must differ from --port ({port})")
    if operator_port is not None and dev:
        raise click.UsageError("--operator-port needs gunicorn's workers: leave out --dev")
    if threads is not None:
        os.environ["FLAGSVC_SDK_THREADS"] = str(threads)  # read by each worker (flagsvc.serving.limits)
    try:
        settings = Settings.from_env()
        from flagsvc.serving.limits import ServingLimits

        ServingLimits.from_env()  # refuse bad limits here, not in every worker
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    _raise_open_file_limit()
    embedded = None
    if settings.redis_url is None:
        settings, embedded = _with_embedded_redis(settings, {port, operator_port or port})
    elif not settings.admin_tokens or not settings.sdk_keys:
        raise click.UsageError("with FLAGSVC_REDIS_URL set, FLAGSVC_ADMIN_TOKENS and FLAGSVC_SDK_KEYS are required")
    owner_pid = os.getpid()
    metrics_dir = None if dev else _prepare_multiprocess_metrics()
    try:
        from flagsvc.api import create_app

        app = create_app(settings)
        from flagsvc.store.connection import parse_redis_url

        redis_target = parse_redis_url(settings.redis_url or "").describe()  # set by now; without its password
        click.echo(f"flagsvc: serving http://{host}:{port} (Redis {redis_target})", err=True)
        if operator_port is not None:
            click.echo(f"flagsvc: operators' listener http://{operator_host or host}:{operator_port}", err=True)
        if dev:
            background = app.extensions["flagsvc.background"]
            background.start()
            try:
                app.run(host=host, port=port, threaded=True, use_reloader=False)
            finally:
                background.stop()
        else:
            from flagsvc.cli.wsgi import run_gunicorn

            run_gunicorn(app, host=host, port=port, workers=workers or default_workers(),
                         json_logs=log_format == "json", operator_host=operator_host, operator_port=operator_port)
    finally:
        if embedded is not None:
            embedded.stop()
        if metrics_dir is not None and os.getpid() == owner_pid:  # not in a gunicorn worker leaving
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _raise_open_file_limit() -> None:
    """Every SDK stream is an open socket: take the soft limit on open files up to the hard one (often 1,024
    soft, far more hard)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))
    except (ImportError, ValueError, OSError):
        pass  # not POSIX, or not allowed: serve with what there is


def _prepare_multiprocess_metrics() -> Path | None:
    """Workers share their metrics through files in a fresh directory, set before prometheus_client is imported
    (it picks its storage at import time). Returns the directory when it was made here (to remove at exit)."""
    if "prometheus_client" in sys.modules and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None  # too late to switch; metrics stay per process
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    directory = given or tempfile.mkdtemp(prefix="flagsvc-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    for stale in Path(directory).glob("*.db"):
        stale.unlink()
    return None if given else Path(directory)


def _with_embedded_redis(settings: Settings, serve_ports: set[int]):
    from flagsvc.cli.tokens import load_or_create_tokens
    from flagsvc.embedded import EmbeddedRedis, EmbeddedRedisError

    embedded = EmbeddedRedis(settings.data_dir, avoid_ports=frozenset(serve_ports))  # not the server's own
    try:
        url = embedded.start()
    except EmbeddedRedisError as e:
        click.echo(f"flagsvc: {e}", err=True)
        sys.exit(1)
    click.echo(f"flagsvc: embedded Redis at {url}, data in {embedded.data_dir}", err=True)
    if not settings.admin_tokens or not settings.sdk_keys:  # the kind not given comes from tokens.json
        admin, sdk, created = load_or_create_tokens(settings.data_dir)
        where = settings.data_dir / "tokens.json"
        click.echo(f"flagsvc: {'generated' if created else 'using'} tokens (kept in {where}):", err=True)
        if not settings.admin_tokens:
            settings = dataclasses.replace(settings, admin_tokens=admin)
            click.echo(f"  admin token: {next(iter(admin.values()))}", err=True)
        if not settings.sdk_keys:
            settings = dataclasses.replace(settings, sdk_keys=sdk)
            click.echo(f"  SDK key:     {next(iter(sdk.values()))}", err=True)
        try:
            check_distinct_secrets(settings.admin_tokens, settings.sdk_keys, settings.read_tokens)
        except ConfigError as e:
            embedded.stop()
            raise click.UsageError(str(e)) from None
    return dataclasses.replace(settings, redis_url=url), embedded


def _register_demo() -> None:
    from flagsvc.cli.demo import demo

    main.add_command(demo)


_register_demo()

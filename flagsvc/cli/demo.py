"""`flagsvc demo`: see a rollout run itself, in under a minute, with nothing set up.

It starts a private server (embedded Redis in a temporary directory, the controller looking every half
second), creates two flags, and drives simulated traffic through the real SDK: one canary as healthy as stable,
one failing four times as often. It prints the rollouts as they move, until the healthy one completes and the
broken one is zeroed, then the reasons from their history.
"""

from __future__ import annotations

import logging
import math
import random
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import click

DEMO_ADMIN = "demo-admin-token"
DEMO_SDK = "demo-sdk-key-0001"


@dataclass(frozen=True)
class Scenario:
    key: str
    canary_error_rate: float
    expected: str


SCENARIOS = (Scenario("demo_healthy", 0.02, "complete"), Scenario("demo_broken", 0.08, "rolled_back"))
STABLE_ERROR_RATE = 0.02
STAGES = [5, 25, 50, 100]


def simulate_traffic(client, scenarios, rate: float, stop: threading.Event, seed: int = 7) -> None:
    """`rate` requests a second per flag, from 50,000 users; latency lognormal around 100 ms."""
    rng = random.Random(seed)
    tick = 0.05
    per_tick = max(int(rate * tick), 1)
    while not stop.is_set():
        started = time.monotonic()
        for scenario in scenarios:
            for _ in range(per_tick):
                user = rng.randrange(50_000)
                canary = client.is_enabled(scenario.key, user)
                failure = scenario.canary_error_rate if canary else STABLE_ERROR_RATE
                latency = rng.lognormvariate(math.log(100), 0.4)
                client.record(scenario.key, user, ok=rng.random() >= failure, latency_ms=latency)
        stop.wait(max(tick - (time.monotonic() - started), 0))


def _line(flag, stats) -> str:
    from flagsvc.cli import render

    canary = stats["arms"]["canary"]
    verdict = (stats.get("verdict") or {}).get("reason", "")
    return (f"  {flag.key:<13} {render.progress_bar(flag.percent, 20)} {flag.percent:>5g}%  {flag.state.value:<11}"
            f" canary {canary['count']:>6} req {render.rate(canary['error_rate']):>6} err  {verdict[:70]}")


@click.command()
@click.option("--seconds", default=90.0, show_default=True, help="Give up after this long.")
@click.option("--rate", default=1500.0, show_default=True, help="Simulated requests per second, per flag.")
def demo(seconds: float, rate: float) -> None:
    """Watch two canary rollouts run themselves: a healthy one completes, a broken one is zeroed.

    Starts its own server with an embedded Redis in a temporary directory; leaves nothing behind.
    """
    from flagsvc_client import FlagClient
    from werkzeug.serving import make_server

    from flagsvc.api import create_app
    from flagsvc.config import Settings
    from flagsvc.domain.flag import HistoryEntry
    from flagsvc.embedded import EmbeddedRedis
    from flagsvc.service import build_services

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log between the progress lines
    with tempfile.TemporaryDirectory(prefix="flagsvc-demo-") as tmp, \
            EmbeddedRedis(Path(tmp), appendfsync="no") as redis:
        settings = Settings(redis_url=redis.url, data_dir=Path(tmp), admin_tokens={"demo": DEMO_ADMIN},
                            sdk_keys={"demo": DEMO_SDK}, controller_interval=0.5)
        services = build_services(settings)
        app = create_app(settings, services=services)
        background, commands, ingestion = services.background, services.commands, services.ingestion
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        background.start()
        url = f"http://127.0.0.1:{server.server_port}"
        click.echo(f"flagsvc demo: server at {url}, embedded Redis at {redis.url}")
        for s in SCENARIOS:
            commands.create(s.key, {"stages": STAGES, "bake_seconds": 5,
                                      "description": f"canary error rate {s.canary_error_rate:.0%}"}, actor="demo")
            commands.start(s.key, actor="demo")
        click.echo(f"  stable fails {STABLE_ERROR_RATE:.0%} of requests; demo_healthy's canary the same, "
                   f"demo_broken's canary {SCENARIOS[1].canary_error_rate:.0%}. Stages {STAGES}, 5 s bake.\n")
        stop = threading.Event()
        client = FlagClient(url, sdk_key=DEMO_SDK, flush_interval=0.5)
        traffic = threading.Thread(target=simulate_traffic, args=(client, SCENARIOS, rate, stop), daemon=True)
        ok = False
        try:
            client.wait_until_ready(timeout=5)
            traffic.start()
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                time.sleep(1.0)
                flags = [commands.get(s.key) for s in SCENARIOS]
                click.echo(f"t={time.monotonic() - started:4.0f}s")
                for flag in flags:
                    click.echo(_line(flag, ingestion.stats(flag.key)))
                if all(f.state.value == s.expected for f, s in zip(flags, SCENARIOS, strict=True)):
                    ok = True
                    break
        finally:
            stop.set()
            traffic.join(2)
            client.close(timeout=2)
            background.stop()
            server.shutdown()
        click.echo("\nWhat happened, from each flag's history:")
        for s in SCENARIOS:
            entry: HistoryEntry
            for entry in reversed(commands.history(s.key)):
                if entry.actor == "controller":
                    click.echo(f"  {s.key}: {entry.action.value} to {entry.to_percent:g}%: {entry.reason}")
        if not ok:
            click.echo(f"\nflagsvc demo: not finished after {seconds:g}s", err=True)
            raise SystemExit(1)
        click.echo("\nThe healthy canary reached 100 %; the broken one was zeroed. "
                   "Try it on your own server: python3 dev.py serve")

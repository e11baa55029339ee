"""The mission end to end: real server, real Redis, the real judge and controller, real SDK threads.

A healthy canary is promoted to 100 %, a canary failing 4x as often is zeroed with a reason, and a flag with
no traffic never advances.
"""

from __future__ import annotations

import threading

import pytest
from click.testing import CliRunner
from flagsvc_client import FlagClient
from werkzeug.serving import make_server

from flagsvc.api import create_app
from flagsvc.cli.demo import Scenario, simulate_traffic
from flagsvc.cli.server import main
from flagsvc.config import Settings
from flagsvc.domain.flag import State
from flagsvc.service import build_services
from flagsvc.store.redis_store import RedisStore
from tests.support import ADMIN_TOKEN, SDK_KEY, wait_for

pytestmark = pytest.mark.slow


def test_healthy_completes_broken_is_zeroed_idle_never_advances(any_redis, namespace, tmp_path):
    settings = Settings(admin_tokens={"ops": ADMIN_TOKEN}, sdk_keys={"web": SDK_KEY}, controller_interval=0.25,
                        data_dir=tmp_path)
    services = build_services(settings, RedisStore(any_redis, namespace))
    app = create_app(settings, services=services)
    operations, background = services.commands, services.background
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    background.start()
    scenarios = [Scenario("healthy", 0.02, "complete"), Scenario("broken", 0.08, "rolled_back")]
    for key in ("healthy", "broken", "idle"):
        operations.create(key, {"stages": [5, 25, 50, 100], "bake_seconds": 2}, actor="ops")
        operations.start(key, actor="ops")
    stop = threading.Event()
    client = FlagClient(f"http://127.0.0.1:{server.server_port}", sdk_key=SDK_KEY, flush_interval=0.25)
    traffic = threading.Thread(target=simulate_traffic, args=(client, scenarios, 1500, stop), daemon=True)
    try:
        assert client.wait_until_ready(timeout=5)
        traffic.start()
        assert wait_for(lambda: operations.get("healthy").state == State.COMPLETE
                        and operations.get("broken").state != State.ROLLING, timeout=60)
    finally:
        stop.set()
        traffic.join(2)
        client.close(timeout=2)
        background.stop()
        server.shutdown()

    healthy, broken, idle = (operations.get(k) for k in ("healthy", "broken", "idle"))
    assert (healthy.state, healthy.percent) == (State.COMPLETE, 100)
    assert [e.to_percent for e in reversed(operations.history("healthy")) if e.actor == "controller"] == [
        25, 50, 100]
    assert (broken.state, broken.percent) == (State.ROLLED_BACK, 0)
    assert "errors regression" in broken.reason
    rollback = operations.history("broken", 1)[0]
    assert rollback.actor == "controller" and rollback.evidence  # the numbers behind the decision are kept
    assert (idle.state, idle.percent, idle.revision) == (State.ROLLING, 5, 2)  # no traffic: no advance, no rollback
    verdict = services.ingestion.stats("idle")["verdict"]
    assert verdict["decision"] == "hold" and "insufficient" in verdict["reason"]


def test_the_demo_shows_promotion_and_rollback():
    result = CliRunner().invoke(main, ["demo", "--seconds", "60"])
    assert result.exit_code == 0, result.output
    assert "demo_healthy: complete to 100%" in result.output
    assert "demo_broken: rollback to 0%" in result.output

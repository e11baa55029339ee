"""A rollout whose application records outcomes on the canary branch only: the real SDK, server, controller and
judge report it `blind` within a bake time of the stage's start (never before the bake time), the gauge shows it,
and the SDK itself warns."""

from __future__ import annotations

import logging
import threading

import pytest
from flagsvc_client import FlagClient
from werkzeug.serving import make_server

from flagsvc import metrics
from flagsvc.api import create_app
from flagsvc.config import Settings
from flagsvc.service import build_services
from flagsvc.store.redis_store import RedisStore
from tests.support import ADMIN_TOKEN, SDK_KEY, wait_for

pytestmark = pytest.mark.slow

BAKE = 2


def test_an_uninstrumented_stable_path_is_reported_blind_within_a_bake_time(real_redis, namespace, caplog):
    caplog.set_level(logging.WARNING, logger="flagsvc_client")
    settings = Settings(admin_tokens={"ops": ADMIN_TOKEN}, sdk_keys={"web": SDK_KEY}, controller_interval=0.1)
    store = RedisStore(real_redis, namespace)
    services = build_services(settings, store)
    server = make_server("127.0.0.1", 0, create_app(settings, services=services), threaded=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    services.background.start()
    operations = services.commands
    operations.create("checkout", {"stages": [5, 100], "bake_seconds": BAKE}, actor="ops")
    started = operations.start("checkout", actor="ops")
    client = FlagClient(f"http://127.0.0.1:{server.server_port}", sdk_key=SDK_KEY, flush_interval=0.1)
    verdicts: list[dict] = []

    def verdict() -> dict | None:
        found = services.ingestion.stats("checkout")["verdict"]
        if found and (not verdicts or verdicts[-1] != found):
            verdicts.append(found)
        return found

    try:
        assert client.wait_until_ready(timeout=5)
        canary_outcomes, user = 0, 0
        while canary_outcomes < 400:  # the application wraps only the new branch in track()
            user += 1
            if client.is_enabled("checkout", f"user-{user}"):
                with client.track("checkout", f"user-{user}"):
                    canary_outcomes += 1
        assert client.flush(5)
        assert wait_for(lambda: (verdict() or {}).get("decision") == "blind", timeout=BAKE * 2 + 5)
        scrape = metrics.render(store).decode()
    finally:
        client.close(timeout=2)
        services.background.stop()
        server.shutdown()

    blind = verdicts[-1]
    assert blind["evidence"]["blind"]["arm"] == "stable" and blind["evidence"]["blind"]["observed"] == 0
    assert blind["reason"].startswith("blind: no stable outcomes in ")
    assert "while 400 canary outcomes arrived at 5 %; the stable path is not instrumented" in blind["reason"]
    assert BAKE <= blind["at"] - started.stage_started_at <= 2 * BAKE  # not before the bake time, within one more
    assert all(v["decision"] == "hold" for v in verdicts[:-1])  # before it: an ordinary hold
    flag = operations.get("checkout")
    assert (flag.percent, flag.revision) == (5, started.revision)  # blind changes nothing
    assert 'flagsvc_flag_blind{arm="stable",flag="checkout"} 1.0' in scrape
    assert any("all from canary users, none from stable users" in r.getMessage() for r in caplog.records)

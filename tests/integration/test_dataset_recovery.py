"""The done-bar of data-loss recovery, on a real redis-server over real HTTP with a real SDK: a flag at 50 %,
FLUSHALL, the server notices within seconds, the SDK keeps answering the flag at 50 % from its last snapshot,
one `flagctl import` of the server's on-disk export restores it, and the controller carries the rollout on."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from click.testing import CliRunner
from flagsvc_client import FlagClient

from flagsvc.api import create_app
from flagsvc.cli.flagctl import main as flagctl
from flagsvc.config import Settings
from flagsvc.service import build_services
from flagsvc.service.announce import ChangeAnnouncer
from flagsvc.service.controller import RolloutController
from flagsvc.store.redis_store import RedisStore
from tests.support import ADMIN_TOKEN, SDK_KEY, serving, wait_for

USERS = [f"user-{i}" for i in range(4000)]


@dataclass(frozen=True)
class _State:
    def to_dict(self) -> dict[str, Any]:
        return {}

    def carry_to(self, stage_index: int) -> None:
        return None

    def next_stage(self) -> None:
        return None


@dataclass
class _Verdict:
    decision: str = "advance"
    reason: str = "canary as healthy as stable"
    evidence: dict = field(default_factory=dict)
    state: _State = field(default_factory=_State)


class _AdvancingJudge:
    def judge(self, state, stable, canary, **context):
        return _Verdict()


def test_flushall_at_50_percent_noticed_sdk_keeps_answering_one_import_restores(real_redis, namespace, tmp_path,
                                                                                 caplog):
    settings = Settings(admin_tokens={"ops": ADMIN_TOKEN}, sdk_keys={"web": SDK_KEY}, data_dir=tmp_path)
    store = RedisStore(real_redis, namespace)
    services = build_services(settings, store, controller=False, watch_interval=0.25, backup_interval=0.25)
    app = create_app(settings, services=services)
    commands = services.commands
    with serving(app) as url:
        services.background.start()
        client = FlagClient(url, sdk_key=SDK_KEY, flush_interval=0.25)
        try:
            commands.create("checkout", {"stages": [10, 50, 100]}, actor="ops")
            commands.start("checkout", actor="ops")
            at_50 = commands.promote("checkout", actor="ops")
            assert client.wait_until_ready(5)
            assert wait_for(lambda: client.evaluate("checkout", "u").revision == at_50.revision)
            before = [client.is_enabled("checkout", u) for u in USERS]
            assert 0.45 < sum(before) / len(USERS) < 0.55
            latest = tmp_path / "backups" / "flags-latest.json"
            assert wait_for(lambda: latest.exists() and json.loads(latest.read_text())["version"] >= 3)

            services.dataset.look()  # the watcher has seen the flag at 50 % (its own looks may be a beat behind)
            with caplog.at_level(logging.ERROR, "flagsvc.dataset"):
                wiped = time.monotonic()
                real_redis.flushall()
                assert wait_for(lambda: services.dataset.notice() is not None, timeout=5)
                detected = time.monotonic() - wiped
                # the watcher writes the notice first and logs it after: wait for the line while it is captured
                assert wait_for(lambda: "checkout (rolling at 50%)" in caplog.text, timeout=5), caplog.text
            ready = requests.get(f"{url}/readyz", timeout=5)
            assert ready.status_code == 503 and "dataset was reset" in ready.json()["error"]["message"]

            commands.create("made_after_the_wipe", {}, actor="ops")  # any change: SDKs get the new epoch
            assert wait_for(lambda: client.status == "carried_over", timeout=5), client.stats
            during = [client.is_enabled("checkout", u) for u in USERS]
            assert during == before  # the same users on the canary, from the last snapshot
            assert json.loads(latest.read_text())["flags"][0]["key"] == "checkout"  # kept as it was

            restored_at = time.monotonic()
            env = {"FLAGSVC_URL": url, "FLAGSVC_ADMIN_TOKEN": ADMIN_TOKEN}
            result = CliRunner().invoke(flagctl, ["import", str(latest)], env=env)
            assert result.exit_code == 0, result.output
            assert requests.get(f"{url}/readyz", timeout=5).status_code == 200
            flag = commands.get("checkout")
            assert (flag.state.value, flag.percent) == ("rolling", 50.0)
            assert wait_for(lambda: client.status == "ready" and
                            client.evaluate("checkout", "u").revision == flag.revision, timeout=5)
            restored = time.monotonic() - restored_at
            assert [client.is_enabled("checkout", u) for u in USERS] == before

            controller = RolloutController(store, lambda f: _AdvancingJudge(), lambda d: _State(),
                                           ChangeAnnouncer(store), owner="test")
            decisions = controller.tick()
            assert [(d.key, d.decision, d.applied) for d in decisions] == [("checkout", "advance", True)]
            assert commands.get("checkout").percent == 100
            print(f"\ndetected after {detected:.2f}s; SDK answered {sum(during)}/{len(USERS)} users canary during "
                  f"the wipe (before: {sum(before)}); restored and served to the SDK in {restored:.2f}s")
        finally:
            client.close(timeout=1)
            services.background.stop()

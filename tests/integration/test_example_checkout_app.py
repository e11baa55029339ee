"""examples/checkout_app against a real flagsvc on a real redis-server: a rollout through both arms, a rollback
in the middle of it, and the stable path carrying on over the rows the canary wrote in the expanded schema."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support import ADMIN, SDK_KEY, serving, wait_for
from tests.support.servers import free_port

APP = Path(__file__).resolve().parents[2] / "examples" / "checkout_app" / "app.py"
USERS = [f"customer-{i}" for i in range(40)]
PAID = {"canary": 2700, "stable": 3000}  # two books at 1500, SPRING10 taken by the canary only


def admin(url: str, method: str, path: str, **body) -> dict:
    response = requests.request(method, url + path, json=body or None, headers=ADMIN, timeout=5)
    assert response.ok, response.text
    return response.json()


class CheckoutApp:
    """`python app.py serve` as its README runs it; ready once /healthz says the flags are loaded."""

    def __init__(self, db: Path, flagsvc_url: str, log: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {**os.environ, "FLAGSVC_URL": flagsvc_url, "FLAGSVC_SDK_KEY": SDK_KEY}
        self.log = log.open("w")
        self.proc = subprocess.Popen([sys.executable, str(APP), "serve", "--db", str(db), "--port",
                                      self.url.rsplit(":", 1)[1]], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        assert wait_for(self._ready, 20), "the example app did not start:\n" + log.read_text()

    def _ready(self) -> bool:
        assert self.proc.poll() is None, "the example app exited"
        try:
            return requests.get(f"{self.url}/healthz", timeout=1).json()["flags"] == "ready"
        except requests.ConnectionError:
            return False

    def order(self, user: str) -> dict:
        response = requests.post(f"{self.url}/orders", json={"user": user, "item": "book", "quantity": 2,
                                                             "code": "SPRING10"}, timeout=5)
        assert response.status_code == 201, response.text
        return response.json()

    def show(self, user: str, order_id: int) -> dict:
        response = requests.get(f"{self.url}/orders/{order_id}", params={"user": user}, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(20)
        self.log.close()
        return code


@pytest.mark.slow
def test_a_rollback_mid_rollout_leaves_the_stable_path_working_on_the_canarys_rows(real_app, tmp_path: Path):
    db = tmp_path / "orders.db"
    with serving(real_app) as flagsvc:
        admin(flagsvc, "POST", "/api/v1/flags", key="new_checkout", stages=[50, 100])
        admin(flagsvc, "POST", "/api/v1/flags/new_checkout/start")

        code_before_schema = subprocess.run([sys.executable, str(APP), "serve", "--db", str(db)], env={
            **os.environ, "FLAGSVC_URL": flagsvc, "FLAGSVC_SDK_KEY": SDK_KEY}, capture_output=True, text=True)
        assert code_before_schema.returncode != 0 and "migrate" in code_before_schema.stderr  # expand comes first
        migrated = subprocess.run([sys.executable, str(APP), "migrate", "--db", str(db)], capture_output=True,
                                  text=True, check=True)
        assert "expand" in migrated.stdout

        app = CheckoutApp(db, flagsvc, tmp_path / "app.log")
        try:
            before = {user: app.order(user) for user in USERS}  # the rollout at 50 %: both arms
            paths = [placed["path"] for placed in before.values()]
            assert paths.count("canary") >= 5 and paths.count("stable") >= 5, paths
            for user, placed in before.items():
                assert app.show(user, placed["id"])["total_cents"] == PAID[placed["path"]]

            admin(flagsvc, "POST", "/api/v1/flags/new_checkout/rollback", reason="checkout errors")
            revision = admin(flagsvc, "GET", "/api/v1/flags/new_checkout")["revision"]
            canary_user = next(user for user, placed in before.items() if placed["path"] == "canary")
            assert wait_for(lambda: app.show(canary_user, before[canary_user]["id"])["path"] == "stable"), \
                "the app never saw the rollback"

            after = {user: app.order(user) for user in USERS}  # everyone on stable, no error
            assert {placed["path"] for placed in after.values()} == {"stable"}
            for user, placed in [*before.items(), *after.items()]:  # the canary's rows included
                shown = app.show(user, placed["id"])
                assert shown["path"] == "stable"
                assert shown["total_cents"] == PAID[placed["path"]]
                assert set(shown) == {"id", "user_id", "item", "quantity", "total_cents", "path"}
        finally:
            assert app.stop() == 0  # SIGTERM is a clean exit: the client flushed its last outcomes
        log = (tmp_path / "app.log").read_text()
        assert "Traceback" not in log, log

        stats = admin(flagsvc, "GET", "/api/v1/flags/new_checkout/stats")
        assert stats["revision"] == revision and stats["state"] == "rolled_back"
        stable, canary = stats["arms"]["stable"], stats["arms"]["canary"]
        assert stable["errors"] == 0 and stable["count"] >= 3 * len(USERS)  # the orders and reads after it
        assert canary["count"] == 0

    rows = sqlite3.connect(db).execute("SELECT discount_code, discount_cents, total_cents FROM orders").fetchall()
    assert ("SPRING10", 300, 2700) in rows and (None, 0, 3000) in rows  # both arms wrote; old INSERTs got defaults

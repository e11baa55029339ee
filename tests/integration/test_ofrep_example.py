"""examples/ofrep-node, run as its README says, against a live server on a real redis-server: a Node.js service
that evaluates over OFREP with the published OpenFeature provider and reports per-arm outcomes. The server must
count exactly what it recorded, in the arms the native SDK's rule puts each user in (docs/ofrep.md, "Outcomes
from other languages")."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from flagsvc_client import is_canary

from tests.support import ADMIN, SDK_KEY, serving
from tests.support.node import install

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ofrep-node"
USERS = 400


def test_the_node_example_evaluates_over_ofrep_and_its_outcomes_are_counted(real_app, tmp_path):
    folder = install(EXAMPLE, tmp_path / "ofrep-node")
    client = real_app.test_client()
    assert client.post("/api/v1/flags", json={"key": "new_checkout"}, headers=ADMIN).status_code == 201
    flag = client.put("/api/v1/flags/new_checkout/percent", json={"percent": 30}, headers=ADMIN).get_json()
    with serving(real_app) as url:
        env = {**os.environ, "FLAGSVC_URL": url, "FLAGSVC_SDK_KEY": SDK_KEY, "FLAG": "new_checkout",
               "USERS": str(USERS)}
        done = subprocess.run(["node", "app.mjs"], cwd=folder, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])

    canary = [i for i in range(USERS) if is_canary(flag["salt"], f"user-{i}", 30)]
    expected = {
        "canary": {"count": len(canary), "errors": sum(1 for i in canary if i % 50 == 0)},
        "stable": {"count": USERS - len(canary), "errors": sum(1 for i in range(USERS) if i % 50 == 0 and
                                                                 i not in canary)},
    }
    assert report["recorded"] == {**expected, "uncounted": 0}, report
    assert report["receipt"]["accepted"] >= 1 and report["receipt"]["duplicate"] is False, report

    stats = client.get("/api/v1/flags/new_checkout/stats", headers=ADMIN).get_json()
    assert stats["revision"] == flag["revision"]
    for arm, counts in expected.items():
        assert (stats["arms"][arm]["count"], stats["arms"][arm]["errors"]) == (counts["count"], counts["errors"]), \
            stats["arms"]
        assert stats["arms"][arm]["error_users"] == counts["errors"]  # one user a failed request
        assert stats["arms"][arm]["p50_ms"] is not None  # the latencies arrived as a sketch

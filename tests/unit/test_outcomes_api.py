"""POST /sdk/v1/outcomes and GET /api/v1/flags/<key>/stats."""

from __future__ import annotations

import pytest
from flagsvc_client.protocol.sketch import LatencySketch

from tests.support import ADMIN, SDK


@pytest.fixture
def flag(client):
    client.post("/api/v1/flags", json={"key": "new_checkout"}, headers=ADMIN)
    client.post("/api/v1/flags/new_checkout/start", headers=ADMIN)
    return client.get("/api/v1/flags/new_checkout", headers=ADMIN).get_json()


def batch(revision, batch_id="b-00000001", stable=(100, 1), canary=(10, 1), latencies=(12.0, 80.0)):
    sketch = LatencySketch()
    for ms in latencies:
        sketch.add(ms)
    return {
        "batch_id": batch_id,
        "flags": {"new_checkout": {"revision": revision, "arms": {
            "stable": {"count": stable[0], "errors": stable[1], "error_users": stable[1]},
            "canary": {"count": canary[0], "errors": canary[1], "latency": sketch.to_wire()},
        }}},
    }


def test_batches_add_up_and_retries_count_once(client, flag):
    answer = client.post("/sdk/v1/outcomes", json=batch(flag["revision"]), headers=SDK).get_json()
    assert answer == {"batch_id": "b-00000001", "accepted": 1, "stale": 0, "unknown": 0, "duplicate": False}
    again = client.post("/sdk/v1/outcomes", json=batch(flag["revision"]), headers=SDK).get_json()
    assert again["duplicate"] is True and again["accepted"] == 0
    client.post("/sdk/v1/outcomes", json=batch(flag["revision"], "b-00000002", (50, 0), (5, 0), ()), headers=SDK)
    stats = client.get("/api/v1/flags/new_checkout/stats", headers=ADMIN).get_json()
    assert stats["revision"] == flag["revision"]
    stable, canary = stats["arms"]["stable"], stats["arms"]["canary"]
    assert (stable["count"], stable["errors"], stable["error_rate"]) == (150, 1, 1 / 150)
    assert (canary["count"], canary["errors"]) == (15, 1)
    assert canary["p50_ms"] == pytest.approx(12.0, rel=0.01) and canary["p99_ms"] == pytest.approx(80.0, rel=0.02)
    assert stats["ingest"] == {"accepted": 2, "duplicate": 1, "stale": 0}


def test_stale_and_unknown_entries_are_dropped_and_counted(client, flag):
    body = batch(flag["revision"] - 1)
    body["flags"]["ghost"] = body["flags"]["new_checkout"]
    answer = client.post("/sdk/v1/outcomes", json=body, headers=SDK).get_json()
    assert (answer["accepted"], answer["stale"], answer["unknown"]) == (0, 1, 1)
    assert client.get("/api/v1/flags/new_checkout/stats", headers=ADMIN).get_json()["arms"]["canary"]["count"] == 0


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.pop("batch_id"), "batch_id"),
        (lambda b: b.update(batch_id="short"), "batch_id"),
        (lambda b: b.update(batch_id="has space in it"), "batch_id"),
        (lambda b: b["flags"]["new_checkout"].update(revision="3"), "flags.new_checkout.value.revision"),
        (lambda b: b["flags"]["new_checkout"]["arms"].update(middle={"count": 1, "errors": 0}),
         "flags.new_checkout.value.arms.middle.key"),
        (lambda b: b["flags"]["new_checkout"]["arms"]["canary"].update(errors=11),
         "flags.new_checkout.value.arms.canary.value.errors"),
        (lambda b: b["flags"]["new_checkout"]["arms"]["canary"].update(count=-1),
         "flags.new_checkout.value.arms.canary.value.count"),
        (lambda b: b["flags"]["new_checkout"]["arms"]["canary"].update(count=1.5),
         "flags.new_checkout.value.arms.canary.value.count"),
        (lambda b: b["flags"]["new_checkout"]["arms"]["canary"].update(latency={"99999": 1}),
         "flags.new_checkout.value.arms.canary.value.latency"),
        (lambda b: b["flags"]["new_checkout"]["arms"]["canary"].update(latency={"abc": 1}),
         "flags.new_checkout.value.arms.canary.value.latency.abc.key"),
        (lambda b: b["flags"]["new_checkout"]["arms"]["canary"].update(latency={"233": 500}),
         "flags.new_checkout.value.arms.canary.value.latency"),
        (lambda b: b["flags"]["new_checkout"]["arms"]["canary"].update(latency={"7": 1, "07": 1}),
         "flags.new_checkout.value.arms.canary.value.latency.07.key"),  # the same bucket twice
        (lambda b: b["flags"]["new_checkout"]["arms"]["canary"].update(latency={"\u0667": 1}),
         "flags.new_checkout.value.arms.canary.value.latency.\u0667.key"),  # an Arabic-Indic 7
        (lambda b: b["flags"]["new_checkout"]["arms"]["canary"].update(latency={"-0": 1}),
         "flags.new_checkout.value.arms.canary.value.latency.-0.key"),
        (lambda b: b["flags"]["new_checkout"]["arms"]["canary"].update(latency={"3": True}),
         "flags.new_checkout.value.arms.canary.value.latency.3.value"),
        (lambda b: b.update(extra=1), "extra"),
    ],
)
def test_malformed_batches_are_400_and_apply_nothing(client, flag, mutate, field):
    body = batch(flag["revision"])
    body["flags"]["other"] = body["flags"]["new_checkout"]  # a valid entry beside the bad one: not applied either
    mutate(body)
    response = client.post("/sdk/v1/outcomes", json=body, headers=SDK)
    assert response.status_code == 400, response.get_json()
    assert field in response.get_json()["error"]["fields"], response.get_json()
    stats = client.get("/api/v1/flags/new_checkout/stats", headers=ADMIN).get_json()
    assert stats["arms"]["stable"]["count"] == 0 and stats["ingest"]["accepted"] == 0


def test_outcomes_need_a_token(client, flag):
    assert client.post("/sdk/v1/outcomes", json=batch(flag["revision"])).status_code == 401


def test_stats_of_unknown_flag(client):
    assert client.get("/api/v1/flags/ghost/stats", headers=ADMIN).status_code == 404
    assert client.get("/api/v1/flags/ghost/stats", headers=SDK).status_code == 403
